#!/usr/bin/env python3
"""Interop test: account services of a running Confab server, with slixmpp's own plugins.

Checks, each counted as passed or failed:
  * vcard-temp (XEP-0054, xep_0054): alice publishes a vCard and reads it back; bob reads
    alice's vCard from her bare JID; bob may not set alice's vCard;
  * private XML storage (XEP-0049, xep_0049): alice stores a fragment and retrieves it;
    an unknown fragment comes back empty; bob does not see alice's fragment;
  * entity time of the server (XEP-0202, xep_0202): UTC offset and a time near now;
  * last activity of the server (XEP-0012, xep_0012): uptime in seconds; bob, not
    subscribed to alice, gets <service-unavailable/> for alice's last activity, the same
    answer as for an account that does not exist (no existence leak);
  * service discovery of the server (XEP-0030, xep_0030): the new features are listed;
    alice's own account answers with identity account/registered.
"""

import datetime as dt
import uuid

import slixmpp
from slixmpp.plugins import xep_0082
from slixmpp.xmlstream import ElementBase
from xmpp_common import check, iq_attempt, login, run_main

PLUGINS = ("xep_0030", "xep_0049", "xep_0054", "xep_0012", "xep_0202")


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


async def attempt(name, coro):
    """Runs an IQ coroutine; returns (result, error condition)."""
    return await iq_attempt(coro, name)


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
    check("last: bob (not subscribed) is refused alice's last activity",
          err == "service-unavailable", f"condition {err!r}")
    _, err_missing = await attempt("last: missing account",
                                   bob.plugin["xep_0012"].get_last_activity(
                                       slixmpp.JID(f"nobody-{uuid.uuid4().hex[:8]}@{domain}")))
    check("last: a missing account answers the same", err_missing == err,
          f"{err_missing!r} vs {err!r}")


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
    alice = await login("alice", args.alice, args.alice_password, args, plugins=PLUGINS,
                        mech=None)
    bob = await login("bob", args.bob, args.bob_password, args, plugins=PLUGINS, mech=None)
    try:
        if not (alice and bob):
            check("account services", False, "skipped: a login failed")
            return
        for c in (alice, bob):
            c.plugin["xep_0049"].register(Note)
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


if __name__ == "__main__":
    run_main(__doc__, run)
