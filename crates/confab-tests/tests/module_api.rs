//! The module surface seen from a module written outside the server: one delivery path
//! whose hooks see every stanza queued for a session, with its origin and target.

use async_trait::async_trait;
use confab_proto::ns;
use confab_proto::stanza::Stanza;
use confab_proto::xml::Element;
use confab_server::module::{HookArgs, HookPoint, HookResult, Module, Registry, StanzaHook};
use confab_server::{Server, ServerCtx};
use confab_tests::*;
use std::sync::{Arc, Mutex};

/// One stanza a `Deliver` hook saw.
#[derive(Clone, Debug)]
struct Seen {
    target: String,
    origin: Option<String>,
    what: String,
}

/// Records everything delivered, and holds back messages whose body is "secret".
#[derive(Default)]
struct Watch {
    seen: Mutex<Vec<Seen>>,
}

impl Module for Watch {
    fn name(&self) -> &'static str {
        "watch"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        reg.hook(HookPoint::Deliver, 0, self);
    }
}

#[async_trait]
impl StanzaHook for Watch {
    async fn on_stanza(&self, _: &ServerCtx, args: &HookArgs, stanza: &mut Stanza) -> HookResult {
        let payload = stanza
            .el
            .elements()
            .next()
            .map(|c| format!("{} {}", c.ns.as_str(), c.name))
            .unwrap_or_default();
        let what = format!(
            "{} {} {}",
            stanza.el.name,
            stanza.type_attr().unwrap_or("-"),
            payload
        );
        self.seen.lock().expect("lock").push(Seen {
            target: args
                .target
                .as_ref()
                .map(|t| t.jid.to_string())
                .unwrap_or_default(),
            origin: args.origin.as_ref().map(|o| o.jid.to_string()),
            what,
        });
        let secret = stanza
            .el
            .get_child("body", ns::CLIENT)
            .is_some_and(|b| b.text_content() == "secret");
        if secret {
            HookResult::Handled
        } else {
            HookResult::Continue
        }
    }
}

impl Watch {
    fn find(&self, target_prefix: &str, what: &str) -> Option<Seen> {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .find(|s| s.target.starts_with(target_prefix) && s.what.contains(what))
            .cloned()
    }
}

#[tokio::test]
async fn deliver_hooks_see_routed_and_module_made_stanzas_with_origin_and_target() {
    let watch = Arc::new(Watch::default());
    let ts = TestServer::start_with_modules(vec![watch.clone()], |_| {}).await;
    for u in ["alice", "bob", "dave"] {
        ts.add_user(u).await;
    }
    // An offline message for dave, delivered by the offline module at his login.
    let mut alice = ts.login("alice").await;
    alice
        .send(
            &Element::new("message", ns::CLIENT)
                .attr("to", "dave@localhost")
                .attr("type", "chat")
                .child(Element::new("body", ns::CLIENT).text("while you were away")),
        )
        .await
        .expect("send");
    ping(&mut alice).await;
    // alice's own request: the result's origin is alice.
    let roster = iq(
        &mut alice,
        "get",
        None,
        Element::new("query", "jabber:iq:roster"),
    )
    .await;
    assert_eq!(roster.get_attr("type"), Some("result"));
    let seen = watch
        .find("alice@", "iq result jabber:iq:roster")
        .expect("roster result");
    assert!(
        seen.origin
            .as_deref()
            .is_some_and(|o| o.starts_with("alice@")),
        "{seen:?}"
    );
    // A roster push the roster module makes.
    iq(
        &mut alice,
        "set",
        None,
        Element::new("query", "jabber:iq:roster")
            .child(Element::new("item", "jabber:iq:roster").attr("jid", "bob@localhost")),
    )
    .await;
    watch
        .find("alice@", "iq set jabber:iq:roster")
        .expect("roster push");
    // A subscription request the presence module hands to bob's resources.
    let mut bob = ts.login_available("bob").await;
    alice
        .send(
            &Element::new("presence", ns::CLIENT)
                .attr("to", "bob@localhost")
                .attr("type", "subscribe"),
        )
        .await
        .expect("subscribe");
    expect(&mut bob, "subscribe", |e| {
        e.get_attr("type") == Some("subscribe")
    })
    .await;
    let seen = watch
        .find("bob@", "presence subscribe")
        .expect("subscription request");
    assert!(
        seen.origin
            .as_deref()
            .is_some_and(|o| o.starts_with("alice@")),
        "{seen:?}"
    );
    // A block-list push.
    let r = iq(
        &mut alice,
        "set",
        None,
        Element::new("block", "urn:xmpp:blocking")
            .child(Element::new("item", "urn:xmpp:blocking").attr("jid", "mallory@localhost")),
    )
    .await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");
    watch
        .find("alice@", "iq set urn:xmpp:blocking")
        .expect("block push");
    // The offline message, at dave's initial presence.
    let mut dave = ts.login("dave").await;
    dave.send(&Element::new("presence", ns::CLIENT))
        .await
        .expect("presence");
    let _ = recv_message(&mut dave).await;
    watch
        .find("dave@", "message chat")
        .expect("offline delivery");
    // A routed message a hook holds back never reaches the session.
    alice
        .send(
            &Element::new("message", ns::CLIENT)
                .attr("to", bob.jid.as_str())
                .attr("type", "chat")
                .child(Element::new("body", ns::CLIENT).text("secret")),
        )
        .await
        .expect("send");
    ping(&mut alice).await;
    assert!(
        no_message(&mut bob, 300).await,
        "a held-back message arrived"
    );
    assert!(no_message(&mut alice, 100).await, "holding back bounced");
}

/// `[greeter]`: a module's own typed section.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
struct GreeterConfig {
    greeting: String,
    /// Milliseconds between timer ticks.
    every_ms: u64,
}

impl Default for GreeterConfig {
    fn default() -> Self {
        GreeterConfig {
            greeting: "hello".into(),
            every_ms: 50,
        }
    }
}

impl confab_server::module::ModuleConfig for GreeterConfig {
    fn validate(&self) -> Result<(), String> {
        if self.greeting.is_empty() {
            return Err("greeting must not be empty".into());
        }
        Ok(())
    }
}

/// A module that uses the whole surface: its section, a timer, start/stop events,
/// per-session data, its own store and an IQ handler answering from them.
#[derive(Default)]
struct Greeter {
    config: std::sync::OnceLock<GreeterConfig>,
    ticks: std::sync::atomic::AtomicUsize,
    started: std::sync::atomic::AtomicUsize,
    stopped: std::sync::atomic::AtomicUsize,
}

const GREETER_NS: &str = "urn:example:greeter";

/// Per-session count of stanzas the client sent.
#[derive(Default)]
struct Sent(std::sync::atomic::AtomicUsize);

impl Module for Greeter {
    fn name(&self) -> &'static str {
        "greeter"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        let cfg: GreeterConfig = reg.section("greeter");
        reg.timer(std::time::Duration::from_millis(cfg.every_ms), self.clone());
        let _ = self.config.set(cfg);
        reg.hook(HookPoint::FromClient, 0, self.clone());
        reg.iq(
            confab_proto::IqType::Get,
            confab_server::module::IqTarget::Account,
            GREETER_NS,
            self.clone(),
        );
        reg.iq(
            confab_proto::IqType::Set,
            confab_server::module::IqTarget::Account,
            GREETER_NS,
            self.clone(),
        );
        reg.lifecycle(self);
    }
}

#[async_trait]
impl confab_server::module::Timer for Greeter {
    async fn tick(&self, _: &ServerCtx) {
        self.ticks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[async_trait]
impl confab_server::module::LifecycleListener for Greeter {
    async fn server_started(&self, _: &ServerCtx) {
        self.started
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    async fn server_stopping(&self, _: &ServerCtx) {
        self.stopped
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[async_trait]
impl StanzaHook for Greeter {
    async fn on_stanza(&self, _: &ServerCtx, args: &HookArgs, _: &mut Stanza) -> HookResult {
        if let Some(origin) = &args.origin {
            origin
                .data_or_insert_with(Sent::default)
                .0
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        HookResult::Continue
    }
}

#[async_trait]
impl confab_server::module::IqHandler for Greeter {
    async fn handle_iq(
        &self,
        ctx: &ServerCtx,
        iq: &Stanza,
        _: confab_server::module::IqTarget,
    ) -> confab_server::module::IqReply {
        use confab_server::module::IqReply;
        let store = ctx.registry.store("greeter");
        let Some(from) = iq.from.as_ref().map(|f| f.to_bare()) else {
            return IqReply::Handled;
        };
        if iq.iq_type() == Some(confab_proto::IqType::Set) {
            let text = iq
                .iq_payload()
                .map(|p| p.text_content())
                .unwrap_or_default();
            return match store.set(ctx, &from, "note", &text).await {
                Ok(()) => IqReply::Result(None),
                Err(_) => IqReply::Error(confab_proto::StanzaError::new(
                    confab_proto::StanzaErrorCondition::InternalServerError,
                )),
            };
        }
        let sent = confab_server::session::origin()
            .and_then(|o| o.data::<Sent>())
            .map(|s| s.0.load(std::sync::atomic::Ordering::Relaxed))
            .unwrap_or(0);
        let note = store
            .get(ctx, &from, "note")
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        let greeting = self
            .config
            .get()
            .map(|c| c.greeting.clone())
            .unwrap_or_default();
        IqReply::Result(Some(
            Element::new("query", GREETER_NS)
                .attr("greeting", greeting)
                .attr("sent", sent.to_string())
                .attr("note", note),
        ))
    }
}

fn greeter_config(dir: &std::path::Path, section: Option<&str>) -> confab_server::config::Config {
    let mut c = test_config(dir);
    if let Some(text) = section {
        let table: toml::Table = text.parse().expect("toml");
        for (k, v) in table {
            c.sections.insert(k, v);
        }
    }
    c
}

async fn start_greeter(
    dir: &std::path::Path,
    section: Option<&str>,
    greeter: Arc<Greeter>,
) -> Result<Server, String> {
    start_server(greeter_config(dir, section), vec![greeter])
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn module_sections_are_parsed_validated_and_required_to_exist() {
    init_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = |text: &'static str| {
        let dir = dir.path().to_path_buf();
        async move {
            match start_greeter(&dir, Some(text), Arc::new(Greeter::default())).await {
                Ok(_) => panic!("started with {text}"),
                Err(e) => e,
            }
        }
    };
    let e = bad("[greeter]\nnosuchkey = 1\n").await;
    assert!(e.contains("[greeter]") && e.contains("nosuchkey"), "{e}");
    let e = bad("[greeter]\ngreeting = 5\n").await;
    assert!(e.contains("[greeter]"), "{e}");
    let e = bad("[greeter]\ngreeting = ''\n").await;
    assert!(e.contains("[greeter] greeting must not be empty"), "{e}");
    let e = bad("[nosuchsection]\nx = 1\n").await;
    assert!(
        e.contains("unknown configuration section [nosuchsection]"),
        "{e}"
    );
    // A built-in module's section is validated by that module.
    let e = bad("[ping]\ninterval = 5\ntimeout = 0\n").await;
    assert!(e.contains("[ping] timeout must be positive"), "{e}");
    // The section of a disabled module is not an unknown one.
    let mut c = greeter_config(dir.path(), Some("[greeter]\ngreeting = 'hi'\n"));
    c.modules.disabled = vec!["greeter".into()];
    let s = start_server(c, vec![Arc::new(Greeter::default())])
        .await
        .expect("starts");
    s.shutdown().await;
}

#[tokio::test]
async fn a_module_uses_its_section_timer_events_session_data_and_store() {
    init_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let greeter = Arc::new(Greeter::default());
    let server = start_greeter(
        dir.path(),
        Some("[greeter]\ngreeting = 'ahoy'\nevery_ms = 20\n"),
        greeter.clone(),
    )
    .await
    .expect("starts");
    assert_eq!(
        greeter.started.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let addr = server.c2s_addr().expect("addr");
    let tls_addr = server.c2s_tls_addr().expect("addr");
    let ts = TestServer {
        server: Some(server),
        dir,
        addr,
        tls_addr,
    };
    ts.add_user("alice").await;
    let mut one = ts.login("alice").await;
    let mut two = ts.login("alice").await;
    for _ in 0..3 {
        ping(&mut one).await;
    }
    let set = iq(
        &mut two,
        "set",
        None,
        Element::new("query", GREETER_NS).text("kept"),
    )
    .await;
    assert_eq!(set.get_attr("type"), Some("result"), "{set}");
    let ask = |c| async move {
        let r = iq(c, "get", None, Element::new("query", GREETER_NS)).await;
        let q = r.get_child("query", GREETER_NS).cloned().expect("query");
        (
            q.get_attr("greeting").unwrap_or_default().to_string(),
            q.get_attr("sent")
                .unwrap_or_default()
                .parse::<usize>()
                .expect("count"),
            q.get_attr("note").unwrap_or_default().to_string(),
        )
    };
    // Each session has its own count (the query itself counts too); the store is shared
    // by the account.
    let (greeting, sent_one, note) = ask(&mut one).await;
    assert_eq!(greeting, "ahoy");
    assert_eq!(sent_one, 4);
    assert_eq!(note, "kept");
    let (_, sent_two, _) = ask(&mut two).await;
    assert_eq!(sent_two, 2);
    // The timer ticks while the server runs, and stops with it.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(greeter.ticks.load(std::sync::atomic::Ordering::Relaxed) >= 3);
    let mut ts = ts;
    ts.server.take().expect("server").shutdown().await;
    assert_eq!(
        greeter.stopped.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let after = greeter.ticks.load(std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        greeter.ticks.load(std::sync::atomic::Ordering::Relaxed),
        after
    );
    // The store outlives the server.
    let again = Arc::new(Greeter::default());
    let server = start_greeter(ts.dir.path(), None, again)
        .await
        .expect("restarts");
    let store = server.ctx().registry.store("greeter");
    let alice = confab_proto::BareJid::new("alice@localhost").expect("jid");
    assert_eq!(
        store
            .get(server.ctx(), &alice, "note")
            .await
            .expect("read")
            .as_deref(),
        Some("kept")
    );
    // Per-domain documents: set, listed, deleted.
    let ctx = server.ctx();
    for (k, v) in [("room-a", "1"), ("room-b", "2")] {
        store.set_host(ctx, "localhost", k, v).await.expect("write");
    }
    let mut listed = store.list_host(ctx, "localhost").await.expect("list");
    listed.sort();
    assert_eq!(
        listed,
        vec![
            ("room-a".to_string(), "1".to_string()),
            ("room-b".to_string(), "2".to_string())
        ]
    );
    assert!(store
        .delete_host(ctx, "localhost", "room-a")
        .await
        .expect("delete"));
    assert!(!store
        .delete_host(ctx, "localhost", "room-a")
        .await
        .expect("delete"));
    assert_eq!(
        store
            .get_host(ctx, "localhost", "room-a")
            .await
            .expect("read"),
        None
    );
    assert_eq!(
        store.list_host(ctx, "localhost").await.expect("list").len(),
        1
    );
    server.shutdown().await;
}

/// Answers `<poke xmlns='urn:example:poke'/>`, a stream-level element, with `<poked/>`.
struct Poke;

impl Module for Poke {
    fn name(&self) -> &'static str {
        "poke"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        reg.session_element("poke", "urn:example:poke", self);
    }
}

#[async_trait]
impl confab_server::module::SessionElementHandler for Poke {
    async fn handle(
        &self,
        _: &ServerCtx,
        session: &Arc<confab_server::session::SessionInfo>,
        el: &Element,
    ) -> Result<Vec<Element>, confab_proto::StreamError> {
        if el.get_attr("bad").is_some() {
            return Err(confab_proto::StreamError::new(
                confab_proto::StreamErrorCondition::PolicyViolation,
            ));
        }
        Ok(vec![
            Element::new("poked", "urn:example:poke").attr("jid", session.jid.to_string())
        ])
    }
}

#[tokio::test]
async fn modules_answer_stream_level_elements_of_bound_sessions() {
    let ts = TestServer::start_with_modules(vec![Arc::new(Poke)], |_| {}).await;
    ts.add_user("alice").await;
    let mut alice = ts.login("alice").await;
    alice
        .send(&Element::new("poke", "urn:example:poke"))
        .await
        .expect("send");
    let r = recv(&mut alice).await;
    assert!(r.is("poked", "urn:example:poke"), "{r}");
    assert_eq!(r.get_attr("jid"), Some(alice.jid.as_str()));
    // A handler's error ends the stream with it.
    alice
        .send(&Element::new("poke", "urn:example:poke").attr("bad", "1"))
        .await
        .expect("send");
    assert_eq!(
        expect_session_stream_error(&mut alice).await,
        confab_proto::StreamErrorCondition::PolicyViolation
    );
    // Elements nobody handles are still unsupported.
    let mut again = ts.login("alice").await;
    again
        .send(&Element::new("nudge", "urn:example:poke"))
        .await
        .expect("send");
    assert_eq!(
        expect_session_stream_error(&mut again).await,
        confab_proto::StreamErrorCondition::UnsupportedStanzaType
    );
}

/// Serves `GET /hello/{name}` on the HTTP listener.
struct Hello {
    path: &'static str,
}

impl Module for Hello {
    fn name(&self) -> &'static str {
        "hello"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        async fn hello(
            axum::extract::State(ctx): axum::extract::State<ServerCtx>,
            axum::extract::Path(name): axum::extract::Path<String>,
        ) -> String {
            let domain = ctx
                .config
                .server
                .domains
                .first()
                .cloned()
                .unwrap_or_default();
            format!("hello {name} from {domain}")
        }
        reg.http_route(self.path, axum::routing::get(hello));
    }
}

/// A raw HTTP/1.1 request; returns the status line and the body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let mut out = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tcp.read_to_string(&mut out),
    )
    .await
    .expect("timed out")
    .expect("read");
    let status = out.lines().next().unwrap_or_default().to_string();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (status, body)
}

#[tokio::test]
async fn modules_serve_http_routes() {
    init_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_server(
        test_config(dir.path()),
        vec![Arc::new(Hello {
            path: "/hello/{name}",
        })],
    )
    .await
    .expect("server");
    let addr = server.http_addr().expect("an HTTP listener");
    let (status, body) = http_get(addr, "/hello/world").await;
    assert!(status.contains(" 200 "), "{status}");
    assert!(body.contains("hello world from localhost"), "{body}");
    let (status, _) = http_get(addr, "/nothing/here").await;
    assert!(status.contains(" 404 "), "{status}");
    server.shutdown().await;
    // Without routes nothing listens.
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = start_server(test_config(dir.path()), Vec::new())
        .await
        .expect("server");
    assert!(plain.http_addr().is_none());
    plain.shutdown().await;
    // A path registered twice, or not a path, stops the start.
    for (a, b, why) in [
        ("/x", "/x", "registered twice"),
        ("/x", "y", "not a valid path"),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = match start_server(
            test_config(dir.path()),
            vec![Arc::new(Hello { path: a }), Arc::new(Hello { path: b })],
        )
        .await
        {
            Ok(_) => panic!("started with routes {a} and {b}"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(why), "{err}");
    }
}
