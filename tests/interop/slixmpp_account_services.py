#!/usr/bin/env python3
"""Interop test: account services of a running Confab server, with slixmpp's own plugins.

Checks, each counted as passed or failed:
  * vcard-temp (XEP-0054, xep_0054): alice publishes a vCard and reads it back; bob reads
    alice's vCard from her bare JID; bob may not set alice's vCard;
  * private XML storage (XEP-0049, xep_0049): alice stores a fragment and retrieves it;
    an unknown fragment comes back empty; bob does not see alice's fragment;
  * entity time of the server (XEP-0202, xep_0202): UTC offset and a time near now;
  * last activity of the server (XEP-0012, xep_0012): uptime in seconds; bob, not
    subscribed to alice, is refused alice's last activity with <forbidden/>;
  * service discovery of the server (XEP-0030, xep_0030): the new features are listed;
    alice's own account answers with identity account/registered.

The server's self-signed certificate is accepted (verification disabled).
Exit status 0 only if every check passed; the last line printed is `N passed, M failed`.
The whole run is bounded by --timeout seconds (default 60).

Usage:
  slixmpp_account_services.py --host 127.0.0.1 --port 5222 --tls-port 5223 \
      --alice alice@localhost --bob bob@localhost
Passwords come from --alice-password/--bob-password or ALICE_PASSWORD, BOB_PASSWORD.
"""

import argparse
import asyncio
import datetime as dt
import logging
import os
import signal
import ssl
import sys
import uuid

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.plugins import xep_0082
from slixmpp.xmlstream import ElementBase

STEP_TIMEOUT = 15.0
PLUGINS = ["xep_0030", "xep_0049", "xep_0054", "xep_0012", "xep_0202"]

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


class Note(ElementBase):
    """A private XML fragment of our own namespace."""
    name = "note"
    namespace = "urn:confab:interop:note"
    plugin_attrib = "confab_note"
    interfaces = {"text"}

    def get_text(self):
        return self.xml.text or ""

    def set_text(self, value):
        self.xml.text = value


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password, host, port):
        super().__init__(jid, password)
        self.target = (host, port)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.ssl_context = ctx
        self.enable_direct_tls = False
        self.enable_starttls = True
        self.enable_plaintext = False
        for p in PLUGINS:
            self.register_plugin(p)
        self.plugin["xep_0049"].register(Note)
        loop = asyncio.get_running_loop()
        self.session_started = loop.create_future()
        self.add_event_handler("session_start", self._on_session_start)
        self.add_event_handler("failed_all_auth", self._on_failed)

    def _on_session_start(self, _event):
        if not self.session_started.done():
            self.session_started.set_result(True)

    def _on_failed(self, _event=None):
        if not self.session_started.done():
            self.session_started.set_result(False)

    async def close(self):
        try:
            await asyncio.wait_for(self.disconnect(wait=1.0), 3)
        except Exception:  # noqa: BLE001 - best effort
            pass


async def login(name, jid, password, host, port):
    c = Client(jid, password, host, port)
    c.connect(*c.target)
    try:
        ok = await asyncio.wait_for(asyncio.shield(c.session_started), STEP_TIMEOUT)
    except asyncio.TimeoutError:
        ok = False
    if not check(f"{name}: login", ok):
        await c.close()
        return None
    return c


async def attempt(name, coro):
    """Runs an IQ coroutine; returns (result, error condition)."""
    try:
        return await asyncio.wait_for(coro, STEP_TIMEOUT), None
    except IqError as e:
        return None, e.iq["error"]["condition"]
    except (IqTimeout, asyncio.TimeoutError):
        check(name, False, "no answer")
        return None, "timeout"


async def vcard(alice, bob, alice_bare):
    fn = f"Alice {uuid.uuid4().hex[:6]}"
    vc = alice.plugin["xep_0054"].make_vcard()
    vc["FN"] = fn
    vc["NICKNAME"] = "al"
    _, err = await attempt("vcard: publish", alice.plugin["xep_0054"].publish_vcard(vc))
    check("vcard: alice publishes her vCard", err is None, f"error {err}")
    r, err = await attempt("vcard: own", alice.plugin["xep_0054"].get_vcard(alice_bare, cached=False))
    check("vcard: alice reads her vCard back", r is not None and r["vcard_temp"]["FN"] == fn,
          f"error {err}" if r is None else f"FN={r['vcard_temp']['FN']!r}")
    r, err = await attempt("vcard: other", bob.plugin["xep_0054"].get_vcard(alice_bare, cached=False))
    check("vcard: bob reads alice's vCard from her bare JID",
          r is not None and r["vcard_temp"]["FN"] == fn and r["from"].bare == alice_bare,
          f"error {err}" if r is None else f"FN={r['vcard_temp']['FN']!r} from={r['from']}")
    other = bob.plugin["xep_0054"].make_vcard()
    other["FN"] = "Mallory"
    _, err = await attempt("vcard: set other", bob.plugin["xep_0054"].publish_vcard(other, jid=alice_bare))
    check("vcard: bob may not set alice's vCard", err in ("forbidden", "not-allowed"),
          f"condition {err!r}")


async def private(alice, bob):
    text = f"remember {uuid.uuid4().hex[:8]}"
    note = Note()
    note["text"] = text
    _, err = await attempt("private: store", alice.plugin["xep_0049"].store(note))
    check("private: alice stores a fragment", err is None, f"error {err}")
    r, err = await attempt("private: retrieve", alice.plugin["xep_0049"].retrieve("confab_note"))
    got = r["private"]["confab_note"]["text"] if r is not None else None
    check("private: alice retrieves it", got == text, f"error {err}" if r is None else f"{got!r}")
    r, err = await attempt("private: bob", bob.plugin["xep_0049"].retrieve("confab_note"))
    got = r["private"]["confab_note"]["text"] if r is not None else None
    check("private: bob's storage does not have alice's fragment", got == "",
          f"error {err}" if r is None else f"{got!r}")


async def server_time(alice, domain):
    r, err = await attempt("time", alice.plugin["xep_0202"].get_entity_time(slixmpp.JID(domain)))
    if not check("time: the server answers", r is not None, f"error {err}"):
        return
    t = r["entity_time"]
    # slixmpp 1.17's t["utc"] appends a second "Z" to the XEP-0202 form ("...35Z"), so the
    # raw text is parsed with slixmpp's XEP-0082 parser instead.
    raw = t.xml.find("{urn:xmpp:time}utc").text or ""
    try:
        utc = xep_0082.parse(raw)
    except ValueError:
        utc = None
    now = dt.datetime.now(dt.timezone.utc)
    check("time: utc is an XEP-0082 DateTime near now",
          utc is not None and abs((now - utc).total_seconds()) < 30, f"utc={raw!r}")
    check("time: tzo is +00:00", t.xml.find("{urn:xmpp:time}tzo").text == "+00:00",
          f"tzo={t.xml.find('{urn:xmpp:time}tzo').text!r}")


async def last_activity(alice, bob, domain, alice_bare):
    r, err = await attempt("last: server",
                           alice.plugin["xep_0012"].get_last_activity(slixmpp.JID(domain)))
    if check("last: the server answers with its uptime", r is not None, f"error {err}"):
        secs = r["last_activity"]["seconds"]
        check("last: uptime is a plausible number of seconds",
              isinstance(secs, int) and 0 <= secs < 3600, f"seconds={secs!r}")
    _, err = await attempt("last: unsubscribed",
                           bob.plugin["xep_0012"].get_last_activity(slixmpp.JID(alice_bare)))
    check("last: bob (not subscribed) is refused alice's last activity", err == "forbidden",
          f"condition {err!r}")


async def disco(alice, domain, alice_bare):
    r, err = await attempt("disco: server",
                           alice.plugin["xep_0030"].get_info(jid=domain, cached=False, local=False))
    if check("disco: server info", r is not None, f"error {err}"):
        features = set(r["disco_info"]["features"])
        for f in ("vcard-temp", "jabber:iq:last", "urn:xmpp:time", "urn:xmpp:ping",
                  "http://jabber.org/protocol/caps"):
            check(f"disco: server lists {f}", f in features, f"features={sorted(features)}")
    r, err = await attempt("disco: account",
                           alice.plugin["xep_0030"].get_info(jid=alice_bare, cached=False,
                                                      local=False))
    if check("disco: alice's own account answers", r is not None, f"error {err}"):
        ids = {(i[0], i[1]) for i in r["disco_info"]["identities"]}
        check("disco: identity account/registered", ("account", "registered") in ids,
              f"identities={ids}")


async def run(args):
    alice = await login("alice", args.alice, args.alice_password, args.host, args.port)
    bob = await login("bob", args.bob, args.bob_password, args.host, args.port)
    try:
        if not (alice and bob):
            check("account services", False, "skipped: a login failed")
            return
        alice_bare = slixmpp.JID(args.alice).bare
        domain = slixmpp.JID(args.alice).domain
        await vcard(alice, bob, alice_bare)
        await private(alice, bob)
        await server_time(alice, domain)
        await last_activity(alice, bob, domain, alice_bare)
        await disco(alice, domain, alice_bare)
    finally:
        for c in (alice, bob):
            if c:
                await c.close()


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

    # Hard stop even if the event loop is wedged.
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
