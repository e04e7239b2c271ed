#!/usr/bin/env bash
# Where INT4 attention's time goes: the generated kernel against copies with RoPE's and V's arithmetic
# removed (ablate.py), one thread with the cache in L3, one thread from DRAM, and two processes (one per
# core) from DRAM, each against reading the same pool in order ("read"). GB/s count the KV bytes (codes
# and parameters of every K and V row); ticks are TSC ticks per token and head. Compare within one run.
# usage: scripts/attention-ablation/run.sh [lowbit binary]   (environment: CC, default the Swift clang or cc)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
lowbit=${1:-.build/release/lowbit}
cc=${CC:-$(command -v /opt/swift/usr/bin/clang || command -v cc)}
page=64 heads=32   # the generated kernel's page and heads parameters; the harness is told the same
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$lowbit" gen attention-decode --param isa=avx2 --param cache=int4 --param dot=i8 --param page=$page --param tb=$page \
    --param heads=$heads --param prefetch=2 > "$work/kernel.c"
python3 "$here/ablate.py" "$work/kernel.c" "$work"
symbol=$(grep -oP 'size_t \K\w+(?=_page_bytes\()' "$work/kernel.c" | head -1)
for v in full norope nov norope_nov; do
    sed -E "s/\b${symbol}(_page_bytes|_workspace_bytes)?\b/${v}\1/g" "$work/$v.c" > "$work/$v.renamed.c"
    "$cc" -O3 -Wall -Wextra -mavx2 -mfma -mf16c -shared -fPIC -o "$work/$v.so" "$work/$v.renamed.c"
done
"$cc" -O2 -mavx2 -Wall -Wextra -o "$work/harness" "$here/harness.c" -ldl -lm
libs=("$work/full.so" "$work/norope.so" "$work/nov.so" "$work/norope_nov.so")
echo "one thread, cache in L3 (b = 4, ctx 256):"
PAGE=$page HEADS=$heads taskset -c 0 "$work/harness" 4 32 256 30 "${libs[@]}" read
echo "one thread, from DRAM (b = 16, ctx 2048, about 118 MB):"
PAGE=$page HEADS=$heads taskset -c 0 "$work/harness" 16 32 2048 4 "${libs[@]}" read
echo "two processes, one per core, each from DRAM on its own pool:"
for lib in "${libs[@]}" read; do
    PAGE=$page HEADS=$heads taskset -c 0 "$work/harness" 16 32 2048 4 "$lib" > "$work/p0.txt" &
    PAGE=$page HEADS=$heads taskset -c 1 "$work/harness" 16 32 2048 4 "$lib" > "$work/p1.txt"
    wait
    cat "$work/p0.txt" "$work/p1.txt"
done
