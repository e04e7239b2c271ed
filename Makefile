# lowbit's two commands: `make` (the main job) and `make test`.
SWIFT ?= swift
LOWBIT_RELEASE := .build/release/lowbit

.PHONY: all deps build test clean

# The main job: install what is missing, build in release mode, describe the machine, measure its
# roofline ceilings, tune the default suite into TuningDB/lowbit.sqlite, write
# TuningDB/exports/<fingerprint>.json, and write the HTML report (Plots/report.html).
all: build
	$(LOWBIT_RELEASE) machine
	$(LOWBIT_RELEASE) roofline measure
	$(LOWBIT_RELEASE) tune --suite default --export
	$(LOWBIT_RELEASE) report --out Plots

deps:
	@scripts/ensure-deps.sh

build: deps
	$(SWIFT) build -c release

# The tests (Swift Testing); .ci/run calls this.
test: deps
	$(SWIFT) test

clean:
	rm -rf .build
