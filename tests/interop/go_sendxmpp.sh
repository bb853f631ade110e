#!/usr/bin/env bash
# Interop with go-sendxmpp (a Debian XMPP client we did not write): one account listens
# (-l), the other sends a message over STARTTLS and one over direct TLS; the listener must
# print both. Then a file goes with --http-upload (XEP-0363): the listener gets its URL, and
# the file fetched from it is byte-identical. Usage: go_sendxmpp.sh HOST PORT TLS_PORT SENDER_JID SENDER_PW RECEIVER_JID RECEIVER_PW
# Every check reports (`|| rc=$?`: under `set -e` a failing command would end the script
# before its summary); the script fails at the end if any check did.
set -euo pipefail
host=$1 port=$2 tls_port=$3 sender=$4 sender_pw=$5 receiver=$6 receiver_pw=$7
out=$(mktemp)
file=$(mktemp)
trap 'rm -f "$out" "$file" "$file.got"; [ -n "${listener:-}" ] && kill "$listener" 2>/dev/null || true' EXIT
passed=0 failed=0
check() { if [ "$2" = 0 ]; then passed=$((passed + 1)); echo "PASS $1"; else failed=$((failed + 1)); echo "FAIL $1"; fi; }

timeout 30 go-sendxmpp -l -n -u "$receiver" -p "$receiver_pw" -j "$host:$port" >"$out" 2>&1 &
listener=$!
sleep 2
m1="starttls-$RANDOM$RANDOM"
m2="directtls-$RANDOM$RANDOM"
rc=0
echo "$m1" | timeout 15 go-sendxmpp -n -u "$sender" -p "$sender_pw" -j "$host:$port" "$receiver" || rc=$?
check "go-sendxmpp sends over STARTTLS" $rc
rc=0
echo "$m2" | timeout 15 go-sendxmpp -t -n -u "$sender" -p "$sender_pw" -j "$host:$tls_port" "$receiver" || rc=$?
check "go-sendxmpp sends over direct TLS" $rc
head -c 70000 /dev/urandom >"$file"
rc=0
timeout 15 go-sendxmpp -n -u "$sender" -p "$sender_pw" -j "$host:$port" --http-upload "$file" "$receiver" || rc=$?
check "go-sendxmpp uploads a file (--http-upload)" $rc
for _ in $(seq 1 50); do
    grep -q "$m2" "$out" && grep -q "/upload/" "$out" && break
    sleep 0.2
done
rc=0; grep -q "$sender: $m1" "$out" || rc=$?
check "go-sendxmpp listener receives the STARTTLS message" $rc
rc=0; grep -q "$sender: $m2" "$out" || rc=$?
check "go-sendxmpp listener receives the direct TLS message" $rc
url=$(grep -o "http[^ ]*/upload/[^ ]*" "$out" | head -n1 || true)
rc=0; [ -n "$url" ] || rc=1
check "go-sendxmpp listener receives the upload URL" $rc
rc=0
{ python3 -c 'import sys, urllib.request; open(sys.argv[2], "wb").write(urllib.request.urlopen(sys.argv[1], timeout=10).read())' \
    "$url" "$file.got" 2>/dev/null && cmp -s "$file" "$file.got"; } || rc=1
check "the uploaded file comes back byte-identical" $rc
[ "$failed" = 0 ] || { echo "listener output:"; cat "$out"; }
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
