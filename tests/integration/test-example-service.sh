#!/usr/bin/env bash
# Runs the example service (examples/service.c) as a user would, against the
# real runtime: a short run that dumps itself, and a deliberate crash.
# Labelled "concurrency": under TSan it drives every kind of event from
# several threads with fibers migrating between them.
#
# Environment (set by tests/cmake/infra.cmake): GTRACE_EXAMPLE (the service
# binary), GTRACECTL (gtracectl, empty until the client module builds it),
# GTRACE_SANITIZE.
set -euo pipefail
: "${GTRACE_EXAMPLE:?}"

fail() {
        echo "FAIL: $*" >&2
        exit 1
}
work=$(mktemp -d "${TMPDIR:-/tmp}/gtrace-example-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
export GTRACE_NO_DAEMON=1 GTRACE_PERIOD_MS=100

check_dump() { # file: the container's magic, and gtracectl's verdict when it exists
        [ -s "$1" ] || fail "no dump at '$1'"
        [ "$(head -c 8 "$1" | od -An -c | tr -d ' ')" = 'GTRACE\r\n' ] || fail "$1: not a .gtrace file"
        if [ -n "${GTRACECTL:-}" ]; then
                "$GTRACECTL" validate "$1" || fail "gtracectl validate $1"
                "$GTRACECTL" stats "$1" >"$work/stats.out" || fail "gtracectl stats $1"
        fi
}

# 1. A normal run: requests complete, some fail, the dump is written where
#    GTRACE_DUMP_DIR says and its path printed.
mkdir "$work/run"
GTRACE_DUMP_DIR=$work/run "$GTRACE_EXAMPLE" --duration 1 --workers 3 --rate 2000 --seed 7 --dump \
        >"$work/run.out" 2>&1 || { cat "$work/run.out"; fail "service exited $?"; }
cat "$work/run.out"
grep -Eq '^service: [1-9][0-9]* requests completed, [1-9][0-9]* failed' "$work/run.out" ||
        fail "expected completed and failed requests"
grep -Eq '^service: trace: [1-9][0-9]* events' "$work/run.out" || fail "the runtime recorded no events"
dump=$(sed -n 's/^dump: //p' "$work/run.out")
case "$dump" in "$work/run"/*.gtrace) ;; *) fail "dump path '$dump' is not a .gtrace in GTRACE_DUMP_DIR" ;; esac
check_dump "$dump"
echo "ok: run and dump ($(stat -c %s "$dump") bytes)"

# 2. Bad flags exit 2 with a message.
rc=0
"$GTRACE_EXAMPLE" --workers 0 >/dev/null 2>"$work/err" || rc=$?
[ "$rc" -eq 2 ] && grep -q -- '--workers' "$work/err" || fail "--workers 0: exit $rc, $(cat "$work/err")"
echo "ok: bad flag"

# 3. --crash: the process dies of SIGSEGV inside a request, and the runtime's
#    crash handler leaves a dump.  Sanitizers install their own SEGV handler
#    (they report and exit 1), so there only "it died" is checked.
mkdir "$work/crash"
rc=0
GTRACE_DUMP_DIR=$work/crash "$GTRACE_EXAMPLE" --duration 0.5 --workers 2 --rate 1000 --crash \
        >"$work/crash.out" 2>&1 || rc=$?
if [ -z "${GTRACE_SANITIZE:-}" ]; then
        [ "$rc" -eq $((128 + 11)) ] || { cat "$work/crash.out"; fail "--crash: want death by SIGSEGV, got exit $rc"; }
        crash_dump=$(find "$work/crash" -name '*.gtrace' | head -n 1)
        [ -n "$crash_dump" ] || fail "--crash: no crash dump in GTRACE_DUMP_DIR"
        check_dump "$crash_dump"
        echo "ok: crash by SIGSEGV left $crash_dump"
else
        [ "$rc" -ne 0 ] || fail "--crash: the service did not die"
        echo "ok: crash (exit $rc under $GTRACE_SANITIZE)"
fi
