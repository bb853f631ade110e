//! XEP-0280 Message Carbons between two devices of one account.

use confab_modules::carbons::NS;
use confab_proto::ns;
use confab_proto::xml::Element;
use confab_stream::client::{connect, ClientSession};
use confab_tests::*;

const FORWARD_NS: &str = "urn:xmpp:forward:0";

async fn device(ts: &TestServer, user: &str, resource: &str, carbons: bool) -> ClientSession {
    let mut o = ts.options(user);
    o.resource = Some(resource.into());
    let mut c = connect(&o).await.expect("login");
    c.send(&Element::new("presence", ns::CLIENT))
        .await
        .expect("presence");
    if carbons {
        let r = iq(&mut c, "set", None, Element::new("enable", NS)).await;
        assert_eq!(r.get_attr("type"), Some("result"), "{r}");
    } else {
        ping(&mut c).await;
    }
    c
}

fn chat(to: &str, body: &str) -> Element {
    Element::new("message", ns::CLIENT)
        .attr("to", to)
        .attr("type", "chat")
        .child(Element::new("body", ns::CLIENT).text(body))
}

/// The message forwarded in a carbon of `kind` (sent/received), checked to come from the
/// account itself.
fn forwarded(carbon: &Element, kind: &str, account: &str) -> Element {
    assert_eq!(carbon.get_attr("from"), Some(account), "{carbon}");
    carbon
        .get_child(kind, NS)
        .and_then(|k| k.get_child("forwarded", FORWARD_NS))
        .and_then(|f| f.get_child("message", ns::CLIENT))
        .cloned()
        .unwrap_or_else(|| panic!("not a {kind} carbon: {carbon}"))
}

fn body(e: &Element) -> String {
    e.get_child("body", ns::CLIENT)
        .map(|b| b.text_content())
        .unwrap_or_default()
}

#[tokio::test]
async fn other_devices_see_both_sides_of_a_conversation() {
    let ts = TestServer::start().await;
    for u in ["alice", "bob"] {
        ts.add_user(u).await;
    }
    let mut phone = device(&ts, "alice", "phone", true).await;
    let mut laptop = device(&ts, "alice", "laptop", true).await;
    let mut tablet = device(&ts, "alice", "tablet", false).await;
    let mut bob = ts.login_available("bob").await;

    // Received: bob writes to the laptop; the phone gets a copy, the laptop the original.
    bob.send(&chat("alice@localhost/laptop", "hi laptop"))
        .await
        .expect("send");
    let m = recv_message(&mut laptop).await;
    assert_eq!(body(&m), "hi laptop");
    assert!(m.get_child("received", NS).is_none(), "{m}");
    let c = recv_message(&mut phone).await;
    let original = forwarded(&c, "received", "alice@localhost");
    assert_eq!(body(&original), "hi laptop");
    assert_eq!(original.get_attr("from"), Some(bob.jid.as_str()));
    assert_eq!(c.get_attr("to"), Some("alice@localhost/phone"));

    // Sent: the laptop answers; bob gets it, the phone a copy, the laptop nothing back.
    laptop
        .send(&chat(bob.jid.as_str(), "hello bob"))
        .await
        .expect("send");
    assert_eq!(body(&recv_message(&mut bob).await), "hello bob");
    let c = recv_message(&mut phone).await;
    let original = forwarded(&c, "sent", "alice@localhost");
    assert_eq!(body(&original), "hello bob");
    assert_eq!(original.get_attr("from"), Some("alice@localhost/laptop"));

    // Private and no-copy messages are not copied.
    let mut private = chat(bob.jid.as_str(), "just from here");
    private.push_child(Element::new("private", NS));
    laptop.send(&private).await.expect("send");
    let mut no_copy = chat(bob.jid.as_str(), "no copies");
    no_copy.push_child(Element::new("no-copy", "urn:xmpp:hints"));
    laptop.send(&no_copy).await.expect("send");
    assert_eq!(body(&recv_message(&mut bob).await), "just from here");
    assert_eq!(body(&recv_message(&mut bob).await), "no copies");

    // To the bare JID, every resource gets the message itself: no copies.
    bob.send(&chat("alice@localhost", "to all"))
        .await
        .expect("send");
    assert_eq!(body(&recv_message(&mut phone).await), "to all");
    assert_eq!(body(&recv_message(&mut laptop).await), "to all");
    assert!(
        no_message(&mut phone, 300).await,
        "a duplicate or a stray copy"
    );
    assert!(no_message(&mut laptop, 100).await, "the laptop got a copy");
    // The tablet never enabled carbons: it saw only what was sent to the bare JID.
    assert_eq!(body(&recv_message(&mut tablet).await), "to all");
    assert!(no_message(&mut tablet, 100).await);

    // Disabled again: no more copies.
    let r = iq(&mut phone, "set", None, Element::new("disable", NS)).await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");
    bob.send(&chat("alice@localhost/laptop", "again"))
        .await
        .expect("send");
    assert_eq!(body(&recv_message(&mut laptop).await), "again");
    assert!(no_message(&mut phone, 300).await);
}

#[tokio::test]
async fn nobody_else_can_switch_carbons_on_for_an_account() {
    let ts = TestServer::start().await;
    for u in ["alice", "bob"] {
        ts.add_user(u).await;
    }
    let mut bob = ts.login_available("bob").await;
    let r = iq(
        &mut bob,
        "set",
        Some("alice@localhost"),
        Element::new("enable", NS),
    )
    .await;
    assert_eq!(r.get_attr("type"), Some("error"), "{r}");
    // The server announces the feature.
    let info = iq(
        &mut bob,
        "get",
        Some("localhost"),
        Element::new("query", "http://jabber.org/protocol/disco#info"),
    )
    .await;
    assert!(
        info.get_child("query", "http://jabber.org/protocol/disco#info")
            .is_some_and(|q| q
                .elements()
                .any(|f| f.name == "feature" && f.get_attr("var") == Some(NS))),
        "{info}"
    );
}
