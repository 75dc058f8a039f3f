#!/usr/bin/env bash
# The README's main command: install what is missing, build, and run the
# example service end to end.
#
# With gtraced and gtracectl in the build: start gtraced in the foreground on
# a temporary socket, run the example service under load against it, take a
# snapshot with `gtracectl snapshot`, show `status`, `list`, `stats` and the
# last events, and export Chrome/Perfetto JSON.  Without them (early in the
# project's life): the service records in-process for a few seconds, writes
# a dump with gtrace_dump(), and the script shows what the dump holds.
#
# Everything it writes goes to a fresh directory under ${TMPDIR:-/tmp}, which
# is kept (the dump and the JSON are the point) and printed at the end.
#
# Environment: GTRACE_DEMO_BUILD_DIR (default: build-demo in the checkout),
# DEMO_SECONDS (how long the service runs, default 6), JOBS (default 2).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${GTRACE_DEMO_BUILD_DIR:-$root/build-demo}
seconds=${DEMO_SECONDS:-6}
jobs=${JOBS:-2}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() {
        echo "demo: $*" >&2
        exit 1
}

step "dependencies"
"$root/scripts/deps.sh"
echo "all installed"

work=$(mktemp -d "${TMPDIR:-/tmp}/gtrace-demo.XXXXXX")
mkdir -p "$work/dumps"

step "build ($build)"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DGTRACE_BUILD_TESTS=OFF >"$work/cmake.log" 2>&1 ||
        { cat "$work/cmake.log"; die "cmake configure failed"; }
cmake --build "$build" -j "$jobs" >"$work/build.log" 2>&1 ||
        { tail -n 50 "$work/build.log"; die "build failed (log: $work/build.log)"; }
echo "built"

service=$build/examples/example-service
[ -x "$service" ] || die "the example service was not built ($service)"
# The daemon and the CLI come from their own modules: use them when built.
find_prog() { find "$build" -type f -name "$1" -perm -u+x 2>/dev/null | head -n 1; }
gtraced=$(find_prog gtraced)
gtracectl=$(find_prog gtracectl)

daemon_pid=
service_pid=
cleanup() {
        # Only the processes this script started, by pid.
        [ -n "$service_pid" ] && kill "$service_pid" 2>/dev/null || true
        [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null || true
        wait 2>/dev/null || true
}
trap cleanup EXIT

# wait_for DESCRIPTION SECONDS COMMAND...: poll a condition with a deadline.
wait_for() {
        local what=$1 limit=$2 start
        shift 2
        start=$SECONDS
        until "$@" >/dev/null 2>&1; do
                if ((SECONDS - start >= limit)); then
                        die "timed out after ${limit}s waiting for $what"
                fi
                sleep 0.05
        done
}

show_dump() { # the file tools on one dump
        local dump=$1
        step "gtracectl stats"
        "$gtracectl" stats "$dump"
        step "gtracectl view --last (what every thread and fiber was doing at the end)"
        "$gtracectl" view "$dump" --last 2>/dev/null || "$gtracectl" view "$dump" | tail -n 30
        step "gtracectl validate"
        "$gtracectl" validate "$dump"
        step "gtracectl export --format chrome"
        "$gtracectl" export "$dump" --format chrome -o "$work/trace.json" >/dev/null
        echo "Chrome/Perfetto JSON: $work/trace.json"
        echo "Open it in https://ui.perfetto.dev (\"Open trace file\") or chrome://tracing."
}

if [ -n "$gtraced" ] && [ -n "$gtracectl" ]; then
        sock=$work/gtraced.sock
        step "gtraced in the foreground on $sock"
        "$gtraced" --socket "$sock" --dump-dir "$work/dumps" >"$work/gtraced.log" 2>&1 &
        daemon_pid=$!
        wait_for "gtraced's socket" 10 test -S "$sock"
        "$gtracectl" --socket "$sock" status

        step "example service under load for ${seconds}s"
        GTRACED_SOCKET=$sock "$service" --duration "$seconds" --workers 4 --rate 3000 >"$work/service.log" 2>&1 &
        service_pid=$!
        service_listed() { "$gtracectl" --socket "$sock" list | grep -qw "$service_pid"; }
        wait_for "the service to connect" 10 service_listed
        sleep $((seconds / 2)) # let it build up a few generations of history

        step "gtracectl list"
        "$gtracectl" --socket "$sock" list
        step "gtracectl snapshot $service_pid"
        dump=$("$gtracectl" --socket "$sock" snapshot "$service_pid" --reason "demo snapshot")
        echo "$dump"
        [ -s "$dump" ] || die "snapshot returned no file"
        step "gtracectl status"
        "$gtracectl" --socket "$sock" status

        wait "$service_pid" || die "the service exited with status $?"
        service_pid=
        cat "$work/service.log"
        show_dump "$dump"

        kill -TERM "$daemon_pid"
        wait "$daemon_pid" || die "gtraced exited with status $? (log: $work/gtraced.log)"
        daemon_pid=
else
        step "example service, in-process recorder only, for ${seconds}s"
        echo "(gtraced and gtracectl are not both in the build: the service records in-process and dumps itself)"
        GTRACE_NO_DAEMON=1 GTRACE_DUMP_DIR=$work/dumps \
                "$service" --duration "$seconds" --workers 4 --rate 3000 --dump | tee "$work/service.log"
        dump=$(sed -n 's/^dump: //p' "$work/service.log")
        [ -n "$dump" ] && [ -s "$dump" ] || die "the service wrote no dump"
        if [ -n "$gtracectl" ]; then
                show_dump "$dump"
        else
                step "what the dump holds"
                echo "file:     $dump ($(stat -c %s "$dump") bytes)"
                echo "magic:    $(head -c 8 "$dump" | od -An -c | tr -s ' ')"
                # No reader in the build yet: show what the raw file says.
                echo "threads:  $(grep -aoE 'worker-[0-9]+|acceptor|audit' "$dump" | sort -u | tr '\n' ' ')"
                echo "regions:  $(grep -aoE 'parse|lookup|render' "$dump" | sort -u | tr '\n' ' ')"
                echo "error logs: $(grep -aoE 'request [0-9]+: malformed header' "$dump" | sort -u | wc -l) malformed header," \
                        "$(grep -aoE 'request [0-9]+: key [0-9a-f]+ not found' "$dump" | sort -u | wc -l) key not found"
                echo "(gtracectl, once built, shows events, statistics and exports)"
        fi
fi

step "done"
echo "everything is in $work"
