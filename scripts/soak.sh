#!/usr/bin/env bash
# Soak test for gtraced (not part of CI): many traced processes emitting
# events at a steady high rate into one daemon for a long time, with
# periodic snapshots, producer churn, and every dump validated.
#
#   scripts/soak.sh [BUILD_DIR]          (default: build)
#
# Environment (defaults in brackets):
#   SOAK_SECONDS     how long [600]
#   SOAK_PRODUCERS   traced processes at any time [100]
#   SOAK_THREADS     event threads per process [1]
#   SOAK_RATE        events per second per thread [20000]
#   SOAK_SNAPSHOT    seconds between snapshots [30] (alternately --all, and
#                    one process into a file gtracectl opens: -o)
#   SOAK_CHURN       seconds between replacing SOAK_CHURN_N processes [20]
#   SOAK_CHURN_N     processes replaced each time (they say goodbye) [5]
#   SOAK_SAMPLE      seconds between memory samples [5]
#   SOAK_OUT         output directory [a new /tmp/gtrace-soak-XXXXXX]
#   GTRACED_ARGS     extra gtraced options; the defaults set below are
#                    --max-total-bytes 256M --max-process-bytes 8M
#                    --retain-exited 60
#
# It needs gtraced, gtracectl and tests/test-fault-prog from BUILD_DIR.
# Everything it writes is in SOAK_OUT: samples.csv (time, daemon RSS, bytes
# and generations held, processes), summary.txt (the figures), the daemon's
# log, and any dump that failed validation (failed/).  Exit status 0 when
# the daemon never died, every dump validated and every producer ended
# cleanly; 1 otherwise.
set -euo pipefail
trap 'echo "soak: failed at line $LINENO" >&2; [ -n "${dpid:-}" ] && kill "$dpid" 2>/dev/null; exit 1' ERR

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
seconds=${SOAK_SECONDS:-600}
nprod=${SOAK_PRODUCERS:-100}
threads=${SOAK_THREADS:-1}
rate=${SOAK_RATE:-20000}
snap_every=${SOAK_SNAPSHOT:-30}
churn_every=${SOAK_CHURN:-20}
churn_n=${SOAK_CHURN_N:-5}
sample_every=${SOAK_SAMPLE:-5}
out=${SOAK_OUT:-$(mktemp -d /tmp/gtrace-soak-XXXXXX)}
max_total=$((256 << 20))
max_process=$((8 << 20))

gtraced=$build/daemon/gtraced
ctl=$build/client/gtracectl
prog=$build/tests/test-fault-prog
for b in "$gtraced" "$ctl" "$prog"; do
        [ -x "$b" ] || { echo "soak: $b is not built" >&2; exit 2; }
done
mkdir -p "$out/dumps" "$out/failed" "$out/fifo" "$out/prog"
sock=$out/gtraced.sock
ctlc=("$ctl" --socket "$sock")

now() { date +%s; }
log() { printf '[%5ds] %s\n' "$(($(now) - t0))" "$*" | tee -a "$out/soak.log"; }

# ---- the daemon --------------------------------------------------------------
# shellcheck disable=SC2206 # word splitting of GTRACED_ARGS is the point
extra=(${GTRACED_ARGS:-})
"$gtraced" --config /dev/null --socket "$sock" --dump-dir "$out/dumps" \
        --max-total-bytes "$max_total" --max-process-bytes "$max_process" \
        --retain-exited 60 --log-level notice "${extra[@]}" 2>"$out/gtraced.log" &
dpid=$!
for _ in $(seq 100); do
        [ -S "$sock" ] && "${ctlc[@]}" status >/dev/null 2>&1 && break
        kill -0 "$dpid" 2>/dev/null || { echo "soak: gtraced did not start" >&2; exit 1; }
        sleep 0.1
done

# The bounds in force (GTRACED_ARGS may have changed them), for the summary.
limits=$("${ctlc[@]}" --json status 2>/dev/null || echo '{}')
max_total=$({ grep -oE '"max_total_bytes": *[0-9]+' <<<"$limits" || true; } | grep -oE '[0-9]+$' || echo "$max_total")

# ---- producers: test-fault-prog, commands through a FIFO each ----------------
declare -A ppid pfd
serial=0
start_producer() {
        local id=$serial fifo
        serial=$((serial + 1))
        fifo=$out/fifo/$id
        mkfifo "$fifo"
        GTRACED_SOCKET=$sock "$prog" load "$threads" "$rate" <"$fifo" >"$out/prog/$id.out" 2>&1 &
        ppid[$id]=$!
        exec {fd}>"$fifo"
        pfd[$id]=$fd
}
stop_producer() { # asks for its counters, then ends it; returns its exit status
        local id=$1 fd=${pfd[$1]} st=0
        printf 'sq' >&"$fd" 2>/dev/null || true
        exec {fd}>&-
        wait "${ppid[$id]}" || st=$?
        rm -f "$out/fifo/$id"
        unset "ppid[$id]" "pfd[$id]"
        return "$st"
}

t0=$(now)
for _ in $(seq "$nprod"); do start_producer; done
log "gtraced pid $dpid; $nprod producers x $threads threads x $rate events/s; ${seconds} s"

# ---- the run -------------------------------------------------------------------
echo "elapsed_s,daemon_rss_kb,held_bytes,held_generations,processes,live,dumps_written,dumps_failed" >"$out/samples.csv"
dumps_ok=0 dumps_bad=0 snaps=0 snap_fail=0 prod_bad=0 churned=0 daemon_died=0
rss_max=0 held_max=0 prog_rss_max=0
next_snap=$((t0 + snap_every)) next_churn=$((t0 + churn_every)) next_sample=$t0
end=$((t0 + seconds))

json_int() { # KEY: first integer value of "KEY": in stdin
        { grep -oE "\"$1\": *[0-9]+" || true; } | head -1 | grep -oE '[0-9]+$' || true
}

sample() {
        local st rss held gens procs live dw df
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$dpid/status" 2>/dev/null || echo 0)
        st=$("${ctlc[@]}" --json status 2>/dev/null || echo '{}')
        held=$(json_int bytes <<<"$st")
        gens=$(json_int generations <<<"$st")
        procs=$(json_int processes <<<"$st")
        live=$(json_int live <<<"$st")
        dw=$(json_int dumps_written <<<"$st")
        df=$(json_int dumps_failed <<<"$st")
        echo "$(($(now) - t0)),$rss,${held:-0},${gens:-0},${procs:-0},${live:-0},${dw:-0},${df:-0}" >>"$out/samples.csv"
        if [ "${rss:-0}" -gt "$rss_max" ]; then rss_max=$rss; fi
        if [ "${held:-0}" -gt "$held_max" ]; then held_max=$held; fi
        local id r
        for id in "${!ppid[@]}"; do
                r=$(awk '/^VmRSS:/ {print $2}' "/proc/${ppid[$id]}/status" 2>/dev/null || echo 0)
                if [ "${r:-0}" -gt "$prog_rss_max" ]; then prog_rss_max=$r; fi
        done
}

validate_dumps() {
        local f
        for f in "$out"/dumps/*.gtrace "$@"; do
                [ -e "$f" ] || continue
                if "$ctl" validate "$f" >/dev/null 2>>"$out/validate.log"; then
                        dumps_ok=$((dumps_ok + 1))
                        rm -f "$f"
                else
                        dumps_bad=$((dumps_bad + 1))
                        mv "$f" "$out/failed/"
                fi
        done
}

while [ "$(now)" -lt "$end" ]; do
        if ! kill -0 "$dpid" 2>/dev/null; then
                daemon_died=1
                log "gtraced died"
                break
        fi
        t=$(now)
        if [ "$t" -ge "$next_sample" ]; then
                sample
                next_sample=$((t + sample_every))
        fi
        if [ "$t" -ge "$next_snap" ]; then
                snaps=$((snaps + 1))
                if [ $((snaps % 2)) -eq 1 ]; then
                        "${ctlc[@]}" snapshot --all --reason soak >/dev/null 2>>"$out/snapshot.log" ||
                                snap_fail=$((snap_fail + 1))
                        validate_dumps
                else
                        ids=("${!ppid[@]}")
                        id=${ids[$((RANDOM % ${#ids[@]}))]}
                        f=$out/one-$snaps.gtrace
                        "${ctlc[@]}" snapshot "${ppid[$id]}" -o "$f" >/dev/null 2>>"$out/snapshot.log" ||
                                snap_fail=$((snap_fail + 1))
                        validate_dumps "$f"
                fi
                log "snapshot $snaps: $dumps_ok dumps valid, $dumps_bad invalid, daemon rss ${rss_max} kB max"
                next_snap=$(($(now) + snap_every))
        fi
        if [ "$t" -ge "$next_churn" ]; then
                ids=("${!ppid[@]}")
                for i in $(seq "$churn_n"); do
                        id=${ids[$((i - 1))]}
                        stop_producer "$id" || prod_bad=$((prod_bad + 1))
                        start_producer
                        churned=$((churned + 1))
                done
                next_churn=$(($(now) + churn_every))
        fi
        sleep 1
done

# ---- the end ---------------------------------------------------------------------
sample
for id in "${!ppid[@]}"; do
        stop_producer "$id" || prod_bad=$((prod_bad + 1))
done
# Crash dumps of anything that died, and the exits, must validate too.
validate_dumps
events=0 events_lost=0 gens_lost=0
for f in "$out"/prog/*.out; do
        line=$(grep '^iters=' "$f" | tail -1 || true)
        [ -n "$line" ] || continue
        e=$(sed -E 's/.* events=([0-9]+).*/\1/' <<<"$line")
        el=$(sed -E 's/.* events_lost=([0-9]+).*/\1/' <<<"$line")
        gl=$(sed -E 's/.* gens_lost=([0-9]+).*/\1/' <<<"$line")
        events=$((events + e)) events_lost=$((events_lost + el)) gens_lost=$((gens_lost + gl))
done
dstatus=died
if [ "$daemon_died" -eq 0 ]; then
        kill -TERM "$dpid"
        if wait "$dpid"; then dstatus="exit 0"; else dstatus="exit $?"; fi
fi
elapsed=$(($(now) - t0))
rss_med=$(tail -n +2 "$out/samples.csv" | cut -d, -f2 | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
rss_first=$(sed -n 2p "$out/samples.csv" | cut -d, -f2)
rss_last=$(tail -1 "$out/samples.csv" | cut -d, -f2)

{
        echo "soak: $elapsed s, $nprod producers x $threads threads x $rate events/s (target $((nprod * threads * rate)) events/s), $churned producers replaced"
        echo "events written by the producers: $events ($((events / (elapsed > 0 ? elapsed : 1))) /s), lost at buffer bounds: $events_lost, generations dropped in-process: $gens_lost"
        echo "snapshots: $snaps ($snap_fail failed); dumps validated: $dumps_ok ok, $dumps_bad invalid"
        echo "gtraced: $dstatus; RSS first/median/max/last: ${rss_first} / ${rss_med} / ${rss_max} / ${rss_last} kB; held max $held_max bytes (--max-total-bytes $max_total)"
        echo "producer RSS max: $prog_rss_max kB; producers ending with an error: $prod_bad"
} | tee "$out/summary.txt"
echo "output in $out"
[ "$daemon_died" -eq 0 ] && [ "$dstatus" = "exit 0" ] && [ "$dumps_bad" -eq 0 ] && [ "$snap_fail" -eq 0 ] &&
        [ "$prod_bad" -eq 0 ]
