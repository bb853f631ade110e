# Helpers for driving terminal clients in tmux (send-keys in, capture-pane out), sourced by
# confab_tui.sh and profanity_muc.sh. The caller sets `sock` (its own tmux server) first.

if ! command -v tmux >/dev/null 2>&1; then
    echo "== installing tmux (Debian)"
    (apt-get -o DPkg::Lock::Timeout=600 update -qq &&
        apt-get -o DPkg::Lock::Timeout=600 install -y -qq tmux) >/dev/null
fi

# A tmux server of our own (-L), in UTF-8 (-u) so emoji are kept in captures.
tm() { LANG=C.UTF-8 tmux -u -L "$sock" "$@"; }

passed=0 failed=0
pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }

# Waits (bounded) until the session's screen shows `text`; prints the screen if it never does.
wait_for() {
    local session=$1 text=$2 secs=${3:-20}
    for _ in $(seq 1 $((secs * 5))); do
        tm capture-pane -p -t "$session" | grep -qF -- "$text" && return 0
        sleep 0.2
    done
    echo "--- $session's screen (waited for '$text'):"
    tm capture-pane -p -t "$session" || true
    return 1
}
# Waits (bounded) until the screen no longer shows `text`.
wait_gone() {
    local session=$1 text=$2 secs=${3:-20}
    for _ in $(seq 1 $((secs * 5))); do
        tm capture-pane -p -t "$session" | grep -qF -- "$text" || return 0
        sleep 0.2
    done
    echo "--- $session's screen (waited for '$text' to go):"
    tm capture-pane -p -t "$session" || true
    return 1
}
check() {
    local what=$1
    shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}
# Types text literally (no Enter).
type_in() { tm send-keys -t "$1" -l -- "$2"; }
say() {
    type_in "$1" "$2"
    tm send-keys -t "$1" Enter
}
