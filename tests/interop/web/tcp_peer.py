"""A slixmpp user on TCP (STARTTLS) that the web interop tests drive over stdin/stdout.

One JSON object per line each way. Out: {"event": "ready", "jid": ...} once logged in with
initial presence, {"event": "message", "from": ..., "body": ...} for each chat message,
{"event": "error", "detail": ...} if login fails (then it exits 1), {"event": "stream_error",
"condition": ...} and {"event": "disconnected"} when the server ends the stream. In: {"cmd": "send",
"to": ..., "body": ...}; {"cmd": "join", "room": ..., "nick": ...} joins a room (XEP-0045,
no history asked) and answers {"event": "joined", "room": ...} or {"event": "join_error", ...};
{"cmd": "groupsend", "room": ..., "body": ...} sends a groupchat message; every groupchat
message with a body (the own reflected ones too) is {"event": "groupchat", "from": ...,
"body": ...}. {"cmd": "quit"} or end of input logs out and exits.

Usage: tcp_peer.py --host H --port P --jid JID [--lifetime S]; password in PEER_PASSWORD.
--lifetime bounds the process even if the driving test hangs.
"""

import argparse
import asyncio
import json
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import xmpp_common  # noqa: E402
from slixmpp import JID  # noqa: E402


def emit(**obj):
    print(json.dumps(obj), flush=True)


async def join(c, room, nick):
    try:
        # Bounded: a room that never answers must fail the test, not hang it.
        muc = c.plugin["xep_0045"]
        # (own presence, subject, other occupants, history)
        presence = (await muc.join_muc_wait(JID(room), nick, maxstanzas=0, timeout=20))[0]
        created = 201 in presence["muc"]["status_codes"]
        if created:
            # A new room stays locked until configured: ask for an instant room (XEP-0045
            # §10.1.2, an empty submitted form).
            await muc.set_room_config(room, c.plugin["xep_0004"].make_form(ftype="submit"), timeout=20)
        emit(event="joined", room=room, created=created)
    except Exception as e:  # noqa: BLE001 - reported to the driving test as it is
        emit(event="join_error", room=room, detail=f"{type(e).__name__}: {e}")


async def main(args):
    # make_client reads host/port/tls_port from an argparse-like object.
    conn = argparse.Namespace(host=args.host, port=args.port, tls_port=None)
    c, failure = await xmpp_common.try_login(args.jid, os.environ["PEER_PASSWORD"], conn)
    if c is None:
        emit(event="error", detail=f"{failure[0]}: {failure[1]}")
        return 1
    c.add_event_handler(
        "message",
        lambda m: xmpp_common.is_chat(m) and m["body"]
        and emit(event="message", **{"from": str(m["from"]), "body": m["body"]}),
    )
    # The admin console test kicks this session: say when the server ends it.
    c.add_event_handler(
        "stream_error",
        lambda e: emit(event="stream_error", condition=e["condition"], text=e["text"]),
    )
    c.add_event_handler("disconnected", lambda _: emit(event="disconnected"))
    c.register_plugin("xep_0045")
    c.add_event_handler(
        "groupchat_message",
        lambda m: m["body"] and emit(event="groupchat", **{"from": str(m["from"]), "body": m["body"]}),
    )
    c.send_presence()
    emit(event="ready", jid=str(c.boundjid.full))
    loop = asyncio.get_running_loop()
    while True:
        # A thread reads stdin so the event loop keeps serving the XMPP stream meanwhile.
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        cmd = json.loads(line)
        if cmd.get("cmd") == "send":
            c.send_message(mto=cmd["to"], mbody=cmd["body"], mtype="chat")
        elif cmd.get("cmd") == "join":
            asyncio.ensure_future(join(c, cmd["room"], cmd["nick"]))
        elif cmd.get("cmd") == "groupsend":
            c.send_message(mto=cmd["room"], mbody=cmd["body"], mtype="groupchat")
        elif cmd.get("cmd") == "quit":
            break
    await c.close()
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True, help="STARTTLS c2s port")
    p.add_argument("--jid", required=True)
    p.add_argument("--lifetime", type=int, default=150)
    args = p.parse_args()
    signal.signal(signal.SIGALRM, lambda _s, _f: os._exit(2))
    signal.alarm(args.lifetime)
    rc = asyncio.run(main(args))
    sys.stdout.flush()
    # The stdin reader thread may still be blocked; do not wait for it.
    os._exit(rc)
