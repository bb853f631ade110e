//! A session outlives its connection: parked when the connection drops (as stream
//! management asks), picked up by a new connection of the same account with everything
//! queued meanwhile, or ended when nobody picks it up, with nothing lost.

use async_trait::async_trait;
use confab_proto::xml::Element;
use confab_proto::{ns, BareJid};
use confab_server::module::{LifecycleListener, Module, PreBind, PreBindHandler, Registry};
use confab_server::session::SessionInfo;
use confab_server::ServerCtx;
use confab_tests::*;
use std::sync::Arc;
use std::time::Duration;

const RESUME_NS: &str = "urn:example:resume";

/// A test-only stand-in for stream management: every session may be resumed for
/// `timeout`, with `<resume xmlns='urn:example:resume' previd='ID'/>` instead of binding.
struct Resumable {
    timeout: Duration,
}

impl Module for Resumable {
    fn name(&self) -> &'static str {
        "test-resumable"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        reg.pre_bind("resume", RESUME_NS, self.clone());
        reg.lifecycle(self);
    }
}

/// Counts what was written to each session, as stream management does to know what the
/// client can acknowledge.
#[derive(Default)]
struct Written(std::sync::atomic::AtomicUsize);

impl confab_server::session::WriteObserver for Written {
    fn written(&self, _: &SessionInfo, stanzas: &[confab_stream::WireStanza]) {
        self.0
            .fetch_add(stanzas.len(), std::sync::atomic::Ordering::Relaxed);
    }
}

#[async_trait]
impl LifecycleListener for Resumable {
    async fn session_bound(&self, _: &ServerCtx, session: &SessionInfo) {
        session.set_resume_timeout(Some(self.timeout));
        let counter = session.data_or_insert_with(Written::default);
        session.set_write_observer(counter);
    }

    async fn session_resumed(
        &self,
        _: &ServerCtx,
        session: &SessionInfo,
        outbox: &mut confab_server::session::Outbox,
    ) {
        // What stream management would resend: here, a marker saying how many stanzas the
        // first connection had written.
        let n = session
            .data::<Written>()
            .map(|w| w.0.load(std::sync::atomic::Ordering::Relaxed))
            .unwrap_or(0);
        outbox.resend(vec![bytes::Bytes::from(format!(
            "<message><body>written before: {n}</body></message>"
        ))
        .into()]);
    }
}

#[async_trait]
impl PreBindHandler for Resumable {
    async fn handle(&self, _: &ServerCtx, _: &BareJid, el: &Element) -> PreBind {
        let id = el
            .get_attr("previd")
            .and_then(|v| v.parse().ok())
            .unwrap_or(u64::MAX);
        PreBind::Resume {
            session: id,
            resumed: Element::new("resumed", RESUME_NS),
            failed: Element::new("failed", RESUME_NS),
        }
    }
}

async fn start(timeout: Duration) -> TestServer {
    start_with(timeout, |_| {}).await
}

async fn start_with(
    timeout: Duration,
    f: impl FnOnce(&mut confab_server::config::Config),
) -> TestServer {
    let ts = TestServer::start_with_modules(vec![Arc::new(Resumable { timeout })], |c| {
        c.c2s.require_tls = false;
        c.c2s.allow_plain_without_tls = true;
        // Floods in these tests are read at once, not at a client's rate.
        c.limits.read_rate = 0;
        f(c);
    })
    .await;
    for u in ["alice", "bob", "carol"] {
        ts.add_user(u).await;
    }
    ts
}

/// A raw stream authenticated as `user` that has not bound a resource.
async fn authenticated(ts: &TestServer, user: &str) -> Raw {
    ts.authenticated_raw(user).await
}

/// Drops bob's connection and waits until his session is parked; returns its id.
async fn park_bob(ts: &TestServer) -> (u64, String) {
    let bob = ts.login_available("bob").await;
    let jid = bob.jid.clone();
    let ctx = ts.server().ctx();
    let id = ctx.router.session(&jid).expect("bound").id;
    drop(bob);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while ctx.router.parked_count() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session was not parked"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        ctx.router.resource_bound(&jid),
        "a parked session stays bound"
    );
    (id, jid.to_string())
}

fn chat(to: &str, body: &str) -> Element {
    Element::new("message", ns::CLIENT)
        .attr("to", to)
        .attr("type", "chat")
        .child(Element::new("body", ns::CLIENT).text(body))
}

#[tokio::test]
async fn a_parked_session_is_resumed_with_its_queue_intact() {
    let ts = start(Duration::from_secs(30)).await;
    let mut alice = ts.login_available("alice").await;
    let (id, bob_jid) = park_bob(&ts).await;
    // Sent while bob has no connection: queued for his session, not bounced or stored.
    for i in 0..3 {
        alice
            .send(&chat(&bob_jid, &format!("m{i}")))
            .await
            .expect("send");
    }
    ping(&mut alice).await;
    assert!(
        no_message(&mut alice, 200).await,
        "a message to the parked session bounced"
    );
    // Another account cannot take it.
    let mut carol = authenticated(&ts, "carol").await;
    carol
        .send(&format!("<resume xmlns='{RESUME_NS}' previd='{id}'/>"))
        .await;
    assert!(carol.element().await.is("failed", RESUME_NS));
    // Bob comes back on a new connection and picks up his session.
    let mut bob = authenticated(&ts, "bob").await;
    bob.send(&format!("<resume xmlns='{RESUME_NS}' previd='{id}'/>"))
        .await;
    assert!(bob.element().await.is("resumed", RESUME_NS));
    // What a module put back in front comes first; the first connection had been written
    // at least its ping result (login_available), which the write observer counted.
    let marker = bob.element().await;
    let written: usize = marker
        .get_child("body", ns::CLIENT)
        .and_then(|b| {
            b.text_content()
                .strip_prefix("written before: ")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("not the marker: {marker}"));
    assert!(written >= 1, "{marker}");
    for i in 0..3 {
        let m = bob.element().await;
        assert_eq!(m.name, "message", "{m}");
        assert_eq!(
            m.get_child("body", ns::CLIENT).map(|b| b.text_content()),
            Some(format!("m{i}"))
        );
    }
    assert_eq!(ts.server().ctx().router.parked_count(), 0);
    // The resumed session is the same one: same address, and it sends as before.
    bob.send(&format!(
        "<message to='{}' type='chat'><body>back</body></message>",
        alice.jid
    ))
    .await;
    let m = recv_message(&mut alice).await;
    assert_eq!(m.get_attr("from"), Some(bob_jid.as_str()));
}

#[tokio::test]
async fn a_parked_session_nobody_resumes_ends_and_loses_nothing() {
    let ts = start(Duration::from_millis(500)).await;
    let mut alice = ts.login_available("alice").await;
    let (id, bob_jid) = park_bob(&ts).await;
    alice
        .send(&chat(&bob_jid, "while away"))
        .await
        .expect("send");
    ping(&mut alice).await;
    let ctx = ts.server().ctx();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while ctx.router.parked_count() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the parked session never ended"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let bare = BareJid::new("bob@localhost").expect("jid");
    assert!(
        ctx.router.sessions_of(&bare).is_empty(),
        "an ended session stayed bound"
    );
    // Too late to resume.
    let mut late = authenticated(&ts, "bob").await;
    late.send(&format!("<resume xmlns='{RESUME_NS}' previd='{id}'/>"))
        .await;
    assert!(late.element().await.is("failed", RESUME_NS));
    // What was queued went to offline storage, and arrives at the next login.
    let mut bob = ts.login("bob").await;
    bob.send(&Element::new("presence", ns::CLIENT))
        .await
        .expect("presence");
    let m = recv_message(&mut bob).await;
    assert_eq!(
        m.get_child("body", ns::CLIENT).map(|b| b.text_content()),
        Some("while away".to_string())
    );
}

#[tokio::test]
async fn a_session_replaced_while_its_writes_are_blocked_ends_instead_of_parking() {
    let ts = start_with(Duration::from_secs(30), |c| {
        // Queue limits out of the way: the write blocks instead of alice being cut as a
        // slow reader.
        c.limits.outbound_queue = 1_000_000;
        c.limits.max_outbound_bytes = 1 << 30;
    })
    .await;
    let mut bob = ts.login_available("bob").await;
    let mut o = ts.options("alice");
    o.resource = Some("phone".into());
    let alice = confab_stream::client::connect(&o).await.expect("login");
    // Alice stops reading; bob fills her connection until her writes block.
    let body = "z".repeat(64 * 1024);
    for i in 0..400 {
        bob.send(
            &Element::new("message", ns::CLIENT)
                .attr("to", "alice@localhost/phone")
                .attr("type", "chat")
                .attr("id", format!("m{i}"))
                .child(Element::new("body", ns::CLIENT).text(body.clone())),
        )
        .await
        .expect("send");
    }
    ping(&mut bob).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A new login on the same resource replaces the blocked session (kick-old): it is
    // ended for good, not kept for resumption.
    let _new = confab_stream::client::connect(&o)
        .await
        .expect("login again");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        ts.server().ctx().router.parked_count(),
        0,
        "a replaced session was parked"
    );
    drop(alice);
}
