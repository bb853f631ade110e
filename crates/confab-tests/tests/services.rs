//! Routing by domain: a module that hosts a service domain gets every stanza to it and
//! under it and answers through the normal path; other domains go to the remote route.

use async_trait::async_trait;
use confab_proto::stanza::{Stanza, StanzaKind};
use confab_proto::xml::Element;
use confab_proto::{ns, Jid};
use confab_server::module::{Module, Registry, RemoteRoute, Service};
use confab_server::{router, ServerCtx};
use confab_tests::*;
use std::sync::{Arc, Mutex};

const ECHO: &str = "echo.localhost";

/// A test-only service on `echo.localhost`: messages come back with the same body, IQ gets
/// are answered with an empty result, presence is answered with presence.
struct Echo;

impl Module for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        reg.service(ECHO, Some("Echo service"), self);
    }
}

#[async_trait]
impl Service for Echo {
    async fn handle(&self, ctx: &ServerCtx, stanza: Stanza) {
        let (Some(from), Some(to)) = (stanza.from.clone(), stanza.to.clone()) else {
            return;
        };
        let reply = match stanza.kind {
            StanzaKind::Iq => match stanza.iq_type() {
                Some(confab_proto::stanza::IqType::Get) => stanza.iq_result(None),
                _ => return,
            },
            StanzaKind::Message => {
                let body = stanza
                    .el
                    .get_child("body", ns::CLIENT)
                    .map(|b| b.text_content())
                    .unwrap_or_default();
                let el = Element::new("message", ns::CLIENT)
                    .attr("type", "chat")
                    .attr("from", to.as_str())
                    .attr("to", from.as_str())
                    .child(Element::new("body", ns::CLIENT).text(format!("echo: {body}")));
                Stanza::from_element(el).expect("stanza")
            }
            StanzaKind::Presence => {
                let el = Element::new("presence", ns::CLIENT)
                    .attr("from", to.as_str())
                    .attr("to", from.as_str());
                Stanza::from_element(el).expect("stanza")
            }
        };
        router::route(ctx, reply).await;
    }
}

async fn start_with(extra: Vec<Arc<dyn Module>>) -> TestServer {
    init_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_server(test_config(dir.path()), extra)
        .await
        .expect("server starts");
    let addr = server.c2s_addr().expect("addr");
    let tls_addr = server.c2s_tls_addr().expect("addr");
    TestServer {
        server: Some(server),
        dir,
        addr,
        tls_addr,
    }
}

#[tokio::test]
async fn a_service_gets_everything_under_its_domain_and_answers_through_the_router() {
    let ts = start_with(vec![Arc::new(Echo)]).await;
    ts.add_user("alice").await;
    let mut alice = ts.login_available("alice").await;
    // A JID under the service domain, with node and resource.
    alice
        .send(
            &Element::new("message", ns::CLIENT)
                .attr("to", "room@echo.localhost/nick")
                .attr("type", "chat")
                .child(Element::new("body", ns::CLIENT).text("hi")),
        )
        .await
        .expect("send");
    let m = recv_message(&mut alice).await;
    assert_eq!(m.get_attr("from"), Some("room@echo.localhost/nick"));
    assert_eq!(
        m.get_child("body", ns::CLIENT).map(|b| b.text_content()),
        Some("echo: hi".to_string())
    );
    // The bare service domain: the service answers, not the host's own handlers.
    let r = iq(
        &mut alice,
        "get",
        Some(ECHO),
        Element::new("query", "urn:example:anything"),
    )
    .await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");
    assert_eq!(r.get_attr("from"), Some(ECHO));
    // Presence to a JID under it.
    alice
        .send(&Element::new("presence", ns::CLIENT).attr("to", "room@echo.localhost/me"))
        .await
        .expect("send");
    expect(&mut alice, "presence from the service", |e| {
        e.name == "presence" && e.get_attr("from") == Some("room@echo.localhost/me")
    })
    .await;
    // The host lists the service in disco#items.
    let items = iq(
        &mut alice,
        "get",
        Some(DOMAIN),
        Element::new("query", ns::DISCO_ITEMS),
    )
    .await;
    let q = items.get_child("query", ns::DISCO_ITEMS).expect("query");
    let item = q
        .elements()
        .find(|i| i.get_attr("jid") == Some(ECHO))
        .unwrap_or_else(|| panic!("no {ECHO} in {items}"));
    assert_eq!(item.get_attr("name"), Some("Echo service"));
}

#[tokio::test]
async fn without_a_remote_route_other_domains_bounce() {
    let ts = start_with(vec![Arc::new(Echo)]).await;
    ts.add_user("alice").await;
    let mut alice = ts.login_available("alice").await;
    alice
        .send(
            &Element::new("message", ns::CLIENT)
                .attr("to", "someone@elsewhere.example")
                .attr("id", "far")
                .child(Element::new("body", ns::CLIENT).text("hello")),
        )
        .await
        .expect("send");
    let e = recv_message(&mut alice).await;
    assert_eq!(condition(&e), "remote-server-not-found");
    // A sub-domain of a service is not the service.
    alice
        .send(
            &Element::new("message", ns::CLIENT)
                .attr("to", "x@sub.echo.localhost")
                .child(Element::new("body", ns::CLIENT).text("hello")),
        )
        .await
        .expect("send");
    let e = recv_message(&mut alice).await;
    assert_eq!(condition(&e), "remote-server-not-found");
}

/// Records what the remote route receives (where s2s will plug in).
#[derive(Default)]
struct Remote {
    seen: Mutex<Vec<String>>,
}

impl Module for Remote {
    fn name(&self) -> &'static str {
        "test-remote"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        reg.remote_route(self);
    }
}

#[async_trait]
impl RemoteRoute for Remote {
    async fn route(&self, _: &ServerCtx, stanza: Stanza) {
        let to = stanza.to.as_ref().map(Jid::to_string).unwrap_or_default();
        self.seen.lock().expect("lock").push(to);
    }
}

#[tokio::test]
async fn a_remote_route_takes_other_domains() {
    let remote = Arc::new(Remote::default());
    let ts = start_with(vec![Arc::new(Echo), remote.clone()]).await;
    ts.add_user("alice").await;
    let mut alice = ts.login_available("alice").await;
    alice
        .send(
            &Element::new("message", ns::CLIENT)
                .attr("to", "bob@remote.example")
                .child(Element::new("body", ns::CLIENT).text("over there")),
        )
        .await
        .expect("send");
    ping(&mut alice).await;
    assert!(no_message(&mut alice, 200).await);
    assert_eq!(
        *remote.seen.lock().expect("lock"),
        vec!["bob@remote.example"]
    );
}

/// Claims the host's own domain as a service, which is a configuration mistake.
struct Squatter;

impl Module for Squatter {
    fn name(&self) -> &'static str {
        "squatter"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        reg.service(DOMAIN, None, Arc::new(Echo));
    }
}

#[tokio::test]
async fn a_domain_served_twice_stops_the_start_with_a_clear_error() {
    init_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let err = match start_server(test_config(dir.path()), vec![Arc::new(Squatter)]).await {
        Ok(_) => panic!("started with the host domain claimed twice"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("'localhost' is served twice"), "{err}");
}

#[tokio::test]
async fn one_stanza_to_many_sessions_is_addressed_to_each() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let mut alice = ts.login_available("alice").await;
    let mut bob = ts.login_available("bob").await;
    let ctx = ts.server().ctx().clone();
    let sessions: Vec<_> = [&alice.jid, &bob.jid]
        .iter()
        .map(|j| ctx.router.session(j).expect("bound"))
        .collect();
    // Built with a `to` of its own: each copy must carry its recipient's address only.
    let el = Element::new("message", ns::CLIENT)
        .attr("from", "room@conference.localhost/nick")
        .attr("to", "someone@else")
        .attr("type", "groupchat")
        .child(Element::new("body", ns::CLIENT).text("to all"));
    let stanza = confab_proto::stanza::Stanza::from_element(el).expect("stanza");
    assert_eq!(router::deliver_addressed(&ctx, &stanza, &sessions).await, 2);
    for c in [&mut alice, &mut bob] {
        let m = recv_message(c).await;
        assert_eq!(m.get_attr("to"), Some(c.jid.as_str()), "{m}");
        assert_eq!(m.get_attr("from"), Some("room@conference.localhost/nick"));
        assert_eq!(
            m.get_child("body", ns::CLIENT).map(|b| b.text_content()),
            Some("to all".into())
        );
    }
}
