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
"""

import secrets

import slixmpp
from xmpp_common import (STEP_TIMEOUT, check, iq_attempt, make_client, run_main, try_login,
                         wait_result)

PLUGINS = ("xep_0077",)


async def register(jid, password, args):
    """A client registering `jid` in-band, and its outcome ((condition, form) or None)."""
    c = make_client(jid, password, args, plugins=PLUGINS, register=True, mech=None)
    c.connect(*c.target)
    return c, await wait_result(c.registered)


async def run(args):
    domain = slixmpp.JID(args.alice).domain
    carol = f"carol{secrets.token_hex(4)}@{domain}"
    pw1 = "first-" + secrets.token_hex(8)
    pw2 = "second-" + secrets.token_hex(8)

    # Register a brand new account, then log in with it on the same stream.
    c, outcome = await register(carol, pw1, args)
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
    ok = await wait_result(c.session_started)
    check("login with the new account on the same stream", ok is not None,
          "no session started")
    if ok is None:
        await c.close()
        return

    # XEP-0077 3.1: an authenticated entity is registered.
    iq, err = await iq_attempt(c.plugin["xep_0077"].get_registration(timeout=STEP_TIMEOUT))
    check("registration query after login answers <registered/>",
          iq is not None and bool(iq["register"]["registered"]),
          str(iq) if iq is not None else f"error {err}")

    # Change the password in-band.
    _, err = await iq_attempt(c.plugin["xep_0077"].change_password(pw2, timeout=STEP_TIMEOUT))
    check("password changed in-band", err is None, f"error {err}")
    await c.close()

    old, _ = await try_login(carol, pw1, args, plugins=PLUGINS, mech=None)
    check("old password no longer logs in", old is None)
    if old:
        await old.close()
    c, failure = await try_login(carol, pw2, args, plugins=PLUGINS, mech=None)
    if not check("new password logs in", c is not None, f"{failure}"):
        return

    # Remove the account: acknowledged, then the server ends the stream.
    _, err = await iq_attempt(c.plugin["xep_0077"].cancel_registration(timeout=STEP_TIMEOUT))
    check("account removal acknowledged", err is None, f"error {err}")
    gone = await wait_result(c.stream_closed)
    check("server closes the removed account's stream", gone is not None,
          f"still connected after {STEP_TIMEOUT:.0f}s")
    await c.close()
    again, _ = await try_login(carol, pw2, args, plugins=PLUGINS, mech=None)
    check("removed account can no longer log in", again is None)
    if again:
        await again.close()

    # A taken username is refused with <conflict/>.
    d, outcome = await register(args.alice, "whatever-" + secrets.token_hex(8), args)
    check("registering an existing username fails with <conflict/>",
          outcome is not None and outcome[0] == "conflict", f"outcome {outcome!r}")
    await d.close()
    alice, failure = await try_login(args.alice, args.alice_password, args, mech=None)
    check("the existing account keeps its password", alice is not None, f"{failure}")
    if alice:
        await alice.close()


if __name__ == "__main__":
    run_main(__doc__, run)
