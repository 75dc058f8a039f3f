#!/usr/bin/env bash
# Builds gtrace four ways and runs the test suite on each:
#
#   1. Release (warnings as errors, hardening flags): every test.
#   2. ASan + UBSan: every test.
#   3. TSan: the tests labelled "concurrency".
#   4. Fuzz (only where clang's libFuzzer works): every libFuzzer target
#      replays its seed corpus, then fuzzes for FUZZ_SECONDS (default 20)
#      on a scratch copy of it; a crash, leak or timeout fails the step and
#      leaves the input in build-test/fuzz-artifacts/.
#
# Build trees live under the checkout in build-test/ (override with
# GTRACE_TEST_BUILD_ROOT), so a fresh clone needs nothing but this script.
# Installs missing Debian packages first when run as root.
#
#   scripts/test.sh                 all four
#   scripts/test.sh release|asan|tsan|fuzz ...   only the named ones
#
# Environment: JOBS (default 2), CTEST_ARGS (extra ctest arguments),
# FUZZ_SECONDS (per fuzz target, default 20; 0 replays the seeds only).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_root=${GTRACE_TEST_BUILD_ROOT:-$root/build-test}
jobs=${JOBS:-2}
# shellcheck disable=SC2206 # word splitting of CTEST_ARGS is the point
extra_ctest=(${CTEST_ARGS:-})

if [ "$#" -gt 0 ]; then
        variants=("$@")
else
        variants=(release asan tsan fuzz)
fi
for v in "${variants[@]}"; do
        case "$v" in
        release | asan | tsan | fuzz) ;;
        *)
                echo "usage: $0 [release|asan|tsan|fuzz]..." >&2
                exit 2
                ;;
        esac
done

"$root/scripts/deps.sh"

# Sanitizer reports must fail the test that triggered them, with a stack.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}

summary=()
failed=0
total_pass=0
total_fail=0

# TSan maps its shadow memory at fixed addresses; kernels with a high
# vm.mmap_rnd_bits can place a mapping there and TSan dies with "unexpected
# memory mapping".  Probe once with a tiny program and, if it fails that way,
# run the TSan tests with ASLR off (setarch -R; the personality is inherited
# by every process ctest starts).
tsan_prefix=()
tsan_probe() {
        local dir out
        dir=$(mktemp -d)
        printf '#include <pthread.h>\nstatic void *f(void *a) { return a; }\nint main(void) { pthread_t t; pthread_create(&t, 0, f, 0); return pthread_join(t, 0); }\n' >"$dir/probe.c"
        if ! cc -fsanitize=thread -pthread "$dir/probe.c" -o "$dir/probe" 2>"$dir/cc.log"; then
                echo "test: cannot build a TSan program:" >&2
                cat "$dir/cc.log" >&2
                rm -rf "$dir"
                return 1
        fi
        if out=$("$dir/probe" 2>&1); then
                :
        elif printf '%s' "$out" | grep -q 'unexpected memory mapping' &&
                setarch "$(uname -m)" -R "$dir/probe" >/dev/null 2>&1; then
                echo "test: TSan needs ASLR off on this kernel: running TSan tests under setarch -R"
                tsan_prefix=(setarch "$(uname -m)" -R)
        else
                echo "test: TSan probe failed:" >&2
                printf '%s\n' "$out" >&2
                rm -rf "$dir"
                return 1
        fi
        rm -rf "$dir"
}

# run_variant NAME CMAKE_ARGS... -- CTEST_ARGS...
run_variant() {
        local name=$1 dir log line
        shift
        local cmake_args=() ctest_args=()
        while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
                cmake_args+=("$1")
                shift
        done
        [ "$#" -gt 0 ] && shift
        ctest_args=("$@")
        dir=$build_root/$name
        log=$build_root/$name-ctest.log

        echo "=== $name: configure and build ($dir)"
        # A variant that does not configure or build is reported and the
        # others still run, so one CI run shows every problem at once.
        if ! cmake -S "$root" -B "$dir" -DGTRACE_WERROR=ON "${cmake_args[@]}" >"$build_root/$name-cmake.log" 2>&1; then
                cat "$build_root/$name-cmake.log"
                summary+=("$name: CONFIGURE FAILED")
                failed=1
                return 0
        fi
        if ! cmake --build "$dir" -j "$jobs"; then
                echo "=== $name: BUILD FAILED (errors above)"
                summary+=("$name: BUILD FAILED")
                failed=1
                return 0
        fi

        echo "=== $name: ctest ${ctest_args[*]}"
        local prefix=()
        [ "$name" = tsan ] && prefix=("${tsan_prefix[@]}")
        local rc=0
        (cd "$dir" && "${prefix[@]}" ctest --output-on-failure -j "$jobs" "${ctest_args[@]}" "${extra_ctest[@]}") 2>&1 |
                tee "$log" || rc=$?
        # ctest's own closing line, e.g. "100% tests passed, 0 tests failed out of 12".
        line=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1 || true)
        if [ -z "$line" ]; then
                if grep -q 'No tests were found' "$log"; then
                        line="no tests selected"
                else
                        line="ctest produced no summary (exit $rc)"
                        [ "$rc" -eq 0 ] && rc=1
                fi
        else
                local nfail ntotal
                nfail=$(printf '%s\n' "$line" | sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/')
                ntotal=$(printf '%s\n' "$line" | sed -E 's/.* failed out of ([0-9]+).*/\1/')
                total_fail=$((total_fail + nfail))
                total_pass=$((total_pass + ntotal - nfail))
        fi
        summary+=("$name: $line")
        if [ "$rc" -ne 0 ]; then
                failed=1
        fi
        return 0
}

# run_fuzz: builds the libFuzzer targets with clang (ASan+UBSan), replays
# each seed corpus (the seeds must pass before any fuzzing), then fuzzes
# each target for a bounded time on a scratch copy of its corpus, so the
# checkout never changes.  Skipped, and reported, where libFuzzer is
# missing (clang and libclang-rt-14-dev provide it).
run_fuzz() {
        local dir=$build_root/fuzz art=$build_root/fuzz-artifacts seconds=${FUZZ_SECONDS:-20}
        local probe t rc=0 targets=()
        probe=$(mktemp -d)
        printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' >"$probe/p.c"
        if ! command -v clang >/dev/null || ! clang -fsanitize=fuzzer "$probe/p.c" -o "$probe/p" >/dev/null 2>&1; then
                rm -rf "$probe"
                echo "=== fuzz: skipped (clang's libFuzzer is not available)"
                summary+=("fuzz: skipped, no libFuzzer")
                return 0
        fi
        rm -rf "$probe"
        echo "=== fuzz: configure and build ($dir)"
        if ! CC=clang cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGTRACE_FUZZ=ON \
                -DGTRACE_SANITIZE=address,undefined >"$build_root/fuzz-cmake.log" 2>&1; then
                cat "$build_root/fuzz-cmake.log"
                summary+=("fuzz: CONFIGURE FAILED")
                failed=1
                return 0
        fi
        for t in "$root"/tests/fuzz/corpus/*/; do
                targets+=("$(basename "$t")")
        done
        if ! cmake --build "$dir" -j "$jobs" --target "${targets[@]}"; then
                summary+=("fuzz: BUILD FAILED")
                failed=1
                return 0
        fi
        mkdir -p "$art"
        local bad=()
        for t in "${targets[@]}"; do
                local bin=$dir/tests/$t scratch
                scratch=$(mktemp -d)
                cp -R "$root/tests/fuzz/corpus/$t/." "$scratch/"
                echo "=== fuzz: $t: seeds, then ${seconds} s"
                if ! "$bin" -close_fd_mask=3 -timeout=25 -artifact_prefix="$art/$t-" -runs=0 \
                        "$scratch" >"$build_root/fuzz-$t.log" 2>&1; then
                        tail -n 40 "$build_root/fuzz-$t.log"
                        bad+=("$t (seeds)")
                elif [ "$seconds" -gt 0 ] && ! "$bin" -close_fd_mask=3 -timeout=25 \
                        -artifact_prefix="$art/$t-" -max_total_time="$seconds" "$scratch" \
                        >>"$build_root/fuzz-$t.log" 2>&1; then
                        tail -n 40 "$build_root/fuzz-$t.log"
                        bad+=("$t")
                fi
                rm -rf "$scratch"
        done
        if [ "${#bad[@]}" -gt 0 ]; then
                summary+=("fuzz: FAILED: ${bad[*]} (inputs in $art)")
                failed=1
                rc=1
        else
                summary+=("fuzz: ${#targets[@]} targets, seeds and ${seconds} s each, no crash")
        fi
        return $rc
}

mkdir -p "$build_root"
for v in "${variants[@]}"; do
        case "$v" in
        release)
                run_variant release -DCMAKE_BUILD_TYPE=Release --
                ;;
        asan)
                run_variant asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGTRACE_SANITIZE=address,undefined --
                ;;
        tsan)
                tsan_probe || { summary+=("tsan: TSan does not work on this machine"); failed=1; continue; }
                run_variant tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGTRACE_SANITIZE=thread -- -L concurrency
                ;;
        fuzz)
                run_fuzz || true
                ;;
        esac
done

echo
echo "=== summary"
for s in "${summary[@]}"; do
        echo "$s"
done
echo "tests: $total_pass passed, $total_fail failed"
exit "$failed"
