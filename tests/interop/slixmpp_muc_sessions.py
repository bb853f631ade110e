#!/usr/bin/env python3
"""Interop test: several sessions under one nick (XEP-0045 §7.2.2) and occupants retracting
their own messages (XEP-0424 in a room) against a running Confab server, with slixmpp's
xep_0045, xep_0313 and xep_0424 plugins.

Checks, each counted as passed or failed:
  * bob's second resource joins under his nick and shares the occupant: alice still sees
    one "bob" (another user under a taken nick is a conflict: the Rust tests cover it);
  * a groupchat message and a private message to "bob" reach both of bob's sessions;
  * one of bob's sessions leaves: "bob" stays in the room and his other session still gets
    the room's messages;
  * bob retracts his own message with xep_0424: alice gets the retraction with bob's
    occupant JID; the archive then holds a tombstone without the body;
  * alice may not retract bob's message (forbidden), and bob's message stays.
"""

import asyncio
import uuid

import slixmpp
from slixmpp.exceptions import PresenceError
from xmpp_common import STEP_TIMEOUT, check, iq_attempt, login, next_matching, run_main

PLUGINS = ("xep_0030", "xep_0045", "xep_0004", "xep_0059", "xep_0297", "xep_0313",
           "xep_0359", "xep_0421", "xep_0424")
SID = "urn:xmpp:sid:0"
RETRACT = "urn:xmpp:message-retract:1"


def room_sid(msg, room):
    ids = [el.get("id") for el in msg.xml.findall(f"{{{SID}}}stanza-id")
           if el.get("by") == str(room)]
    return ids[0] if len(ids) == 1 else None


async def archive(client, room):
    out = []
    try:
        async for m in client.plugin["xep_0313"].iterate(jid=room, rsm={"max": 20}):
            out.append(m["mam_result"]["forwarded"]["stanza"])
            if len(out) > 100:
                break
    except Exception as e:  # noqa: BLE001 - an IQ error ends the iteration
        check("room archive query", False, f"{type(e).__name__}: {e}")
    return out


async def run(args):
    domain = slixmpp.JID(args.alice).domain
    room = slixmpp.JID(f"sessions-{uuid.uuid4().hex[:8]}@conference.{domain}")
    alice = await login("alice", args.alice, args.alice_password, args, plugins=PLUGINS,
                        mech=None, presence=True)
    bob1 = await login("bob", args.bob, args.bob_password, args, plugins=PLUGINS, mech=None,
                       presence=True)
    bob2 = await login("bob again", args.bob, args.bob_password, args, plugins=PLUGINS,
                       mech=None, presence=True)
    clients = (alice, bob1, bob2)
    try:
        if not all(clients):
            return
        queues = {c: asyncio.Queue() for c in clients}
        pms = {c: asyncio.Queue() for c in clients}
        errors = asyncio.Queue()
        retractions = asyncio.Queue()
        for c in clients:
            c.add_event_handler(f"muc::{room}::message", queues[c].put_nowait)
            c.add_event_handler(
                "message", lambda m, q=pms[c]: q.put_nowait(m)
                if m["type"] in ("chat", "normal") and m["from"].bare == room else None)
        alice.add_event_handler("groupchat_message_error", errors.put_nowait)
        alice.add_event_handler("message_retract", retractions.put_nowait)
        try:
            await alice.plugin["xep_0045"].join_muc_wait(room, "alice", timeout=STEP_TIMEOUT)
            form, _err = await iq_attempt(alice.plugin["xep_0045"].get_room_config(room),
                                          "configuration form")
            if form is not None:
                await iq_attempt(alice.plugin["xep_0045"].set_room_config(room, form),
                                 "configuration")
            await bob1.plugin["xep_0045"].join_muc_wait(room, "bob", timeout=STEP_TIMEOUT)
        except (PresenceError, asyncio.TimeoutError) as e:
            check("alice creates the room and bob joins", False, repr(e))
            return
        try:
            own, _s, _o, _h = await bob2.plugin["xep_0045"].join_muc_wait(
                room, "bob", timeout=STEP_TIMEOUT)
            check("bob's second resource joins under the same nick",
                  own["from"] == slixmpp.JID(f"{room}/bob"), str(own))
        except (PresenceError, asyncio.TimeoutError) as e:
            check("bob's second resource joins under the same nick", False, repr(e))
            return
        await asyncio.sleep(0.3)
        roster = alice.plugin["xep_0045"].get_roster(room)
        check("  ...alice sees one bob", sorted(roster) == ["alice", "bob"], str(roster))

        tag = uuid.uuid4().hex[:6]
        text = f"to both bobs {tag}"
        alice.send_message(mto=room, mbody=text, mtype="groupchat")
        for name, c in (("first", bob1), ("second", bob2)):
            got = await next_matching(queues[c], lambda m, t=text: m["body"] == t)
            check(f"a groupchat message reaches bob's {name} session", got is not None)
        text = f"psst {tag}"
        alice.send_message(mto=slixmpp.JID(f"{room}/bob"), mbody=text, mtype="chat")
        for name, c in (("first", bob1), ("second", bob2)):
            got = await next_matching(pms[c], lambda m, t=text: m["body"] == t)
            check(f"a private message to bob reaches his {name} session", got is not None
                  and got["from"] == slixmpp.JID(f"{room}/alice"), str(got))

        bob1.plugin["xep_0045"].leave_muc(room, "bob")
        await asyncio.sleep(0.5)
        roster = alice.plugin["xep_0045"].get_roster(room)
        check("one of bob's sessions leaves: bob stays in the room", "bob" in roster, str(roster))
        text = f"still there {tag}"
        alice.send_message(mto=room, mbody=text, mtype="groupchat")
        got = await next_matching(queues[bob2], lambda m, t=text: m["body"] == t)
        check("  ...his other session still gets the room's messages", got is not None)

        # XEP-0424: bob retracts his own message; alice may not retract it.
        text = f"oops {tag}"
        bob2.send_message(mto=room, mbody=text, mtype="groupchat")
        echo = await next_matching(queues[bob2], lambda m, t=text: m["body"] == t)
        sid = room_sid(echo, room) if echo is not None else None
        check("bob's message comes back with the room's stanza id", sid is not None, str(echo))
        keep = f"keep {tag}"
        bob2.send_message(mto=room, mbody=keep, mtype="groupchat")
        echo = await next_matching(queues[bob2], lambda m, t=keep: m["body"] == t)
        keep_sid = room_sid(echo, room) if echo is not None else None
        alice.plugin["xep_0424"].send_retraction(room, keep_sid, mtype="groupchat")
        err = await next_matching(errors, lambda m: True)
        check("alice may not retract bob's message (forbidden)", err is not None
              and err["error"]["condition"] == "forbidden", str(err))
        bob2.plugin["xep_0424"].send_retraction(room, sid, mtype="groupchat")
        got = await next_matching(retractions, lambda m: m["retract"]["id"] == sid)
        check("bob retracts his own message: alice is told", got is not None
              and got["from"] == slixmpp.JID(f"{room}/bob"), str(got))
        stored = await archive(alice, room)
        tomb = [m for m in stored if m.xml.find(f"{{{RETRACT}}}retracted") is not None]
        check("  ...the archive keeps a tombstone without the body", len(tomb) == 1
              and not tomb[0]["body"], str(tomb))
        check("  ...and the message alice could not retract",
              any(m["body"] == keep for m in stored), str([m["body"] for m in stored]))
    finally:
        for c in clients:
            if c:
                await c.close()


if __name__ == "__main__":
    run_main(__doc__, run)
