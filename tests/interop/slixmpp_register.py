#!/usr/bin/env python3
"""Interop test: XEP-0077 In-Band Registration against a running Confab server with slixmpp.

Needs `[registration] policy = "open"` on the server (scripts/interop.sh sets it).

Checks, each counted as passed or failed:
  * the encrypted stream offers the iq-register stream feature;
  * a brand new account carol<random> is registered in-band with slixmpp's xep_0077 plugin,
    and slixmpp then logs in with it on the same stream;
  * registering an existing username (alice's) fails with <conflict/>;
  * once logged in, the registration query answers <registered/>;
  * the password is changed in-band; the old password no longer logs in, the new one does;
  * the account is removed in-band: the removal is acknowledged, the server then closes the
    stream, and the account can no longer log in.

The server's self-signed certificate is accepted (verification disabled).
Exit status 0 only if every check passed; the last line printed is `N passed, M failed`.
The whole run is bounded by --timeout seconds (default 60).

Usage:
  slixmpp_register.py --host 127.0.0.1 --port 5222 --tls-port 5223 \
      --alice alice@localhost --bob bob@localhost
Passwords come from --alice-password/--bob-password or ALICE_PASSWORD / BOB_PASSWORD.
"""

import argparse
import asyncio
import logging
import os
import secrets
import signal
import ssl
import sys

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.stanza import StreamFeatures

STEP_TIMEOUT = 15.0

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


def summary_and_exit():
    print(f"{PASSED} passed, {FAILED} failed", flush=True)
    sys.exit(0 if FAILED == 0 and PASSED > 0 else 1)


def insecure_ssl_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Client(slixmpp.ClientXMPP):
    """A STARTTLS client; with register=True it registers its JID in-band before SASL."""

    def __init__(self, jid, password, host, port, register=False):
        super().__init__(jid, password)
        self.target = (host, port)
        self.ssl_context = insecure_ssl_context()
        self.enable_direct_tls = False
        self.enable_starttls = True
        self.enable_plaintext = False
        self.register_plugin("xep_0077")
        loop = asyncio.get_running_loop()
        self.session_started = loop.create_future()
        self.auth_failed = loop.create_future()
        self.disconnected_fut = loop.create_future()
        self.registered = loop.create_future()
        # Offered stream features, per <stream:features/> received.
        self.offered = []
        self.add_filter("in", self._record_features)
        self.add_event_handler("failed_auth", self._on_failed_auth)
        self.add_event_handler("failed_all_auth", self._on_failed_auth)
        self.add_event_handler("session_start", self._on_session_start)
        self.add_event_handler("disconnected", self._on_disconnected)
        if register:
            self.add_event_handler("register", self._on_register)

    def _record_features(self, stanza):
        if isinstance(stanza, StreamFeatures):
            self.offered.append(set(stanza["features"]))
        return stanza

    async def _on_register(self, form):
        form_fields = form["register"]
        resp = self.Iq()
        resp["type"] = "set"
        resp["register"]["username"] = self.boundjid.user
        resp["register"]["password"] = self.password
        try:
            await resp.send(timeout=STEP_TIMEOUT)
            outcome = ("result", form_fields)
        except IqError as e:
            outcome = (e.iq["error"]["condition"], form_fields)
        except IqTimeout:
            outcome = ("timeout", form_fields)
        if not self.registered.done():
            self.registered.set_result(outcome)
        if outcome[0] != "result":
            self.disconnect()

    def _on_failed_auth(self, _stanza=None):
        if not self.auth_failed.done():
            self.auth_failed.set_result(True)

    def _on_session_start(self, _event):
        if not self.session_started.done():
            self.session_started.set_result(True)

    def _on_disconnected(self, _event):
        if not self.disconnected_fut.done():
            self.disconnected_fut.set_result(True)

    def start(self):
        self.connect(*self.target)

    async def close(self):
        try:
            await asyncio.wait_for(self.disconnect(wait=1.0), 3)
        except Exception:  # noqa: BLE001 - best effort
            pass


async def wait(fut, timeout=STEP_TIMEOUT):
    try:
        return await asyncio.wait_for(asyncio.shield(fut), timeout)
    except asyncio.TimeoutError:
        return None


async def try_login(jid, password, host, port):
    """A connected client if the login worked, else None (and the client is closed)."""
    c = Client(jid, password, host, port)
    c.start()
    done, _ = await asyncio.wait([c.session_started, c.auth_failed, c.disconnected_fut],
                                 timeout=STEP_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
    if c.session_started in done:
        return c
    await c.close()
    return None


async def run(args):
    host, port = args.host, args.port
    domain = slixmpp.JID(args.alice).domain
    carol = f"carol{secrets.token_hex(4)}@{domain}"
    pw1 = "first-" + secrets.token_hex(8)
    pw2 = "second-" + secrets.token_hex(8)

    # Register a brand new account, then log in with it on the same stream.
    c = Client(carol, pw1, host, port, register=True)
    c.start()
    outcome = await wait(c.registered)
    offered = [sorted(f) for f in c.offered]
    check("iq-register stream feature offered only after STARTTLS",
          len(c.offered) >= 2 and "register" not in c.offered[0]
          and "register" in c.offered[1], f"offered {offered}")
    if outcome is None:
        check(f"register {carol} in-band", False, f"no outcome within {STEP_TIMEOUT:.0f}s")
        await c.close()
        return
    cond, form = outcome
    check("registration form asks for username and password",
          "username" in form.get_fields() and "password" in form.get_fields(),
          f"form fields {sorted(form.get_fields())}")
    if not check(f"register {carol} in-band", cond == "result", f"error {cond!r}"):
        await c.close()
        return
    ok = await wait(c.session_started)
    check("login with the new account on the same stream", ok is not None,
          "no session started")
    if ok is None:
        await c.close()
        return

    # XEP-0077 3.1: an authenticated entity is registered.
    try:
        iq = await c.plugin["xep_0077"].get_registration(timeout=STEP_TIMEOUT)
        check("registration query after login answers <registered/>",
              bool(iq["register"]["registered"]), str(iq))
    except (IqError, IqTimeout) as e:
        check("registration query after login answers <registered/>", False, repr(e))

    # Change the password in-band.
    try:
        await c.plugin["xep_0077"].change_password(pw2, timeout=STEP_TIMEOUT)
        check("password changed in-band", True)
    except IqError as e:
        check("password changed in-band", False, e.iq["error"]["condition"])
    except IqTimeout:
        check("password changed in-band", False, "timeout")
    await c.close()

    old = await try_login(carol, pw1, host, port)
    check("old password no longer logs in", old is None)
    if old:
        await old.close()
    c = await try_login(carol, pw2, host, port)
    if not check("new password logs in", c is not None):
        return

    # Remove the account: acknowledged, then the server ends the stream.
    try:
        await c.plugin["xep_0077"].cancel_registration(timeout=STEP_TIMEOUT)
        check("account removal acknowledged", True)
    except IqError as e:
        check("account removal acknowledged", False, e.iq["error"]["condition"])
    except IqTimeout:
        check("account removal acknowledged", False, "timeout")
    gone = await wait(c.disconnected_fut)
    check("server closes the removed account's stream", gone is not None,
          f"still connected after {STEP_TIMEOUT:.0f}s")
    await c.close()
    again = await try_login(carol, pw2, host, port)
    check("removed account can no longer log in", again is None)
    if again:
        await again.close()

    # A taken username is refused with <conflict/>.
    d = Client(args.alice, "whatever-" + secrets.token_hex(8), host, port, register=True)
    d.start()
    outcome = await wait(d.registered)
    check("registering an existing username fails with <conflict/>",
          outcome is not None and outcome[0] == "conflict", f"outcome {outcome!r}")
    await d.close()
    alice = await try_login(args.alice, args.alice_password, host, port)
    check("the existing account keeps its password", alice is not None)
    if alice:
        await alice.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True, help="STARTTLS c2s port")
    p.add_argument("--tls-port", type=int, required=True, help="direct TLS c2s port")
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
    if not args.verbose:
        # Failed logins (expected here) make slixmpp log at ERROR.
        logging.getLogger("slixmpp.features.feature_mechanisms").setLevel(logging.CRITICAL)

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
    summary_and_exit()


if __name__ == "__main__":
    main()
