#!/usr/bin/env bash
# Renders an HTML report (or an SVG chart) to a PNG with headless Chromium, for looking at it
# without a browser: scripts/screenshot-report.sh REPORT.html OUT.png [WIDTH HEIGHT]
# (default 1400 x 4000 CSS pixels; the page is cut at that height).
# Needs the Debian package `chromium`: as root it is installed with apt-get, otherwise the exact
# install command is printed.
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 REPORT.html OUT.png [WIDTH HEIGHT]" >&2
    exit 2
fi
input=$1
output=$2
width=${3:-1400}
height=${4:-4000}

if [ ! -f "$input" ]; then
    echo "$0: no such file: $input" >&2
    exit 1
fi

find_browser() {
    for candidate in chromium chromium-browser google-chrome-stable google-chrome; do
        if command -v "$candidate" >/dev/null 2>&1; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

if ! browser=$(find_browser); then
    if [ "$(id -u)" -eq 0 ]; then
        echo "$0: installing chromium" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq chromium >/dev/null
        browser=$(find_browser)
    else
        echo "$0 needs headless Chromium. Install it with:" >&2
        echo "    sudo apt-get install -y chromium" >&2
        exit 1
    fi
fi

# Absolute paths: Chromium resolves relative ones against its own working directory.
input_abs=$(cd "$(dirname "$input")" && pwd)/$(basename "$input")
mkdir -p "$(dirname "$output")"
output_abs=$(cd "$(dirname "$output")" && pwd)/$(basename "$output")

# A throwaway profile keeps the run from touching (or locking) the user's browser profile.
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT

"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --mute-audio \
    --no-first-run --no-default-browser-check --disable-extensions \
    --user-data-dir="$profile" --force-device-scale-factor=1 \
    --window-size="$width,$height" --screenshot="$output_abs" "file://$input_abs" \
    >/dev/null 2>&1 || {
    echo "$0: $browser failed to render $input" >&2
    exit 1
}

if [ ! -s "$output_abs" ]; then
    echo "$0: no screenshot was written to $output" >&2
    exit 1
fi
echo "$output"
