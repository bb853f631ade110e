#!/usr/bin/env python3
"""Interop test: XEP-0198 Stream Management against a running Confab server, with
slixmpp's xep_0198 plugin.

Checks, each counted as passed or failed:
  * the server offers stream management and enables it with resumption (an id);
  * bob receives alice's messages; the server acknowledges what bob sends (`stanza_acked`);
  * bob's TCP connection is cut without a closing stream; alice sends him a message
    meanwhile (no error: the session waits for him);
  * bob reconnects and resumes the session (`session_resumed`), keeping his full JID;
  * he gets the message sent while he was away, and nothing he had already handled again.
"""

import asyncio
import uuid

import slixmpp
from xmpp_common import QUIET, STEP_TIMEOUT, check, login, next_item, run_main, wait_result

PLUGINS = ("xep_0198",)


async def run(args):
    loop = asyncio.get_running_loop()
    alice = await login("alice", args.alice, args.alice_password, args, mech=None,
                        presence=True)
    if not alice:
        return
    bob = None
    try:
        bob = await login("bob", args.bob, args.bob_password, args, plugins=PLUGINS,
                          mech=None, presence=False)
        if not bob:
            return
        sm = bob.plugin["xep_0198"]
        enabled = loop.create_future()
        resumed = loop.create_future()
        acked = asyncio.Queue()
        bob.add_event_handler("sm_enabled", lambda s: enabled.done() or enabled.set_result(s))
        bob.add_event_handler("session_resumed",
                              lambda s: resumed.done() or resumed.set_result(s))
        bob.add_event_handler("stanza_acked", acked.put_nowait)
        # Enabling happens right after binding; it may already be done.
        ok = sm.enabled_in or await wait_result(enabled) is not None
        check("server enables stream management", ok, "no <enabled/>")
        check("  ...with resumption (an id)", bool(sm.sm_id), f"sm_id={sm.sm_id!r}")
        bob.send_presence()
        bob_full = bob.boundjid.full

        before = [f"before {i} {uuid.uuid4().hex[:8]}" for i in range(3)]
        for b in before:
            alice.send_message(mto=bob_full, mbody=b, mtype="chat")
        for i, b in enumerate(before):
            msg = await next_item(bob.chats)
            check(f"bob receives message {i + 1}", msg is not None and msg["body"] == b,
                  f"got {msg['body'] if msg is not None else None!r}")
        bob.send_message(mto=alice.boundjid.full, mbody="hello alice", mtype="chat")
        sm.request_ack()
        got = await next_item(acked)
        check("the server acknowledges what bob sent", got is not None,
              f"no stanza_acked within {STEP_TIMEOUT:.0f}s")
        msg = await next_item(alice.chats)
        check("alice receives bob's message", msg is not None and msg["body"] == "hello alice")
        # Everything bob received so far is acknowledged (what a phone does before sleeping).
        sm.send_ack()
        await asyncio.sleep(0.5)

        # The connection dies without </stream:stream>.
        disconnected = loop.create_future()
        bob.add_event_handler("disconnected",
                              lambda _e: disconnected.done() or disconnected.set_result(True))
        bob.transport.abort()
        await wait_result(disconnected)
        away = f"while away {uuid.uuid4().hex[:8]}"
        alice.send_message(mto=bob_full, mbody=away, mtype="chat")
        err = await next_item(alice.errors, QUIET)
        check("a message to the waiting session is accepted (no error)", err is None,
              f"got error {err}" if err is not None else "")

        bob.connect(*bob.target)
        r = await wait_result(resumed)
        check("bob resumes his session", r is not None, "no <resumed/>")
        check("  ...with the same full JID", bob.boundjid.full == bob_full,
              f"{bob.boundjid.full} != {bob_full}")
        msg = await next_item(bob.chats)
        check("bob gets the message sent while he was away",
              msg is not None and msg["body"] == away,
              f"got {msg['body'] if msg is not None else None!r}")
        extra = await next_item(bob.chats, QUIET)
        check("nothing he had handled comes again", extra is None,
              f"got {extra['body'] if extra is not None else None!r}")
    finally:
        if bob is not None:
            await bob.close()
        await alice.close()


if __name__ == "__main__":
    run_main(__doc__, run)
