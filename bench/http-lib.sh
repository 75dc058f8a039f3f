# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# shellcheck disable=SC2034,SC2154 # the arrays, $work and $cpu_srv are the sourcing script's
#
# bench/http-lib.sh: starting, stopping and timing the bench-httpd servers
# of bench/run and bench/http-ab.  Sourced, not run.  Uses $work (the
# scratch directory: gtraced.sock is there, the servers' standard error
# goes to httpd.err) and $cpu_srv (the CPU the servers are pinned to).

declare -A http_pid http_port http_adv

# http_start NAME EXE LIBDIR ARGS...: starts EXE (bench-httpd or
# bench-httpd-static) with ARGS, with libgtrace from LIBDIR when LIBDIR is
# not empty; sets http_pid[NAME], http_port[NAME] and http_adv[NAME] (its
# gtrace-advance thread, empty if none).  Fails, saying why, when the
# server has not said it listens within 30 s.
http_start() {
        local name=$1 exe=$2 lib=$3 fd port pid t adv=""
        shift 3
        exec {fd}< <(exec env GTRACED_SOCKET="$work/gtraced.sock" ${lib:+"LD_LIBRARY_PATH=$lib"} \
                taskset -c "$cpu_srv" "$exe" "$@" 2>>"$work/httpd.err")
        if ! read -r -t 30 -u "$fd" _ port pid; then
                exec {fd}<&-
                echo "$0: server $name ($exe $*) did not start:" >&2
                tail -5 "$work/httpd.err" >&2
                return 1
        fi
        exec {fd}<&-
        for t in /proc/"$pid"/task/*; do
                [ "$(cat "$t/comm" 2>/dev/null)" = gtrace-advance ] && adv=${t##*/}
        done
        http_pid[$name]=$pid http_port[$name]=$port http_adv[$name]=$adv
}

# http_stop PID: stops a server and waits for it to exit, 10 s at most (it
# is not our child: polled).
http_stop() {
        local pid=$1
        kill "$pid" 2>/dev/null || return 0
        for _ in $(seq 1 200); do
                kill -0 "$pid" 2>/dev/null || return 0
                sleep 0.05
        done
}

# thread_ns PID TID: the thread's CPU time so far, in ns (0 when it is gone
# or TID is empty).
thread_ns() {
        [ -n "$2" ] || { echo 0; return; }
        cut -d' ' -f1 "/proc/$1/task/$2/schedstat" 2>/dev/null || echo 0
}
