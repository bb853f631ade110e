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

The server's self-signed certificate is accepted (verification disabled).
Exit status 0 only if every check passed; the last line printed is `N passed, M failed`.
The whole run is bounded by --timeout seconds (default 60).

Usage:
  slixmpp_blocking.py --host 127.0.0.1 --port 5222 --tls-port 5223 \
      --alice alice@localhost --bob bob@localhost
Passwords come from the environment (ALICE_PASSWORD, BOB_PASSWORD) or the
--alice-password/--bob-password options.
"""

import argparse
import asyncio
import logging
import os
import signal
import ssl
import sys
import uuid

import slixmpp

STEP_TIMEOUT = 15.0
QUIET = 2.0

PASSED = 0
FAILED = 0


def check(name, ok, detail=""):
    global PASSED, FAILED
    if ok:
        PASSED += 1
        print(f"PASS {name}", flush=True)
    else:
        FAILED += 1
        print(f"FAIL {name}{': ' + detail if detail else ''}", flush=True)
    return ok


class Client(slixmpp.ClientXMPP):
    """Records session start, messages and errors so the test can await them."""

    def __init__(self, jid, password, host, port, presence=True):
        super().__init__(jid, password)
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0191")
        self.pushes = asyncio.Queue()
        self.add_event_handler("blocked", lambda iq: self.pushes.put_nowait(("block", iq)))
        self.add_event_handler("unblocked", lambda iq: self.pushes.put_nowait(("unblock", iq)))
        self.target = (host, port)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.ssl_context = ctx
        self.enable_direct_tls = False
        self.enable_starttls = True
        self.enable_plaintext = False
        self.presence = presence
        self.messages = asyncio.Queue()
        self.errors = asyncio.Queue()
        self.session_started = asyncio.get_running_loop().create_future()
        self.add_event_handler("session_start", self._on_session_start)
        self.add_event_handler("message", self._on_message)
        self.add_event_handler("failed_all_auth", self._on_failed)

    def _on_session_start(self, _event):
        if self.presence:
            self.send_presence()
        if not self.session_started.done():
            self.session_started.set_result(True)

    def _on_failed(self, _event=None):
        if not self.session_started.done():
            self.session_started.set_result(False)

    def _on_message(self, msg):
        if msg["type"] == "error":
            self.errors.put_nowait(msg)
        elif msg["type"] in ("chat", "normal"):
            self.messages.put_nowait(msg)

    async def close(self):
        try:
            await asyncio.wait_for(self.disconnect(wait=1.0), 3)
        except Exception:  # noqa: BLE001 - best effort
            pass


async def login(name, jid, password, args, presence=True):
    c = Client(jid, password, args.host, args.port, presence)
    c.connect(*c.target)
    try:
        ok = await asyncio.wait_for(asyncio.shield(c.session_started), STEP_TIMEOUT)
    except asyncio.TimeoutError:
        ok = False
    if not check(f"{name}: logs in", bool(ok)):
        await c.close()
        return None
    return c


async def get(queue, timeout):
    try:
        return await asyncio.wait_for(queue.get(), timeout)
    except asyncio.TimeoutError:
        return None


async def run(args):
    domain = slixmpp.JID(args.bob).domain
    alice_bare = slixmpp.JID(args.alice).bare
    bob_bare = slixmpp.JID(args.bob).bare
    alice = await login("alice", args.alice, args.alice_password, args)
    bob = await login("bob", args.bob, args.bob_password, args)
    try:
        if not (alice and bob):
            return
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
        push = await get(bob.pushes, STEP_TIMEOUT)
        check("  ...and gets the block push", push is not None and push[0] == "block"
              and [str(i["jid"]) for i in push[1]["block"]] == [alice_bare],
              f"{push}")
        blocked = await bob.plugin["xep_0191"].get_blocked_jids(timeout=STEP_TIMEOUT)
        check("block list holds alice", blocked == {slixmpp.JID(alice_bare)}, f"{blocked}")

        body = f"are you there {uuid.uuid4().hex[:8]}"
        alice.send_message(mto=bob_bare, mbody=body, mtype="chat")
        err = await get(alice.errors, STEP_TIMEOUT)
        check("alice's message to bob bounces", err is not None,
              f"no error within {STEP_TIMEOUT:.0f}s")
        if err is not None:
            check("  ...with service-unavailable", err["error"]["condition"]
                  == "service-unavailable", f"{err['error']['condition']!r}")
        msg = await get(bob.messages, QUIET)
        check("  ...and never reaches bob", msg is None,
              f"bob got {msg['body']!r}" if msg is not None else "")

        bob.send_message(mto=alice_bare, mbody="psst", mtype="chat")
        err = await get(bob.errors, STEP_TIMEOUT)
        check("bob's message to blocked alice is refused", err is not None,
              f"no error within {STEP_TIMEOUT:.0f}s")
        if err is not None:
            cond = err["error"]["condition"]
            app = err["error"].xml.find("{urn:xmpp:blocking:errors}blocked")
            check("  ...with not-acceptable and <blocked/>", cond == "not-acceptable"
                  and app is not None, f"condition {cond!r}, blocked={app is not None}")
        msg = await get(alice.messages, QUIET)
        check("  ...and never reaches alice", msg is None,
              f"alice got {msg['body']!r}" if msg is not None else "")

        await bob.plugin["xep_0191"].unblock(slixmpp.JID(alice_bare), timeout=STEP_TIMEOUT)
        push = await get(bob.pushes, STEP_TIMEOUT)
        check("bob unblocks alice and gets the unblock push",
              push is not None and push[0] == "unblock", f"{push}")
        body = f"hello again {uuid.uuid4().hex[:8]}"
        alice.send_message(mto=bob_bare, mbody=body, mtype="chat")
        msg = await get(bob.messages, STEP_TIMEOUT)
        check("after unblocking, alice's message reaches bob",
              msg is not None and msg["body"] == body,
              f"got {msg['body']!r}" if msg is not None else "nothing")
    finally:
        for c in (alice, bob):
            if c:
                await c.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True, help="STARTTLS c2s port")
    p.add_argument("--tls-port", type=int, required=True, help="direct TLS c2s port (unused)")
    p.add_argument("--alice", default="alice@localhost")
    p.add_argument("--alice-password", default=os.environ.get("ALICE_PASSWORD"))
    p.add_argument("--bob", default="bob@localhost")
    p.add_argument("--bob-password", default=os.environ.get("BOB_PASSWORD"))
    p.add_argument("--timeout", type=float, default=60.0, help="overall limit, seconds")
    p.add_argument("-v", "--verbose", action="store_true", help="slixmpp debug log (stanzas)")
    args = p.parse_args()
    if not args.alice_password or not args.bob_password:
        p.error("passwords needed (--alice-password/--bob-password or ALICE_/BOB_PASSWORD)")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.ERROR,
                        format="%(levelname)-8s %(name)s %(message)s")

    def on_alarm(_signum, _frame):
        check(f"finished within {args.timeout:.0f}s", False, "hard timeout")
        print(f"{PASSED} passed, {FAILED} failed", flush=True)
        os._exit(1)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(args.timeout) + 5)

    async def bounded():
        try:
            await asyncio.wait_for(run(args), args.timeout)
        except asyncio.TimeoutError:
            check(f"finished within {args.timeout:.0f}s", False, "overall timeout")

    try:
        asyncio.run(bounded())
    except Exception as e:  # noqa: BLE001 - report, never crash without the summary
        check("test run", False, f"unexpected {type(e).__name__}: {e}")
    signal.alarm(0)
    print(f"{PASSED} passed, {FAILED} failed", flush=True)
    sys.exit(0 if FAILED == 0 and PASSED > 0 else 1)


if __name__ == "__main__":
    main()
