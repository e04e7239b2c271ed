#!/usr/bin/env bash
# Installs the Debian packages lowbit needs when they are missing.
# As root it runs apt-get; otherwise it prints the exact command and stops.
set -euo pipefail

packages=(pkg-config libhwloc-dev libpapi-dev libsqlite3-dev sqlite3 libopenblas-dev)
# Target headers for compile-only checks of the Arm kernels on x86-64 hosts.
[ "$(uname -m)" = x86_64 ] && packages+=(libc6-dev-arm64-cross)

if ! command -v swift >/dev/null 2>&1; then
    echo "lowbit needs the Swift toolchain (6.0 or later) on PATH; install it from swift.org and try again." >&2
    exit 1
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    echo "lowbit: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    echo "lowbit needs these Debian packages: ${missing[*]}" >&2
    echo "Install them with:" >&2
    echo "    sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
