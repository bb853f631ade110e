#!/usr/bin/env python3
"""Interop test: XEP-0191 blocking command against a running Confab server, with slixmpp's
xep_0191 plugin.

Checks, each counted as passed or failed:
  * the server advertises urn:xmpp:blocking in its disco#info;
  * bob's block list starts empty; bob blocks alice and gets the block push;
  * the block list then holds alice's bare JID;
  * alice's message to bob gets a service-unavailable error and never reaches bob;
  * bob's message to alice gets not-acceptable with <blocked xmlns='urn:xmpp:blocking:errors'/>
    and never reaches alice;
  * bob unblocks alice (unblock push), and alice's next message reaches bob.
"""

import asyncio
import uuid

import slixmpp
from xmpp_common import QUIET, STEP_TIMEOUT, check, login, next_item, run_main

PLUGINS = ("xep_0030", "xep_0191")


async def run(args):
    domain = slixmpp.JID(args.bob).domain
    alice_bare = slixmpp.JID(args.alice).bare
    bob_bare = slixmpp.JID(args.bob).bare
    alice = await login("alice", args.alice, args.alice_password, args, plugins=PLUGINS,
                        mech=None, presence=True)
    bob = await login("bob", args.bob, args.bob_password, args, plugins=PLUGINS, mech=None,
                      presence=True)
    try:
        if not (alice and bob):
            return
        pushes = asyncio.Queue()
        bob.add_event_handler("blocked", lambda iq: pushes.put_nowait(("block", iq)))
        bob.add_event_handler("unblocked", lambda iq: pushes.put_nowait(("unblock", iq)))
        # Both presences processed before messages are routed to the bare JIDs.
        await asyncio.sleep(0.5)
        info = await bob.plugin["xep_0030"].get_info(jid=domain, timeout=STEP_TIMEOUT)
        features = info["disco_info"]["features"]
        check("server advertises urn:xmpp:blocking", "urn:xmpp:blocking" in features,
              f"{features}")

        blocked = await bob.plugin["xep_0191"].get_blocked_jids(timeout=STEP_TIMEOUT)
        check("bob's block list starts empty", len(blocked) == 0, f"{blocked}")
        await bob.plugin["xep_0191"].block(slixmpp.JID(alice_bare), timeout=STEP_TIMEOUT)
        check("bob blocks alice", True)
        push = await next_item(pushes)
        check("  ...and gets the block push", push is not None and push[0] == "block"
              and [str(i["jid"]) for i in push[1]["block"]] == [alice_bare],
              f"{push}")
        blocked = await bob.plugin["xep_0191"].get_blocked_jids(timeout=STEP_TIMEOUT)
        check("block list holds alice", blocked == {slixmpp.JID(alice_bare)}, f"{blocked}")

        body = f"are you there {uuid.uuid4().hex[:8]}"
        alice.send_message(mto=bob_bare, mbody=body, mtype="chat")
        err = await next_item(alice.errors)
        check("alice's message to bob bounces", err is not None,
              f"no error within {STEP_TIMEOUT:.0f}s")
        if err is not None:
            check("  ...with service-unavailable", err["error"]["condition"]
                  == "service-unavailable", f"{err['error']['condition']!r}")
        msg = await next_item(bob.chats, QUIET)
        check("  ...and never reaches bob", msg is None,
              f"bob got {msg['body']!r}" if msg is not None else "")

        bob.send_message(mto=alice_bare, mbody="psst", mtype="chat")
        err = await next_item(bob.errors)
        check("bob's message to blocked alice is refused", err is not None,
              f"no error within {STEP_TIMEOUT:.0f}s")
        if err is not None:
            cond = err["error"]["condition"]
            app = err["error"].xml.find("{urn:xmpp:blocking:errors}blocked")
            check("  ...with not-acceptable and <blocked/>", cond == "not-acceptable"
                  and app is not None, f"condition {cond!r}, blocked={app is not None}")
        msg = await next_item(alice.chats, QUIET)
        check("  ...and never reaches alice", msg is None,
              f"alice got {msg['body']!r}" if msg is not None else "")

        await bob.plugin["xep_0191"].unblock(slixmpp.JID(alice_bare), timeout=STEP_TIMEOUT)
        push = await next_item(pushes)
        check("bob unblocks alice and gets the unblock push",
              push is not None and push[0] == "unblock", f"{push}")
        body = f"hello again {uuid.uuid4().hex[:8]}"
        alice.send_message(mto=bob_bare, mbody=body, mtype="chat")
        msg = await next_item(bob.chats)
        check("after unblocking, alice's message reaches bob",
              msg is not None and msg["body"] == body,
              f"got {msg['body']!r}" if msg is not None else "nothing")
    finally:
        for c in (alice, bob):
            if c:
                await c.close()


if __name__ == "__main__":
    run_main(__doc__, run)
