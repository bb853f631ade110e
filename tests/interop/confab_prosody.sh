#!/usr/bin/env bash
# `confab` and the SDK's examples against Prosody (Debian's 0.12), not only confabd: a
# Prosody of its own on loopback (own config, data directory, pid file, self-signed
# certificate for localhost; a system instance is neither used nor touched) with in-band
# registration, MUC (conference.localhost, archived), MAM, carbons and HTTP file share
# (upload.localhost). Then the terminal client's whole tmux story (confab_tui.sh) runs
# against it, and each SDK example once: send_one (received by `confab listen --json`),
# join_room (joins, and the room's echo of a line said there comes back), upload_file (the
# URL it prints fetches back byte-identical with curl).
#
# Usage: confab_prosody.sh CONFAB_BINARY EXAMPLES_DIR   (EXAMPLES_DIR: the target dir's
# debug/examples, holding send_one, join_room and upload_file)
set -euo pipefail
cd "$(dirname "$0")/../.."
CONFAB=$(readlink -f "$1")
EXAMPLES=$(readlink -f "$2")
for ex in send_one join_room upload_file; do
    [ -x "$EXAMPLES/$ex" ] || { echo "FAIL: SDK example $EXAMPLES/$ex not found" >&2; exit 1; }
done
[ -x "$CONFAB" ] || { echo "FAIL: confab not found at $CONFAB" >&2; exit 1; }

scripts/ensure-prosody.sh

WORK=$(mktemp -d "${TMPDIR:-/tmp}/confab-prosody.XXXXXX")
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
        echo "== confab_prosody.sh FAILED" >&2
        for f in "$WORK"/prosody.log "$WORK"/*.out "$WORK"/*.err; do
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

passed=0
failed=0
check() {
    local what=$1
    shift
    if "$@"; then
        echo "ok   $what"
        passed=$((passed + 1))
    else
        echo "FAIL $what" >&2
        failed=$((failed + 1))
        return 1
    fi
}

read -r PORT HTTP < <(free_ports 2)
openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -days 2 \
    -addext "subjectAltName=DNS:localhost,DNS:conference.localhost,DNS:upload.localhost" \
    -addext "basicConstraints=critical,CA:FALSE" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2> /dev/null
openssl x509 -in "$WORK/cert.pem" -outform DER -out "$WORK/cert.der"
mkdir -p "$WORK/data"
cat > "$WORK/prosody.cfg.lua" << LUA
run_as_root = true
pidfile = "$WORK/prosody.pid"
data_path = "$WORK/data"
certificates = "$WORK"
log = { { levels = { min = "info" }, to = "file", filename = "$WORK/prosody.log" } }
c2s_ports = { $PORT }
c2s_interfaces = { "127.0.0.1" }
c2s_direct_tls_ports = { }
s2s_ports = { }
s2s_interfaces = { }
http_ports = { $HTTP }
http_interfaces = { "127.0.0.1" }
http_external_url = "http://127.0.0.1:$HTTP/"
http_default_host = "upload.localhost"
https_ports = { }
component_ports = { }
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping"; "register"; "mam"; "carbons"; "offline"; "vcard_legacy"; "pep" }
modules_disabled = { "s2s" }
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = true
allow_registration = true
-- The tests register several accounts from 127.0.0.1 in a few seconds.
min_seconds_between_registrations = 0
registration_throttle_max = 1000
registration_whitelist = { "127.0.0.1" }
whitelist_registration_only = false
-- Nothing on loopback is rate limited.
limits = { c2s = { rate = "10mb/s" } }
unlimited_jids = { }
archive_expires_after = "never"
default_archive_policy = true
ssl = { certificate = "$WORK/cert.pem"; key = "$WORK/key.pem" }
VirtualHost "localhost"
Component "conference.localhost" "muc"
    modules_enabled = { "muc_mam" }
    restrict_room_creation = false
Component "upload.localhost" "http_file_share"
    http_file_share_size_limit = 1000000
LUA

echo "== Prosody $(dpkg-query -W -f '${Version}' prosody 2>/dev/null || echo '?') on 127.0.0.1:$PORT (HTTP $HTTP)"
prosody --config "$WORK/prosody.cfg.lua" >> "$WORK/prosody.log" 2>&1 &
PIDS+=($!)
wait_port "$PORT" "${PIDS[-1]}"
wait_port "$HTTP" "${PIDS[-1]}"

# --- the terminal client, the whole story in tmux --------------------------------------
echo "== confab_tui.sh against Prosody"
set +e
tests/interop/confab_tui.sh 127.0.0.1 "$PORT" "$WORK/cert.pem" "$CONFAB"
rc=$?
set -e
check "confab_tui.sh against Prosody" [ "$rc" -eq 0 ] || true

# --- the SDK's examples, with accounts made by prosodyctl ------------------------------
suffix="$RANDOM$RANDOM"
SENDER="sdka$suffix" RECEIVER="sdkb$suffix"
SENDER_PW="sdk-a-$RANDOM$RANDOM" RECEIVER_PW="sdk b pässword $RANDOM"
prosodyctl --config "$WORK/prosody.cfg.lua" register "$SENDER" localhost "$SENDER_PW" >> "$WORK/prosody.log" 2>&1
prosodyctl --config "$WORK/prosody.cfg.lua" register "$RECEIVER" localhost "$RECEIVER_PW" >> "$WORK/prosody.log" 2>&1
set +e
tests/interop/sdk_examples.sh 127.0.0.1 "$PORT" "$WORK/cert.pem" "$CONFAB" "$EXAMPLES" \
    "$SENDER@localhost" "$SENDER_PW" "$RECEIVER@localhost" "$RECEIVER_PW" "http://127.0.0.1:$HTTP/"
rc=$?
set -e
check "the SDK's examples against Prosody" [ "$rc" -eq 0 ] || true

echo "confab_prosody.sh: $passed passed, $failed failed"
if [ "$failed" -eq 0 ]; then STATUS=0; fi
exit "$STATUS"
