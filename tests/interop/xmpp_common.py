"""Shared pieces of the slixmpp interop scripts: counting checks, a logged-in client, the
standard command line, and a hard overall timeout. Scripts print `N passed, M failed` last.

Command line (run_main): --host --port (STARTTLS) --tls-port (direct TLS) --alice --bob
--timeout [-v]; passwords come from ALICE_PASSWORD / BOB_PASSWORD. The server's self-signed
certificate is accepted (verification disabled). Exit status 0 only if every check passed.
"""

import argparse
import asyncio
import logging
import os
import signal
import ssl
import sys

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.stanza import StreamFeatures

STEP_TIMEOUT = 15.0
QUIET = 2.0
DEFAULT_MECH = "SCRAM-SHA-256"
COUNTS = {"passed": 0, "failed": 0}


def check(name, ok, detail=""):
    key = "passed" if ok else "failed"
    COUNTS[key] += 1
    print(f"{'PASS' if ok else 'FAIL'} {name}{'' if ok or not detail else ': ' + detail}", flush=True)
    return ok


def insecure_ssl_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def is_chat(msg):
    return msg["type"] in ("chat", "normal")


class Client(slixmpp.ClientXMPP):
    """A client that accepts the server's self-signed certificate and records what happens.

    Exactly one way in is enabled: STARTTLS (default) or direct TLS (XEP-0368). `mech` forces
    a SASL mechanism (default SCRAM-SHA-256); None lets slixmpp choose. With register=True
    the JID is registered in-band (XEP-0077) before SASL; the outcome lands in `registered`.

    Recorded: `presences`, `messages` (every message), `chats` (chat/normal only), `errors`
    (type error), futures `session_started`, `auth_failed` (first SASL failure condition),
    `stream_closed` and `registered` ((condition or "result", form)), `used_mech` and
    `offered` (the feature names of each <stream:features/> received)."""

    def __init__(self, jid, password, host, port, plugins=(), register=False,
                 direct_tls=False, mech=DEFAULT_MECH):
        plugin_config = {"feature_mechanisms": {"use_mech": mech}} if mech else {}
        super().__init__(jid, password, plugin_config=plugin_config)
        for p in plugins:
            self.register_plugin(p)
        if register:
            self.register_plugin("xep_0077")
            self.add_event_handler("register", self._register)
        self.target = (host, port)
        self.ssl_context = insecure_ssl_context()
        # With an explicit address slixmpp tries the enabled methods on that one port;
        # enable exactly one so each client tests exactly one way in.
        self.enable_direct_tls = direct_tls
        self.enable_starttls = not direct_tls
        self.enable_plaintext = False
        self.used_mech = None
        self.offered = []
        loop = asyncio.get_running_loop()
        self.session_started = loop.create_future()
        self.auth_failed = loop.create_future()
        self.stream_closed = loop.create_future()
        self.registered = loop.create_future()
        self.presences = asyncio.Queue()
        self.messages = asyncio.Queue()
        self.chats = asyncio.Queue()
        self.errors = asyncio.Queue()
        self.add_filter("in", self._record_features)
        self.add_event_handler("session_start", lambda _e: _resolve(self.session_started, True))
        self.add_event_handler("auth_success", self._on_auth_success)
        self.add_event_handler("failed_auth", self._on_failed_auth)
        self.add_event_handler("failed_all_auth", self._on_failed_auth)
        self.add_event_handler("disconnected", lambda _e: _resolve(self.stream_closed, True))
        self.add_event_handler("presence", self.presences.put_nowait)
        self.add_event_handler("message", self._on_message)

    def _record_features(self, stanza):
        if isinstance(stanza, StreamFeatures):
            self.offered.append(set(stanza["features"]))
        return stanza

    def _on_auth_success(self, _stanza):
        self.used_mech = getattr(self.plugin["feature_mechanisms"].mech, "name", None)

    def _on_failed_auth(self, stanza=None):
        cond = None
        try:
            cond = stanza["condition"] if stanza is not None else None
        except Exception:  # noqa: BLE001 - failed_all_auth carries no stanza
            pass
        _resolve(self.auth_failed, cond or "failed_all_auth")

    def _on_message(self, msg):
        self.messages.put_nowait(msg)
        if msg["type"] == "error":
            self.errors.put_nowait(msg)
        elif is_chat(msg):
            self.chats.put_nowait(msg)

    async def _register(self, form):
        iq = self.Iq()
        iq["type"] = "set"
        iq["register"]["username"] = self.boundjid.user
        iq["register"]["password"] = self.password
        try:
            await iq.send(timeout=STEP_TIMEOUT)
            outcome = "result"
        except IqError as e:
            outcome = e.iq["error"]["condition"]
        except IqTimeout:
            outcome = "timeout"
        _resolve(self.registered, (outcome, form["register"]))
        if outcome != "result":
            self.disconnect()

    def is_tls(self):
        return isinstance(self.socket, (ssl.SSLObject, ssl.SSLSocket))

    async def close(self):
        try:
            await asyncio.wait_for(self.disconnect(wait=1.0), 3)
        except Exception:  # noqa: BLE001 - best effort
            pass


def _resolve(fut, value):
    if not fut.done():
        fut.set_result(value)


def make_client(jid, password, args, plugins=(), register=False, direct_tls=False,
                mech=DEFAULT_MECH, auto_authorize=True):
    port = args.tls_port if direct_tls else args.port
    c = Client(jid, password, args.host, port, plugins, register, direct_tls, mech)
    c.roster.auto_authorize = auto_authorize
    c.roster.auto_subscribe = False
    return c


async def try_login(jid, password, args, **kw):
    """Connects and waits for the session. Returns (client, None) once logged in, else
    (None, (kind, detail)) with kind "sasl" (detail: the SASL condition), "registration"
    (detail: its error condition), "disconnected" or "timeout"; the client is then closed.
    Keyword arguments go to make_client()."""
    c = make_client(jid, password, args, **kw)
    c.connect(*c.target)
    done, _ = await asyncio.wait([c.session_started, c.auth_failed, c.stream_closed],
                                 timeout=STEP_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
    if c.session_started in done:
        return c, None
    if c.auth_failed in done:
        failure = ("sasl", c.auth_failed.result())
    elif c.registered.done() and c.registered.result()[0] != "result":
        failure = ("registration", c.registered.result()[0])
    elif c.stream_closed in done:
        failure = ("disconnected", "stream closed before a session started")
    else:
        failure = ("timeout", f"no session within {STEP_TIMEOUT:.0f}s")
    await c.close()
    return None, failure


async def login(name, jid, password, args, plugins=(), auto_authorize=True, register=False,
                direct_tls=False, mech=DEFAULT_MECH, presence=False):
    """try_login() counted as one check (plus one for a failed in-band registration);
    with presence=True initial presence is sent once the session has started."""
    c, failure = await try_login(jid, password, args, plugins=plugins, register=register,
                                 direct_tls=direct_tls, mech=mech,
                                 auto_authorize=auto_authorize)
    if c is None:
        if failure[0] == "registration":
            check(f"in-band registration of {slixmpp.JID(jid).bare}", False, failure[1])
        check(f"{name} logs in", False, f"{failure[0]}: {failure[1]}")
        return None
    check(f"{name} logs in as {c.boundjid.full}", True)
    if presence:
        c.send_presence()
    return c


async def wait_result(fut, timeout=STEP_TIMEOUT):
    """The future's result, or None on timeout (the future itself is not cancelled)."""
    try:
        return await asyncio.wait_for(asyncio.shield(fut), timeout)
    except asyncio.TimeoutError:
        return None


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


async def next_item(queue, timeout=STEP_TIMEOUT):
    """The next queued item within timeout, or None."""
    return await next_matching(queue, lambda _item: True, timeout)


async def iq_attempt(coro, name=None, timeout=STEP_TIMEOUT):
    """Awaits an IQ coroutine; returns (result, None) or (None, error condition), the
    condition being "timeout" when there was no answer (then also a failed check `name`)."""
    try:
        return await asyncio.wait_for(coro, timeout), None
    except IqError as e:
        return None, e.iq["error"]["condition"]
    except (IqTimeout, asyncio.TimeoutError):
        if name:
            check(name, False, "no answer")
        return None, "timeout"


def run_main(doc, run, add_args=None, need_passwords=True):
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True, help="STARTTLS c2s port")
    p.add_argument("--tls-port", type=int, required=True, help="direct TLS c2s port")
    p.add_argument("--alice", default="alice@localhost")
    p.add_argument("--bob", default="bob@localhost")
    p.add_argument("--timeout", type=float, default=60.0, help="overall limit, seconds")
    p.add_argument("-v", "--verbose", action="store_true", help="slixmpp debug log (stanzas)")
    if add_args:
        add_args(p)
    args = p.parse_args()
    args.alice_password = os.environ.get("ALICE_PASSWORD")
    args.bob_password = os.environ.get("BOB_PASSWORD")
    if need_passwords and (not args.alice_password or not args.bob_password):
        p.error("ALICE_PASSWORD and BOB_PASSWORD must be set")
    # Quiet unless -v: expected failures (a refused password) make slixmpp log at ERROR.
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.CRITICAL,
                        format="%(levelname)-8s %(name)s %(message)s")

    # Hard stop even if the event loop is wedged.
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
