#!/usr/bin/env bash
# Interop tests against XMPP implementations we did not write: slixmpp (PyPI) and
# go-sendxmpp (Debian) on TCP, xmpp.js and Converse.js (in headless Chromium) over WebSocket,
# and Converse.js over BOSH (scripts/interop-web.sh). Builds confabd, starts it on free loopback ports with a
# throwaway data dir and accounts made with `confabd user add`, and runs every
# tests/interop/slixmpp_*.py (login and chat, roster, registration, blocking, offline
# messages, account services, stream management, carbons, client state, Multi-User Chat on
# conference.localhost and its archive, ids, self-ping and moderation, several sessions under
# one nick and occupants retracting their own messages, HTTP File Upload), then a restart
# scenario, go-sendxmpp (also against `confab send`/`listen`, tests/interop/confab_go_sendxmpp.sh),
# moving in from Prosody and ejabberd (tests/interop/import_*.sh, which install them from
# Debian if missing), our own terminal client `confab` driven in tmux
# (tests/interop/confab_tui.sh) and, with the SDK's examples, against a Prosody of its own
# (tests/interop/confab_prosody.sh), profanity (Debian) in a group chat room in tmux
# (tests/interop/profanity_muc.sh), and the web clients.
#
# Environment:
#   CONFAB_VENV        venv to create or reuse (default ~/.cache/confab-venv)
#   CARGO_TARGET_DIR   respected (the binary is found via `cargo metadata`)
#   INTEROP_VERBOSE=1  slixmpp debug log (every stanza) from the test script
#   CONFAB_INTEROP_NO_BUILD=1  skip `cargo build` and use the binaries already in the target dir
#   CONFAB_INTEROP_ARTEFACTS   where the browser test keeps screenshots and logs (default: in
#                      the throwaway work dir, which is kept when a test fails)
#   CONFAB_INTEROP_EXTRA_CONFIG  TOML appended to the server's config, e.g. to check that the
#                      tests fail without a module: $'[modules]\ndisabled = ["websocket"]'
#   CONFAB_WEB_CACHE, CHROMIUM, CONFAB_REQUIRE_SERVICES: see scripts/interop-web.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SLIXMPP_VERSION="1.17.0"
# slixmpp's xep_0363 plugin PUTs with aiohttp (tests/interop/slixmpp_upload.py).
AIOHTTP_VERSION="3.12.15"
VENV="${CONFAB_VENV:-$HOME/.cache/confab-venv}"

# The SDK's Prosody test (cargo test -p confab-client --test prosody) needs it.
scripts/ensure-prosody.sh

if ! command -v socat >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
    echo "== installing socat and curl (Debian) for the HTTP limit checks"
    (apt-get -o DPkg::Lock::Timeout=600 update -qq && apt-get -o DPkg::Lock::Timeout=600 install -y -qq socat curl) >/dev/null
fi
if ! command -v go-sendxmpp >/dev/null 2>&1; then
    echo "== installing go-sendxmpp (Debian)"
    (apt-get -o DPkg::Lock::Timeout=600 update -qq && apt-get -o DPkg::Lock::Timeout=600 install -y -qq go-sendxmpp) >/dev/null
fi

echo "== python venv ($VENV) with slixmpp $SLIXMPP_VERSION"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('slixmpp') != '$SLIXMPP_VERSION')" 2>/dev/null; then
    "$VENV/bin/pip" install -q --disable-pip-version-check "slixmpp==$SLIXMPP_VERSION"
fi
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('aiohttp') != '$AIOHTTP_VERSION')" 2>/dev/null; then
    "$VENV/bin/pip" install -q --disable-pip-version-check "aiohttp==$AIOHTTP_VERSION"
fi

scripts/interop-web.sh setup

if [ "${CONFAB_INTEROP_NO_BUILD:-0}" = "1" ]; then
    echo "== using the already built confabd and confab (CONFAB_INTEROP_NO_BUILD=1)"
else
    echo "== cargo build -p confabd -p confab -p confab-client --bins --examples"
    cargo build -q -p confabd -p confab -p confab-client --bins --examples
fi
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
CONFABD="$TARGET_DIR/debug/confabd"
[ -x "$CONFABD" ] || { echo "confabd not found at $CONFABD" >&2; exit 1; }
CONFAB="$TARGET_DIR/debug/confab"
[ -x "$CONFAB" ] || { echo "confab not found at $CONFAB" >&2; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/confab-interop.XXXXXX")"
LOG="$WORK/confabd.log"
SERVER_PID=""
STATUS=1

cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [ "$STATUS" -ne 0 ] && [ -f "$LOG" ]; then
        echo "== confabd log (last 60 lines of $LOG)" >&2
        tail -n 60 "$LOG" >&2 || true
        echo "== (kept $WORK for inspection)" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Free ports for c2s, direct TLS, HTTP (WebSocket), HTTPS and the admin console: bound to
# port 0 then released; a small race, acceptable for a test.
read -r PORT TLS_PORT HTTP_PORT ADMIN_PORT HTTPS_PORT < <(python3 - <<'EOF'
import socket
socks = []
for _ in range(5):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
EOF
)

CONFIG="$WORK/confabd.toml"
cat >"$CONFIG" <<EOF
[server]
domains = ["localhost"]
data_dir = "$WORK/data"

[c2s]
interfaces = ["127.0.0.1"]
port = $PORT
tls_port = $TLS_PORT

[http]
# XMPP over WebSocket, BOSH and host-meta for the web interop tests; upload slots' URLs.
interfaces = ["127.0.0.1"]
port = $HTTP_PORT
tls_port = $HTTPS_PORT

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[registration]
# slixmpp_register.py registers, changes and removes an account in-band; the scenario and the
# confab_*.sh scripts register too; all from 127.0.0.1, so the per-IP limit (unit-tested in confab-modules)
# is off here.
policy = "open"
rate_limit_per_ip = 0
EOF
if [ -n "${CONFAB_INTEROP_EXTRA_CONFIG:-}" ]; then
    printf '\n%s\n' "$CONFAB_INTEROP_EXTRA_CONFIG" >>"$CONFIG"
fi

# Each script gets its own pair of accounts (alice1/bob1, alice2/bob2, ...) so scripts do
# not see each other's rosters; passwords travel in the environment, not on command lines.
SCRIPTS=(tests/interop/slixmpp_*.py)
N=0
for _ in "${SCRIPTS[@]}"; do
    N=$((N + 1))
    for who in alice bob; do
        pw="$who$N-$(python3 -c 'import secrets; print(secrets.token_hex(8))')"
        export "PASSWORD_${who}${N}=$pw"
        printf '%s\n' "$pw" | "$CONFABD" --config "$CONFIG" user add "$who$N@localhost" --password-stdin >>"$LOG" 2>&1
    done
done
# profanity's two users (tests/interop/profanity_muc.sh).
for who in ALICE BOB; do
    user="prof-$(echo "$who" | tr 'A-Z' 'a-z')"
    pw="$user-$(python3 -c 'import secrets; print(secrets.token_hex(8))')"
    export "PROF_${who}=$user@localhost" "PROF_${who}_PASSWORD=$pw"
    printf '%s\n' "$pw" | "$CONFABD" --config "$CONFIG" user add "$user@localhost" --password-stdin >>"$LOG" 2>&1
done
# The SDK's examples (tests/interop/sdk_examples.sh).
SDK_SENDER_PW="sdk-$(python3 -c 'import secrets; print(secrets.token_hex(8))')"
SDK_RECEIVER_PW="sdk-$(python3 -c 'import secrets; print(secrets.token_hex(8))')"
printf '%s\n' "$SDK_SENDER_PW" | "$CONFABD" --config "$CONFIG" user add sdk-sender@localhost --password-stdin >>"$LOG" 2>&1
printf '%s\n' "$SDK_RECEIVER_PW" | "$CONFABD" --config "$CONFIG" user add sdk-receiver@localhost --password-stdin >>"$LOG" 2>&1
GS_SENDER_PW="gs-$(python3 -c 'import secrets; print(secrets.token_hex(8))')"
GS_RECEIVER_PW="gs-$(python3 -c 'import secrets; print(secrets.token_hex(8))')"
printf '%s\n' "$GS_SENDER_PW" | "$CONFABD" --config "$CONFIG" user add gs-sender@localhost --password-stdin >>"$LOG" 2>&1
printf '%s\n' "$GS_RECEIVER_PW" | "$CONFABD" --config "$CONFIG" user add gs-receiver@localhost --password-stdin >>"$LOG" 2>&1
# The web tests: a web user and its TCP peer each, for xmpp.js (XJ), Converse over WebSocket
# (CV), Converse over BOSH (CB) and Converse over wss:// on the HTTPS listener (CT).
for who in XJ XJ_PEER CV CV_PEER CB CB_PEER CT CT_PEER; do
    user="$(echo "$who" | tr 'A-Z_' 'a-z-')"
    pw="$user-$(python3 -c 'import secrets; print(secrets.token_hex(8))')"
    export "${who}_JID=web-$user@localhost" "${who}_PASSWORD=$pw"
    printf '%s\n' "$pw" | "$CONFABD" --config "$CONFIG" user add "web-$user@localhost" --password-stdin >>"$LOG" 2>&1
done

start_server() {
    echo "== starting confabd (c2s $PORT, direct TLS $TLS_PORT, HTTP $HTTP_PORT, HTTPS $HTTPS_PORT)"
    RUST_LOG="${RUST_LOG:-info}" "$CONFABD" --config "$CONFIG" run >>"$LOG" 2>&1 &
    SERVER_PID=$!
    # Bounded wait until the c2s ports accept connections. The HTTP port is not waited
    # for: it is bound in the same start-up, before c2s is ready, and when it is missing
    # (the websocket module disabled) the web tests must fail on their own.
    python3 - "$PORT" "$TLS_PORT" "$SERVER_PID" <<'EOF'
import os, socket, sys, time
ports, pid = [int(p) for p in sys.argv[1:3]], int(sys.argv[3])
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("confabd exited during startup")
    try:
        for p in ports:
            socket.create_connection(("127.0.0.1", p), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.2)
sys.exit("confabd did not accept connections within 30 s")
EOF
}
start_server || exit 1

VERBOSE_FLAG=()
[ "${INTEROP_VERBOSE:-0}" = "1" ] && VERBOSE_FLAG=(--verbose)
N=0
STATUS=0
for script in "${SCRIPTS[@]}"; do
    N=$((N + 1))
    echo "== slixmpp interop: $script"
    pa="PASSWORD_alice$N"
    pb="PASSWORD_bob$N"
    set +e
    ALICE_PASSWORD="${!pa}" BOB_PASSWORD="${!pb}" "$VENV/bin/python" "$script" \
        --host 127.0.0.1 --port "$PORT" --tls-port "$TLS_PORT" \
        --alice "alice$N@localhost" --bob "bob$N@localhost" --timeout 60 "${VERBOSE_FLAG[@]}"
    rc=$?
    set -e
    [ "$rc" -eq 0 ] || STATUS=$rc
done
# The whole story with real clients, across a crash: two users register in-band, add each
# other and chat; one goes offline and is sent a message; the server is killed with SIGKILL
# and restarted; the message is still delivered; then they block each other.
scenario() {
    ALICE_PASSWORD="scenario-a-$RANDOM$RANDOM" BOB_PASSWORD="scenario-b-$RANDOM$RANDOM" \
        "$VENV/bin/python" tests/interop/scenario_register_chat_restart_block.py \
        --host 127.0.0.1 --port "$PORT" --tls-port "$TLS_PORT" --phase "$1" \
        --state "$WORK/scenario.json" --timeout 60 "${VERBOSE_FLAG[@]}"
}
echo "== scenario: register, befriend, chat, offline message (phase 1)"
set +e
scenario 1
rc=$?
set -e
[ "$rc" -eq 0 ] || STATUS=$rc
echo "== kill -9 confabd and start it again"
kill -9 "$SERVER_PID" 2>/dev/null || true
wait "$SERVER_PID" 2>/dev/null || true
start_server || exit 1
echo "== scenario: offline message after the crash, blocking (phase 2)"
set +e
scenario 2
rc=$?
set -e
[ "$rc" -eq 0 ] || STATUS=$rc

echo "== go-sendxmpp interop"
set +e
tests/interop/go_sendxmpp.sh 127.0.0.1 "$PORT" "$TLS_PORT" \
    gs-sender@localhost "$GS_SENDER_PW" gs-receiver@localhost "$GS_RECEIVER_PW"
rc=$?
set -e
[ "$rc" -eq 0 ] || STATUS=$rc

echo "== HTTP limits (curl, socat)"
set +e
# 10: the default [http] header_timeout, which this config keeps.
tests/interop/http_limits.sh 127.0.0.1 "$HTTP_PORT" "$ADMIN_PORT" 10
rc=$?
set -e
[ "$rc" -eq 0 ] || STATUS=$rc

# Moving in: Prosody and ejabberd (Debian's) export users, rosters, vCards and private XML
# with their own tools, confabd imports them, the users log in with their old passwords.
# Each runs its own server on its own loopback port and data directory. Openfire: its
# database on the local MariaDB, read by `confabd import --from openfire`.
for old in prosody ejabberd openfire; do
    echo "== moving in from $old: its export, confabd import, old passwords"
    set +e
    tests/interop/import_$old.sh "$CONFABD" "$VENV/bin/python"
    rc=$?
    set -e
    [ "$rc" -eq 0 ] || STATUS=$rc
done

echo "== confab send/listen with go-sendxmpp"
set +e
tests/interop/confab_go_sendxmpp.sh 127.0.0.1 "$PORT" "$WORK/data/tls/cert.pem" "$CONFAB"
rc=$?
set -e
[ "$rc" -eq 0 ] || STATUS=$rc

echo "== confab, the terminal client, in tmux"
set +e
tests/interop/confab_tui.sh 127.0.0.1 "$PORT" "$WORK/data/tls/cert.pem" "$CONFAB"
rc=$?
set -e
[ "$rc" -eq 0 ] || STATUS=$rc

echo "== the SDK's examples against confabd"
set +e
tests/interop/sdk_examples.sh 127.0.0.1 "$PORT" "$WORK/data/tls/cert.pem" "$CONFAB" "$TARGET_DIR/debug/examples" \
    sdk-sender@localhost "$SDK_SENDER_PW" sdk-receiver@localhost "$SDK_RECEIVER_PW" "http://127.0.0.1:$HTTP_PORT/"
rc=$?
set -e
[ "$rc" -eq 0 ] || STATUS=$rc

# The same terminal client story, and the SDK's examples, against Prosody (Debian's) of its
# own on its own loopback ports: confab and the SDK are not tied to confabd.
echo "== confab and the SDK's examples against Prosody"
set +e
tests/interop/confab_prosody.sh "$CONFAB" "$TARGET_DIR/debug/examples"
rc=$?
set -e
[ "$rc" -eq 0 ] || STATUS=$rc

echo "== group chat with profanity, in tmux"
set +e
tests/interop/profanity_muc.sh 127.0.0.1 "$PORT"
rc=$?
set -e
[ "$rc" -eq 0 ] || STATUS=$rc

echo "== web interop: xmpp.js and Converse.js over WebSocket, Converse.js over BOSH and wss://, the admin console"
set +e
# The set-up link of the running server (the last start printed a fresh one).
SETUP_LINK="$(grep -o 'http://[0-9.:]*/setup?token=[A-Za-z0-9_-]*' "$LOG" | tail -n 1)"
C2S_PORT="$PORT" HTTP_PORT="$HTTP_PORT" HTTPS_PORT="$HTTPS_PORT" CERT="$WORK/data/tls/cert.pem" ADMIN_PORT="$ADMIN_PORT" SETUP_LINK="$SETUP_LINK" PYTHON="$VENV/bin/python" \
    ARTEFACTS="${CONFAB_INTEROP_ARTEFACTS:-$WORK/artefacts}" scripts/interop-web.sh run
rc=$?
set -e
[ "$rc" -eq 0 ] || STATUS=$rc
exit "$STATUS"
