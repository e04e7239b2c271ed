# lowbit's two commands: `make` (the main job) and `make test`.
SWIFT ?= swift
LOWBIT_RELEASE := .build/release/lowbit

.PHONY: all deps build test clean

# The main job: install what is missing, build in release mode, describe the machine, tune the
# default suite into TuningDB/lowbit.sqlite and write TuningDB/exports/<fingerprint>.json.
all: build
	$(LOWBIT_RELEASE) machine
	$(LOWBIT_RELEASE) tune --suite default --export

deps:
	@scripts/ensure-deps.sh

build: deps
	$(SWIFT) build -c release

# The tests (Swift Testing); .ci/run calls this.
test: deps
	$(SWIFT) test

clean:
	rm -rf .build
