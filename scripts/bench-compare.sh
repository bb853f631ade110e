#!/usr/bin/env bash
# Compares two confabd builds with confab-bench on this machine: the same scenarios against
# each, servers alternating, several rounds, a fresh data directory per run. For "before and
# after" figures of a change (docs/performance.md); loopback only.
#
#   scripts/bench-compare.sh OLD_CONFABD NEW_CONFABD [ROUNDS]
#
# Build the two binaries first (e.g. a worktree at the old commit with its own target dir),
# and confab-bench with `cargo build --release -p confab-bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
old=${1:?old confabd binary}
new=${2:?new confabd binary}
rounds=${3:-3}
bench=${CONFAB_BENCH:-${CARGO_TARGET_DIR:-target}/release/confab-bench}
port=${CONFAB_BENCH_PORT:-15222}
out=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$out"' EXIT
pid=

run_one() { # label binary round
    local label=$1 bin=$2 round=$3 data="$out/data-$1-$3"
    mkdir -p "$data"
    cat > "$out/bench.toml" <<TOML
[server]
domains = ["localhost"]
data_dir = "$data"
[c2s]
interfaces = ["127.0.0.1"]
port = $port
tls_port = $((port + 1))
[limits]
max_connections_per_ip = 19000
max_connections_per_subnet = 19000
[registration]
policy = "open"
rate_limit_per_ip = 0
TOML
    "$bin" --config "$out/bench.toml" run > "$out/server-$label-$round.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    local common=(--server "127.0.0.1:$port" --users 200 --quiet)
    "$bench" register "${common[@]}" --concurrency 10 > /dev/null
    "$bench" chat "${common[@]}" --pairs 100 --window 10 --duration 20 \
        --json "$out/chat-$label-$round.json" > /dev/null
    "$bench" login "${common[@]}" --count 1000 --concurrency 20 --duration 60 \
        --json "$out/login-$label-$round.json" > /dev/null
    kill -TERM "$pid"
    wait "$pid" || true
    pid=
}

for r in $(seq "$rounds"); do
    run_one old "$old" "$r"
    run_one new "$new" "$r"
done

python3 - "$out" "$rounds" <<'PY'
import json, sys, statistics
out, rounds = sys.argv[1], int(sys.argv[2])
def figures(kind, label, key):
    vals = []
    for r in range(1, rounds + 1):
        with open(f"{out}/{kind}-{label}-{r}.json") as f:
            d = json.load(f)
        vals.append(d["rates"][key])
        lost = d.get("counts", {}).get("lost", 0)
        if lost:
            print(f"warning: {kind} {label} round {r} lost {lost}")
    return vals
print("| figure | old min / median / max | new min / median / max |")
print("| --- | --- | --- |")
for kind, key in (("chat", "delivered_per_s"), ("login", "logins_per_s")):
    cells = []
    for label in ("old", "new"):
        v = figures(kind, label, key)
        cells.append(f"{min(v):,.0f} / {statistics.median(v):,.0f} / {max(v):,.0f}")
    print(f"| {kind} {key} | {cells[0]} | {cells[1]} |")
PY
