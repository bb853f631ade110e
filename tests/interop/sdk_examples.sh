#!/usr/bin/env bash
# The SDK's examples (crates/confab-client/examples) against a running server, unchanged:
# send_one (received by `confab listen --json`), join_room (two of them in one room: the
# first sees the second enter and reads what it says), upload_file (XEP-0363: the URL it
# prints is on the server's upload service, fetches back byte-identical with curl, and
# reaches the receiver as a file). Run against confabd by scripts/interop.sh and against
# Prosody by tests/interop/confab_prosody.sh.
#
# Usage: sdk_examples.sh HOST PORT CERT_PEM CONFAB EXAMPLES_DIR SENDER_JID SENDER_PW
#        RECEIVER_JID RECEIVER_PW URL_PREFIX
set -euo pipefail
HOST=$1 PORT=$2 CERT=$3 CONFAB=$4 EXAMPLES=$5 SENDER=$6 SENDER_PW=$7 RECEIVER=$8 RECEIVER_PW=$9
URL_PREFIX=${10}
for ex in send_one join_room upload_file; do
    [ -x "$EXAMPLES/$ex" ] || { echo "FAIL: SDK example $EXAMPLES/$ex not found" >&2; exit 1; }
done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/confab-sdk-examples.XXXXXX")
LISTENER="" ROOM_LISTENER=""
cleanup() {
    local p
    for p in $LISTENER $ROOM_LISTENER; do kill "$p" 2> /dev/null || true; done
    if [ "${failed:-0}" -ne 0 ]; then
        for f in "$WORK"/*.out "$WORK"/*.err; do
            [ -s "$f" ] && { echo "== $f" >&2; tail -n 20 "$f" >&2; }
        done
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
# The examples trust exactly the server's certificate (DER) when CONFAB_CA names it.
openssl x509 -in "$CERT" -outform der -out "$WORK/cert.der"
export CONFAB_CA="$WORK/cert.der"
suffix="$RANDOM$RANDOM"
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

printf '%s\n' "$RECEIVER_PW" > "$WORK/receiver.pw"
chmod 600 "$WORK/receiver.pw"
conn=(--server "$HOST:$PORT" --trust-cert "$CERT")

# listen_for N: the receiver's `confab listen --json` for N messages, in the background.
listen_for() {
    timeout 30 "$CONFAB" "${conn[@]}" --jid "$RECEIVER" --password-file "$WORK/receiver.pw" \
        listen --json --count "$1" > "$WORK/listen.out" 2> "$WORK/listen.err" &
    LISTENER=$!
    # Online before anything is sent (an offline message would arrive too, but later).
    sleep 3
}

echo "== SDK example send_one"
text="hello from send_one $suffix ✓"
listen_for 1
set +e
"$EXAMPLES/send_one" "$HOST:$PORT" "$SENDER" "$SENDER_PW" "$RECEIVER" "$text" \
    > "$WORK/send_one.out" 2> "$WORK/send_one.err"
rc=$?
wait "$LISTENER"
lrc=$?
set -e
check "send_one exits 0" [ "$rc" -eq 0 ] || true
check "confab listen receives send_one's message" [ "$lrc" -eq 0 ] || true
check "  ...from the sender, with the text" python3 -c '
import json, sys
m = json.loads(open(sys.argv[1]).readline())
assert m["from"].split("/")[0] == sys.argv[2], m
assert m["body"] == sys.argv[3], m' "$WORK/listen.out" "$SENDER" "$text" || true

echo "== SDK example join_room"
# Two of them: the receiver's is in the room first and prints what the sender's says there
# (the example does not print its own messages back).
room="sdkroom$suffix@conference.localhost"
{ sleep 12; } | timeout 30 "$EXAMPLES/join_room" "$HOST:$PORT" "$RECEIVER" "$RECEIVER_PW" "$room" Rcv \
    > "$WORK/join_room_receiver.out" 2> "$WORK/join_room_receiver.err" &
ROOM_LISTENER=$!
for _ in $(seq 100); do
    grep -q "^\* joined" "$WORK/join_room_receiver.out" 2> /dev/null && break
    sleep 0.1
done
set +e
{ sleep 3; echo "hi room from the SDK $suffix"; sleep 3; } \
    | timeout 30 "$EXAMPLES/join_room" "$HOST:$PORT" "$SENDER" "$SENDER_PW" "$room" Sdk \
        > "$WORK/join_room.out" 2> "$WORK/join_room.err"
rc=$?
wait "$ROOM_LISTENER"
lrc=$?
set -e
check "join_room exits 0 after its input ends (both)" test "$rc" -eq 0 -a "$lrc" -eq 0 || true
check "the first join_room created and joined $room" grep -q "^\* joined $room as Rcv" "$WORK/join_room_receiver.out" || true
check "the second joined it and sees the first there" grep -q "^\* joined $room as Sdk .*also here: .*Rcv" "$WORK/join_room.out" || true
check "  ...the first sees it enter" grep -q "^\* Sdk joined" "$WORK/join_room_receiver.out" || true
check "  ...and reads the line it said in the room" grep -qF "<Sdk> hi room from the SDK $suffix" "$WORK/join_room_receiver.out" || true

echo "== SDK example upload_file"
head -c 50000 /dev/urandom > "$WORK/upload me.bin"
listen_for 1
set +e
"$EXAMPLES/upload_file" "$HOST:$PORT" "$SENDER" "$SENDER_PW" "$RECEIVER" "$WORK/upload me.bin" \
    > "$WORK/upload_file.out" 2> "$WORK/upload_file.err"
rc=$?
wait "$LISTENER"
lrc=$?
set -e
url=$(head -n 1 "$WORK/upload_file.out")
check "upload_file exits 0 and prints the URL" test "$rc" -eq 0 -a -n "$url" || true
check "  ...a URL on the server's upload service" grep -q "^$URL_PREFIX" "$WORK/upload_file.out" || true
set +e
curl -sSf -o "$WORK/fetched.bin" "$url" 2> "$WORK/curl.err"
crc=$?
set -e
check "  ...that curl fetches back (HTTP 200)" [ "$crc" -eq 0 ] || true
check "  ...byte-identical" cmp -s "$WORK/upload me.bin" "$WORK/fetched.bin" || true
check "the receiver gets the upload's message" [ "$lrc" -eq 0 ] || true
check "  ...as a file (oob_url is the URL)" python3 -c '
import json, sys
m = json.loads(open(sys.argv[1]).readline())
assert m["oob_url"] == sys.argv[2], m' "$WORK/listen.out" "$url" || true


echo "sdk_examples.sh: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
