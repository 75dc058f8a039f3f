#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs every benchmark program once with tiny counts so they keep building
# and running (ctest: test-bench-smoke).  Not a benchmark: no numbers are
# checked, only that each program runs to completion and prints its rows.
#   smoke.sh BENCH_BIN_DIR SCRATCH_DIR
set -euo pipefail
bin=$1
scratch=$2
rm -rf "$scratch"
mkdir -p "$scratch"
# Do not wait for an LTTng session daemon, whether one runs or not.
export LTTNG_UST_REGISTER_TIMEOUT=0

expect_rows() { # expect_rows WHAT MIN FILE
        local n
        n=$(grep -c '^| ' "$3" || true)
        if [ "$n" -lt "$2" ]; then
                echo "smoke: $1 printed $n table rows, expected at least $2" >&2
                cat "$3" >&2
                exit 1
        fi
}

"$bin/bench-emit" --threads 1 --rounds 1 --events 256 >"$scratch/emit1"
expect_rows "bench-emit --threads 1" 6 "$scratch/emit1"
"$bin/bench-emit" --threads 2 --rounds 2 --events 256 --only counter,region >"$scratch/emit2"
expect_rows "bench-emit --threads 2" 4 "$scratch/emit2"
"$bin/bench-emit" --rounds 1 --events 4096 --only counter --overload >"$scratch/emit3"
expect_rows "bench-emit --overload" 2 "$scratch/emit3"
"$bin/bench-emit" --rounds 1 --events 256 --only region,log --tracing-off >"$scratch/emit5"
if ! grep -q "tracing off" "$scratch/emit5"; then
        echo "smoke: bench-emit --tracing-off did not mark its rows" >&2
        exit 1
fi
"$bin/bench-emit" --cold --rounds 1 >"$scratch/emit6"
expect_rows "bench-emit --cold" 1 "$scratch/emit6"
"$bin/bench-emit" --burst 64K >"$scratch/emit4"
expect_rows "bench-emit --burst" 1 "$scratch/emit4"
if ! grep -q "overloaded" "$scratch/emit3"; then
        echo "smoke: bench-emit --overload did not mark its rows" >&2
        exit 1
fi
if "$bin/bench-emit" --only nosuchvariant >/dev/null 2>&1; then
        echo "smoke: bench-emit accepted an unknown variant" >&2
        exit 1
fi
"$bin/bench-size" --stream --events 300 --dump-dir "$scratch" >"$scratch/size"
grep -q '^gtrace_bytes=[1-9]' "$scratch/size"
"$bin/bench-size" --threads 4 >"$scratch/mem"
grep -q '^heap_per_thread=' "$scratch/mem"
"$bin/bench-advancer" --rounds 1 --window-ms 20 --work 10 >"$scratch/adv"
expect_rows "bench-advancer" 2 "$scratch/adv"
# bench/run refuses a part it does not know, before it builds anything.
if "$(dirname "$0")/run" --only emission,nosuchpart >/dev/null 2>"$scratch/run.err" ||
        ! grep -q "unknown part 'nosuchpart'" "$scratch/run.err"; then
        echo "smoke: bench/run accepted an unknown part" >&2
        cat "$scratch/run.err" >&2
        exit 1
fi
# bench/http-ab refuses what it cannot run, before starting anything; with
# wrk installed, a tiny A/B runs through.
for bad in "a=" "a= a=" "a= b" "a= b=lib=/nonexistent" "--windows 0 a= b="; do
        # shellcheck disable=SC2086 # each case is several words
        if "$(dirname "$0")/http-ab" --build "$bin/.." $bad >/dev/null 2>"$scratch/ab.err"; then
                echo "smoke: bench/http-ab accepted '$bad'" >&2
                exit 1
        fi
        grep -q "^bench/http-ab: " "$scratch/ab.err"
done
if command -v wrk >/dev/null && [ "$(nproc)" -ge 2 ] && [ -x "$bin/bench-httpd" ]; then
        "$(dirname "$0")/http-ab" --build "$bin/.." --windows 1 --per-set 1 --window 1 --warm 1 \
                off= on=--trace >"$scratch/ab" 2>"$scratch/ab.err"
        grep -q "^on " "$scratch/ab"
fi
echo "smoke: all benchmark programs ran"
