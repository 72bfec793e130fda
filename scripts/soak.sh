#!/usr/bin/env bash
# make soak: the QEMU scenario tests, RUNS times in a row (default 10), with HOGS CPU-burning
# processes (default 2) running beside them the whole time, as on CI's loaded 2-core machine.
# Stops at the first failing round and says which; the hogs are killed however the script ends.
#
#   scripts/soak.sh [--runs N] [--hogs N] [cargo test filter...]
#
# It needs KEEL_IMAGE and KEEL_INITRD (the Makefile sets them) and builds the test binaries once
# before the hogs start, so every round measures the tests, not the compiler.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

runs=10
hogs=2
filter=()
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=${2:?--runs needs a number}; shift 2 ;;
        --hogs) hogs=${2:?--hogs needs a number}; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        -*) echo "soak: unknown option $1 (try --help)" >&2; exit 2 ;;
        *) filter+=("$1"); shift ;;
    esac
done
for n in "$runs" "$hogs"; do
    case "$n" in ''|*[!0-9]*) echo "soak: --runs and --hogs take numbers, not '$n'" >&2; exit 2 ;; esac
done
: "${KEEL_IMAGE:?soak: KEEL_IMAGE is not set (run it as make soak)}"
: "${KEEL_INITRD:?soak: KEEL_INITRD is not set (run it as make soak)}"
cargo=${CARGO:-/usr/bin/cargo}

"$cargo" test -p keel-tests --no-run --quiet

pids=()
stop_hogs() { [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true; }
trap stop_hogs EXIT
for _ in $(seq "$hogs"); do
    # A shell loop, not `yes`, so the hog burns CPU without a pipe's write costs in the kernel.
    bash -c 'while :; do :; done' &
    pids+=($!)
done
echo "soak: $runs rounds of the QEMU tests beside $hogs CPU hogs (pids ${pids[*]:-none})"

logs="$root/target/soak"
mkdir -p "$logs"
for round in $(seq "$runs"); do
    log="$logs/round-$round.log"
    start=$(date +%s)
    if "$cargo" test -p keel-tests --no-fail-fast -- "${filter[@]}" >"$log" 2>&1; then
        echo "soak: round $round of $runs passed ($(( $(date +%s) - start ))s)"
    else
        echo "soak: round $round of $runs FAILED after $(( $(date +%s) - start ))s; log: $log" >&2
        grep -E "^test .* FAILED|^---- |panicked at|no line contains|timed out" "$log" | head -20 >&2 || true
        exit 1
    fi
done
echo "soak: all $runs rounds passed"
