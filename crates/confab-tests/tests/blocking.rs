//! XEP-0191 blocking command: the list, its pushes and errors, and enforcement both ways.

use confab_modules::blocking::BlockingConfig;
use confab_proto::xml::Element;
use confab_proto::{ns, StanzaError};
use confab_stream::client::ClientSession;
use confab_tests::*;

const NS: &str = "urn:xmpp:blocking";
const NS_ERRORS: &str = "urn:xmpp:blocking:errors";

fn items(name: &str, jids: &[&str]) -> Element {
    let mut e = Element::new(name, NS);
    for j in jids {
        e.push_child(Element::new("item", NS).attr("jid", *j));
    }
    e
}

fn iq(type_: &str, id: &str, payload: Element) -> Element {
    Element::new("iq", ns::CLIENT)
        .attr("type", type_)
        .attr("id", id)
        .child(payload)
}

/// Sends an iq and returns its reply, keeping other stanzas (pushes) aside.
async fn request(c: &mut ClientSession, el: Element, aside: &mut Vec<Element>) -> Element {
    let id = el.get_attr("id").expect("id").to_string();
    c.send(&el).await.expect("send");
    loop {
        let e = recv(c).await;
        if e.name == "iq"
            && e.get_attr("id") == Some(id.as_str())
            && matches!(e.get_attr("type"), Some("result" | "error"))
        {
            return e;
        }
        aside.push(e);
    }
}

async fn ok(c: &mut ClientSession, el: Element) -> Element {
    let mut aside = Vec::new();
    let r = request(c, el, &mut aside).await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");
    r
}

async fn err(c: &mut ClientSession, el: Element) -> String {
    let mut aside = Vec::new();
    let r = request(c, el, &mut aside).await;
    assert_eq!(r.get_attr("type"), Some("error"), "{r}");
    StanzaError::from_stanza(&r)
        .expect("error child")
        .condition
        .as_str()
        .to_string()
}

async fn blocklist(c: &mut ClientSession) -> Vec<String> {
    let r = ok(c, iq("get", "bl", Element::new("blocklist", NS))).await;
    let list = r.get_child("blocklist", NS).expect("blocklist");
    list.elements()
        .filter(|i| i.is("item", NS))
        .filter_map(|i| i.get_attr("jid").map(str::to_string))
        .collect()
}

/// The next push (an iq set) and its acknowledgement.
async fn expect_push(c: &mut ClientSession) -> Element {
    loop {
        let e = recv(c).await;
        if e.name == "iq" && e.get_attr("type") == Some("set") {
            let ack = Element::new("iq", ns::CLIENT)
                .attr("type", "result")
                .attr("id", e.get_attr("id").unwrap_or(""));
            c.send(&ack).await.expect("ack");
            return e;
        }
    }
}

fn push_jids(push: &Element, name: &str) -> Vec<String> {
    push.get_child(name, NS)
        .unwrap_or_else(|| panic!("no <{name}/> in {push}"))
        .elements()
        .filter_map(|i| i.get_attr("jid").map(str::to_string))
        .collect()
}

fn chat(to: &str, body: &str, id: &str) -> Element {
    Element::new("message", ns::CLIENT)
        .attr("to", to)
        .attr("type", "chat")
        .attr("id", id)
        .child(Element::new("body", ns::CLIENT).text(body))
}

fn ping_to(to: &str, id: &str) -> Element {
    iq("get", id, Element::new("ping", ns::PING)).attr("to", to)
}

/// The next stanza is an error with this id and condition; returns it.
/// Pushes and presence (broadcasts between one's own resources) are skipped.
async fn expect_error(c: &mut ClientSession, id: &str, cond: &str) -> Element {
    let mut e = recv(c).await;
    while e.name == "presence" || e.get_attr("type") == Some("set") {
        e = recv(c).await;
    }
    assert_eq!(e.get_attr("type"), Some("error"), "{e}");
    assert_eq!(e.get_attr("id"), Some(id), "{e}");
    let got = StanzaError::from_stanza(&e).expect("error child");
    assert_eq!(got.condition.as_str(), cond, "{e}");
    e
}

fn is_blocked_error(e: &Element) -> bool {
    e.get_child("error", ns::CLIENT)
        .is_some_and(|x| x.get_child("blocked", NS_ERRORS).is_some())
}

/// Gives `contact` a `from` subscription in `user`'s roster (or none), straight in the store.
async fn set_from_subscription(ts: &TestServer, user: &str, contact: &str, from: bool) {
    let mut item = confab_store::RosterItem::new(&format!("{contact}@{DOMAIN}"));
    item.in_roster = true;
    if from {
        item.subscription = confab_store::Subscription::From;
    }
    ts.server()
        .ctx()
        .stores
        .roster
        .put_roster_item(DOMAIN, user, &item)
        .await
        .expect("roster item");
}

async fn two_users() -> (TestServer, ClientSession, ClientSession) {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let alice = ts.login_available("alice").await;
    let bob = ts.login_available("bob").await;
    (ts, alice, bob)
}

#[tokio::test]
async fn block_list_pushes_and_unblock() {
    let (ts, _alice, mut bob) = two_users().await;
    let mut bob2 = ts.login_available("bob").await;
    assert!(blocklist(&mut bob).await.is_empty());

    ok(
        &mut bob,
        iq(
            "set",
            "b1",
            items(
                "block",
                &["alice@localhost", "Evil.Example", "alice@localhost"],
            ),
        ),
    )
    .await;
    // Both resources get the push, with normalized JIDs.
    for c in [&mut bob, &mut bob2] {
        let p = expect_push(c).await;
        assert_eq!(
            push_jids(&p, "block"),
            vec!["alice@localhost".to_string(), "evil.example".to_string()]
        );
    }
    assert_eq!(
        blocklist(&mut bob2).await,
        vec!["alice@localhost".to_string(), "evil.example".to_string()]
    );
    // Blocking again is harmless.
    ok(
        &mut bob,
        iq("set", "b2", items("block", &["alice@localhost"])),
    )
    .await;
    expect_push(&mut bob).await;
    expect_push(&mut bob2).await;

    ok(
        &mut bob,
        iq("set", "u1", items("unblock", &["alice@localhost"])),
    )
    .await;
    for c in [&mut bob, &mut bob2] {
        let p = expect_push(c).await;
        assert_eq!(
            push_jids(&p, "unblock"),
            vec!["alice@localhost".to_string()]
        );
    }
    assert_eq!(blocklist(&mut bob).await, vec!["evil.example".to_string()]);

    // Empty unblock: everything.
    ok(&mut bob, iq("set", "b3", items("block", &["x@y.example"]))).await;
    expect_push(&mut bob).await;
    ok(&mut bob, iq("set", "u2", items("unblock", &[]))).await;
    let p = expect_push(&mut bob).await;
    assert!(push_jids(&p, "unblock").is_empty());
    assert!(blocklist(&mut bob).await.is_empty());
}

#[tokio::test]
async fn bad_requests_get_the_xep_errors() {
    let ts = TestServer::start_with(|c| {
        c.update_section("blocking", |b: &mut BlockingConfig| b.max_items = 2)
            .expect("blocking section")
    })
    .await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let mut bob = ts.login_available("bob").await;
    // XEP-0191 §3.3: a block without items.
    assert_eq!(
        err(&mut bob, iq("set", "e1", items("block", &[]))).await,
        "bad-request"
    );
    assert_eq!(
        err(&mut bob, iq("set", "e2", items("block", &["@bad@"]))).await,
        "jid-malformed"
    );
    assert_eq!(
        err(&mut bob, iq("set", "e3", items("unblock", &["a@b/"]))).await,
        "jid-malformed"
    );
    assert_eq!(
        err(
            &mut bob,
            iq(
                "set",
                "e4",
                Element::new("block", NS).child(Element::new("item", NS))
            )
        )
        .await,
        "bad-request"
    );
    assert_eq!(
        err(&mut bob, iq("set", "e5", Element::new("blocklist", NS))).await,
        "bad-request"
    );
    assert_eq!(
        err(&mut bob, iq("get", "e6", items("block", &["a@b.example"]))).await,
        "bad-request"
    );
    // Someone else's list does not exist for others.
    let mut alice = ts.login_available("alice").await;
    assert_eq!(
        err(
            &mut alice,
            iq("get", "e7", Element::new("blocklist", NS)).attr("to", "bob@localhost")
        )
        .await,
        "service-unavailable"
    );
    // A failed request changed nothing; the limit holds.
    assert!(blocklist(&mut bob).await.is_empty());
    ok(
        &mut bob,
        iq("set", "b1", items("block", &["a@x.example", "b@x.example"])),
    )
    .await;
    assert_eq!(
        err(&mut bob, iq("set", "e8", items("block", &["c@x.example"]))).await,
        "resource-constraint"
    );
    assert_eq!(blocklist(&mut bob).await.len(), 2);
}

#[tokio::test]
async fn blocked_contact_cannot_reach_user_and_user_cannot_reach_it() {
    let (ts, mut alice, mut bob) = two_users().await;
    ok(
        &mut bob,
        iq("set", "b1", items("block", &["alice@localhost"])),
    )
    .await;
    expect_push(&mut bob).await;
    ping(&mut bob).await;

    // Inbound, message to the bare JID: service-unavailable, never delivered.
    alice
        .send(&chat("bob@localhost", "hi", "m1"))
        .await
        .expect("send");
    let e = expect_error(&mut alice, "m1", "service-unavailable").await;
    assert_eq!(e.get_attr("from"), Some("bob@localhost"));
    // To the full JID as well.
    alice
        .send(&chat(bob.jid.as_str(), "hi", "m2"))
        .await
        .expect("send");
    expect_error(&mut alice, "m2", "service-unavailable").await;
    // IQ to the full JID and to the bare JID (answered by the server for bob).
    alice
        .send(&ping_to(bob.jid.as_str(), "i1"))
        .await
        .expect("send");
    expect_error(&mut alice, "i1", "service-unavailable").await;
    // The server answers pings to bob's bare JID only for those who may see his presence
    // (others get service-unavailable anyway), so make alice one for this check.
    set_from_subscription(&ts, "bob", "alice", true).await;
    alice
        .send(&ping_to("bob@localhost", "i2"))
        .await
        .expect("send");
    expect_error(&mut alice, "i2", "service-unavailable").await;
    set_from_subscription(&ts, "bob", "alice", false).await;
    // Presence: silently dropped.
    alice
        .send(&Element::new("presence", ns::CLIENT).attr("to", bob.jid.as_str()))
        .await
        .expect("send");
    ping(&mut alice).await;
    assert!(nothing_arrives(&mut alice, 200).await);
    // bob saw none of it.
    assert!(nothing_arrives(&mut bob, 300).await);

    // Outbound: not-acceptable with <blocked/>, never delivered.
    bob.send(&chat("alice@localhost", "psst", "o1"))
        .await
        .expect("send");
    let e = expect_error(&mut bob, "o1", "not-acceptable").await;
    assert!(is_blocked_error(&e), "{e}");
    assert_eq!(e.get_attr("from"), Some("alice@localhost"));
    bob.send(&ping_to(alice.jid.as_str(), "o2"))
        .await
        .expect("send");
    let e = expect_error(&mut bob, "o2", "not-acceptable").await;
    assert!(is_blocked_error(&e), "{e}");
    bob.send(
        &Element::new("presence", ns::CLIENT)
            .attr("to", "alice@localhost")
            .attr("type", "subscribe"),
    )
    .await
    .expect("send");
    ping(&mut bob).await;
    assert!(nothing_arrives(&mut bob, 200).await);
    assert!(nothing_arrives(&mut alice, 300).await);
    // Nothing of alice's reached bob: only his own pushes and stanzas are in his stream,
    // which `nothing_arrives` above already drained to silence.

    // The server itself is never blocked, even by a domain item for it.
    ok(&mut bob, iq("set", "b2", items("block", &["localhost"]))).await;
    bob.send(&ping_to("localhost", "s1")).await.expect("send");
    loop {
        let e = recv(&mut bob).await;
        if e.get_attr("id") == Some("s1") {
            assert_eq!(e.get_attr("type"), Some("result"), "{e}");
            break;
        }
    }

    // Blocked messages to an offline user are not stored for later either.
    bob.close().await.expect("close");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    alice
        .send(&chat("bob@localhost", "later", "m3"))
        .await
        .expect("send");
    expect_error(&mut alice, "m3", "service-unavailable").await;
    let stored = ts
        .server()
        .ctx()
        .stores
        .offline
        .offline_count(DOMAIN, "bob")
        .await
        .expect("count");
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn unblock_lets_messages_through_again() {
    let (_ts, mut alice, mut bob) = two_users().await;
    ok(
        &mut bob,
        iq("set", "b1", items("block", &["alice@localhost"])),
    )
    .await;
    alice
        .send(&chat("bob@localhost", "blocked", "m1"))
        .await
        .expect("send");
    expect_error(&mut alice, "m1", "service-unavailable").await;
    ok(
        &mut bob,
        iq("set", "u1", items("unblock", &["alice@localhost"])),
    )
    .await;
    alice
        .send(&chat("bob@localhost", "free", "m2"))
        .await
        .expect("send");
    loop {
        let e = recv(&mut bob).await;
        if e.name == "message" {
            assert_eq!(e.get_attr("id"), Some("m2"), "{e}");
            break;
        }
    }
}

#[tokio::test]
async fn matching_by_domain_and_full_jid() {
    let ts = TestServer::start().await;
    for u in ["alice", "bob", "carol"] {
        ts.add_user(u).await;
    }
    let mut bob = ts.login_available("bob").await;
    let mut alice1 = ts.login_available("alice").await;
    let mut alice2 = ts.login_available("alice").await;
    let mut carol = ts.login_available("carol").await;

    // A full-JID item blocks only that resource.
    ok(
        &mut bob,
        iq("set", "b1", items("block", &[alice1.jid.as_str()])),
    )
    .await;
    alice1
        .send(&chat("bob@localhost", "1", "a1"))
        .await
        .expect("send");
    expect_error(&mut alice1, "a1", "service-unavailable").await;
    alice2
        .send(&chat("bob@localhost", "2", "a2"))
        .await
        .expect("send");
    loop {
        let e = recv(&mut bob).await;
        if e.name == "message" {
            assert_eq!(e.get_attr("id"), Some("a2"));
            break;
        }
    }

    // A domain item blocks every account there (but not the server, nor bob himself).
    ok(&mut bob, iq("set", "b2", items("block", &["localhost"]))).await;
    carol
        .send(&chat("bob@localhost", "3", "c1"))
        .await
        .expect("send");
    expect_error(&mut carol, "c1", "service-unavailable").await;
    alice2
        .send(&chat("bob@localhost", "4", "a3"))
        .await
        .expect("send");
    expect_error(&mut alice2, "a3", "service-unavailable").await;
    let mut bob2 = ts.login_available("bob").await;
    bob2.send(&chat(bob.jid.as_str(), "self", "s1"))
        .await
        .expect("send");
    loop {
        let e = recv(&mut bob).await;
        if e.name == "message" {
            assert_eq!(e.get_attr("id"), Some("s1"), "{e}");
            break;
        }
    }
}

#[tokio::test]
async fn block_list_survives_restart_and_is_advertised() {
    let (mut ts, mut alice, mut bob) = two_users().await;
    alice
        .send(&iq("get", "d1", Element::new("query", ns::DISCO_INFO)).attr("to", DOMAIN))
        .await
        .expect("send");
    let r = recv(&mut alice).await;
    let q = r.get_child("query", ns::DISCO_INFO).expect("query");
    assert!(q.elements().any(|f| f.get_attr("var") == Some(NS)), "{r}");

    ok(
        &mut bob,
        iq("set", "b1", items("block", &["alice@localhost"])),
    )
    .await;
    alice.close().await.expect("close");
    bob.close().await.expect("close");
    ts.server.take().expect("running").shutdown().await;
    let server = start_server(test_config(ts.dir.path()), Vec::new())
        .await
        .expect("restart");
    ts.addr = server.c2s_addr().expect("addr");
    ts.tls_addr = server.c2s_tls_addr().expect("tls addr");
    ts.server = Some(server);

    let mut bob = ts.login_available("bob").await;
    let mut alice = ts.login_available("alice").await;
    assert_eq!(
        blocklist(&mut bob).await,
        vec!["alice@localhost".to_string()]
    );
    alice
        .send(&chat("bob@localhost", "again", "m1"))
        .await
        .expect("send");
    expect_error(&mut alice, "m1", "service-unavailable").await;
}
