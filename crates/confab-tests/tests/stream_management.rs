//! XEP-0198 Stream Management: acknowledgements both ways, resumption after a killed
//! connection with stanzas in flight (none lost, none duplicated after the ack), and what
//! becomes of unacknowledged stanzas when a session is not resumed.

use confab_modules::stream_management::{StreamManagementConfig, NS};
use confab_proto::xml::Element;
use confab_proto::{ns, StreamErrorCondition};
use confab_tests::*;
use std::time::Duration;

async fn start_with(f: impl FnOnce(&mut StreamManagementConfig)) -> TestServer {
    let ts = TestServer::start_with(|c| {
        c.c2s.require_tls = false;
        c.c2s.allow_plain_without_tls = true;
        c.update_section("stream_management", f)
            .expect("stream_management section");
    })
    .await;
    for u in ["alice", "bob", "carol"] {
        ts.add_user(u).await;
    }
    ts
}

/// A raw stream of `user`, bound to `resource` (no presence sent).
async fn bound(ts: &TestServer, user: &str, resource: &str) -> Raw {
    let mut r = ts.authenticated_raw(user).await;
    bind(&mut r, resource).await;
    r
}

async fn bind(r: &mut Raw, resource: &str) {
    r.send(&format!(
        "<iq type='set' id='bind'><bind xmlns='{}'><resource>{resource}</resource></bind></iq>",
        ns::BIND
    ))
    .await;
    let e = r.element().await;
    assert_eq!(e.get_attr("type"), Some("result"), "{e}");
}

/// Enables stream management (with resumption if asked); the resumption id, if any.
async fn enable(r: &mut Raw, resume: bool) -> Option<String> {
    r.send(&format!(
        "<enable xmlns='{NS}'{}/>",
        if resume { " resume='true'" } else { "" }
    ))
    .await;
    // Stanzas already on their way (the client's own presence) may come first.
    let e = loop {
        let e = r.element().await;
        if e.ns == NS {
            break e;
        }
    };
    assert!(e.is("enabled", NS), "{e}");
    e.get_attr("id").map(str::to_string)
}

/// The next element that is not an ack request (answered by the caller's choice).
async fn next_stanza(r: &mut Raw) -> Element {
    loop {
        let e = r.element().await;
        if !e.is("r", NS) {
            return e;
        }
    }
}

fn body(e: &Element) -> Option<String> {
    e.get_child("body", ns::CLIENT).map(|b| b.text_content())
}

fn chat(to: &str, text: &str) -> Element {
    Element::new("message", ns::CLIENT)
        .attr("to", to)
        .attr("type", "chat")
        .child(Element::new("body", ns::CLIENT).text(text))
}

#[tokio::test]
async fn the_server_counts_what_it_handled_and_asks_for_acks() {
    let ts = start_with(|c| c.request_every = 3).await;
    let mut alice = ts.login_available("alice").await;
    let mut bob = bound(&ts, "bob", "phone").await;
    // Offered beside binding.
    enable(&mut bob, false).await;
    bob.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    // An invalid stanza counts too: the server handled it (with an error).
    bob.send("<message to='not a jid@@'/>").await;
    bob.send("<iq type='get' id='p0'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    bob.send(&format!("<r xmlns='{NS}'/>")).await;
    // The answer to <r/>, the two results and the error, and — three stanzas being
    // unacknowledged — the server's own <r/>, in some order.
    let (mut stanzas, mut asked, mut answered) = (0, false, false);
    while stanzas < 3 || !asked || !answered {
        let e = bob.element().await;
        if e.is("a", NS) {
            assert_eq!(e.get_attr("h"), Some("3"), "{e}");
            answered = true;
        } else if e.is("r", NS) {
            asked = true;
        } else {
            stanzas += 1;
        }
    }
    assert_eq!(stanzas, 3);
    bob.send(&format!("<a xmlns='{NS}' h='3'/>")).await;
    // Two messages (below the threshold again), then a ping whose result makes three.
    for i in 0..2 {
        alice
            .send(&chat("bob@localhost/phone", &format!("m{i}")))
            .await
            .expect("send");
    }
    for want in ["m0", "m1"] {
        assert_eq!(body(&next_stanza(&mut bob).await).as_deref(), Some(want));
    }
    bob.send("<iq type='get' id='p2'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let pong = bob.element().await;
    assert_eq!(pong.get_attr("id"), Some("p2"), "{pong}");
    let r = bob.element().await;
    assert!(r.is("r", NS), "asked again after three more: {r}");
}

#[tokio::test]
async fn acknowledging_more_than_was_sent_ends_the_stream() {
    let ts = start_with(|_| {}).await;
    let mut bob = bound(&ts, "bob", "phone").await;
    enable(&mut bob, false).await;
    bob.send(&format!("<a xmlns='{NS}' h='7'/>")).await;
    // XEP-0198 §4: undefined-condition with <handled-count-too-high h send-count/>.
    let e = bob.element().await;
    let err = confab_proto::StreamError::from_element(&e).expect("a stream error");
    assert_eq!(err.condition, StreamErrorCondition::UndefinedCondition);
    let app = err.app.expect("the application-specific condition");
    assert!(app.is("handled-count-too-high", NS), "{e}");
    assert_eq!(app.get_attr("h"), Some("7"));
    assert_eq!(app.get_attr("send-count"), Some("0"));
    assert!(matches!(
        bob.event().await,
        confab_proto::parser::StreamEvent::Close
    ));
}

#[tokio::test]
async fn out_of_order_requests_fail_without_harm() {
    let ts = start_with(|_| {}).await;
    let mut bob = ts.authenticated_raw("bob").await;
    // Before binding: not yet.
    bob.send(&format!("<enable xmlns='{NS}'/>")).await;
    let f = bob.element().await;
    assert!(f.is("failed", NS), "{f}");
    assert!(f.get_child("unexpected-request", STANZAS).is_some(), "{f}");
    // Resuming an unknown session fails; the client binds instead.
    bob.send(&format!("<resume xmlns='{NS}' previd='nope' h='0'/>"))
        .await;
    let f = bob.element().await;
    assert!(f.get_child("item-not-found", STANZAS).is_some(), "{f}");
    bind(&mut bob, "phone").await;
    enable(&mut bob, false).await;
    // Twice: refused, the first stays.
    bob.send(&format!("<enable xmlns='{NS}'/>")).await;
    let f = bob.element().await;
    assert!(f.is("failed", NS), "{f}");
    bob.send(&format!("<r xmlns='{NS}'/>")).await;
    let a = bob.element().await;
    assert!(a.is("a", NS), "{a}");
}

const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

#[tokio::test]
async fn a_killed_connection_resumes_without_losing_or_repeating_a_message() {
    let ts = start_with(|c| c.request_every = 100).await;
    let mut alice = ts.login_available("alice").await;
    let mut bob = bound(&ts, "bob", "phone").await;
    let id = enable(&mut bob, true).await.expect("resumable");
    // Two messages reach bob; he acknowledges only the first.
    for i in 0..2 {
        alice
            .send(&chat("bob@localhost/phone", &format!("m{i}")))
            .await
            .expect("send");
    }
    assert_eq!(body(&next_stanza(&mut bob).await).as_deref(), Some("m0"));
    assert_eq!(body(&next_stanza(&mut bob).await).as_deref(), Some("m1"));
    bob.send(&format!("<a xmlns='{NS}' h='1'/>")).await;
    // A message bob had sent that the server handled (counted in its `h`).
    bob.send(&chat(alice.jid.as_str(), "from bob before").to_xml(ns::CLIENT))
        .await;
    assert_eq!(
        body(&recv_message(&mut alice).await).as_deref(),
        Some("from bob before")
    );
    // The connection dies without a word.
    drop(bob);
    let ctx = ts.server().ctx().clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while ctx.router.parked_count() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "not parked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // More messages while the session waits.
    for i in 2..4 {
        alice
            .send(&chat("bob@localhost/phone", &format!("m{i}")))
            .await
            .expect("send");
    }
    ping(&mut alice).await;
    // Another account cannot take the session over with its id.
    let mut carol = ts.authenticated_raw("carol").await;
    carol
        .send(&format!("<resume xmlns='{NS}' previd='{id}' h='0'/>"))
        .await;
    assert!(carol.element().await.is("failed", NS));
    // Bob resumes, saying he handled one stanza (m0).
    let mut bob = ts.authenticated_raw("bob").await;
    bob.send(&format!("<resume xmlns='{NS}' previd='{id}' h='1'/>"))
        .await;
    let resumed = bob.element().await;
    assert!(resumed.is("resumed", NS), "{resumed}");
    // The server had handled one stanza of bob's (his message).
    assert_eq!(resumed.get_attr("h"), Some("1"), "{resumed}");
    // m1 (written, not acknowledged), then what came meanwhile; m0 not again.
    for want in ["m1", "m2", "m3"] {
        assert_eq!(
            body(&next_stanza(&mut bob).await).as_deref(),
            Some(want),
            "after resumption"
        );
    }
    // Acknowledging everything: the count continues from before (1 + 3).
    bob.send(&format!("<a xmlns='{NS}' h='4'/>")).await;
    bob.send(&format!("<r xmlns='{NS}'/>")).await;
    let a = next_ack(&mut bob).await;
    assert_eq!(a.get_attr("h"), Some("1"), "{a}");
    // Nothing more comes: no duplicate.
    bob.send("<iq type='get' id='last'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let e = next_stanza(&mut bob).await;
    assert_eq!(e.get_attr("id"), Some("last"), "a duplicate arrived: {e}");
    // And the session is the same one: bob's message reaches alice.
    bob.send(&chat(alice.jid.as_str(), "back").to_xml(ns::CLIENT))
        .await;
    assert_eq!(
        body(&recv_message(&mut alice).await).as_deref(),
        Some("back")
    );
    assert_eq!(ctx.router.parked_count(), 0);
}

#[tokio::test]
async fn resuming_takes_over_a_session_whose_old_connection_is_still_open() {
    let ts = start_with(|c| c.request_every = 100).await;
    let mut alice = ts.login_available("alice").await;
    let mut old = bound(&ts, "bob", "phone").await;
    let id = enable(&mut old, true).await.expect("resumable");
    alice
        .send(&chat("bob@localhost/phone", "m0"))
        .await
        .expect("send");
    assert_eq!(body(&next_stanza(&mut old).await).as_deref(), Some("m0"));
    // The old connection stays open, as a dead one does until the server notices: the
    // client resumes on a new connection at once (XEP-0198 §5).
    let ctx = ts.server().ctx().clone();
    assert_eq!(ctx.router.parked_count(), 0);
    let mut bob = ts.authenticated_raw("bob").await;
    bob.send(&format!("<resume xmlns='{NS}' previd='{id}' h='0'/>"))
        .await;
    let resumed = bob.element().await;
    assert!(resumed.is("resumed", NS), "{resumed}");
    // m0 was never acknowledged: it comes again, on the new connection.
    assert_eq!(body(&next_stanza(&mut bob).await).as_deref(), Some("m0"));
    // The old connection was let go: it ends.
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        // Ack requests may still come; any other stanza, or none, would be wrong.
        while let Ok(confab_proto::parser::StreamEvent::Element(e)) = old.stream.next_event().await
        {
            assert!(e.is("r", NS), "the old connection got {e}");
        }
    })
    .await;
    assert!(closed.is_ok(), "the old connection stays open");
    // New messages go to the new connection, and bob's reach alice.
    alice
        .send(&chat("bob@localhost/phone", "m1"))
        .await
        .expect("send");
    assert_eq!(body(&next_stanza(&mut bob).await).as_deref(), Some("m1"));
    bob.send(&chat(alice.jid.as_str(), "back").to_xml(ns::CLIENT))
        .await;
    assert_eq!(
        body(&recv_message(&mut alice).await).as_deref(),
        Some("back")
    );
    assert_eq!(ctx.router.parked_count(), 0);
}

async fn next_ack(r: &mut Raw) -> Element {
    loop {
        let e = r.element().await;
        if e.is("a", NS) {
            return e;
        }
    }
}

#[tokio::test]
async fn unacknowledged_messages_of_a_session_never_resumed_are_stored_offline() {
    let ts = start_with(|c| {
        c.resume_timeout = 1;
        c.request_every = 100;
    })
    .await;
    let mut alice = ts.login_available("alice").await;
    let mut bob = bound(&ts, "bob", "phone").await;
    bob.send("<presence/>").await;
    enable(&mut bob, true).await.expect("resumable");
    alice
        .send(&chat("bob@localhost", "are you there?"))
        .await
        .expect("send");
    // Written to bob's connection, never acknowledged; the connection dies.
    let m = loop {
        let e = next_stanza(&mut bob).await;
        if e.name == "message" {
            break e;
        }
    };
    assert_eq!(body(&m).as_deref(), Some("are you there?"));
    drop(bob);
    // After the resume timeout the session ends and the message is stored offline.
    let ctx = ts.server().ctx().clone();
    let jid = confab_proto::BareJid::new("bob@localhost").expect("jid");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !ctx.router.sessions_of(&jid).is_empty() || ctx.router.parked_count() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "session not ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut bob = ts.login("bob").await;
    bob.send(&Element::new("presence", ns::CLIENT))
        .await
        .expect("presence");
    let m = recv_message(&mut bob).await;
    assert_eq!(body(&m).as_deref(), Some("are you there?"));
}

/// A server with stream management, test modules, and `f`'s changes to the config.
async fn start_with_modules(
    modules: Vec<std::sync::Arc<dyn confab_server::module::Module>>,
    f: impl FnOnce(&mut confab_server::config::Config),
) -> TestServer {
    let ts = TestServer::start_with_modules(modules, |c| {
        c.c2s.require_tls = false;
        c.c2s.allow_plain_without_tls = true;
        f(c);
    })
    .await;
    for u in ["alice", "bob"] {
        ts.add_user(u).await;
    }
    ts
}

/// Answers `<hoard xmlns='urn:example:hoard'/>` directly with one element larger than
/// the kernel's socket buffers: to a client that does not read, that write blocks.
struct Hoard;

impl confab_server::module::Module for Hoard {
    fn name(&self) -> &'static str {
        "hoard"
    }

    fn register(self: std::sync::Arc<Self>, reg: &mut confab_server::module::Registry) {
        reg.session_element("hoard", "urn:example:hoard", self);
    }
}

#[async_trait::async_trait]
impl confab_server::module::SessionElementHandler for Hoard {
    async fn handle(
        &self,
        _: &confab_server::ServerCtx,
        _: &std::sync::Arc<confab_server::session::SessionInfo>,
        _: &Element,
    ) -> Result<Vec<Element>, confab_proto::StreamError> {
        Ok(vec![
            Element::new("hoarded", "urn:example:hoard").text("x".repeat(32 << 20))
        ])
    }
}

#[tokio::test]
async fn a_resume_does_not_wait_behind_a_write_blocked_on_the_old_connection() {
    // A direct write to the old connection may block for a minute; the resume must not.
    let ts = start_with_modules(vec![std::sync::Arc::new(Hoard)], |c| {
        c.c2s.write_timeout = 60;
    })
    .await;
    let mut alice = ts.login_available("alice").await;
    let mut old = bound(&ts, "bob", "phone").await;
    let id = enable(&mut old, true).await.expect("resumable");
    // The old client asks for more than its socket can hold and stops reading.
    old.send("<hoard xmlns='urn:example:hoard'/>").await;
    // A new connection resumes at once, long before the blocked write's timeout.
    let mut bob = ts.authenticated_raw("bob").await;
    bob.send(&format!("<resume xmlns='{NS}' previd='{id}' h='0'/>"))
        .await;
    let resumed = tokio::time::timeout(Duration::from_secs(30), bob.element())
        .await
        .expect("an answer to the resume");
    assert!(resumed.is("resumed", NS), "{resumed}");
    alice
        .send(&chat("bob@localhost/phone", "after"))
        .await
        .expect("send");
    assert_eq!(body(&next_stanza(&mut bob).await).as_deref(), Some("after"));
}

/// Answers `<dawdle xmlns='urn:example:dawdle'/>` after a pause: a connection busy in a
/// handler that does not look at detach requests meanwhile.
struct Dawdle;

impl confab_server::module::Module for Dawdle {
    fn name(&self) -> &'static str {
        "dawdle"
    }

    fn register(self: std::sync::Arc<Self>, reg: &mut confab_server::module::Registry) {
        reg.session_element("dawdle", "urn:example:dawdle", self);
    }
}

#[async_trait::async_trait]
impl confab_server::module::SessionElementHandler for Dawdle {
    async fn handle(
        &self,
        _: &confab_server::ServerCtx,
        _: &std::sync::Arc<confab_server::session::SessionInfo>,
        _: &Element,
    ) -> Result<Vec<Element>, confab_proto::StreamError> {
        tokio::time::sleep(Duration::from_secs(3)).await;
        Ok(vec![Element::new("dawdled", "urn:example:dawdle")])
    }
}

#[tokio::test]
async fn a_refused_resume_leaves_the_live_session_alone() {
    // write_timeout 1: a resume waits 1 s for the old connection to let go.
    let ts = start_with_modules(vec![std::sync::Arc::new(Dawdle)], |c| {
        c.c2s.write_timeout = 1
    })
    .await;
    let mut alice = ts.login_available("alice").await;
    let mut old = bound(&ts, "bob", "phone").await;
    let id = enable(&mut old, true).await.expect("resumable");
    // Wrong account, unknown id: refused without touching the session.
    let mut other = ts.authenticated_raw("alice").await;
    other
        .send(&format!("<resume xmlns='{NS}' previd='{id}' h='0'/>"))
        .await;
    let e = other.element().await;
    assert!(e.is("failed", NS), "{e}");
    let mut stranger = ts.authenticated_raw("bob").await;
    stranger
        .send(&format!("<resume xmlns='{NS}' previd='no-such-id' h='0'/>"))
        .await;
    let e = stranger.element().await;
    assert!(e.is("failed", NS), "{e}");
    // The old connection is busy for 3 s: a resume meanwhile is refused.
    old.send("<dawdle xmlns='urn:example:dawdle'/>").await;
    let mut late = ts.authenticated_raw("bob").await;
    late.send(&format!("<resume xmlns='{NS}' previd='{id}' h='0'/>"))
        .await;
    let e = tokio::time::timeout(Duration::from_secs(20), late.element())
        .await
        .expect("an answer to the resume");
    assert!(e.is("failed", NS), "{e}");
    drop(late);
    // Once done, the old connection goes on: the refused resume left nothing behind.
    let e = next_stanza(&mut old).await;
    assert!(e.is("dawdled", "urn:example:dawdle"), "{e}");
    old.send(&format!("<r xmlns='{NS}'/>")).await;
    next_ack(&mut old).await;
    alice
        .send(&chat("bob@localhost/phone", "still here"))
        .await
        .expect("send");
    assert_eq!(
        body(&next_stanza(&mut old).await).as_deref(),
        Some("still here")
    );
    assert_eq!(ts.server().ctx().router.parked_count(), 0);
}

#[tokio::test]
async fn of_two_overlapping_resumes_one_wins_and_keeps_the_session() {
    // write_timeout 6: a resume waits up to 6 s for the old connection to let go.
    let ts = start_with_modules(vec![std::sync::Arc::new(Dawdle)], |c| {
        c.c2s.write_timeout = 6
    })
    .await;
    let mut alice = ts.login_available("alice").await;
    let ctx = ts.server().ctx().clone();
    // Each round: a live connection, busy (3 s) so that both resumes ask for its session
    // before it lets go; then it parks and both go for it. The rest is timing: a few rounds.
    for round in 0..3 {
        let mut old = bound(&ts, "bob", "phone").await;
        let id = enable(&mut old, true).await.expect("resumable");
        old.send("<dawdle xmlns='urn:example:dawdle'/>").await;
        let mut r1 = ts.authenticated_raw("bob").await;
        let mut r2 = ts.authenticated_raw("bob").await;
        let resume = format!("<resume xmlns='{NS}' previd='{id}' h='0'/>");
        tokio::join!(r1.send(&resume), r2.send(&resume));
        let (a, b) = tokio::join!(r1.element(), r2.element());
        let (mut winner, failed) = match (a.is("resumed", NS), b.is("resumed", NS)) {
            (true, false) => (r1, b),
            (false, true) => (r2, a),
            _ => panic!("round {round}: exactly one resume must succeed: {a} / {b}"),
        };
        assert!(failed.is("failed", NS), "round {round}: {failed}");
        // The winner keeps the session: messages both ways.
        let text = format!("m{round}");
        alice
            .send(&chat("bob@localhost/phone", &text))
            .await
            .expect("send");
        assert_eq!(
            body(&next_stanza(&mut winner).await).as_deref(),
            Some(text.as_str()),
            "round {round}"
        );
        winner
            .send(&chat(alice.jid.as_str(), &text).to_xml(ns::CLIENT))
            .await;
        assert_eq!(
            body(&recv_message(&mut alice).await).as_deref(),
            Some(text.as_str())
        );
        assert_eq!(ctx.router.parked_count(), 0, "round {round}");
        winner
            .send("<presence type='unavailable'/></stream:stream>")
            .await;
        drop(winner);
        drop(old);
        // The session ends with its connection (closed cleanly): none left parked.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let jid = confab_proto::jid::FullJid::new("bob@localhost/phone").expect("jid");
        while ctx.router.session(&jid).is_some() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "round {round}: session left"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
