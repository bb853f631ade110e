#!/usr/bin/env python3
"""Interop test: XEP-0280 Message Carbons against a running Confab server, with slixmpp's
xep_0280 plugin on two devices of one account.

Checks, each counted as passed or failed:
  * the server announces urn:xmpp:carbons:2; both of alice's devices enable carbons;
  * bob writes to alice's first device: it gets the message, the second device a
    `received` carbon forwarding it unchanged (from bob);
  * alice answers from the first device: bob gets it, the second device a `sent` carbon.
"""

import asyncio
import uuid

from xmpp_common import STEP_TIMEOUT, check, iq_attempt, login, next_item, run_main

PLUGINS = ("xep_0030", "xep_0280")


async def run(args):
    bob = await login("bob", args.bob, args.bob_password, args, mech=None, presence=True)
    if not bob:
        return
    devices = []
    try:
        for name in ("first", "second"):
            c = await login(f"alice's {name} device", args.alice, args.alice_password, args,
                            plugins=PLUGINS, mech=None, presence=True)
            if not c:
                return
            devices.append(c)
        first, second = devices
        info, err = await iq_attempt(first.plugin["xep_0030"].get_info(jid=first.boundjid.domain),
                                     "disco#info of the server")
        if info is not None:
            features = info["disco_info"]["features"]
            check("server announces carbons", "urn:xmpp:carbons:2" in features, f"{features}")
        for name, c in (("first", first), ("second", second)):
            _, err = await iq_attempt(c.plugin["xep_0280"].enable(), f"{name} enables carbons")
            check(f"alice's {name} device enables carbons", err is None, f"{err}")

        received, sent = asyncio.Queue(), asyncio.Queue()
        second.add_event_handler("carbon_received", received.put_nowait)
        second.add_event_handler("carbon_sent", sent.put_nowait)

        text = f"to the first device {uuid.uuid4().hex[:8]}"
        bob.send_message(mto=first.boundjid.full, mbody=text, mtype="chat")
        msg = await next_item(first.chats)
        check("the first device gets bob's message", msg is not None and msg["body"] == text)
        carbon = await next_item(received)
        if check("the second device gets a received carbon", carbon is not None,
                 f"nothing within {STEP_TIMEOUT:.0f}s"):
            inner = carbon["carbon_received"]
            check("  ...forwarding bob's message", inner["body"] == text
                  and inner["from"] == bob.boundjid, f"{inner}")

        answer = f"from the first device {uuid.uuid4().hex[:8]}"
        first.send_message(mto=bob.boundjid.full, mbody=answer, mtype="chat")
        msg = await next_item(bob.chats)
        check("bob gets alice's answer", msg is not None and msg["body"] == answer)
        carbon = await next_item(sent)
        if check("the second device gets a sent carbon", carbon is not None,
                 f"nothing within {STEP_TIMEOUT:.0f}s"):
            inner = carbon["carbon_sent"]
            check("  ...forwarding alice's answer", inner["body"] == answer
                  and inner["to"] == bob.boundjid, f"{inner}")
    finally:
        for c in devices:
            await c.close()
        await bob.close()


if __name__ == "__main__":
    run_main(__doc__, run)
