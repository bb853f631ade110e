//! XEP-0160 offline messages: what is stored, when it is delivered, and that nothing is lost.

use confab_modules::offline::OfflineConfig;
use confab_proto::xml::Element;
use confab_proto::{ns, StanzaError};
use confab_stream::client::ClientSession;
use confab_tests::*;

const HINTS: &str = "urn:xmpp:hints";
const CHATSTATES: &str = "http://jabber.org/protocol/chatstates";

fn chat(to: &str, body: &str) -> Element {
    Element::new("message", ns::CLIENT)
        .attr("to", to)
        .attr("type", "chat")
        .child(Element::new("body", ns::CLIENT).text(body))
}

async fn stored(ts: &TestServer, user: &str) -> u64 {
    ts.server()
        .ctx()
        .stores
        .offline
        .offline_count(DOMAIN, user)
        .await
        .expect("count")
}

/// Deletion follows delivery in the delivering task: wait for it, bounded.
async fn wait_stored(ts: &TestServer, user: &str, n: u64) {
    for _ in 0..250 {
        if stored(ts, user).await == n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(stored(ts, user).await, n);
}

async fn send_presence(c: &mut ClientSession, priority: Option<i8>) {
    let mut p = Element::new("presence", ns::CLIENT);
    if let Some(pr) = priority {
        p.push_child(Element::new("priority", ns::CLIENT).text(pr.to_string()));
    }
    c.send(&p).await.expect("presence");
}

fn body(e: &Element) -> Option<String> {
    e.get_child("body", ns::CLIENT).map(|b| b.text_content())
}

fn assert_delayed(e: &Element) {
    let d = e
        .get_child("delay", ns::DELAY)
        .unwrap_or_else(|| panic!("no delay element: {e}"));
    assert_eq!(d.get_attr("from"), Some(DOMAIN));
    let stamp = d.get_attr("stamp").expect("stamp");
    let t = confab_proto::datetime::parse_datetime(stamp).expect("XEP-0082 stamp");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    assert!((now - 120..=now + 1).contains(&t), "stamp {stamp}");
}

async fn setup() -> (TestServer, ClientSession) {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let alice = ts.login_available("alice").await;
    (ts, alice)
}

#[tokio::test]
async fn stored_in_order_delivered_with_delay_then_deleted() {
    let (ts, mut alice) = setup().await;
    for (i, t) in [Some("chat"), Some("normal"), None].iter().enumerate() {
        let mut m = Element::new("message", ns::CLIENT)
            .attr("to", "bob@localhost")
            .attr("id", format!("m{i}"))
            .child(Element::new("body", ns::CLIENT).text(format!("msg {i}")));
        if let Some(t) = t {
            m.set_attr("type", *t);
        }
        alice.send(&m).await.expect("send");
    }
    ping(&mut alice).await;
    // Stored, not bounced.
    assert!(nothing_arrives(&mut alice, 300).await);
    assert_eq!(stored(&ts, "bob").await, 3);

    let mut bob = ts.login("bob").await;
    send_presence(&mut bob, None).await;
    for i in 0..3 {
        let m = recv_message(&mut bob).await;
        assert_eq!(body(&m), Some(format!("msg {i}")), "{m}");
        assert_eq!(m.get_attr("from"), Some(alice.jid.as_str()));
        assert_eq!(m.get_attr("id"), Some(format!("m{i}").as_str()));
        assert_delayed(&m);
    }
    wait_stored(&ts, "bob", 0).await;
    // A later presence update does not deliver anything again.
    send_presence(&mut bob, Some(1)).await;
    assert!(no_message(&mut bob, 300).await);
    bob.close().await.expect("close");

    // Second login: nothing left.
    let mut bob = ts.login("bob").await;
    send_presence(&mut bob, None).await;
    assert!(no_message(&mut bob, 500).await);
    // While online, messages arrive directly, without delay.
    alice
        .send(&chat("bob@localhost", "live"))
        .await
        .expect("send");
    let m = recv_message(&mut bob).await;
    assert_eq!(body(&m).as_deref(), Some("live"));
    assert!(m.get_child("delay", ns::DELAY).is_none());
}

#[tokio::test]
async fn messages_survive_a_restart() {
    let (mut ts, mut alice) = setup().await;
    alice
        .send(&chat("bob@localhost", "before restart 1"))
        .await
        .expect("send");
    alice
        .send(&chat("bob@localhost", "before restart 2"))
        .await
        .expect("send");
    ping(&mut alice).await;
    let alice_jid = alice.jid.to_string();
    alice.close().await.expect("close");
    ts.server.take().expect("running").shutdown().await;

    let server = start_server(test_config(ts.dir.path()), Vec::new())
        .await
        .expect("restart");
    ts.addr = server.c2s_addr().expect("addr");
    ts.tls_addr = server.c2s_tls_addr().expect("tls addr");
    ts.server = Some(server);

    let mut bob = ts.login("bob").await;
    send_presence(&mut bob, None).await;
    for i in 1..=2 {
        let m = recv_message(&mut bob).await;
        assert_eq!(body(&m), Some(format!("before restart {i}")));
        assert_eq!(m.get_attr("from"), Some(alice_jid.as_str()));
        assert_delayed(&m);
    }
}

#[tokio::test]
async fn over_quota_bounces_with_service_unavailable() {
    let ts = TestServer::start_with(|c| {
        c.update_section("offline", |o: &mut OfflineConfig| o.quota = 2)
            .expect("offline section")
    })
    .await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let mut alice = ts.login_available("alice").await;
    for i in 0..3 {
        alice
            .send(&chat("bob@localhost", &format!("q{i}")).attr("id", format!("q{i}")))
            .await
            .expect("send");
    }
    let e = recv(&mut alice).await;
    assert_eq!(e.get_attr("type"), Some("error"), "{e}");
    assert_eq!(e.get_attr("id"), Some("q2"));
    assert_eq!(e.get_attr("from"), Some("bob@localhost"));
    let err = StanzaError::from_stanza(&e).expect("error");
    assert_eq!(err.condition.as_str(), "service-unavailable");
    assert_eq!(stored(&ts, "bob").await, 2);

    let mut bob = ts.login("bob").await;
    send_presence(&mut bob, None).await;
    assert_eq!(body(&recv_message(&mut bob).await).as_deref(), Some("q0"));
    assert_eq!(body(&recv_message(&mut bob).await).as_deref(), Some("q1"));
    assert!(no_message(&mut bob, 300).await);
}

#[tokio::test]
async fn what_is_not_stored() {
    let (ts, mut alice) = setup().await;
    // Standalone chat state: dropped silently.
    alice
        .send(
            &Element::new("message", ns::CLIENT)
                .attr("to", "bob@localhost")
                .attr("type", "chat")
                .child(Element::new("composing", CHATSTATES)),
        )
        .await
        .expect("send");
    // Headline: dropped (RFC 6121 §8.5.2.1.1).
    alice
        .send(&chat("bob@localhost", "news").attr("type", "headline"))
        .await
        .expect("send");
    // Error: never stored, never answered.
    alice
        .send(&chat("bob@localhost", "oops").attr("type", "error"))
        .await
        .expect("send");
    // Empty message: nothing to keep.
    alice
        .send(&Element::new("message", ns::CLIENT).attr("to", "bob@localhost"))
        .await
        .expect("send");
    ping(&mut alice).await;
    assert!(nothing_arrives(&mut alice, 300).await);
    assert_eq!(stored(&ts, "bob").await, 0);

    // Groupchat to an offline user bounces.
    alice
        .send(
            &chat("bob@localhost", "room")
                .attr("type", "groupchat")
                .attr("id", "gc"),
        )
        .await
        .expect("send");
    let e = recv(&mut alice).await;
    assert_eq!(e.get_attr("id"), Some("gc"));
    assert_eq!(
        StanzaError::from_stanza(&e).map(|x| x.condition.as_str()),
        Some("service-unavailable")
    );
    assert_eq!(stored(&ts, "bob").await, 0);

    // no-store hint: not stored, and the sender learns it was not delivered.
    alice
        .send(
            &chat("bob@localhost", "secret")
                .attr("id", "ns")
                .child(Element::new("no-store", HINTS)),
        )
        .await
        .expect("send");
    let e = recv(&mut alice).await;
    assert_eq!(e.get_attr("id"), Some("ns"));
    assert_eq!(e.get_attr("type"), Some("error"));
    assert_eq!(stored(&ts, "bob").await, 0);

    let mut bob = ts.login("bob").await;
    send_presence(&mut bob, None).await;
    assert!(no_message(&mut bob, 500).await);
}

#[tokio::test]
async fn what_is_stored_besides_bodies() {
    let (ts, mut alice) = setup().await;
    // A receipt alone is content for the recipient (XEP-0184).
    alice
        .send(
            &Element::new("message", ns::CLIENT)
                .attr("to", "bob@localhost")
                .attr("id", "r1")
                .child(Element::new("received", "urn:xmpp:receipts").attr("id", "x1")),
        )
        .await
        .expect("send");
    // A chat state beside a body does not make it standalone.
    alice
        .send(&chat("bob@localhost", "hello").child(Element::new("active", CHATSTATES)))
        .await
        .expect("send");
    // The store hint keeps even a headline (XEP-0334).
    alice
        .send(
            &chat("bob@localhost", "keep me")
                .attr("type", "headline")
                .child(Element::new("store", HINTS)),
        )
        .await
        .expect("send");
    // Attributes in other namespaces, xml:lang, escaped text and unknown payloads come
    // back exactly as they were routed.
    let mut rich = Element::new("message", ns::CLIENT)
        .attr("to", "bob@localhost")
        .attr("id", "rich")
        .child(Element::new("body", ns::CLIENT).text("<a & 'b' \"c\"> 😀"))
        .child(
            Element::new("x", "jabber:x:oob")
                .child(Element::new("url", "jabber:x:oob").text("https://example.org/?a=1&b=2")),
        );
    rich.attrs.push(confab_proto::xml::Attr {
        ns: ns::XML.into(),
        name: "lang".into(),
        value: "en".into(),
    });
    rich.attrs.push(confab_proto::xml::Attr {
        ns: "urn:example:ext".into(),
        name: "flag".into(),
        value: "1".into(),
    });
    alice.send(&rich).await.expect("send");
    ping(&mut alice).await;
    assert_eq!(stored(&ts, "bob").await, 4);
    let mut bob = ts.login("bob").await;
    send_presence(&mut bob, None).await;
    let r = recv_message(&mut bob).await;
    assert!(
        r.get_child("received", "urn:xmpp:receipts").is_some(),
        "{r}"
    );
    assert_delayed(&r);
    assert_eq!(
        body(&recv_message(&mut bob).await).as_deref(),
        Some("hello")
    );
    assert_eq!(
        body(&recv_message(&mut bob).await).as_deref(),
        Some("keep me")
    );
    let mut got = recv_message(&mut bob).await;
    assert_delayed(&got);
    got.remove_children("delay", ns::DELAY);
    // The archive's XEP-0359 id is the server's addition too.
    got.remove_children("stanza-id", "urn:xmpp:sid:0");
    assert_eq!(got.remove_attr("from").as_deref(), Some(alice.jid.as_str()));
    // Attribute order is not significant in XML.
    for e in [&mut got, &mut rich] {
        e.attrs
            .sort_by(|a, b| (&a.ns, &a.name).cmp(&(&b.ns, &b.name)));
    }
    assert_eq!(got, rich);
}

#[tokio::test]
async fn session_without_presence_gets_nothing_until_it_is_available() {
    let (ts, mut alice) = setup().await;
    let mut bob = ts.login("bob").await;
    alice
        .send(&chat("bob@localhost", "wait"))
        .await
        .expect("send");
    ping(&mut alice).await;
    // RFC 6121 §8.5.2.1: bare-JID messages are not for resources that are not available.
    assert!(no_message(&mut bob, 300).await);
    assert_eq!(stored(&ts, "bob").await, 1);
    // Negative priority: still not a delivery target (RFC 6121 §8.5.2.1.1).
    send_presence(&mut bob, Some(-1)).await;
    assert!(no_message(&mut bob, 300).await);
    assert_eq!(stored(&ts, "bob").await, 1);
    send_presence(&mut bob, Some(0)).await;
    let m = recv_message(&mut bob).await;
    assert_eq!(body(&m).as_deref(), Some("wait"));
    assert_delayed(&m);
    wait_stored(&ts, "bob", 0).await;

    // Unavailable, then available again on the same stream: what was stored meanwhile
    // is delivered on the new initial presence.
    bob.send(&Element::new("presence", ns::CLIENT).attr("type", "unavailable"))
        .await
        .expect("unavailable");
    ping(&mut bob).await;
    alice
        .send(&chat("bob@localhost", "meanwhile"))
        .await
        .expect("send");
    ping(&mut alice).await;
    assert!(no_message(&mut bob, 300).await);
    assert_eq!(stored(&ts, "bob").await, 1);
    send_presence(&mut bob, None).await;
    let m = recv_message(&mut bob).await;
    assert_eq!(body(&m).as_deref(), Some("meanwhile"));
    assert_delayed(&m);
    wait_stored(&ts, "bob", 0).await;
}

#[tokio::test]
async fn more_than_the_session_queue_is_paced_not_dropped() {
    let ts = TestServer::start_with(|c| c.limits.outbound_queue = 4).await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let mut alice = ts.login_available("alice").await;
    for i in 0..40 {
        alice
            .send(&chat("bob@localhost", &format!("n{i}")))
            .await
            .expect("send");
    }
    ping(&mut alice).await;
    assert_eq!(stored(&ts, "bob").await, 40);
    let mut bob = ts.login("bob").await;
    send_presence(&mut bob, None).await;
    for i in 0..40 {
        let m = recv_message(&mut bob).await;
        assert_eq!(body(&m), Some(format!("n{i}")));
    }
    wait_stored(&ts, "bob", 0).await;
}

#[tokio::test]
async fn feature_advertised_and_module_can_be_disabled() {
    let (_ts, mut alice) = setup().await;
    alice
        .send(
            &Element::new("iq", ns::CLIENT)
                .attr("type", "get")
                .attr("id", "d1")
                .attr("to", DOMAIN)
                .child(Element::new("query", ns::DISCO_INFO)),
        )
        .await
        .expect("send");
    let r = recv(&mut alice).await;
    let q = r.get_child("query", ns::DISCO_INFO).expect("query");
    assert!(q
        .elements()
        .any(|f| f.name == "feature" && f.get_attr("var") == Some("msgoffline")));

    let ts = TestServer::start_with(|c| c.modules.disabled = vec!["offline".into()]).await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let mut alice = ts.login_available("alice").await;
    alice
        .send(&chat("bob@localhost", "nobody keeps this").attr("id", "x"))
        .await
        .expect("send");
    let e = recv(&mut alice).await;
    assert_eq!(
        StanzaError::from_stanza(&e).map(|x| x.condition.as_str()),
        Some("service-unavailable")
    );
}
