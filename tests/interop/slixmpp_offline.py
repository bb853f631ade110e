#!/usr/bin/env python3
"""Interop test: XEP-0160 offline messages against a running Confab server, with slixmpp.

Checks, each counted as passed or failed:
  * the server advertises `msgoffline` in its disco#info (XEP-0160 §4);
  * alice sends two chat messages to bob while bob has no session; she gets no error;
  * bob logs in and sends initial presence; he receives both messages, in order, from
    alice's full JID, each with an XEP-0203 delay element from the server's domain;
  * bob logs in again: nothing is delivered a second time (deleted after delivery).
"""

import uuid

import slixmpp
from xmpp_common import QUIET, STEP_TIMEOUT, check, login, next_item, run_main

PLUGINS = ("xep_0030", "xep_0203")


async def run(args):
    domain = slixmpp.JID(args.bob).domain
    bob_bare = slixmpp.JID(args.bob).bare
    alice = await login("alice", args.alice, args.alice_password, args, plugins=PLUGINS,
                        mech=None, presence=True)
    if not alice:
        return
    try:
        info = await alice.plugin["xep_0030"].get_info(jid=domain, timeout=STEP_TIMEOUT)
        features = info["disco_info"]["features"]
        check("server advertises msgoffline", "msgoffline" in features, f"{features}")

        bodies = [f"offline {i} {uuid.uuid4().hex[:8]}" for i in range(2)]
        for b in bodies:
            alice.send_message(mto=bob_bare, mbody=b, mtype="chat")
        err = await next_item(alice.errors, QUIET)
        check("messages to offline bob are accepted (no error)", err is None,
              f"got error {err}" if err is not None else "")
        alice_full = alice.boundjid.full
    finally:
        await alice.close()

    bob = await login("bob", args.bob, args.bob_password, args, plugins=PLUGINS, mech=None,
                      presence=True)
    if not bob:
        return
    try:
        for i, b in enumerate(bodies):
            msg = await next_item(bob.chats)
            if not check(f"bob receives offline message {i + 1} after presence",
                         msg is not None, f"nothing within {STEP_TIMEOUT:.0f}s"):
                break
            check("  ...in order with the right body", msg["body"] == b,
                  f"got {msg['body']!r}, expected {b!r}")
            check("  ...from alice's full JID", msg["from"].full == alice_full,
                  f"from={msg['from'].full!r}")
            delay = msg["delay"]
            check("  ...with an XEP-0203 delay stamp", bool(delay["stamp"]), f"{msg}")
            check("  ...delay from the server's domain", delay["from"] == slixmpp.JID(domain),
                  f"delay from={delay['from']!r}")
    finally:
        await bob.close()

    bob = await login("bob (second login)", args.bob, args.bob_password, args,
                      plugins=PLUGINS, mech=None, presence=True)
    if not bob:
        return
    try:
        msg = await next_item(bob.chats, QUIET)
        check("second login gets nothing again", msg is None,
              f"got {msg['body']!r}" if msg is not None else "")
    finally:
        await bob.close()


if __name__ == "__main__":
    run_main(__doc__, run)
