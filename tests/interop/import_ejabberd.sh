#!/usr/bin/env bash
# Moving in from ejabberd (Debian's package): an ejabberd node of its own on loopback (own
# config, spool, logs, node name and port; the system's ejabberd is neither used nor
# touched) gets users with passwords (SCRAM-SHA-1 keys, as ejabberd stores them with
# auth_password_format: scram), a roster, a vCard and private XML through slixmpp;
# `ejabberdctl export_piefxis` writes its XEP-0227 files (a main file including one per
# host); `confabd import` reads them; the users log in to confabd with their old passwords
# and see their data (tests/interop/import_old_server.py).
#
# Usage: import_ejabberd.sh CONFABD PYTHON   (PYTHON: the venv's, with slixmpp)
set -euo pipefail
cd "$(dirname "$0")/../.."
CONFABD=$1
PYTHON=$2

if ! command -v ejabberdctl > /dev/null; then
    echo "== installing ejabberd (Debian)"
    apt-get -o DPkg::Lock::Timeout=600 update -qq > /dev/null
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q ejabberd > /dev/null
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/confab-import-ejabberd.XXXXXX")
chmod 755 "$WORK"
NODE="ejimport$$@localhost"
PIDS=()
EJBEAM=
STATUS=1
# ejabberdctl runs the node as the ejabberd user; through setpriv rather than its own su.
cat > "$WORK/ejctl" << SH
#!/bin/sh
exec env HOME=/var/lib/ejabberd setpriv --reuid=ejabberd --regid=ejabberd --init-groups \\
    ejabberdctl --config-dir "$WORK/ejabberd" --spool "$WORK/ejabberd/db" \\
    --logs "$WORK/ejabberd/logs" --node "$NODE" "\$@"
SH
chmod 755 "$WORK/ejctl"
ejctl() { "$WORK/ejctl" "$@"; }

stop_pid() {
    local p=$1
    kill -TERM "$p" 2> /dev/null || true
    for _ in $(seq 100); do kill -0 "$p" 2> /dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2> /dev/null || true
    wait "$p" 2> /dev/null || true
}
stop_ejabberd() {
    [ -n "$EJBEAM" ] || return 0
    ejctl stop > /dev/null 2>&1 || true
    stop_pid "$EJBEAM"
    EJBEAM=
}
cleanup() {
    local p
    stop_ejabberd
    for p in "${PIDS[@]}"; do stop_pid "$p"; done
    if [ "$STATUS" -ne 0 ]; then
        for f in "$WORK"/ejabberd/logs/ejabberd.log "$WORK"/ejabberd/stdout.log "$WORK"/confabd.log "$WORK"/import.txt; do
            [ -f "$f" ] && { echo "== $f" >&2; tail -n 40 "$f" >&2; }
        done
        echo "== (kept $WORK)" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# free_ports, wait_port
. tests/interop/import_lib.sh
listener_pid() { # the process listening on a loopback port
    ss -Htlnp "sport = :$1" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2
}

read -r EPORT CPORT CTLS HTTP < <(free_ports 4)
export ALICE_PASSWORD="alice-$RANDOM$RANDOM" BOB_PASSWORD="bob pässword $RANDOM" CAROL_PASSWORD="carol-$RANDOM"

# --- ejabberd: users, then data through a real client ----------------------------------
d=$WORK/ejabberd
mkdir -p "$d/db" "$d/logs" "$WORK/pie"
openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -days 2 \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2> /dev/null
cat "$WORK/cert.pem" "$WORK/key.pem" > "$d/combined.pem"
cp /etc/ejabberd/inetrc "$d/"
cat > "$d/ejabberdctl.cfg" << CFG
ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0"
EJABBERD_PID_PATH=$d/ejabberd.pid
EJABBERD_CONFIG_PATH=$d/ejabberd.yml
INET_DIST_INTERFACE=127.0.0.1
CFG
cat > "$d/ejabberd.yml" << YML
hosts:
  - localhost
loglevel: info
certfiles:
  - $d/combined.pem
listen:
  -
    port: $EPORT
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls: true
auth_method: internal
auth_password_format: scram
auth_scram_hash: sha
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
modules:
  mod_disco: {}
  mod_ping: {}
  mod_roster: {}
  mod_vcard: {}
  mod_private: {}
  mod_offline: {}
YML
chown -R ejabberd:ejabberd "$d" "$WORK/pie"
echo "== ejabberd $(dpkg-query -W -f '${Version}' ejabberd) on 127.0.0.1:$EPORT (node $NODE)"
ejctl foreground >> "$d/stdout.log" 2>&1 &
PIDS+=($!)
wait_port "$EPORT" "${PIDS[-1]}" 60
EJBEAM=$(listener_pid "$EPORT")
for u in alice bob carol; do
    pw_var="${u^^}_PASSWORD"
    ejctl register "$u" localhost "${!pw_var}" > /dev/null
done
"$PYTHON" tests/interop/import_old_server.py --phase populate --host 127.0.0.1 \
    --port "$EPORT" --tls-port "$EPORT" --alice alice@localhost --bob bob@localhost \
    --carol carol@localhost --timeout 60

# --- ejabberd's export ----------------------------------------------------------------
echo "== ejabberdctl export_piefxis"
ejctl export_piefxis "$WORK/pie"
stop_ejabberd
ls -R "$WORK/pie"

# --- confabd: import, then the users log in -------------------------------------------
cat > "$WORK/confabd.toml" << TOML
[server]
domains = ["localhost"]
data_dir = "$WORK/confab"
[c2s]
interfaces = ["127.0.0.1"]
port = $CPORT
tls_port = $CTLS
[http]
interfaces = ["127.0.0.1"]
port = $HTTP
tls_port = 0
# Not needed here; its default port may be in use by the server under test.
[admin]
enabled = false
TOML
# The main file is the one whose root is <server-data/>; it includes one file per host.
MAIN=$(grep -l '<server-data' "$WORK"/pie/*.xml | head -1)
echo "== confabd import $MAIN"
"$CONFABD" --config "$WORK/confabd.toml" import "$MAIN" > "$WORK/import.txt" 2>&1
cat "$WORK/import.txt"
grep -q "imported alice@localhost" "$WORK/import.txt"
RUST_LOG=info "$CONFABD" --config "$WORK/confabd.toml" run >> "$WORK/confabd.log" 2>&1 &
PIDS+=($!)
wait_port "$CPORT" "${PIDS[-1]}" 60
"$PYTHON" tests/interop/import_old_server.py --phase verify --host 127.0.0.1 \
    --port "$CPORT" --tls-port "$CTLS" --alice alice@localhost --bob bob@localhost \
    --carol carol@localhost --timeout 60
STATUS=0
