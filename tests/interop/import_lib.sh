# Shell helpers of the moving-in tests (import_prosody.sh, import_ejabberd.sh), sourced.

# free_ports N: N free loopback TCP ports, bound at once so they differ.
free_ports() {
    python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in ss))' "$1"
}

# wait_port PORT PID [SECONDS]: until something accepts on PORT; fails if PID exits first
# or after SECONDS (default 30).
wait_port() {
    python3 - "$1" "$2" "${3:-30}" << 'PY'
import os, socket, sys, time
port, pid, limit = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
deadline = time.monotonic() + limit
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(f"the server (pid {pid}) exited during start-up")
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.2)
sys.exit(f"nothing accepted connections on {port} within {limit} s")
PY
}
