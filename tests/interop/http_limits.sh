#!/usr/bin/env bash
# The [http] connection limits seen by tools we did not write: curl keeps one connection
# alive across two requests (the idle timeout does not cut it between them), and socat
# sending half a request line and then nothing is disconnected by the server at the
# header timeout (not before, and after a connect that succeeded), on the HTTP listener and on the admin console's.
# Usage: http_limits.sh HOST HTTP_PORT ADMIN_PORT HEADER_TIMEOUT_SECONDS
set -euo pipefail
host=$1 http_port=$2 admin_port=$3 header_timeout=$4
passed=0 failed=0
check() { if [ "$2" = 0 ]; then passed=$((passed + 1)); echo "PASS $1"; else failed=$((failed + 1)); echo "FAIL $1"; fi; }

rc=0
out=$(curl -sS -v --max-time 10 "http://$host:$http_port/.well-known/host-meta" \
    "http://$host:$http_port/.well-known/host-meta" 2>&1) || rc=$?
[ "$rc" = 0 ] && { grep -qi "re-using existing connection" <<<"$out" || rc=1; }
check "curl reuses one kept-alive connection for two requests" $rc

# Half a request line, then silence (stdin stays open): the server must close the
# connection at the header timeout — not before (header_timeout - 1 s, for the clock's
# whole seconds), and not by refusing it: socat must have connected (its "starting data
# transfer loop"). `timeout` bounds the wait if the server never closes it.
stalled() {
    local port=$1 start end rc=0 log
    log=$(mktemp)
    start=$(date +%s)
    # (Process substitution: the silent writer is not waited for once socat is done.)
    timeout $((header_timeout + 10)) socat -d -d -t 1 - "TCP:$host:$port" >/dev/null 2>"$log" \
        < <(printf 'GET /.well-known/host-m'; sleep $((header_timeout + 15))) || rc=$?
    end=$(date +%s)
    local connected=1
    grep -q "starting data transfer loop" "$log" || connected=0
    rm -f "$log"
    # 124: still open when `timeout` gave up.
    [ "$rc" != 124 ] && [ "$connected" = 1 ] \
        && [ $((end - start)) -ge $((header_timeout - 1)) ] \
        && [ $((end - start)) -le $((header_timeout + 5)) ]
}
rc=0; stalled "$http_port" || rc=$?
check "a stalled request head is closed within header_timeout (HTTP listener)" $rc
rc=0; stalled "$admin_port" || rc=$?
check "a stalled request head is closed within header_timeout (admin console)" $rc

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
