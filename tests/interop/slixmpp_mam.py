#!/usr/bin/env python3
"""Interop test: XEP-0313 Message Archive Management against a running Confab server, with
slixmpp's xep_0313 plugin (and its XEP-0059 paging).

Checks, each counted as passed or failed:
  * alice's account announces urn:xmpp:mam:2 and urn:xmpp:sid:0;
  * alice and bob exchange messages; each delivered message carries a stanza id by the
    recipient's account;
  * alice pages through the conversation with bob, two at a time, forwards: every message,
    in the order sent; backwards: the same in reverse;
  * bob's archive lists the stanza ids he was given with the messages he received;
  * urn:xmpp:mam:2#extended is announced and the archive metadata (XEP-0313 §6) names
    bob's first and last message;
  * XEP-0441 preferences with slixmpp's xep_0441: bob's default is "always"; bob sets
    "never alice", reads it back, and alice's next message is delivered without a stanza
    id and is missing from bob's archive but present in alice's.
"""

import uuid

from xmpp_common import check, iq_attempt, login, next_item, run_main
import slixmpp

PLUGINS = ("xep_0030", "xep_0059", "xep_0297", "xep_0313", "xep_0441")
EXTENDED = "urn:xmpp:mam:2#extended"
SID_NS = "urn:xmpp:sid:0"


def stanza_id(msg, by):
    for el in msg.xml.findall(f"{{{SID_NS}}}stanza-id"):
        if el.get("by") == by:
            return el.get("id")
    return None


def body_of(result):
    return result["mam_result"]["forwarded"]["stanza"]["body"]


async def collect(client, **kw):
    out = []
    try:
        async for m in client.plugin["xep_0313"].iterate(**kw):
            out.append(m)
            if len(out) > 100:
                break
    except Exception as e:  # noqa: BLE001 - an IQ error ends the iteration
        check("archive query", False, f"{type(e).__name__}: {e}")
    return out


async def run(args):
    alice = await login("alice", args.alice, args.alice_password, args, plugins=PLUGINS,
                        mech=None, presence=True)
    if not alice:
        return
    bob = await login("bob", args.bob, args.bob_password, args, plugins=PLUGINS,
                      mech=None, presence=True)
    if not bob:
        await alice.close()
        return
    try:
        info, _ = await iq_attempt(alice.plugin["xep_0030"].get_info(jid=alice.boundjid.bare),
                                   "disco#info of alice's account")
        if info is not None:
            features = info["disco_info"]["features"]
            check("the account announces MAM and stanza ids",
                  "urn:xmpp:mam:2" in features and SID_NS in features, f"{features}")
            check("  ...and the extended queries", EXTENDED in features, f"{features}")

        tag = uuid.uuid4().hex[:6]
        sent, bob_ids = [], []
        for i in range(5):
            if i % 2 == 0:
                text = f"alice {i} {tag}"
                alice.send_message(mto=bob.boundjid.bare, mbody=text, mtype="chat")
                msg = await next_item(bob.chats)
                ok = msg is not None and msg["body"] == text
                check(f"bob gets message {i}", ok, f"{msg}")
                sid = stanza_id(msg, bob.boundjid.bare) if ok else None
                check(f"  ...with a stanza id by {bob.boundjid.bare}", sid is not None, f"{msg}")
                bob_ids.append(sid)
            else:
                text = f"bob {i} {tag}"
                bob.send_message(mto=alice.boundjid.bare, mbody=text, mtype="chat")
                msg = await next_item(alice.chats)
                ok = msg is not None and msg["body"] == text
                check(f"alice gets message {i}", ok, f"{msg}")
                check("  ...with a stanza id by alice's account",
                      ok and stanza_id(msg, alice.boundjid.bare) is not None, f"{msg}")
            sent.append(text)

        bob_bare = slixmpp.JID(bob.boundjid.bare)
        forwards = await collect(alice, with_jid=bob_bare, rsm={"max": 2})
        got = [body_of(m) for m in forwards]
        check("alice pages forwards through the conversation in order", got == sent,
              f"{got}")
        backwards = await collect(alice, with_jid=bob_bare, rsm={"max": 2}, reverse=True)
        got = [body_of(m) for m in backwards]
        check("  ...and backwards", got == list(reversed(sent)), f"{got}")

        theirs = await collect(bob, with_jid=slixmpp.JID(alice.boundjid.bare),
                               rsm={"max": 10})
        received = [m["mam_result"]["id"] for m in theirs
                    if m["mam_result"]["forwarded"]["stanza"]["from"].bare
                    == alice.boundjid.bare]
        check("bob's archive has the stanza ids he was given", received == bob_ids,
              f"{received} vs {bob_ids}")

        # Archive metadata: bob's first and last message.
        meta, _ = await iq_attempt(bob.plugin["xep_0313"].get_archive_metadata(),
                                   "archive metadata")
        if meta is not None:
            start = meta["mam_metadata"]["start"]["id"]
            end = meta["mam_metadata"]["end"]["id"]
            all_ids = [m["mam_result"]["id"] for m in theirs]
            check("the metadata names bob's first and last message",
                  all_ids and start == all_ids[0] and end == all_ids[-1],
                  f"{start} {end} vs {all_ids}")

        # XEP-0441 preferences.
        prefs = bob.plugin["xep_0441"]
        try:
            default, _, _ = await prefs.get_preferences()
            check("bob's default preference is always", default == "always", f"{default}")
            await prefs.set_preferences(default="always", always=[],
                                        never=[slixmpp.JID(alice.boundjid.bare)])
            default, always, never = await prefs.get_preferences()
            check("bob's preferences read back as set",
                  default == "always" and [str(j) for j in never] == [alice.boundjid.bare],
                  f"{default} {always} {never}")
        except Exception as e:  # noqa: BLE001
            check("archiving preferences", False, f"{type(e).__name__}: {e}")
        text = f"unarchived {tag}"
        alice.send_message(mto=bob.boundjid.bare, mbody=text, mtype="chat")
        msg = await next_item(bob.chats)
        check("bob gets alice's message", msg is not None and msg["body"] == text, f"{msg}")
        check("  ...without a stanza id (bob's archive leaves alice out)",
              msg is not None and stanza_id(msg, bob.boundjid.bare) is None, f"{msg}")
        theirs = await collect(bob, with_jid=slixmpp.JID(alice.boundjid.bare),
                               rsm={"max": 20})
        check("  ...and it is not in bob's archive",
              text not in [body_of(m) for m in theirs], "")
        mine = await collect(alice, with_jid=bob_bare, rsm={"max": 20})
        check("  ...but it is in alice's", text in [body_of(m) for m in mine], "")
        try:
            await prefs.set_preferences(default="always", always=[], never=[])
        except Exception as e:  # noqa: BLE001
            check("resetting the preferences", False, f"{type(e).__name__}: {e}")
    finally:
        await alice.close()
        await bob.close()


if __name__ == "__main__":
    run_main(__doc__, run)
