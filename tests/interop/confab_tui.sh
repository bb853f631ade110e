#!/usr/bin/env bash
# The terminal client end to end, as a person uses it: two `confab` instances in tmux
# (send-keys in, capture-pane out) against a running confabd. Two users register in-band with
# `confab register`, befriend each other (/add, /accept), see each other online, chat with
# `:)` shown as 🙂, see "typing…" (and its end when the typist pauses) and the delivery
# tick ✓, send a file (/file, XEP-0363 upload) that the other saves (/save) byte-identical,
# count unread messages, join a room and talk there, quit, and page the server's archive
# from a new client (/history, and PageUp past the top).
# Usage: confab_tui.sh HOST PORT CERT_PEM CONFAB_BINARY   (the server must allow registration
# and serve MUC on conference.localhost, as scripts/interop.sh configures it)
set -euo pipefail
host=$1 port=$2 cert=$3 confab=$4

work=$(mktemp -d "${TMPDIR:-/tmp}/confab-tui.XXXXXX")
sock="confab-tui-$$"
# shellcheck source=tests/interop/tmux_lib.sh
. "$(dirname "$0")/tmux_lib.sh"
cleanup() {
    tm kill-server 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

suffix="$RANDOM$RANDOM"
alice="alice$suffix@localhost"
bob="bob$suffix@localhost"
room="room$suffix@conference.localhost"
printf '%s\n' "alice-pw-$suffix-$RANDOM$RANDOM" >"$work/alice.pw"
printf '%s\n' "bob-pw-$suffix-$RANDOM$RANDOM" >"$work/bob.pw"
chmod 600 "$work"/*.pw

conn=(--server "$host:$port" --trust-cert "$cert")
for who in alice bob; do
    jid="${!who}"
    set +e
    out=$(timeout 30 "$confab" "${conn[@]}" --jid "$jid" --password-file "$work/$who.pw" register 2>&1)
    rc=$?
    set -e
    check "confab register $who" [ "$rc:$out" = "0:registered $jid" ] || echo "$out"
done

start() {
    local who=$1 jid=$2
    local cmd
    cmd=$(printf '%q ' "$confab" "${conn[@]}" --jid "$jid" --password-file "$work/${who%%[0-9]*}.pw")
    # The pane stays after confab exits so its status can be read.
    tm new-session -d -s "$who" -x 150 -y 30 \
        "$cmd 2>$(printf '%q' "$work/$who.err"); echo \"confab exited with \$?\"; sleep 600"
}
start alice "$alice"
start bob "$bob"
check "alice's client is online" wait_for alice "$alice [online]"
check "bob's client is online" wait_for bob "$bob [online]"

# Befriending: alice adds bob, bob sees the request and accepts; both then see each other
# online (● before the name).
say alice "/add $bob"
check "bob is asked to be friends" wait_for bob "wants to be friends: /accept $alice"
say bob "/accept $alice"
check "alice sees bob online" wait_for alice "● $bob"
check "bob sees alice online" wait_for bob "● $alice"

# Chat: bob opens the conversation; alice types, bob sees "typing…"; alice sends, bob sees
# the emoticon as emoji and alice sees the delivery tick.
say bob "/msg $alice"
say alice "/msg $bob"
type_in alice "hello bob :) how are you"
check "bob sees alice typing" wait_for bob "$alice is typing…"
tm send-keys -t alice Enter
check "bob gets the message with :) shown as 🙂" wait_for bob "hello bob 🙂 how are you"
check "alice sees the delivery tick" wait_for alice "me: hello bob 🙂 how are you ✓"
check "bob's typing line is gone" wait_gone bob "is typing…"
say bob "fine :thumbsup:"
check "alice gets bob's shortcode as 👍" wait_for alice "fine 👍"

# A file: alice sends one with /file (uploaded to the server's HTTP upload service), bob
# sees its name and URL and saves it with /save.
head -c 40000 /dev/urandom >"$work/the file.bin"
mkdir "$work/inbox"
say alice "/file $work/the file.bin"
check "bob sees the file alice sent" wait_for bob ": [file] the file.bin"
check "  ...with its URL" wait_for bob "/the%20file.bin"
check "alice sees the file she sent" wait_for alice "me: [file] the file.bin"
say bob "/save $work/inbox"
check "bob saves it" wait_for bob "saved $work/inbox/the file.bin (40000 bytes)"
check "the saved file is byte-identical" cmp -s "$work/the file.bin" "$work/inbox/the file.bin"

# A group chat room: both join, alice talks, bob reads.
say alice "/join $room al"
check "alice joined the room" wait_for alice "joined $room"
say bob "/join $room bo"
check "bob joined the room" wait_for bob "joined $room"
check "alice sees bob enter" wait_for alice "bo joined"
say alice "hi room :D"
check "bob reads alice in the room" wait_for bob "al: hi room 😃"

# Unread: bob is in the room when alice writes to him one-to-one; his roster counts it.
say alice "/msg $bob"
say alice "are you there?"
check "bob's roster counts one unread message" wait_for bob "$alice (1)"

# Typing that stops: composing, then paused after a few idle seconds (XEP-0085 §5.2); bob's
# roster shows ✎ while alice types.
type_in alice "let me think"
check "bob's roster shows alice typing" wait_for bob "$alice (1) ✎"
check "alice's pause ends bob's typing mark" wait_gone bob "✎" 15
tm send-keys -t alice Escape
# Until Escape has cleared the input: an ESC read together with the next key is taken as
# Alt+key (a terminal's ambiguity), so "/quit" typed at once could be appended instead.
check "Escape clears alice's input" wait_gone alice "let me think" 5

say alice "/quit"
say bob "/quit"
check "alice's client exits cleanly" wait_for alice "confab exited with 0"
check "bob's client exits cleanly" wait_for bob "confab exited with 0"

# Scroll-back: a new client has nothing shown until /history pages the server's archive.
start alice2 "$alice"
check "alice's new client is online" wait_for alice2 "$alice [online]"
say alice2 "/msg $bob"
say alice2 "/history"
check "/history shows alice's own message from the archive" wait_for alice2 "me: hello bob 🙂 how are you (earlier)"
check "/history shows bob's reply from the archive" wait_for alice2 "$bob: fine 👍 (earlier)"
say alice2 "/quit"
check "alice's new client exits cleanly" wait_for alice2 "confab exited with 0"

# PageUp past the top of a conversation pages the archive as well.
start alice3 "$alice"
check "alice's third client is online" wait_for alice3 "$alice [online]"
say alice3 "/msg $bob"
tm send-keys -t alice3 PPage
check "PageUp at the top shows bob's reply from the archive" wait_for alice3 "$bob: fine 👍 (earlier)"
say alice3 "/quit"
check "alice's third client exits cleanly" wait_for alice3 "confab exited with 0"

if [ "$failed" != 0 ]; then
    for who in alice bob alice2 alice3; do
        echo "--- $who's stderr:"
        cat "$work/$who.err" 2>/dev/null || true
    done
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
