//! The module surface seen from a module written outside the server: one delivery path
//! whose hooks see every stanza queued for a session, with its origin and target.

mod common;

use async_trait::async_trait;
use common::*;
use confab_proto::ns;
use confab_proto::stanza::Stanza;
use confab_proto::xml::Element;
use confab_server::module::{HookArgs, HookPoint, HookResult, Module, Registry, StanzaHook};
use confab_server::{Server, ServerCtx};
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
    init_logs();
    let watch = Arc::new(Watch::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with_modules(test_config(dir.path()), vec![watch.clone()])
        .await
        .expect("server");
    let addr = server.c2s_addr().expect("addr");
    let tls_addr = server.c2s_tls_addr().expect("addr");
    let ts = TestServer {
        server: Some(server),
        dir,
        addr,
        tls_addr,
    };
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
