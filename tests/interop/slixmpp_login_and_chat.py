#!/usr/bin/env python3
"""Interop test: log in to a running Confab server with slixmpp and exchange messages.

Checks, each counted as passed or failed:
  * alice and bob log in over STARTTLS (c2s port) with SASL SCRAM-SHA-256 (forced) and
    get a bound full JID;
  * initial presence is reflected to the sending resource (RFC 6121 4.2.2);
  * after initial presence, alice sends a chat message to bob's *bare* JID and bob
    receives it with the right body and from = alice's full JID;
  * bob replies to alice's full JID and alice receives it (from = bob's full JID);
  * one client logs in with direct TLS (XEP-0368) on the tls port;
  * a login with a wrong password fails (SASL <failure/>, no session).
"""

import uuid

import slixmpp
from xmpp_common import (DEFAULT_MECH as MECH, STEP_TIMEOUT, check, login, next_item,
                         next_matching, run_main, try_login)


async def login_checked(name, jid, password, args, direct_tls=False):
    """Log in with the forced mechanism over one way in, and check how the stream was set up;
    returns the client (connected) or None."""
    way = "direct TLS" if direct_tls else "STARTTLS"
    c = await login(f"{name} (over {way} with {MECH})", jid, password, args,
                    direct_tls=direct_tls, mech=MECH)
    if c is None:
        return None
    check(f"{name}: authenticated with {MECH}", c.used_mech == MECH,
          f"mechanism used was {c.used_mech!r}")
    if direct_tls:
        check(f"{name}: stream is TLS from the start (no STARTTLS)",
              c.is_tls() and "starttls" not in c.features,
              f"tls={c.is_tls()} features={sorted(c.features)}")
    else:
        check(f"{name}: stream upgraded with STARTTLS",
              c.is_tls() and "starttls" in c.features,
              f"tls={c.is_tls()} features={sorted(c.features)}")
    b = c.boundjid
    check(f"{name}: session bound to a full JID ({b.full})",
          bool(b.resource) and b.bare == slixmpp.JID(jid).bare,
          f"bound JID {b.full!r}, expected {slixmpp.JID(jid).bare}/<resource>")
    return c


async def run(args):
    alice = await login_checked("alice", args.alice, args.alice_password, args)
    bob = await login_checked("bob", args.bob, args.bob_password, args)
    try:
        if alice and bob:
            # Initial presence, so messages to the bare JID are routed to these sessions.
            # RFC 6121 4.2.2: the server broadcasts initial presence to all of the user's
            # available resources, including the sender; waiting for that echo also means
            # bob's presence was processed before alice's message is routed to his bare JID.
            for c in (alice, bob):
                c.send_presence()
            for name, c in (("alice", alice), ("bob", bob)):
                own = c.boundjid.full
                got = await next_matching(
                    c.presences, lambda p: p["from"].full == own and p["type"] == "available")
                check(f"{name}: initial presence reflected to the sending resource",
                      got is not None, f"no presence from {own} within {STEP_TIMEOUT:.0f}s")

            body1 = f"hello bob {uuid.uuid4().hex[:8]}"
            alice.send_message(mto=slixmpp.JID(args.bob).bare, mbody=body1, mtype="chat")
            msg = await next_item(bob.chats)
            if check("bob receives alice's message to his bare JID", msg is not None,
                     f"nothing within {STEP_TIMEOUT:.0f}s"):
                check("  ...with the right body", msg["body"] == body1,
                      f"got {msg['body']!r}, expected {body1!r}")
                check("  ...from alice's full JID", msg["from"].full == alice.boundjid.full,
                      f"from={msg['from'].full!r}, expected {alice.boundjid.full!r}")
                check("  ...of type chat", msg["type"] == "chat", f"type={msg['type']!r}")

            body2 = f"hi alice {uuid.uuid4().hex[:8]}"
            bob.send_message(mto=alice.boundjid.full, mbody=body2, mtype="chat")
            msg = await next_item(alice.chats)
            if check("alice receives bob's reply to her full JID", msg is not None,
                     f"nothing within {STEP_TIMEOUT:.0f}s"):
                check("  ...with the right body", msg["body"] == body2,
                      f"got {msg['body']!r}, expected {body2!r}")
                check("  ...from bob's full JID", msg["from"].full == bob.boundjid.full,
                      f"from={msg['from'].full!r}, expected {bob.boundjid.full!r}")
        else:
            check("message exchange", False, "skipped: a login failed")
    finally:
        for c in (alice, bob):
            if c:
                await c.close()

    # Direct TLS (XEP-0368) on the tls port.
    d = await login_checked("alice (direct TLS)", args.alice, args.alice_password, args,
                            direct_tls=True)
    if d:
        await d.close()

    # Wrong password: SASL must fail and no session may start.
    w, failure = await try_login(args.bob, args.bob_password + "-wrong", args, mech=MECH)
    if w is not None:
        check("wrong password is refused", False, "a session started")
        await w.close()
    elif failure[0] == "sasl":
        check("wrong password is refused", True)
        check("  ...with SASL <not-authorized/>", failure[1] == "not-authorized",
              f"condition {failure[1]!r}")
    else:
        check("wrong password is refused", False, f"no SASL failure: {failure[0]}: {failure[1]}")


if __name__ == "__main__":
    run_main(__doc__, run)
