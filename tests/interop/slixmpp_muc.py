#!/usr/bin/env python3
"""Interop test: Multi-User Chat (XEP-0045) against a running Confab server, with slixmpp's
xep_0045 plugin, on the conference.<domain> service.

Checks, each counted as passed or failed:
  * the service is listed in the server's disco#items and says it is a MUC service;
  * alice creates a room (status 201), fetches the configuration form and submits it
    (a reserved room), and posts a message before anyone else is there;
  * bob joins late and gets that message as history (delay stamp from the room), then the
    subject;
  * groupchat messages go both ways, reflected to the sender too;
  * bob changes his nick (303 + 110) and alice sees the new nick;
  * alice kicks bob: he gets 307 + 110 and alice sees him go;
  * bob joins again with maxstanzas=2 and gets exactly the last two messages;
  * alice destroys the room and bob is told.
"""

import asyncio
import uuid

import slixmpp
from slixmpp.exceptions import PresenceError
from xmpp_common import STEP_TIMEOUT, check, iq_attempt, login, next_matching, run_main

PLUGINS = ("xep_0030", "xep_0045", "xep_0004", "xep_0203")


def codes(pr):
    return set(pr["muc"]["status_codes"])


class Watch:
    """Queues of a client's MUC events for one room."""

    def __init__(self, client, room):
        self.messages = asyncio.Queue()
        self.presences = asyncio.Queue()
        client.add_event_handler(f"muc::{room}::message", self.messages.put_nowait)
        client.add_event_handler(f"muc::{room}::presence", self.presences.put_nowait)


async def run(args):
    domain = slixmpp.JID(args.alice).domain
    service = f"conference.{domain}"
    room = slixmpp.JID(f"interop-{uuid.uuid4().hex[:8]}@{service}")
    alice = await login("alice", args.alice, args.alice_password, args, plugins=PLUGINS,
                        mech=None, presence=True)
    bob = await login("bob", args.bob, args.bob_password, args, plugins=PLUGINS, mech=None,
                      presence=True)
    try:
        if not (alice and bob):
            return
        items, err = await iq_attempt(alice.plugin["xep_0030"].get_items(jid=domain),
                                      "disco#items of the server")
        jids = [str(i[0]) for i in items["disco_items"]["items"]] if items else []
        check(f"{service} is in the server's disco#items", service in jids, f"{jids} {err}")
        info, err = await iq_attempt(alice.plugin["xep_0030"].get_info(jid=service),
                                     "disco#info of the service")
        features = info["disco_info"]["features"] if info else []
        check("the service speaks MUC", "http://jabber.org/protocol/muc" in features,
              f"{features} {err}")

        a = Watch(alice, room)
        b = Watch(bob, room)
        muc_a = alice.plugin["xep_0045"]
        muc_b = bob.plugin["xep_0045"]

        # Creation: 201, then the configuration form submitted as is (reserved room).
        try:
            pres, _subject, _occ, _hist = await muc_a.join_muc_wait(room, "alice",
                                                                     timeout=STEP_TIMEOUT)
            check("alice creates the room (201, 110)", {110, 201} <= codes(pres),
                  f"{codes(pres)}")
            check("  ...as owner and moderator", pres["muc"]["affiliation"] == "owner"
                  and pres["muc"]["role"] == "moderator", str(pres))
        except (PresenceError, asyncio.TimeoutError) as e:
            check("alice creates the room", False, repr(e))
            return
        form, err = await iq_attempt(muc_a.get_room_config(room), "configuration form")
        check("alice gets the configuration form", form is not None, str(err))
        if form is None:
            return
        form["values"] = {"muc#roomconfig_roomname": "Interop room"}
        _, err = await iq_attempt(muc_a.set_room_config(room, form), "configuration")
        check("alice submits the configuration", err is None, str(err))

        first = f"history {uuid.uuid4().hex[:6]}"
        alice.send_message(mto=room, mbody=first, mtype="groupchat")
        echo = await next_matching(a.messages, lambda m: m["body"] == first)
        check("alice's message is reflected to her", echo is not None)

        # Bob joins late: history with delay, then the subject.
        try:
            pres, subject, occupants, history = await muc_b.join_muc_wait(
                room, "bob", maxstanzas=10, timeout=STEP_TIMEOUT)
            check("bob joins (110, participant)", 110 in codes(pres)
                  and pres["muc"]["role"] == "participant", str(pres))
            check("  ...seeing alice in the room",
                  any(p["muc"]["nick"] == "alice" for p in occupants),
                  str([p["muc"]["nick"] for p in occupants]))
            bodies = [m["body"] for m in history]
            check("  ...with the earlier message as history", bodies == [first], f"{bodies}")
            check("  ...then the subject", subject is not None)
        except (PresenceError, asyncio.TimeoutError) as e:
            check("bob joins", False, repr(e))
            return

        # Both ways.
        hello = f"hello bob {uuid.uuid4().hex[:6]}"
        alice.send_message(mto=room, mbody=hello, mtype="groupchat")
        got = await next_matching(b.messages, lambda m: m["body"] == hello)
        check("bob gets alice's message", got is not None
              and got["from"] == slixmpp.JID(f"{room}/alice"), str(got))
        reply = f"hi alice {uuid.uuid4().hex[:6]}"
        bob.send_message(mto=room, mbody=reply, mtype="groupchat")
        got = await next_matching(a.messages, lambda m: m["body"] == reply)
        check("alice gets bob's message", got is not None
              and got["from"] == slixmpp.JID(f"{room}/bob"), str(got))

        # Nick change.
        try:
            nick = await muc_b.set_self_nick(room, "robert", timeout=STEP_TIMEOUT)
            check("bob changes his nick to robert (303 + 110)", nick == "robert", nick)
        except (TimeoutError, asyncio.TimeoutError) as e:
            check("bob changes his nick", False, repr(e))
        seen = await next_matching(
            a.presences, lambda p: p["from"] == slixmpp.JID(f"{room}/robert")
            and p["type"] != "unavailable")
        check("  ...and alice sees robert", seen is not None)

        # Kick.
        _, err = await iq_attempt(muc_a.set_role(room, "robert", "none", reason="bye"), "kick")
        check("alice kicks robert", err is None, str(err))
        kicked = await next_matching(
            b.presences, lambda p: p["type"] == "unavailable" and 307 in codes(p))
        check("  ...bob is told (307 + 110)", kicked is not None and 110 in codes(kicked),
              str(kicked))
        gone = await next_matching(
            a.presences, lambda p: p["from"] == slixmpp.JID(f"{room}/robert")
            and p["type"] == "unavailable")
        check("  ...alice sees him go (307)", gone is not None and 307 in codes(gone),
              str(gone))

        # Back with a history limit.
        try:
            _pres, _subject, _occ, history = await muc_b.join_muc_wait(
                room, "bob", maxstanzas=2, timeout=STEP_TIMEOUT)
            bodies = [m["body"] for m in history]
            check("bob rejoins with maxstanzas=2 and gets the last two", bodies == [hello, reply],
                  f"{bodies}")
        except (PresenceError, asyncio.TimeoutError) as e:
            check("bob rejoins", False, repr(e))

        _, err = await iq_attempt(muc_a.destroy(room, reason="done"), "destroy")
        check("alice destroys the room", err is None, str(err))
        gone = await next_matching(
            b.presences, lambda p: p["type"] == "unavailable"
            and p.xml.find("{http://jabber.org/protocol/muc#user}x/"
                           "{http://jabber.org/protocol/muc#user}destroy") is not None)
        check("  ...and bob is told", gone is not None)
    finally:
        for c in (alice, bob):
            if c:
                await c.close()


if __name__ == "__main__":
    run_main(__doc__, run)
