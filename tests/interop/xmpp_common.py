"""Shared pieces of the slixmpp interop scripts: counting checks, a logged-in client, the
standard command line, and a hard overall timeout. Scripts print `N passed, M failed` last."""

import argparse
import asyncio
import logging
import os
import signal
import ssl
import sys

import slixmpp

STEP_TIMEOUT = 15.0
COUNTS = {"passed": 0, "failed": 0}


def check(name, ok, detail=""):
    key = "passed" if ok else "failed"
    COUNTS[key] += 1
    print(f"{'PASS' if ok else 'FAIL'} {name}{'' if ok or not detail else ': ' + detail}", flush=True)
    return ok


class Client(slixmpp.ClientXMPP):
    """STARTTLS + SCRAM-SHA-256 client that accepts the server's self-signed certificate and
    collects presences and messages in queues."""

    def __init__(self, jid, password, host, port, plugins=(), register=False):
        super().__init__(jid, password,
                         plugin_config={"feature_mechanisms": {"use_mech": "SCRAM-SHA-256"}})
        for p in plugins:
            self.register_plugin(p)
        if register:
            # XEP-0077: register the account in-band before authenticating.
            self.register_plugin("xep_0077")
            self.add_event_handler("register", self._register)
        self.target = (host, port)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.ssl_context = ctx
        self.enable_direct_tls = False
        self.enable_starttls = True
        self.enable_plaintext = False
        loop = asyncio.get_running_loop()
        self.session_started = loop.create_future()
        self.presences = asyncio.Queue()
        self.messages = asyncio.Queue()
        self.add_event_handler("session_start", lambda _e: self.session_started.done()
                               or self.session_started.set_result(True))
        self.add_event_handler("presence", self.presences.put_nowait)
        self.add_event_handler("message", self.messages.put_nowait)

    async def _register(self, _form):
        iq = self.Iq()
        iq["type"] = "set"
        iq["register"]["username"] = self.boundjid.user
        iq["register"]["password"] = self.password
        try:
            await iq.send(timeout=STEP_TIMEOUT)
        except Exception as e:  # noqa: BLE001 - reported as a failed login
            check(f"in-band registration of {self.boundjid.bare}", False, str(e))
            self.disconnect()

    async def close(self):
        try:
            await asyncio.wait_for(self.disconnect(wait=1.0), 3)
        except Exception:  # noqa: BLE001 - best effort
            pass


async def login(name, jid, password, args, plugins=(), auto_authorize=True, register=False):
    c = Client(jid, password, args.host, args.port, plugins, register)
    c.roster.auto_authorize = auto_authorize
    c.roster.auto_subscribe = False
    c.connect(*c.target)
    try:
        await asyncio.wait_for(asyncio.shield(c.session_started), STEP_TIMEOUT)
    except asyncio.TimeoutError:
        check(f"{name} logs in", False, "no session")
        await c.close()
        return None
    check(f"{name} logs in as {c.boundjid.full}", True)
    return c


async def next_matching(queue, pred, timeout=STEP_TIMEOUT):
    """The first queued item matching pred within timeout, or None."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = deadline - loop.time()
        if left <= 0:
            return None
        try:
            item = await asyncio.wait_for(queue.get(), left)
        except asyncio.TimeoutError:
            return None
        if pred(item):
            return item


def run_main(doc, run, add_args=None, need_passwords=True):
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls-port", type=int, required=True)
    p.add_argument("--alice", default="alice@localhost")
    p.add_argument("--bob", default="bob@localhost")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("-v", "--verbose", action="store_true")
    if add_args:
        add_args(p)
    args = p.parse_args()
    args.alice_password = os.environ.get("ALICE_PASSWORD")
    args.bob_password = os.environ.get("BOB_PASSWORD")
    if need_passwords and (not args.alice_password or not args.bob_password):
        p.error("ALICE_PASSWORD and BOB_PASSWORD must be set")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.CRITICAL)

    def on_alarm(_s, _f):
        check("finished in time", False, "hard timeout")
        print(f"{COUNTS['passed']} passed, {COUNTS['failed']} failed", flush=True)
        os._exit(1)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(args.timeout) + 5)

    async def bounded():
        try:
            await asyncio.wait_for(run(args), args.timeout)
        except asyncio.TimeoutError:
            check("finished in time", False, "overall timeout")

    try:
        asyncio.run(bounded())
    except Exception as e:  # noqa: BLE001 - always print the summary
        check("test run", False, f"{type(e).__name__}: {e}")
    signal.alarm(0)
    print(f"{COUNTS['passed']} passed, {COUNTS['failed']} failed", flush=True)
    sys.exit(0 if COUNTS["failed"] == 0 and COUNTS["passed"] > 0 else 1)
