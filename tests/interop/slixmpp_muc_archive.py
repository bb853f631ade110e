#!/usr/bin/env python3
"""Interop test: a room's archive and ids on conference.<domain> against a running Confab
server, with slixmpp's xep_0045, xep_0313 (XEP-0313 for MUC), xep_0199 (XEP-0410 self-ping)
and xep_0425 (moderation) plugins.

Checks, each counted as passed or failed:
  * the room announces MAM, stanza ids, occupant ids, self-ping and moderation;
  * every groupchat message comes back with one stanza id by the room and the sender's
    occupant id, the same as on the sender's presence;
  * a self-ping of one's own occupant JID is answered; of a room one is not in, refused;
  * bob pages through the room's archive two at a time, forwards and backwards: every
    message in order, from the occupant JIDs, with the stanza ids the room gave them;
  * alice (the owner, who may see real JIDs) filters the archive by bob's real JID; bob
    (semi-anonymous room) may not (forbidden); the room announces `#extended` and its
    archive metadata names the first and last message;
  * alice (moderator) retracts bob's message with xep_0425: bob gets the retraction, and
    the archive then holds a tombstone without the body; bob may not moderate.
"""

import asyncio
import uuid

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout, PresenceError
from xmpp_common import STEP_TIMEOUT, check, iq_attempt, login, next_matching, run_main

PLUGINS = ("xep_0030", "xep_0045", "xep_0004", "xep_0059", "xep_0297", "xep_0313",
           "xep_0199", "xep_0359", "xep_0421", "xep_0424", "xep_0425")
SID = "urn:xmpp:sid:0"
OID = "urn:xmpp:occupant-id:0"
RETRACT = "urn:xmpp:message-retract:1"
FEATURES = ("urn:xmpp:mam:2", "urn:xmpp:mam:2#extended", SID, OID, "http://jabber.org/protocol/muc#self-ping-optimization",
            "urn:xmpp:message-moderate:1")


def room_sid(msg, room):
    ids = [el.get("id") for el in msg.xml.findall(f"{{{SID}}}stanza-id")
           if el.get("by") == str(room)]
    return ids[0] if len(ids) == 1 else None


def occupant_id(stanza):
    el = stanza.xml.find(f"{{{OID}}}occupant-id")
    return el.get("id") if el is not None else None


async def collect(client, room, **kw):
    out = []
    try:
        async for m in client.plugin["xep_0313"].iterate(jid=room, **kw):
            out.append(m)
            if len(out) > 100:
                break
    except Exception as e:  # noqa: BLE001 - an IQ error ends the iteration
        check("room archive query", False, f"{type(e).__name__}: {e}")
    return out


def forwarded(result):
    return result["mam_result"]["forwarded"]["stanza"]


async def run(args):
    domain = slixmpp.JID(args.alice).domain
    room = slixmpp.JID(f"archive-{uuid.uuid4().hex[:8]}@conference.{domain}")
    alice = await login("alice", args.alice, args.alice_password, args, plugins=PLUGINS,
                        mech=None, presence=True)
    bob = await login("bob", args.bob, args.bob_password, args, plugins=PLUGINS, mech=None,
                      presence=True)
    try:
        if not (alice and bob):
            return
        a_msgs, b_msgs = asyncio.Queue(), asyncio.Queue()
        alice.add_event_handler(f"muc::{room}::message", a_msgs.put_nowait)
        bob.add_event_handler(f"muc::{room}::message", b_msgs.put_nowait)
        moderated = asyncio.Queue()
        bob.add_event_handler("moderated_message", moderated.put_nowait)
        try:
            await alice.plugin["xep_0045"].join_muc_wait(room, "alice", timeout=STEP_TIMEOUT)
            form, err = await iq_attempt(alice.plugin["xep_0045"].get_room_config(room),
                                         "configuration form")
            if form is not None:
                await iq_attempt(alice.plugin["xep_0045"].set_room_config(room, form),
                                 "configuration")
            bob_pres, _s, _o, _h = await bob.plugin["xep_0045"].join_muc_wait(
                room, "bob", timeout=STEP_TIMEOUT)
        except (PresenceError, asyncio.TimeoutError) as e:
            check("alice creates the room and bob joins", False, repr(e))
            return
        info, err = await iq_attempt(bob.plugin["xep_0030"].get_info(jid=room),
                                     "disco#info of the room")
        features = info["disco_info"]["features"] if info else []
        check("the room announces MAM (#extended), stanza ids, occupant ids, self-ping, moderation",
              all(f in features for f in FEATURES), f"{features} {err}")
        bob_oid = occupant_id(bob_pres)
        check("bob's own presence carries his occupant id", bob_oid is not None, str(bob_pres))

        tag = uuid.uuid4().hex[:6]
        sent, sids = [], []
        for i, (who, queue, nick) in enumerate([(alice, a_msgs, "alice"), (bob, b_msgs, "bob"),
                                                (alice, a_msgs, "alice"), (bob, b_msgs, "bob"),
                                                (alice, a_msgs, "alice")]):
            text = f"{nick} {i} {tag}"
            who.send_message(mto=room, mbody=text, mtype="groupchat")
            echo = await next_matching(queue, lambda m, t=text: m["body"] == t)
            sid = room_sid(echo, room) if echo is not None else None
            check(f"message {i} comes back with one stanza id by the room", sid is not None,
                  str(echo))
            if nick == "bob":
                check("  ...and bob's occupant id", echo is not None
                      and occupant_id(echo) == bob_oid, str(echo))
            sent.append(text)
            sids.append(sid)

        # XEP-0410 self-ping.
        try:
            await bob.plugin["xep_0199"].ping(jid=slixmpp.JID(f"{room}/bob"),
                                             timeout=STEP_TIMEOUT)
            check("bob's self-ping is answered", True)
        except (IqError, IqTimeout) as e:
            check("bob's self-ping is answered", False, repr(e))
        try:
            await bob.plugin["xep_0199"].ping(
                jid=slixmpp.JID(f"nowhere-{tag}@conference.{domain}/bob"), timeout=STEP_TIMEOUT)
            check("a self-ping in a room bob is not in is refused", False, "answered")
        except IqError as e:
            check("a self-ping in a room bob is not in is refused (not-acceptable)",
                  e.iq["error"]["condition"] == "not-acceptable", str(e.iq))
        except IqTimeout as e:
            check("a self-ping in a room bob is not in is refused", False, repr(e))

        # The room's archive, forwards and backwards, two at a time.
        got = await collect(bob, room, rsm={"max": 2})
        check("bob pages forwards through the room's archive", [forwarded(m)["body"] for m in got]
              == sent, str([forwarded(m)["body"] for m in got]))
        check("  ...with the stanza ids the room gave", [m["mam_result"]["id"] for m in got]
              == sids, f"{[m['mam_result']['id'] for m in got]} vs {sids}")
        check("  ...from the occupant JIDs", [forwarded(m)["from"].resource for m in got]
              == ["alice", "bob", "alice", "bob", "alice"])
        got = await collect(bob, room, rsm={"max": 2}, reverse=True)
        check("  ...and backwards", [forwarded(m)["body"] for m in got] == sent[::-1],
              str([forwarded(m)["body"] for m in got]))

        # XEP-0313 §6: `with` a real JID, for those who may see them; metadata.
        got = await collect(alice, room, with_jid=slixmpp.JID(args.bob), rsm={"max": 10})
        check("alice filters the archive by bob's real JID",
              [forwarded(m)["body"] for m in got] == [sent[1], sent[3]],
              str([forwarded(m)["body"] for m in got]))
        try:
            await bob.plugin["xep_0313"].retrieve(jid=room, with_jid=slixmpp.JID(args.alice),
                                                  timeout=STEP_TIMEOUT)
            check("bob may not filter by a real JID", False, "answered")
        except IqError as e:
            check("bob may not filter by a real JID (forbidden)",
                  e.iq["error"]["condition"] == "forbidden", str(e.iq))
        except IqTimeout as e:
            check("bob may not filter by a real JID", False, repr(e))
        meta, err = await iq_attempt(bob.plugin["xep_0313"].get_archive_metadata(room),
                                     "archive metadata")
        ends = (meta["mam_metadata"]["start"]["id"], meta["mam_metadata"]["end"]["id"]) \
            if meta is not None else None
        check("the archive's metadata names its first and last message",
              ends == (sids[0], sids[-1]), f"{ends} vs {sids} {err}")

        # Moderation.
        try:
            await bob.plugin["xep_0425"].moderate(room, sids[0], "not mine",
                                                  timeout=STEP_TIMEOUT)
            check("bob may not moderate", False, "accepted")
        except IqError as e:
            check("bob may not moderate (forbidden)",
                  e.iq["error"]["condition"] == "forbidden", str(e.iq))
        except IqTimeout as e:
            check("bob may not moderate", False, repr(e))
        try:
            await alice.plugin["xep_0425"].moderate(room, sids[1], "spam",
                                                    timeout=STEP_TIMEOUT)
            check("alice retracts bob's message", True)
        except (IqError, IqTimeout) as e:
            check("alice retracts bob's message", False, repr(e))
        try:
            ev = await asyncio.wait_for(moderated.get(), STEP_TIMEOUT)
            check("  ...bob is told which message", ev["retract"]["id"] == sids[1]
                  and ev["retract"]["moderated"]["by"] == slixmpp.JID(f"{room}/alice"), str(ev))
        except asyncio.TimeoutError:
            check("  ...bob is told", False, "no moderated_message event")
        got = await collect(bob, room, rsm={"max": 10})
        tomb = [forwarded(m) for m in got if m["mam_result"]["id"] == sids[1]]
        check("  ...the archive keeps a tombstone without the body", len(tomb) == 1
              and not tomb[0]["body"]
              and tomb[0].xml.find(f"{{{RETRACT}}}retracted") is not None, str(tomb))
    finally:
        for c in (alice, bob):
            if c:
                await c.close()


if __name__ == "__main__":
    run_main(__doc__, run)
