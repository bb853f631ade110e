#!/usr/bin/env bash
# Group chat with profanity (Debian), a client we did not write, driven in tmux as a person
# uses it (send-keys in, capture-pane out) against a running confabd: alice creates a room
# and accepts the default configuration (an instant room), says something, bob joins and
# gets it as history, they talk both ways, bob changes his nick, alice (the owner) kicks
# him, he comes back, she bans him, and his next join is refused.
# Usage: profanity_muc.sh HOST PORT, with PROF_ALICE, PROF_ALICE_PASSWORD, PROF_BOB,
# PROF_BOB_PASSWORD in the environment (two accounts on a server serving MUC on
# conference.<domain>, as scripts/interop.sh configures it). profanity connects over
# STARTTLS trusting the server's certificate (`tls trust`): the test server's is self-signed.
set -euo pipefail
host=$1 port=$2

if ! command -v profanity >/dev/null 2>&1; then
    echo "== installing profanity (Debian)"
    (apt-get -o DPkg::Lock::Timeout=600 update -qq &&
        apt-get -o DPkg::Lock::Timeout=600 install -y -qq profanity) >/dev/null
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/confab-profanity.XXXXXX")
sock="confab-profanity-$$"
# shellcheck source=tests/interop/tmux_lib.sh
. "$(dirname "$0")/tmux_lib.sh"
cleanup() {
    tm kill-server 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

domain=${PROF_ALICE#*@}
room="prof$RANDOM$RANDOM@conference.$domain"

# Each profanity has a home of its own (config, logs, OMEMO keys).
start() {
    local who=$1 jid=$2 pw=$3
    mkdir -p "$work/$who"
    printf '%s' "$pw" >"$work/$who.pw"
    chmod 600 "$work/$who.pw"
    tm new-session -d -s "$who" -x 200 -y 50 \
        "env HOME=$(printf '%q' "$work/$who") XDG_CONFIG_HOME=$(printf '%q' "$work/$who/.config") XDG_DATA_HOME=$(printf '%q' "$work/$who/.local/share") TERM=xterm-256color profanity; echo 'profanity exited'; sleep 600"
    wait_for "$who" "Type /help for help" >/dev/null || true
    say "$who" "/connect $jid server $host port $port tls trust"
    wait_for "$who" "password" >/dev/null || true
    # The password through a tmux buffer, not on a command line.
    tm load-buffer -b "pw-$who" "$work/$who.pw"
    tm paste-buffer -d -b "pw-$who" -t "$who"
    tm send-keys -t "$who" Enter
}
start alice "$PROF_ALICE" "$PROF_ALICE_PASSWORD"
start bob "$PROF_BOB" "$PROF_BOB_PASSWORD"
check "alice logs in with profanity" wait_for alice "logged in successfully"
check "bob logs in with profanity" wait_for bob "logged in successfully"

# An instant room (XEP-0045 §10.1.2): created locked, the defaults accepted.
say alice "/join $room nick alice"
check "alice creates the room (owner, locked until configured)" \
    wait_for alice "You have joined the room as alice, role: moderator, affiliation: owner"
check "  ...profanity offers the instant room" wait_for alice "Room locked, requires configuration"
say alice "/room accept"
check "  ...alice accepts the defaults" wait_for alice "Room unlocked"
say alice "said before bob came"
check "alice's message comes back to her" wait_for alice "alice: said before bob came"

say bob "/join $room nick bob"
check "bob joins as participant" \
    wait_for bob "You have joined the room as bob, role: participant, affiliation: none"
check "  ...and gets the earlier message as history" wait_for bob "alice: said before bob came"

say alice "hello bob"
check "bob reads alice" wait_for bob "alice: hello bob"
say bob "hello alice"
check "alice reads bob" wait_for alice "bob: hello alice"

say bob "/nick robert"
check "alice sees bob's nick change" wait_for alice "bob is now known as robert"
say bob "robert now"
check "  ...and his messages under the new nick" wait_for alice "robert: robert now"

say alice "/kick robert go away"
check "alice kicks robert: he is told" wait_for bob "Kicked from $room by alice, reason: go away"
check "  ...alice sees him go" wait_for alice "robert has been kicked from the room by alice"

say bob "/join $room nick bob"
# A line typed before the join completes goes to another window and is lost: bob says it
# again until it arrives (at most three times).
back() {
    local _
    for _ in 1 2 3; do
        say bob "back again"
        wait_for alice "bob: back again" 5 >/dev/null && return 0
    done
    wait_for alice "bob: back again" 1
}
check "bob comes back and talks" back
say alice "/ban $PROF_BOB trolling"
check "alice bans bob: he is told" wait_for bob "Banned from $room by alice, reason: trolling"
check "  ...alice sees it" wait_for alice "bob has been banned from the room by alice"
say bob "/join $room nick bob"
check "bob's next join is refused (forbidden)" \
    wait_for bob "Error joining room $room, reason: forbidden"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
