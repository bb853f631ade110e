#!/usr/bin/env python3
"""Interop test: XEP-0352 Client State Indication against a running Confab server, with
slixmpp's xep_0352 plugin.

Checks, each counted as passed or failed:
  * the server offers client state indication;
  * while bob is inactive, alice's presence updates to him wait;
  * a message with a body arrives with only the latest presence before it;
  * inactive again, a presence waits until bob says he is active.
"""

import asyncio
import uuid

from xmpp_common import QUIET, check, login, next_item, run_main

PLUGINS = ("xep_0352",)


def presence_of(q, alice_jid):
    """Presence stanzas from alice only (bob's own presence comes back to him too)."""
    async def get(timeout):
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            p = await next_item(q, max(0.01, end - loop.time()))
            if p is None or p["from"] == alice_jid:
                return p
    return get


async def run(args):
    alice = await login("alice", args.alice, args.alice_password, args, mech=None,
                        presence=True)
    if not alice:
        return
    bob = None
    try:
        bob = await login("bob", args.bob, args.bob_password, args, plugins=PLUGINS,
                          mech=None, presence=True)
        if not bob:
            return
        offered = any("csi" in f for f in bob.offered)
        check("server offers client state indication", offered, f"{bob.offered}")
        from_alice = presence_of(bob.presences, alice.boundjid)
        await asyncio.sleep(0.5)
        while not bob.presences.empty():
            bob.presences.get_nowait()

        bob.plugin["xep_0352"].send_inactive()
        await asyncio.sleep(0.3)
        for s in ("away 1", "away 2"):
            alice.send_presence(pto=bob.boundjid.full, pstatus=s, pshow="away")
        p = await from_alice(QUIET)
        check("an inactive client gets no presence at once", p is None,
              f"got {p['status'] if p is not None else None!r}")

        text = f"wake up {uuid.uuid4().hex[:8]}"
        alice.send_message(mto=bob.boundjid.full, mbody=text, mtype="chat")
        msg = await next_item(bob.chats)
        check("a message with a body arrives", msg is not None and msg["body"] == text)
        got = []
        while True:
            p = await from_alice(0.5)
            if p is None:
                break
            got.append(p["status"])
        check("  ...with only the latest presence before it", got == ["away 2"], f"{got}")

        bob.plugin["xep_0352"].send_inactive()
        await asyncio.sleep(0.3)
        alice.send_presence(pto=bob.boundjid.full, pstatus="away 3", pshow="away")
        p = await from_alice(QUIET)
        check("inactive again: the presence waits", p is None)
        bob.plugin["xep_0352"].send_active()
        p = await from_alice(5)
        check("active: the presence comes", p is not None and p["status"] == "away 3",
              f"{p['status'] if p is not None else None!r}")
    finally:
        if bob is not None:
            await bob.close()
        await alice.close()


if __name__ == "__main__":
    run_main(__doc__, run)
