#!/usr/bin/env bash
# The bench's `scale` run: HELD idle sessions held (split over load processes, each under
# the 18,000-socket limit per process) while the open-loop chat runs at RATE msgs/s, so the
# chat's latency percentiles are those of a server holding that many sessions. Measures any
# running server on loopback; the accounts must exist (`confab-bench register`).
# A benchmark, not a test: not run by CI.
#
#   PID=$(pgrep -n confabd) scripts/bench-scale.sh
#
# Environment (defaults): SERVER=127.0.0.1:5222 DOMAIN=localhost PREFIX=bench USERS=200
#   PASSWORD=bench-password-0 TLS=starttls HELD=19000 PROCS=2 CONCURRENCY=50 PAIRS=100
#   RATE=1000 DURATION=30 PID= (the server's, for its RSS per held session)
#   OUT=/tmp/bench-scale (JSON reports) CONFAB_BENCH=(release build in CARGO_TARGET_DIR)
# Every run is bounded: the idle processes hold for DURATION + 60 s, the wait for them to
# connect is bounded by CONNECT_TIMEOUT (600 s).
set -euo pipefail
cd "$(dirname "$0")/.."

SERVER=${SERVER:-127.0.0.1:5222}
DOMAIN=${DOMAIN:-localhost}
PREFIX=${PREFIX:-bench}
USERS=${USERS:-200}
PASSWORD=${PASSWORD:-bench-password-0}
TLS=${TLS:-starttls}
HELD=${HELD:-19000}
PROCS=${PROCS:-2}
CONCURRENCY=${CONCURRENCY:-50}
PAIRS=${PAIRS:-100}
RATE=${RATE:-1000}
DURATION=${DURATION:-30}
PID=${PID:-}
OUT=${OUT:-/tmp/bench-scale}
CONNECT_TIMEOUT=${CONNECT_TIMEOUT:-600}
target=${CARGO_TARGET_DIR:-target}
BENCH=${CONFAB_BENCH:-$target/release/confab-bench}

ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
mkdir -p "$OUT"
common=(--server "$SERVER" --domain "$DOMAIN" --user-prefix "$PREFIX" --password "$PASSWORD"
    --tls "$TLS" --users "$USERS" --quiet)
port=${SERVER##*:}

established() {
    ss -Htn state established "( dport = :$port )" | wc -l
}

before=$(established)
per=$(( (HELD + PROCS - 1) / PROCS ))
pids=()
for i in $(seq 1 "$PROCS"); do
    # Each run's resources carry a tag of the run, so the processes' sessions of one
    # account do not replace each other. The server's RSS per session is computed below
    # from all of them (each process would see only its own share held).
    "$BENCH" idle "${common[@]}" --sessions "$per" \
        --concurrency "$CONCURRENCY" --duration $((DURATION + 60)) \
        --json "$OUT/idle-$i.json" > "$OUT/idle-$i.log" 2>&1 &
    pids+=($!)
done
cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT

rss_before=
[ -n "$PID" ] && rss_before=$(awk '/^VmRSS:/ {print $2}' "/proc/$PID/status")
start=$(date +%s)
want=$((before + per * PROCS))
while [ "$(established)" -lt "$want" ]; do
    if [ $(( $(date +%s) - start )) -gt "$CONNECT_TIMEOUT" ]; then
        echo "only $(( $(established) - before )) of $((per * PROCS)) sessions connected in ${CONNECT_TIMEOUT}s" >&2
        exit 1
    fi
    for p in "${pids[@]}"; do
        kill -0 "$p" 2>/dev/null || { echo "an idle process ended early:" >&2; cat "$OUT"/idle-*.log >&2; exit 1; }
    done
    sleep 1
done
echo "$((per * PROCS)) sessions held after $(( $(date +%s) - start )) s"
sleep 5
if [ -n "$PID" ]; then
    rss_held=$(awk '/^VmRSS:/ {print $2}' "/proc/$PID/status")
    echo "server RSS: $rss_before KiB before, $rss_held KiB held: $(( (rss_held - rss_before) * 1024 / (per * PROCS) )) bytes per session"
fi

"$BENCH" chat "${common[@]}" --pairs "$PAIRS" --rate "$RATE" --duration "$DURATION" \
    --json "$OUT/chat-open.json"

status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
trap - EXIT
for i in $(seq 1 "$PROCS"); do tail -n 4 "$OUT/idle-$i.log"; done
exit $status
