#!/usr/bin/env python3
"""Interop: rosters, subscriptions and presence between two slixmpp clients via Confab.

alice adds bob and asks for his presence; bob (slixmpp auto-authorize) approves; both
rosters show the right subscription states; bob's presence reaches alice; bob's status
change reaches alice; when bob disconnects alice sees him unavailable; alice removes bob
from her roster and the subscription is cancelled on both sides.
"""

import asyncio

import slixmpp
from xmpp_common import check, login, next_matching, run_main


def presence_from(bare, ptype):
    return lambda p: p["from"].bare == bare and p["type"] == ptype


async def run(args):
    alice = await login("alice", args.alice, args.alice_password, args, auto_authorize=True)
    bob = await login("bob", args.bob, args.bob_password, args, auto_authorize=True)
    if not (alice and bob):
        return
    a_bare, b_bare = slixmpp.JID(args.alice).bare, slixmpp.JID(args.bob).bare
    try:
        for c in (alice, bob):
            await c.get_roster()
            c.send_presence()
        alice.update_roster(b_bare, name="Bob", groups=["Friends"])
        alice.send_presence(pto=b_bare, ptype="subscribe")
        got = await next_matching(alice.presences, presence_from(b_bare, "subscribed"))
        check("bob's client approves alice's request (alice gets subscribed)", got is not None)
        got = await next_matching(alice.presences, presence_from(b_bare, "available"))
        check("alice then receives bob's presence", got is not None)
        await asyncio.sleep(0.3)
        await alice.get_roster()
        item = alice.client_roster[b_bare]
        check("alice's roster: bob with subscription 'to', name and group",
              item["subscription"] in ("to", "both") and item["name"] == "Bob"
              and item["groups"] == ["Friends"],
              f"subscription={item['subscription']} name={item['name']} groups={item['groups']}")
        await bob.get_roster()
        check("bob's roster: alice with subscription 'from'",
              bob.client_roster[a_bare]["subscription"] in ("from", "both"),
              f"subscription={bob.client_roster[a_bare]['subscription']}")
        bob.send_presence(pshow="dnd", pstatus="busy")
        got = await next_matching(alice.presences,
                                  lambda p: p["from"].bare == b_bare and p["show"] == "dnd")
        check("bob's status change reaches alice", got is not None and got["status"] == "busy")
        # alice is not subscribed to by bob: bob must not see alice's presence changes.
        alice.send_presence(pshow="away", pstatus="not for bob")
        leaked = await next_matching(bob.presences,
                                     lambda p: p["from"].bare == a_bare and p["show"] == "away",
                                     timeout=1.0)
        check("alice's presence does not leak to bob (no subscription)", leaked is None)
        await bob.close()
        got = await next_matching(alice.presences, presence_from(b_bare, "unavailable"))
        check("bob's disconnect is broadcast as unavailable", got is not None)
        alice.del_roster_item(b_bare)
        await asyncio.sleep(0.5)
        await alice.get_roster()
        check("bob removed from alice's roster", b_bare not in alice.client_roster.keys()
              or alice.client_roster[b_bare]["subscription"] == "remove")
        bob2 = await login("bob again", args.bob, args.bob_password, args)
        if bob2:
            await bob2.get_roster()
            sub = bob2.client_roster[a_bare]["subscription"] if a_bare in bob2.client_roster.keys() else "none"
            check("the removal cancelled bob's 'from' subscription", sub == "none", f"subscription={sub}")
            await bob2.close()
    finally:
        await alice.close()
        await bob.close()


if __name__ == "__main__":
    run_main(__doc__, run)
