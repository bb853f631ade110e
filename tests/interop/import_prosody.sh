#!/usr/bin/env bash
# Moving in from Prosody (Debian's package): a Prosody of its own on loopback (own config,
# data directory and port; a system instance is neither used nor touched) gets users with
# passwords, a roster, a vCard and private XML through slixmpp; Prosody's own migrator
# (prosody-migrator with Prosody's mod_storage_xep0227) exports them to XEP-0227 files;
# `confabd import` reads them; the users log in to confabd with their old passwords and see
# their data (tests/interop/import_old_server.py).
#
# Usage: import_prosody.sh CONFABD PYTHON   (PYTHON: the venv's, with slixmpp)
set -euo pipefail
cd "$(dirname "$0")/../.."
CONFABD=$1
PYTHON=$2

scripts/ensure-prosody.sh

WORK=$(mktemp -d "${TMPDIR:-/tmp}/confab-import-prosody.XXXXXX")
chmod 755 "$WORK"
PIDS=()
STATUS=1
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill -TERM "$p" 2> /dev/null || true
        for _ in $(seq 50); do kill -0 "$p" 2> /dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2> /dev/null || true
        wait "$p" 2> /dev/null || true
    done
    if [ "$STATUS" -ne 0 ]; then
        for f in "$WORK"/prosody.log "$WORK"/confabd.log "$WORK"/import.txt; do
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
stop_last() {
    local p=${PIDS[-1]}
    kill -TERM "$p" 2> /dev/null || true
    for _ in $(seq 100); do kill -0 "$p" 2> /dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2> /dev/null || true
    wait "$p" 2> /dev/null || true
    unset 'PIDS[-1]'
}

read -r PPORT CPORT CTLS HTTP < <(free_ports 4)
export ALICE_PASSWORD="alice-$RANDOM$RANDOM" BOB_PASSWORD="bob pässword $RANDOM" CAROL_PASSWORD="carol-$RANDOM"

# --- Prosody: users, then data through a real client ----------------------------------
mkdir -p "$WORK/prosody/data" "$WORK/pie"
openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -days 2 \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2> /dev/null
cat > "$WORK/prosody.cfg.lua" << LUA
run_as_root = true
data_path = "$WORK/prosody/data"
certificates = "$WORK"
pidfile = "$WORK/prosody.pid"
log = { { levels = { min = "info" }, to = "file", filename = "$WORK/prosody.log" } }
c2s_ports = { $PPORT }
c2s_interfaces = { "127.0.0.1" }
c2s_direct_tls_ports = { }
s2s_ports = { }
s2s_interfaces = { }
http_ports = { }
https_ports = { }
component_ports = { }
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping"; "vcard"; "private" }
modules_disabled = { "s2s"; "offline" }
authentication = "internal_hashed"
c2s_require_encryption = false
ssl = { certificate = "$WORK/cert.pem"; key = "$WORK/key.pem" }
VirtualHost "localhost"
LUA
for u in alice bob carol; do
    pw_var="${u^^}_PASSWORD"
    prosodyctl --config "$WORK/prosody.cfg.lua" register "$u" localhost "${!pw_var}" >> "$WORK/prosody.log" 2>&1
done
echo "== Prosody $(dpkg-query -W -f '${Version}' prosody) on 127.0.0.1:$PPORT"
prosody --config "$WORK/prosody.cfg.lua" >> "$WORK/prosody.log" 2>&1 &
PIDS+=($!)
wait_port "$PPORT" "${PIDS[-1]}"
"$PYTHON" tests/interop/import_old_server.py --phase populate --host 127.0.0.1 \
    --port "$PPORT" --tls-port "$PPORT" --alice alice@localhost --bob bob@localhost \
    --carol carol@localhost --timeout 60
stop_last

# --- Prosody's export: prosody-migrator to its XEP-0227 storage --------------------------
# mod_storage_xep0227 writes to the migrator's data path, which is compiled into the
# script: a copy pointing at this test's directory, so nothing is written under
# /var/lib/prosody.
sed "s|^CFG_DATADIR=.*|CFG_DATADIR='$WORK/pie';|" "$(readlink -f "$(command -v prosody-migrator)")" \
    > "$WORK/prosody-migrator"
cat > "$WORK/migrator.cfg.lua" << LUA
input {
    type = "internal";
    path = "$WORK/prosody/data";
    hosts = { ["localhost"] = { "accounts"; "roster"; "vcard"; "private" } };
}
output {
    type = "xep0227";
    path = "$WORK/pie";
}
LUA
# Started as root, the migrator drops to the prosody user: it must read and write there.
chown -R prosody:prosody "$WORK/prosody/data" "$WORK/pie"
echo "== prosody-migrator: internal -> xep0227"
lua5.4 "$WORK/prosody-migrator" --config "$WORK/migrator.cfg.lua" input output >> "$WORK/prosody.log" 2>&1
ls "$WORK/pie"/*.xml > /dev/null

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
echo "== confabd import $(cd "$WORK/pie" && echo *.xml)"
"$CONFABD" --config "$WORK/confabd.toml" import "$WORK"/pie/*.xml > "$WORK/import.txt" 2>&1
cat "$WORK/import.txt"
grep -q "imported alice@localhost" "$WORK/import.txt"
RUST_LOG=info "$CONFABD" --config "$WORK/confabd.toml" run >> "$WORK/confabd.log" 2>&1 &
PIDS+=($!)
wait_port "$CPORT" "${PIDS[-1]}"
"$PYTHON" tests/interop/import_old_server.py --phase verify --host 127.0.0.1 \
    --port "$CPORT" --tls-port "$CTLS" --alice alice@localhost --bob bob@localhost \
    --carol carol@localhost --timeout 60
STATUS=0
