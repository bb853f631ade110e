#!/usr/bin/env bash
# confab's commands for scripts against a client we did not write (go-sendxmpp, Debian):
# `confab listen --json` prints what go-sendxmpp sends, and go-sendxmpp's listener (-l)
# prints what `confab send` sends. The two accounts are made with `confab register`.
# Usage: confab_go_sendxmpp.sh HOST PORT CERT_PEM CONFAB_BINARY (registration must be open)
set -euo pipefail
host=$1 port=$2 cert=$3 confab=$4

work=$(mktemp -d "${TMPDIR:-/tmp}/confab-gs.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
passed=0 failed=0
check() {
    local what=$1
    shift
    if "$@"; then passed=$((passed + 1)); echo "PASS $what"; else failed=$((failed + 1)); echo "FAIL $what"; fi
}
# Waits (bounded) until `file` contains `text`.
wait_file() {
    for _ in $(seq 1 100); do
        grep -qF -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.2
    done
    echo "--- $1 (waited for '$2'):"
    cat "$1" || true
    return 1
}

suffix="$RANDOM$RANDOM"
cf="cf$suffix@localhost"  # the confab side
gs="gs$suffix@localhost"  # the go-sendxmpp side
cf_pw="cf-$suffix-$RANDOM$RANDOM"
gs_pw="gs-$suffix-$RANDOM$RANDOM"
printf '%s\n' "$cf_pw" >"$work/cf.pw"
printf '%s\n' "$gs_pw" >"$work/gs.pw"
chmod 600 "$work"/*.pw
conn=(--server "$host:$port" --trust-cert "$cert")
check "confab registers $cf" timeout 30 "$confab" "${conn[@]}" --jid "$cf" --password-file "$work/cf.pw" register
check "confab registers $gs" timeout 30 "$confab" "${conn[@]}" --jid "$gs" --password-file "$work/gs.pw" register

# go-sendxmpp -> confab listen --json
timeout 30 "$confab" "${conn[@]}" --jid "$cf" --password-file "$work/cf.pw" listen --json --count 1 \
    >"$work/listen.out" 2>"$work/listen.err" &
pids+=($!)
listener=$!
check "confab listen is online" wait_file "$work/listen.err" "listening as $cf"
text="from go-sendxmpp $suffix :)"
rc=0
echo "$text" | timeout 15 go-sendxmpp -n -u "$gs" -p "$gs_pw" -j "$host:$port" "$cf" || rc=$?
check "go-sendxmpp sends to confab" [ "$rc" = 0 ]
rc=0
wait "$listener" || rc=$?
check "confab listen exits after one message" [ "$rc" = 0 ]
check "confab listen --json prints the message" python3 - "$work/listen.out" "$text" "$gs" <<'EOF'
import json, sys
path, text, sender = sys.argv[1:4]
lines = open(path, encoding="utf-8").read().splitlines()
assert len(lines) == 1, lines
m = json.loads(lines[0])
assert m["type"] == "chat", m
assert m["body"].strip() == text, m
assert m["from"].split("/")[0] == sender, m
EOF

# confab send -> go-sendxmpp -l
timeout 30 go-sendxmpp -l -n -u "$gs" -p "$gs_pw" -j "$host:$port" >"$work/gs.out" 2>&1 &
pids+=($!)
sleep 2
text="from confab $suffix"
check "confab send to go-sendxmpp" timeout 30 "$confab" "${conn[@]}" --jid "$cf" --password-file "$work/cf.pw" send "$gs" "$text"
check "go-sendxmpp's listener prints confab's message" wait_file "$work/gs.out" "$cf: $text"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
