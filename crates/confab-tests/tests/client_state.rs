//! XEP-0352 Client State Indication: an inactive client gets presence and chat states only
//! when something that matters arrives or it becomes active again.

use confab_modules::client_state::NS;
use confab_proto::ns;
use confab_proto::xml::Element;
use confab_stream::client::{connect, ClientSession};
use confab_tests::*;

async fn phone(ts: &TestServer) -> ClientSession {
    let mut o = ts.options("bob");
    o.resource = Some("phone".into());
    let mut c = connect(&o).await.expect("login");
    c.send(&Element::new("presence", ns::CLIENT))
        .await
        .expect("presence");
    ping(&mut c).await;
    c
}

fn presence(status: &str) -> Element {
    Element::new("presence", ns::CLIENT)
        .attr("to", "bob@localhost/phone")
        .child(Element::new("status", ns::CLIENT).text(status))
}

fn status(e: &Element) -> Option<String> {
    e.get_child("status", ns::CLIENT).map(|s| s.text_content())
}

#[tokio::test]
async fn an_inactive_client_gets_presence_and_chat_states_when_it_matters() {
    let ts = TestServer::start().await;
    for u in ["alice", "bob"] {
        ts.add_user(u).await;
    }
    let mut alice = ts.login_available("alice").await;
    let mut bob = phone(&ts).await;
    bob.send(&Element::new("inactive", NS)).await.expect("send");
    ping(&mut bob).await;
    // Held: two presence updates (only the latest will come) and a chat state.
    for s in ["away 1", "away 2"] {
        alice.send(&presence(s)).await.expect("send");
    }
    alice
        .send(
            &Element::new("message", ns::CLIENT)
                .attr("to", "bob@localhost/phone")
                .attr("type", "chat")
                .child(Element::new(
                    "composing",
                    "http://jabber.org/protocol/chatstates",
                )),
        )
        .await
        .expect("send");
    ping(&mut alice).await;
    assert!(
        never(&mut bob, 300, |e| e.name == "presence"
            || e.name == "message")
        .await,
        "an inactive client got presence or a chat state at once"
    );
    // Requests are not held.
    alice
        .send(
            &Element::new("iq", ns::CLIENT)
                .attr("type", "get")
                .attr("id", "v1")
                .attr("to", "bob@localhost/phone")
                .child(Element::new("query", "jabber:iq:version")),
        )
        .await
        .expect("send");
    let req = expect(&mut bob, "the version request", |e| e.name == "iq").await;
    assert_eq!(req.get_attr("id"), Some("v1"));
    // A message with a body: what waited comes first, the latest presence only.
    alice
        .send(
            &Element::new("message", ns::CLIENT)
                .attr("to", "bob@localhost/phone")
                .attr("type", "chat")
                .child(Element::new("body", ns::CLIENT).text("wake up")),
        )
        .await
        .expect("send");
    let mut got = Vec::new();
    while got.len() < 3 {
        let e = expect(&mut bob, "held stanzas", |e| {
            (e.name == "presence" && status(e).is_some_and(|s| s.starts_with("away")))
                || e.name == "message"
        })
        .await;
        got.push(e);
    }
    assert_eq!(status(&got[0]).as_deref(), Some("away 2"), "{}", got[0]);
    assert!(
        got[1]
            .get_child("composing", "http://jabber.org/protocol/chatstates")
            .is_some(),
        "{}",
        got[1]
    );
    assert_eq!(
        got[2]
            .get_child("body", ns::CLIENT)
            .map(|b| b.text_content()),
        Some("wake up".into())
    );
    // Inactive again, then active: what waited comes at once.
    bob.send(&Element::new("inactive", NS)).await.expect("send");
    ping(&mut bob).await;
    alice.send(&presence("away 3")).await.expect("send");
    ping(&mut alice).await;
    assert!(never(&mut bob, 300, |e| e.name == "presence").await);
    bob.send(&Element::new("active", NS)).await.expect("send");
    let p = expect(&mut bob, "the held presence", |e| e.name == "presence").await;
    assert_eq!(status(&p).as_deref(), Some("away 3"));
}
