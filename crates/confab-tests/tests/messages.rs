//! Message delivery rules of RFC 6121 §8.5 by type, priority and addressing.

use confab_proto::xml::Element;
use confab_proto::{ns, StanzaError};
use confab_tests::*;

fn msg(to: &str, type_: Option<&str>, body: &str) -> Element {
    let mut m = Element::new("message", ns::CLIENT)
        .attr("to", to)
        .attr("id", body)
        .child(Element::new("body", ns::CLIENT).text(body));
    if let Some(t) = type_ {
        m.set_attr("type", t);
    }
    m
}

#[tokio::test]
async fn negative_priority_gets_no_bare_jid_messages_but_full_jid_ones() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let mut alice = ts.login_available("alice").await;
    let mut bob = ts.login("bob").await;
    bob.send(
        &Element::new("presence", ns::CLIENT)
            .child(Element::new("priority", ns::CLIENT).text("-1")),
    )
    .await
    .expect("presence");
    ping(&mut bob).await;
    let mut bob_hi = ts.login("bob").await;
    bob_hi
        .send(
            &Element::new("presence", ns::CLIENT)
                .child(Element::new("priority", ns::CLIENT).text("0")),
        )
        .await
        .expect("presence");
    ping(&mut bob_hi).await;
    alice
        .send(&msg("bob@localhost", Some("chat"), "to-bare"))
        .await
        .expect("send");
    let got = recv_message(&mut bob_hi).await;
    assert_eq!(got.get_attr("id"), Some("to-bare"));
    assert!(
        no_message(&mut bob, 300).await,
        "negative priority got a bare-JID message"
    );
    alice
        .send(&msg(bob.jid.as_str(), Some("chat"), "to-full"))
        .await
        .expect("send");
    let got = recv_message(&mut bob).await;
    assert_eq!(got.get_attr("id"), Some("to-full"));
}

#[tokio::test]
async fn types_without_an_available_resource() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let mut alice = ts.login_available("alice").await;
    // bob is online but has not sent presence: not available.
    let mut bob = ts.login("bob").await;
    // headline: silently dropped.
    alice
        .send(&msg("bob@localhost", Some("headline"), "h"))
        .await
        .expect("send");
    // groupchat to a user: an error back.
    alice
        .send(&msg("bob@localhost", Some("groupchat"), "g"))
        .await
        .expect("send");
    let e = recv_message(&mut alice).await;
    assert_eq!(e.get_attr("id"), Some("g"));
    assert_eq!(e.get_attr("type"), Some("error"));
    let err = StanzaError::from_stanza(&e).expect("error");
    assert_eq!(err.condition.as_str(), "service-unavailable");
    // Error messages are never answered with errors (no loops).
    alice
        .send(&msg("nobody@localhost", Some("error"), "e"))
        .await
        .expect("send");
    assert!(no_message(&mut alice, 300).await);
    assert!(
        no_message(&mut bob, 100).await,
        "a non-available session got a bare-JID message"
    );
    // A chat message to the server itself: nothing handles it, so it bounces.
    alice
        .send(&msg("localhost", Some("chat"), "to-server"))
        .await
        .expect("send");
    let e = recv_message(&mut alice).await;
    assert_eq!(e.get_attr("id"), Some("to-server"));
    assert_eq!(condition(&e), "service-unavailable");
    // groupchat to a full JID that is not online: error too.
    alice
        .send(&msg("bob@localhost/gone", Some("groupchat"), "g2"))
        .await
        .expect("send");
    let e = recv_message(&mut alice).await;
    assert_eq!(e.get_attr("type"), Some("error"));
}

#[tokio::test]
async fn chat_states_and_receipt_requests_pass_through_untouched() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let mut alice = ts.login_available("alice").await;
    let mut bob = ts.login_available("bob").await;
    let m = msg("bob@localhost", Some("chat"), "with extras")
        .child(Element::new(
            "active",
            "http://jabber.org/protocol/chatstates",
        ))
        .child(Element::new("request", "urn:xmpp:receipts"))
        .child(Element::new("nick", "http://jabber.org/protocol/nick").text("Al"));
    alice.send(&m).await.expect("send");
    let got = recv_message(&mut bob).await;
    for (name, ns_) in [
        ("active", "http://jabber.org/protocol/chatstates"),
        ("request", "urn:xmpp:receipts"),
        ("nick", "http://jabber.org/protocol/nick"),
    ] {
        assert_eq!(got.get_child(name, ns_), m.get_child(name, ns_), "{got}");
    }
    // The receipt goes back the same way.
    let receipt = Element::new("message", ns::CLIENT)
        .attr("to", alice.jid.as_str())
        .child(Element::new("received", "urn:xmpp:receipts").attr("id", "with extras"));
    bob.send(&receipt).await.expect("send");
    let got = recv_message(&mut alice).await;
    assert_eq!(
        got.get_child("received", "urn:xmpp:receipts")
            .and_then(|r| r.get_attr("id")),
        Some("with extras")
    );
}

/// sent = read by the recipient + stored offline + bounced, even when the recipient's
/// session is cut as a slow reader with stanzas still queued for it.
#[tokio::test]
async fn nothing_is_lost_when_a_slow_reader_is_cut() {
    const N: usize = 300;
    let ts = TestServer::start_with(|c| {
        c.limits.max_outbound_bytes = 2 * c.limits.max_stanza_size;
        c.limits.read_rate = 0;
    })
    .await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let mut alice = ts.login_available("alice").await;
    let bob = ts.login_available("bob").await;
    let bob_jid = bob.jid.to_string();
    // Bob reads nothing until alice is done, then drains what reached his socket.
    let body = "y".repeat(16 * 1024);
    let mut bounced = 0;
    for i in 0..N {
        alice
            .send(
                &msg(&bob_jid, Some("chat"), &format!("m{i}"))
                    .child(Element::new("x", "urn:example:pad").text(body.clone())),
            )
            .await
            .expect("send");
        while let Ok(Ok(e)) =
            tokio::time::timeout(std::time::Duration::from_millis(1), alice.recv()).await
        {
            if e.name == "message" && e.get_attr("type") == Some("error") {
                bounced += 1;
            }
        }
    }
    ping(&mut alice).await;
    let mut bob = bob;
    let mut read = std::collections::HashSet::new();
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(5), bob.recv()).await {
            Ok(Ok(e)) if e.name == "message" => {
                read.insert(e.get_attr("id").unwrap_or_default().to_string());
            }
            Ok(Ok(_)) => continue,
            _ => break,
        }
    }
    let ctx = ts.server().ctx();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let stored = ctx
            .stores
            .offline
            .offline_messages("localhost", "bob")
            .await
            .expect("offline");
        let stored_ids: std::collections::HashSet<String> = stored
            .iter()
            .filter_map(|m| {
                confab_proto::parser::parse_fragment(&m.stanza, ns::CLIENT, &Default::default())
            })
            .filter_map(|e| e.get_attr("id").map(str::to_string))
            .collect();
        let accounted = (0..N)
            .filter(|i| {
                let id = format!("m{i}");
                read.contains(&id) || stored_ids.contains(&id)
            })
            .count()
            + bounced;
        if accounted >= N {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "lost messages: sent {N}, read {}, stored {}, bounced {bounced}",
            read.len(),
            stored_ids.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Logs in with available presence at this priority.
async fn login_with_priority(
    ts: &TestServer,
    user: &str,
    priority: i8,
) -> confab_stream::client::ClientSession {
    let mut c = ts.login(user).await;
    c.send(
        &Element::new("presence", ns::CLIENT)
            .child(Element::new("priority", ns::CLIENT).text(priority.to_string())),
    )
    .await
    .expect("presence");
    ping(&mut c).await;
    c
}

#[tokio::test]
async fn types_with_available_resources() {
    // RFC 6121 §8.5.2.1.1 with resources at priorities 5, 1 and -1.
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let mut alice = ts.login_available("alice").await;
    let mut high = login_with_priority(&ts, "bob", 5).await;
    let mut low = login_with_priority(&ts, "bob", 1).await;
    let mut negative = login_with_priority(&ts, "bob", -1).await;

    // groupchat to a bare JID: no resource gets it, the sender gets service-unavailable.
    alice
        .send(&msg("bob@localhost", Some("groupchat"), "g"))
        .await
        .expect("send");
    let e = recv_message(&mut alice).await;
    assert_eq!(e.get_attr("id"), Some("g"));
    assert_eq!(condition(&e), "service-unavailable");

    // error to a bare JID: silently ignored.
    alice
        .send(&msg("bob@localhost", Some("error"), "e"))
        .await
        .expect("send");

    // headline: every resource with a non-negative priority.
    alice
        .send(&msg("bob@localhost", Some("headline"), "h"))
        .await
        .expect("send");
    assert_eq!(recv_message(&mut high).await.get_attr("id"), Some("h"));
    assert_eq!(recv_message(&mut low).await.get_attr("id"), Some("h"));

    // chat: only the highest priority, as before.
    alice
        .send(&msg("bob@localhost", Some("chat"), "c"))
        .await
        .expect("send");
    assert_eq!(recv_message(&mut high).await.get_attr("id"), Some("c"));
    assert!(
        no_message(&mut low, 300).await,
        "chat went to a lower priority"
    );
    assert!(
        no_message(&mut negative, 100).await,
        "negative priority got a message"
    );
    assert!(no_message(&mut alice, 100).await, "an error was answered");

    // error to a full JID that is gone: silently ignored, not passed to another resource.
    alice
        .send(&msg("bob@localhost/gone", Some("error"), "e2"))
        .await
        .expect("send");
    ping(&mut alice).await;
    assert!(
        no_message(&mut high, 300).await,
        "an error went to another resource"
    );
}
