#!/usr/bin/env bash
# confabd, Prosody and ejabberd side by side on this machine: each on loopback with its own
# ports and a throwaway data directory, equivalent settings (one self-signed certificate,
# SCRAM-SHA-1 keys with 4,096 iterations, offline storage and MUC, no shapers or rate
# limits), accounts made with each server's CLI; then the same confab-bench scenarios
# against all three, servers alternating, ROUNDS rounds; a table (min / median / max) and
# PNG plots go to OUT (docs/perf by default). A benchmark, not a test: not run by CI.
#
#   scripts/bench-side-by-side.sh            # installs prosody/ejabberd if missing (root)
#
# Sizes are environment variables (small defaults, a few seconds per scenario):
#   ROUNDS=3 SERVERS="confabd prosody ejabberd" DURATION=3 USERS=60
#   LOGINS=200 LOGIN_CONCURRENCY=10 PAIRS=20 WINDOW=10 RATE=1000
#   OCCUPANTS=20 MUC_SENDERS=4 PRES_USERS=20 CONTACTS=4
#   OFFLINE_RECIPIENTS=10 OFFLINE_MESSAGES=20 CHURN_SESSIONS=20 CHURN_CONCURRENCY=5
#   IDLE_SESSIONS=2000 OUT=docs/perf KEEP=1 (keep the work directory)
#   MUC_OCCUPANTS=100,1000 also runs `muc` with each of these room sizes (results muc-N;
#   USERS must be at least the largest)
#   SCENARIOS="muc" runs only these (default: idle login chat chat-open muc presence
#   offline reconnect)
#   CONFABD=... CONFAB_BENCH=... (binaries; default: release builds in CARGO_TARGET_DIR)
#   CONFABD_MAM=1 keeps confabd's message archive on (the others archive nothing here, and
#   each archived message is a synchronous SQLite write)
# Only 127.0.0.1 is measured; every run is bounded by its --duration and --timeout.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SERVERS=${SERVERS:-"confabd prosody ejabberd"}
DURATION=${DURATION:-3}
USERS=${USERS:-60}
LOGINS=${LOGINS:-200}
LOGIN_CONCURRENCY=${LOGIN_CONCURRENCY:-10}
PAIRS=${PAIRS:-20}
WINDOW=${WINDOW:-10}
RATE=${RATE:-1000}
OCCUPANTS=${OCCUPANTS:-20}
MUC_SENDERS=${MUC_SENDERS:-4}
PRES_USERS=${PRES_USERS:-20}
CONTACTS=${CONTACTS:-4}
OFFLINE_RECIPIENTS=${OFFLINE_RECIPIENTS:-10}
OFFLINE_MESSAGES=${OFFLINE_MESSAGES:-20}
CHURN_SESSIONS=${CHURN_SESSIONS:-20}
CHURN_CONCURRENCY=${CHURN_CONCURRENCY:-5}
IDLE_SESSIONS=${IDLE_SESSIONS:-2000}
MUC_OCCUPANTS=${MUC_OCCUPANTS:-}
SCENARIOS=${SCENARIOS:-"idle login chat chat-open muc presence offline reconnect"}
OUT=${OUT:-docs/perf}
PASSWORD=bench-password-0
target=${CARGO_TARGET_DIR:-target}
CONFABD=${CONFABD:-$target/release/confabd}
BENCH=${CONFAB_BENCH:-$target/release/confab-bench}
VENV=${VENV:-$HOME/.cache/confab-bench-venv}

declare -A PORT=([confabd]=15222 [prosody]=25222 [ejabberd]=35222)
declare -A SPID=()   # what this script started, by server
ejbeam=              # ejabberd's Erlang VM, started (through su) by ejabberdctl

# At most 20,000 open files per process on these machines.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d /tmp/confab-side-by-side.XXXXXX)
chmod 755 "$work"
ejnode=ejbench$$@localhost
# ejabberdctl as the ejabberd user through setpriv rather than its own su, which would
# apply PAM's open-file limit (1,024) instead of this script's.
cat > "$work/ejctl" << SH
#!/bin/sh
exec env HOME=/var/lib/ejabberd setpriv --reuid=ejabberd --regid=ejabberd --init-groups \\
    ejabberdctl --config-dir "$work/ejabberd" --spool "$work/ejabberd/db" \\
    --logs "$work/ejabberd/logs" --node "$ejnode" "\$@"
SH
chmod 755 "$work/ejctl"
ejctl() { "$work/ejctl" "$@"; }

stop_all() {
    local s
    for s in "${!SPID[@]}"; do
        local pid=${SPID[$s]}
        [ -n "$pid" ] || continue
        if [ "$s" = ejabberd ]; then
            ejctl stop > /dev/null 2>&1 || true
        fi
        kill -TERM "$pid" 2> /dev/null || true
    done
    [ -z "$ejbeam" ] || kill -TERM "$ejbeam" 2> /dev/null || true
    for s in "${!SPID[@]}"; do
        local pid=${SPID[$s]}
        for _ in $(seq 50); do kill -0 "$pid" 2> /dev/null || break; sleep 0.2; done
        kill -KILL "$pid" 2> /dev/null || true
        wait "$pid" 2> /dev/null || true
        SPID[$s]=
    done
    if [ -n "$ejbeam" ]; then
        for _ in $(seq 50); do kill -0 "$ejbeam" 2> /dev/null || break; sleep 0.2; done
        kill -KILL "$ejbeam" 2> /dev/null || true
        ejbeam=
    fi
}
cleanup() {
    stop_all
    if [ -n "${KEEP:-}" ]; then echo "work directory kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[side-by-side] $*" >&2; }

# --- tools ----------------------------------------------------------------------------
if ! command -v prosody > /dev/null || ! command -v ejabberdctl > /dev/null; then
    log "installing prosody and ejabberd from Debian"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q prosody ejabberd
fi
if [ ! -x "$CONFABD" ] || [ ! -x "$BENCH" ]; then
    log "building confabd and confab-bench (release)"
    cargo build --release -p confabd -p confab-bench
fi
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import matplotlib' 2> /dev/null; then
    log "making a Python venv with matplotlib in $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q matplotlib
fi

# One certificate for all three (localhost and its MUC service).
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,DNS:conference.localhost" \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2> /dev/null
cat "$work/key.pem" "$work/cert.pem" > "$work/combined.pem"
chmod 644 "$work"/*.pem

accounts() { # every account name, one a line
    local i
    for i in $(seq 0 $((USERS - 1))); do echo "bench$i"; done
    for i in $(seq 0 $((PRES_USERS - 1))); do echo "pres$i"; done
}

wait_port() { # port pid
    for _ in $(seq 150); do
        (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null && return 0
        kill -0 "$2" 2> /dev/null || return 1
        sleep 0.2
    done
    return 1
}

# The process listening on the port (the server itself, not a wrapper script).
listener_pid() {
    ss -ltnpH "sport = :$1" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2
}

# --- confabd --------------------------------------------------------------------------
setup_confabd() {
    local d=$work/confabd p=${PORT[confabd]}
    mkdir -p "$d/data"
    cat > "$d/confabd.toml" << TOML
[server]
domains = ["localhost"]
data_dir = "$d/data"
[c2s]
interfaces = ["127.0.0.1"]
port = $p
tls_port = $((p + 1))
require_tls = false
allow_plain_without_tls = true
[http]
port = 0
tls_port = 0
[admin]
enabled = false
[modules]
disabled = [$([ -n "${CONFABD_MAM:-}" ] || echo '"mam"')]
[tls]
cert = "$work/cert.pem"
key = "$work/key.pem"
[auth]
scram_iterations = 4096
[limits]
max_connections_per_ip = 19000
max_connections_per_subnet = 19000
read_rate = 0
[muc]
message_rate = 0.0
max_occupants_per_room = 19000
[offline]
quota = 100000
TOML
    accounts | while read -r u; do
        echo "$PASSWORD" | "$CONFABD" --config "$d/confabd.toml" user add "$u@localhost" \
            --password-stdin > /dev/null 2>&1
    done
}
launch_confabd() {
    local d=$work/confabd
    "$CONFABD" --config "$d/confabd.toml" run >> "$d/server.log" 2>&1 &
    SPID[confabd]=$!
    wait_port "${PORT[confabd]}" "${SPID[confabd]}"
}

# --- Prosody --------------------------------------------------------------------------
setup_prosody() {
    local d=$work/prosody p=${PORT[prosody]}
    mkdir -p "$d/data" "$d/certs"
    cp "$work/cert.pem" "$d/certs/localhost.crt"
    cp "$work/key.pem" "$d/certs/localhost.key"
    # No mod_limits (the shaper) and no mod_posix (so it stays in the foreground).
    cat > "$d/prosody.cfg.lua" << LUA
run_as_root = true
data_path = "$d/data"
certificates = "$d/certs"
log = { { levels = { min = "warn" }, to = "file", filename = "$d/server.log" } }
c2s_ports = { $p }
c2s_interfaces = { "127.0.0.1" }
c2s_direct_tls_ports = { }
s2s_ports = { }
s2s_interfaces = { }
http_ports = { }
https_ports = { }
component_ports = { }
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping"; "offline" }
modules_disabled = { "s2s" }
authentication = "internal_hashed"
default_iteration_count = 4096
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
ssl = { certificate = "$work/cert.pem"; key = "$work/key.pem" }
VirtualHost "localhost"
Component "conference.localhost" "muc"
    restrict_room_creation = false
    muc_room_locking = false
LUA
    # One prosodyctl (a Lua start) per account: a few at once (one file per account).
    accounts | xargs -P 4 -I{} prosodyctl --config "$d/prosody.cfg.lua" register {} \
        localhost "$PASSWORD" > /dev/null 2>&1 || true
}
launch_prosody() {
    local d=$work/prosody
    prosody --config "$d/prosody.cfg.lua" >> "$d/stdout.log" 2>&1 &
    SPID[prosody]=$!
    wait_port "${PORT[prosody]}" "${SPID[prosody]}"
}

# --- ejabberd -------------------------------------------------------------------------
setup_ejabberd() {
    local d=$work/ejabberd p=${PORT[ejabberd]}
    mkdir -p "$d/db" "$d/logs"
    cp /etc/ejabberd/inetrc "$d/"
    cat > "$d/ejabberdctl.cfg" << CFG
ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0"
EJABBERD_PID_PATH=$d/ejabberd.pid
EJABBERD_CONFIG_PATH=$d/ejabberd.yml
INET_DIST_INTERFACE=127.0.0.1
ERL_MAX_PORTS=20000
CFG
    cat > "$d/ejabberd.yml" << YML
hosts:
  - localhost
loglevel: warning
certfiles:
  - $work/combined.pem
listen:
  -
    port: $p
    ip: "127.0.0.1"
    module: ejabberd_c2s
    backlog: 1024
    max_stanza_size: 262144
    shaper: none
    access: all
    starttls: true
auth_method: internal
auth_password_format: scram
auth_scram_hash: sha
shaper: {}
shaper_rules:
  max_user_sessions: 100000
  max_user_offline_messages: 100000
acl:
  local:
    user_regexp: ""
access_rules:
  muc_create:
    allow: all
modules:
  mod_disco: {}
  mod_ping: {}
  mod_roster: {}
  mod_offline:
    access_max_user_messages: max_user_offline_messages
  mod_muc:
    host: conference.localhost
    access: all
    access_create: muc_create
    max_users: 100000
    max_users_presence: 100000
    history_size: 20
    min_message_interval: 0
    min_presence_interval: 0
    max_user_conferences: 100000
    default_room_options:
      max_users: 100000
YML
    # ejabberdctl runs the node as the ejabberd user.
    chown -R ejabberd:ejabberd "$d"
    launch_ejabberd
    # Each ejabberdctl call starts an Erlang node: a few at once.
    accounts | xargs -P 4 -I{} "$work/ejctl" register {} localhost "$PASSWORD" \
        > /dev/null 2>&1 || true
    # Parallel calls now and then fail: register what is missing, one at a time.
    local have
    have=$(ejctl registered_users localhost)
    accounts | while read -r u; do
        grep -qx "$u" <<< "$have" || ejctl register "$u" localhost "$PASSWORD" > /dev/null
    done
    stop_all
}
launch_ejabberd() {
    ejctl foreground >> "$work/ejabberd/stdout.log" 2>&1 &
    SPID[ejabberd]=$!
    wait_port "${PORT[ejabberd]}" "${SPID[ejabberd]}"
    ejbeam=$(listener_pid "${PORT[ejabberd]}")
}

# --- the runs -------------------------------------------------------------------------
res=$work/results
mkdir -p "$res"
run() { # server round name scenario-args...: one run, its JSON and summary kept
    local server=$1 round=$2 name=$3
    shift 3
    local out="$res/$server-$name-$round"
    if ! "$BENCH" "$@" --server "127.0.0.1:${PORT[$server]}" --quiet --json "$out.json" \
        --cpu-pid "$(listener_pid "${PORT[$server]}")" > "$out.txt" 2>&1; then
        log "$server $name round $round failed: $(tail -1 "$out.txt")"
    fi
}

want() { [[ " $SCENARIOS " == *" $1 "* ]]; }

round_of() { # server round
    local s=$1 r=$2 pid n
    pid=$(listener_pid "${PORT[$s]}")
    local common=(--users "$USERS" --timeout 20)
    local timed=("${common[@]}" --duration "$DURATION")
    # Idle first, on the freshly started server: other runs would leave freed memory that
    # new sessions reuse, hiding their cost.
    if want idle; then
        run "$s" "$r" idle idle "${common[@]}" --sessions "$IDLE_SESSIONS" --concurrency 20 \
            --pid "$pid" --duration 2
    fi
    # login: --duration only caps the run.
    if want login; then
        run "$s" "$r" login login "${common[@]}" --count "$LOGINS" \
            --concurrency "$LOGIN_CONCURRENCY" --duration 60
    fi
    if want chat; then
        run "$s" "$r" chat chat "${timed[@]}" --pairs "$PAIRS" --window "$WINDOW"
    fi
    if want chat-open; then
        run "$s" "$r" chat-open chat "${timed[@]}" --pairs "$PAIRS" --rate "$RATE"
    fi
    if want muc; then
        run "$s" "$r" muc muc "${timed[@]}" --occupants "$OCCUPANTS" --senders "$MUC_SENDERS"
        for n in ${MUC_OCCUPANTS//,/ }; do
            run "$s" "$r" "muc-$n" muc "${timed[@]}" --occupants "$n" --senders "$MUC_SENDERS"
        done
    fi
    if want presence; then
        run "$s" "$r" presence presence --users "$PRES_USERS" --user-prefix pres \
            --duration "$DURATION" --timeout 20 --contacts "$CONTACTS"
    fi
    if want offline; then
        run "$s" "$r" offline offline "${timed[@]}" --recipients "$OFFLINE_RECIPIENTS" \
            --messages "$OFFLINE_MESSAGES" --senders 2
    fi
    if want reconnect; then
        run "$s" "$r" reconnect reconnect "${timed[@]}" --sessions "$CHURN_SESSIONS" \
            --concurrency "$CHURN_CONCURRENCY"
    fi
}

for s in $SERVERS; do
    log "setting up $s (configuration, accounts)"
    "setup_$s" || { log "$s could not be set up; see $work/$s"; KEEP=1; exit 1; }
done
# One server at a time, started afresh for each round (same data: the accounts stay).
for r in $(seq "$ROUNDS"); do
    for s in $SERVERS; do
        log "round $r: $s on 127.0.0.1:${PORT[$s]}"
        "launch_$s" || { log "$s did not start; see $work/$s"; KEEP=1; exit 1; }
        round_of "$s" "$r"
        stop_all
    done
done

versions=$work/versions.txt
{
    echo "confabd $("$CONFABD" --version 2> /dev/null | awk '{print $2}') ($(git rev-parse --short HEAD))"
    echo "prosody $(dpkg-query -W -f '${Version}' prosody)"
    echo "ejabberd $(dpkg-query -W -f '${Version}' ejabberd)"
    echo "erlang $(dpkg-query -W -f '${Version}' erlang-base)"
    echo "lua $(dpkg-query -W -f '${Version}' lua5.4 2> /dev/null || echo ?)"
    echo "kernel $(uname -r)"
    echo "cpu $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) × $(nproc)"
    echo "memory $(free -g | awk '/Mem:/ {print $2}') GiB"
} > "$versions"
stop_all

mkdir -p "$OUT"
"$VENV/bin/python" scripts/bench-side-by-side.py "$res" "$OUT" "$ROUNDS" "$SERVERS" "$versions" \
    "DURATION=$DURATION USERS=$USERS LOGINS=$LOGINS LOGIN_CONCURRENCY=$LOGIN_CONCURRENCY PAIRS=$PAIRS WINDOW=$WINDOW RATE=$RATE OCCUPANTS=$OCCUPANTS MUC_SENDERS=$MUC_SENDERS PRES_USERS=$PRES_USERS CONTACTS=$CONTACTS OFFLINE_RECIPIENTS=$OFFLINE_RECIPIENTS OFFLINE_MESSAGES=$OFFLINE_MESSAGES CHURN_SESSIONS=$CHURN_SESSIONS CHURN_CONCURRENCY=$CHURN_CONCURRENCY IDLE_SESSIONS=$IDLE_SESSIONS MUC_OCCUPANTS=${MUC_OCCUPANTS:-none} SCENARIOS=${SCENARIOS// /,}"
log "results in $OUT"
