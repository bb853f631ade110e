#!/usr/bin/env python3
"""Interop scenario: two people with real clients (slixmpp) use Confab end to end.

Phase 1: both register in-band, add each other (subscriptions both ways), see each other's
presence and chat; then bob goes offline and alice sends him a message.
(The runner now kills the server with SIGKILL and starts it again.)
Phase 2: bob logs in and receives the message sent before the crash, with a delay stamp;
bob blocks alice: alice's next message is refused and never arrives; bob unblocks her.
"""

import asyncio
import json
import secrets

import slixmpp
from xmpp_common import check, login, next_matching, run_main


def add_args(p):
    p.add_argument("--phase", type=int, choices=(1, 2), required=True)
    p.add_argument("--state", required=True, help="file passing accounts from phase 1 to 2")


def presence_from(bare, ptype):
    return lambda p: p["from"].bare == bare and p["type"] == ptype


def is_chat(body):
    return lambda m: m["type"] in ("chat", "normal") and m["body"] == body


async def phase1(args):
    tag = secrets.token_hex(4)
    st = {"alice": f"alice-{tag}@localhost", "bob": f"bob-{tag}@localhost",
          "alice_pw": secrets.token_hex(8), "bob_pw": secrets.token_hex(8),
          "offline_body": f"sent while you were away {tag}"}
    alice = await login("alice registers in-band", st["alice"], st["alice_pw"], args, register=True)
    bob = await login("bob registers in-band", st["bob"], st["bob_pw"], args, register=True)
    if not (alice and bob):
        return
    try:
        for c in (alice, bob):
            await c.get_roster()
            c.send_presence()
        alice.send_presence(pto=st["bob"], ptype="subscribe")
        bob.send_presence(pto=st["alice"], ptype="subscribe")
        got_b = await next_matching(alice.presences, presence_from(st["bob"], "available"))
        got_a = await next_matching(bob.presences, presence_from(st["alice"], "available"))
        check("they add each other and see each other's presence", got_a is not None and got_b is not None)
        alice.send_message(mto=st["bob"], mbody="hi bob", mtype="chat")
        m = await next_matching(bob.messages, is_chat("hi bob"))
        check("bob receives alice's chat message", m is not None)
        bob.send_message(mto=m["from"] if m else st["alice"], mbody="hi alice", mtype="chat")
        check("alice receives bob's reply", await next_matching(alice.messages, is_chat("hi alice")) is not None)
        await bob.close()
        check("alice sees bob go offline",
              await next_matching(alice.presences, presence_from(st["bob"], "unavailable")) is not None)
        alice.send_message(mto=st["bob"], mbody=st["offline_body"], mtype="chat")
        err = await next_matching(alice.messages, lambda m: m["type"] == "error", timeout=1.0)
        check("the message to offline bob is accepted (no error)", err is None)
        await asyncio.sleep(0.5)
    finally:
        await alice.close()
        await bob.close()
    with open(args.state, "w") as f:
        json.dump(st, f)


async def phase2(args):
    with open(args.state) as f:
        st = json.load(f)
    bob = await login("bob logs in after the crash", st["bob"], st["bob_pw"], args,
                      plugins=("xep_0203", "xep_0191"))
    alice = await login("alice logs in after the crash", st["alice"], st["alice_pw"], args)
    if not (alice and bob):
        return
    try:
        bob.send_presence()
        m = await next_matching(bob.messages, is_chat(st["offline_body"]))
        check("bob receives the message sent before the crash", m is not None)
        if m is not None:
            check("  ...with a delay stamp", m["delay"]["stamp"] is not None)
        alice.send_presence()
        await bob.get_roster()
        check("the roster survived the crash",
              bob.client_roster[st["alice"]]["subscription"] == "both",
              str(bob.client_roster[st["alice"]]["subscription"]))
        await bob.plugin["xep_0191"].block([st["alice"]])
        alice.send_message(mto=st["bob"], mbody="can you hear me", mtype="chat")
        err = await next_matching(alice.messages, lambda m: m["type"] == "error")
        check("a blocked sender's message is refused", err is not None)
        leaked = await next_matching(bob.messages, is_chat("can you hear me"), timeout=1.0)
        check("  ...and never reaches bob", leaked is None)
        await bob.plugin["xep_0191"].unblock([st["alice"]])
        alice.send_message(mto=st["bob"], mbody="and now?", mtype="chat")
        check("after unblocking, messages arrive again",
              await next_matching(bob.messages, is_chat("and now?")) is not None)
    finally:
        await alice.close()
        await bob.close()


async def run(args):
    await (phase1(args) if args.phase == 1 else phase2(args))


if __name__ == "__main__":
    run_main(__doc__, run, add_args=add_args, need_passwords=False)
