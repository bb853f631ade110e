//! Rosters (RFC 6121 §2), subscriptions (§3) and presence (§4) between real sessions.

use confab_modules::roster::RosterConfig;
use confab_proto::ns;
use confab_proto::xml::Element;
use confab_stream::client::ClientSession;
use confab_tests::*;
use std::time::Duration;

const ROSTER: &str = "jabber:iq:roster";

async fn get_roster(c: &mut ClientSession) -> Element {
    let r = iq(c, "get", None, Element::new("query", ROSTER)).await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");
    r.get_child("query", ROSTER)
        .cloned()
        .unwrap_or_else(|| Element::new("query", ROSTER))
}

fn item<'a>(q: &'a Element, jid: &str) -> Option<&'a Element> {
    q.elements().find(|i| i.get_attr("jid") == Some(jid))
}

async fn send_presence(c: &mut ClientSession, to: &str, type_: &str) {
    c.send(
        &Element::new("presence", ns::CLIENT)
            .attr("to", to)
            .attr("type", type_),
    )
    .await
    .expect("send");
}

fn is_presence_from(e: &Element, from_bare: &str, type_: Option<&str>) -> bool {
    e.name == "presence"
        && e.get_attr("from")
            .is_some_and(|f| f.split('/').next() == Some(from_bare))
        && e.get_attr("type") == type_
}

/// alice and bob subscribed both ways, both online and available.
async fn befriend(ts: &TestServer) -> (ClientSession, ClientSession) {
    let mut alice = ts.login("alice").await;
    let mut bob = ts.login("bob").await;
    get_roster(&mut alice).await;
    get_roster(&mut bob).await;
    alice
        .send(&Element::new("presence", ns::CLIENT))
        .await
        .expect("presence");
    bob.send(&Element::new("presence", ns::CLIENT))
        .await
        .expect("presence");
    send_presence(&mut alice, "bob@localhost", "subscribe").await;
    expect(&mut bob, "subscribe", |e| {
        is_presence_from(e, "alice@localhost", Some("subscribe"))
    })
    .await;
    send_presence(&mut bob, "alice@localhost", "subscribed").await;
    expect(&mut alice, "subscribed", |e| {
        is_presence_from(e, "bob@localhost", Some("subscribed"))
    })
    .await;
    expect(&mut alice, "bob's presence", |e| {
        is_presence_from(e, "bob@localhost", None)
    })
    .await;
    send_presence(&mut bob, "alice@localhost", "subscribe").await;
    expect(&mut alice, "subscribe", |e| {
        is_presence_from(e, "bob@localhost", Some("subscribe"))
    })
    .await;
    send_presence(&mut alice, "bob@localhost", "subscribed").await;
    expect(&mut bob, "alice's presence", |e| {
        is_presence_from(e, "alice@localhost", None)
    })
    .await;
    (alice, bob)
}

/// Logs in and sends initial presence without consuming what arrives after it.
async fn online(ts: &TestServer, user: &str) -> ClientSession {
    let mut c = ts.login(user).await;
    c.send(&Element::new("presence", ns::CLIENT))
        .await
        .expect("presence");
    c
}

async fn server_with(users: &[&str]) -> TestServer {
    let ts = TestServer::start().await;
    for u in users {
        ts.add_user(u).await;
    }
    ts
}

#[tokio::test]
async fn roster_set_get_push_versioning_and_remove() {
    let ts = server_with(&["alice", "bob"]).await;
    let mut a1 = ts.login("alice").await;
    let mut a2 = ts.login("alice").await;
    let q = get_roster(&mut a1).await;
    assert_eq!(q.elements().count(), 0);
    let v0 = q.get_attr("ver").expect("ver").to_string();
    get_roster(&mut a2).await;
    let set = Element::new("query", ROSTER).child(
        Element::new("item", ROSTER)
            .attr("jid", "Bob@LocalHost")
            .attr("name", "Bobby")
            .child(Element::new("group", ROSTER).text("Friends"))
            .child(Element::new("group", ROSTER).text("Work")),
    );
    let r = iq(&mut a1, "set", None, set).await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");
    // Every interested resource gets the push (a1's arrived before its result), with the
    // normalised JID.
    for c in [&mut a2] {
        let push = expect(c, "roster push", |e| {
            e.name == "iq" && e.get_attr("type") == Some("set")
        })
        .await;
        let q = push.get_child("query", ROSTER).expect("query");
        let i = item(q, "bob@localhost").expect("item");
        assert_eq!(i.get_attr("subscription"), Some("none"));
        assert_eq!(i.get_attr("name"), Some("Bobby"));
        assert_eq!(i.elements().count(), 2);
        assert!(q.get_attr("ver").is_some_and(|v| v != v0));
    }
    let q = get_roster(&mut a1).await;
    let ver = q.get_attr("ver").expect("ver").to_string();
    assert!(item(&q, "bob@localhost").is_some());
    // XEP-0237: an up-to-date version gets an empty result.
    let r = iq(
        &mut a1,
        "get",
        None,
        Element::new("query", ROSTER).attr("ver", ver.clone()),
    )
    .await;
    assert_eq!(r.get_attr("type"), Some("result"));
    assert!(r.get_child("query", ROSTER).is_none(), "{r}");
    // An old version gets the full roster.
    let r = iq(
        &mut a1,
        "get",
        None,
        Element::new("query", ROSTER).attr("ver", v0),
    )
    .await;
    assert!(r.get_child("query", ROSTER).is_some());
    // Remove.
    let rm = Element::new("query", ROSTER).child(
        Element::new("item", ROSTER)
            .attr("jid", "bob@localhost")
            .attr("subscription", "remove"),
    );
    let r = iq(&mut a1, "set", None, rm.clone()).await;
    assert_eq!(r.get_attr("type"), Some("result"));
    let push = expect(&mut a2, "remove push", |e| {
        e.get_attr("type") == Some("set")
            && e.get_child("query", ROSTER)
                .and_then(|q| item(q, "bob@localhost"))
                .and_then(|i| i.get_attr("subscription"))
                == Some("remove")
    })
    .await;
    assert!(push.get_attr("from").is_none() || push.get_attr("from") == Some("alice@localhost"));
    assert!(item(&get_roster(&mut a1).await, "bob@localhost").is_none());
    // Removing again: item-not-found.
    let r = iq(&mut a1, "set", None, rm).await;
    assert_eq!(condition(&r), "item-not-found");
    // The roster survives a new login.
    let r = iq(
        &mut a1,
        "set",
        None,
        Element::new("query", ROSTER)
            .child(Element::new("item", ROSTER).attr("jid", "carol@localhost")),
    )
    .await;
    assert_eq!(r.get_attr("type"), Some("result"));
    let mut a3 = ts.login("alice").await;
    assert!(item(&get_roster(&mut a3).await, "carol@localhost").is_some());
}

#[tokio::test]
async fn roster_set_bad_input_stores_nothing() {
    let ts = server_with(&["alice", "bob"]).await;
    let mut a = ts.login("alice").await;
    let item_el = |jid: &str| Element::new("item", ROSTER).attr("jid", jid);
    let cases: Vec<(Element, &str)> = vec![
        (
            Element::new("query", ROSTER)
                .child(item_el("x@localhost"))
                .child(item_el("y@localhost")),
            "bad-request",
        ),
        (Element::new("query", ROSTER), "bad-request"),
        (
            Element::new("query", ROSTER)
                .child(item_el("x@localhost").child(Element::new("group", ROSTER))),
            "not-acceptable",
        ),
        (
            Element::new("query", ROSTER).child(
                item_el("x@localhost")
                    .child(Element::new("group", ROSTER).text("G"))
                    .child(Element::new("group", ROSTER).text("G")),
            ),
            "bad-request",
        ),
        (
            Element::new("query", ROSTER)
                .child(item_el("x@localhost").attr("name", "n".repeat(5000))),
            "not-acceptable",
        ),
        (
            Element::new("query", ROSTER).child(item_el("@@bad")),
            "jid-malformed",
        ),
        (
            Element::new("query", ROSTER).child(Element::new("item", ROSTER)),
            "jid-malformed",
        ),
    ];
    for (q, cond) in cases {
        let r = iq(&mut a, "set", None, q.clone()).await;
        assert_eq!(condition(&r), cond, "{q}");
    }
    // Someone else's roster is forbidden.
    let r = iq(
        &mut a,
        "get",
        Some("bob@localhost"),
        Element::new("query", ROSTER),
    )
    .await;
    assert_eq!(condition(&r), "forbidden");
    assert_eq!(
        get_roster(&mut a).await.elements().count(),
        0,
        "nothing was stored"
    );
}

#[tokio::test]
async fn roster_size_limit() {
    let ts = TestServer::start_with(|c| {
        c.update_section("roster", |r: &mut RosterConfig| r.max_items = 2)
            .expect("roster section")
    })
    .await;
    ts.add_user("alice").await;
    let mut a = ts.login("alice").await;
    for (i, expect_ok) in [(1, true), (2, true), (3, false)] {
        let q = Element::new("query", ROSTER)
            .child(Element::new("item", ROSTER).attr("jid", format!("c{i}@localhost")));
        let r = iq(&mut a, "set", None, q).await;
        if expect_ok {
            assert_eq!(r.get_attr("type"), Some("result"));
        } else {
            assert_eq!(condition(&r), "not-allowed");
        }
    }
    // Subscribing to someone new cannot grow the roster past the limit either.
    send_presence(&mut a, "c9@localhost", "subscribe").await;
    let e = expect(&mut a, "error", |e| {
        e.name == "presence" && e.get_attr("type") == Some("error")
    })
    .await;
    assert_eq!(condition(&e), "not-allowed");
    assert!(item(&get_roster(&mut a).await, "c9@localhost").is_none());
}

#[tokio::test]
async fn subscription_flow_both_ways_with_roster_states() {
    let ts = server_with(&["alice", "bob"]).await;
    let (mut alice, mut bob) = befriend(&ts).await;
    let qa = get_roster(&mut alice).await;
    assert_eq!(
        item(&qa, "bob@localhost").and_then(|i| i.get_attr("subscription")),
        Some("both")
    );
    let qb = get_roster(&mut bob).await;
    assert_eq!(
        item(&qb, "alice@localhost").and_then(|i| i.get_attr("subscription")),
        Some("both")
    );
    // Presence changes now flow.
    alice
        .send(
            &Element::new("presence", ns::CLIENT)
                .child(Element::new("show", ns::CLIENT).text("away")),
        )
        .await
        .expect("send");
    let p = expect(&mut bob, "away", |e| {
        is_presence_from(e, "alice@localhost", None) && e.get_child("show", ns::CLIENT).is_some()
    })
    .await;
    assert_eq!(
        p.get_child("show", ns::CLIENT)
            .map(|s| s.text_content())
            .as_deref(),
        Some("away")
    );
    // Bob cancels alice's subscription to him: alice sees him go offline, the roster says "to" for bob.
    send_presence(&mut bob, "alice@localhost", "unsubscribed").await;
    expect(&mut alice, "unavailable", |e| {
        is_presence_from(e, "bob@localhost", Some("unavailable"))
    })
    .await;
    let qb = get_roster(&mut bob).await;
    assert_eq!(
        item(&qb, "alice@localhost").and_then(|i| i.get_attr("subscription")),
        Some("to")
    );
    let qa = get_roster(&mut alice).await;
    assert_eq!(
        item(&qa, "bob@localhost").and_then(|i| i.get_attr("subscription")),
        Some("from")
    );
    // Bob's later presence no longer reaches alice.
    bob.send(
        &Element::new("presence", ns::CLIENT)
            .child(Element::new("status", ns::CLIENT).text("secret")),
    )
    .await
    .expect("send");
    assert!(
        never(&mut alice, 400, |e| is_presence_from(
            e,
            "bob@localhost",
            None
        ))
        .await,
        "presence leaked"
    );
    // Alice unsubscribes from... she has none "to" bob; she cancels bob's subscription instead.
    send_presence(&mut alice, "bob@localhost", "unsubscribed").await;
    expect(&mut bob, "alice gone", |e| {
        is_presence_from(e, "alice@localhost", Some("unavailable"))
    })
    .await;
    let qa = get_roster(&mut alice).await;
    assert_eq!(
        item(&qa, "bob@localhost").and_then(|i| i.get_attr("subscription")),
        Some("none")
    );
}

/// Writes `user`'s roster item for `contact` straight to the store, bypassing the
/// subscription handshake (so the two rosters may disagree).
async fn put_item(ts: &TestServer, user: &str, contact: &str, sub: confab_store::Subscription) {
    let mut item = confab_store::RosterItem::new(&format!("{contact}@{DOMAIN}"));
    item.in_roster = true;
    item.subscription = sub;
    ts.server()
        .ctx()
        .stores
        .roster
        .put_roster_item(DOMAIN, user, &item)
        .await
        .expect("roster item");
}

#[tokio::test]
async fn server_probes_are_answered_only_for_subscribers() {
    use confab_store::Subscription;
    let ts = server_with(&["alice", "bob"]).await;
    // Inconsistent rosters: alice thinks she sees bob (`to`), bob never allowed it.
    put_item(&ts, "alice", "bob", Subscription::To).await;
    put_item(&ts, "bob", "alice", Subscription::None).await;
    let _bob = ts.login_available("bob").await;
    // alice's initial presence makes the server probe bob on her behalf; bob's presence
    // (that he is online) must not be revealed to her. (Not `login_available`: its ping
    // would skip the very presence looked for here.)
    let mut alice = ts.login("alice").await;
    alice
        .send(&Element::new("presence", ns::CLIENT))
        .await
        .expect("presence");
    assert!(
        never(&mut alice, 500, |e| is_presence_from(
            e,
            "bob@localhost",
            None
        ))
        .await,
        "bob's presence reached a non-subscriber"
    );
    // Control: once bob's roster allows it, the same probe is answered, so the probe above
    // did reach bob's side and was refused there.
    put_item(&ts, "bob", "alice", Subscription::From).await;
    let mut alice2 = ts.login("alice").await;
    alice2
        .send(&Element::new("presence", ns::CLIENT))
        .await
        .expect("presence");
    expect(&mut alice2, "bob's presence", |e| {
        is_presence_from(e, "bob@localhost", None)
    })
    .await;
}

#[tokio::test]
async fn presence_never_reaches_non_subscribers() {
    let ts = server_with(&["alice", "bob", "mallory"]).await;
    let (mut alice, _bob) = befriend(&ts).await;
    let mut mallory = ts.login_available("mallory").await;
    alice
        .send(
            &Element::new("presence", ns::CLIENT)
                .child(Element::new("status", ns::CLIENT).text("hi")),
        )
        .await
        .expect("send");
    assert!(
        never(&mut mallory, 400, |e| is_presence_from(
            e,
            "alice@localhost",
            None
        ))
        .await
    );
    // Probes are the server's business (RFC 6121 §4.3): one a client sends goes nowhere.
    // (`server_probes_are_answered_only_for_subscribers` tests the server's own probes.)
    send_presence(&mut mallory, "alice@localhost", "probe").await;
    assert!(
        never(&mut mallory, 400, |e| e.name == "presence"
            && e.get_attr("from").is_some_and(|f| f.starts_with("alice@")))
        .await
    );
    // Subscribing to oneself is an error.
    send_presence(&mut mallory, "mallory@localhost", "subscribe").await;
    let e = expect(&mut mallory, "error", |e| {
        e.name == "presence" && e.get_attr("type") == Some("error")
    })
    .await;
    assert_eq!(condition(&e), "bad-request");
}

#[tokio::test]
async fn subscription_request_waits_for_offline_user_with_nickname() {
    let ts = server_with(&["alice", "bob"]).await;
    let mut alice = ts.login_available("alice").await;
    get_roster(&mut alice).await;
    alice
        .send(
            &Element::new("presence", ns::CLIENT)
                .attr("to", "bob@localhost")
                .attr("type", "subscribe")
                .child(Element::new("nick", "http://jabber.org/protocol/nick").text("Alice A.")),
        )
        .await
        .expect("send");
    // Pending-out is visible in alice's roster.
    let push = expect(&mut alice, "push", |e| e.get_attr("type") == Some("set")).await;
    let q = push.get_child("query", ROSTER).expect("query");
    assert_eq!(
        item(q, "bob@localhost").and_then(|i| i.get_attr("ask")),
        Some("subscribe")
    );
    // Bob logs in later (twice: the request stays until answered) and sees the request with the nickname.
    for _ in 0..2 {
        let mut bob = online(&ts, "bob").await;
        let req = expect(&mut bob, "subscribe", |e| {
            is_presence_from(e, "alice@localhost", Some("subscribe"))
        })
        .await;
        assert_eq!(req.get_attr("from"), Some("alice@localhost"));
        assert_eq!(
            req.get_child("nick", "http://jabber.org/protocol/nick")
                .map(|n| n.text_content())
                .as_deref(),
            Some("Alice A.")
        );
        // Not part of bob's roster until he answers.
        assert!(item(&get_roster(&mut bob).await, "alice@localhost").is_none());
        bob.close().await.expect("close");
    }
    let mut bob = ts.login_available("bob").await;
    send_presence(&mut bob, "alice@localhost", "subscribed").await;
    expect(&mut alice, "subscribed", |e| {
        is_presence_from(e, "bob@localhost", Some("subscribed"))
    })
    .await;
    expect(&mut alice, "bob online", |e| {
        is_presence_from(e, "bob@localhost", None)
    })
    .await;
    let mut bob2 = online(&ts, "bob").await;
    assert!(
        never(&mut bob2, 400, |e| is_presence_from(
            e,
            "alice@localhost",
            Some("subscribe")
        ))
        .await,
        "answered request delivered again"
    );
}

#[tokio::test]
async fn pre_approval_answers_at_once() {
    let ts = server_with(&["alice", "bob"]).await;
    let mut bob = ts.login_available("bob").await;
    get_roster(&mut bob).await;
    send_presence(&mut bob, "alice@localhost", "subscribed").await;
    let push = expect(&mut bob, "push", |e| e.get_attr("type") == Some("set")).await;
    let q = push.get_child("query", ROSTER).expect("query");
    assert_eq!(
        item(q, "alice@localhost").and_then(|i| i.get_attr("approved")),
        Some("true")
    );
    let mut alice = ts.login_available("alice").await;
    send_presence(&mut alice, "bob@localhost", "subscribe").await;
    expect(&mut alice, "auto subscribed", |e| {
        is_presence_from(e, "bob@localhost", Some("subscribed"))
    })
    .await;
    expect(&mut alice, "bob's presence", |e| {
        is_presence_from(e, "bob@localhost", None)
    })
    .await;
    assert!(
        never(&mut bob, 300, |e| is_presence_from(
            e,
            "alice@localhost",
            Some("subscribe")
        ))
        .await
    );
}

#[tokio::test]
async fn probes_on_login_get_last_presence_with_delay_and_logout_is_broadcast() {
    let ts = server_with(&["alice", "bob"]).await;
    let (mut alice, bob) = befriend(&ts).await;
    // Bob leaves with a status: alice sees unavailable.
    let mut bob = bob;
    bob.send(
        &Element::new("presence", ns::CLIENT)
            .attr("type", "unavailable")
            .child(Element::new("status", ns::CLIENT).text("gone fishing")),
    )
    .await
    .expect("send");
    expect(&mut alice, "bob unavailable", |e| {
        is_presence_from(e, "bob@localhost", Some("unavailable"))
    })
    .await;
    bob.close().await.expect("close");
    alice.close().await.expect("close");
    // Alice comes back: her probe is answered with bob's last unavailable presence and a delay.
    let mut alice = online(&ts, "alice").await;
    let p = expect(&mut alice, "probe answer", |e| {
        is_presence_from(e, "bob@localhost", Some("unavailable"))
    })
    .await;
    assert_eq!(
        p.get_child("status", ns::CLIENT)
            .map(|s| s.text_content())
            .as_deref(),
        Some("gone fishing")
    );
    assert!(
        p.get_child("delay", ns::DELAY)
            .and_then(|d| d.get_attr("stamp"))
            .is_some(),
        "{p}"
    );
    // Bob comes online: alice sees him; bob's probe gets alice's current presence.
    let mut bob = online(&ts, "bob").await;
    expect(&mut alice, "bob online", |e| {
        is_presence_from(e, "bob@localhost", None)
    })
    .await;
    expect(&mut bob, "alice's presence", |e| {
        is_presence_from(e, "alice@localhost", None)
    })
    .await;
    // A dropped connection (no unavailable sent) is broadcast as unavailable.
    drop(bob);
    expect(&mut alice, "bob dropped", |e| {
        is_presence_from(e, "bob@localhost", Some("unavailable"))
    })
    .await;
}

#[tokio::test]
async fn directed_presence_and_its_implied_unavailable() {
    let ts = server_with(&["alice", "bob"]).await;
    let mut alice = ts.login_available("alice").await;
    let mut bob = ts.login_available("bob").await;
    alice
        .send(&Element::new("presence", ns::CLIENT).attr("to", bob.jid.as_str()))
        .await
        .expect("send");
    expect(&mut bob, "directed", |e| {
        is_presence_from(e, "alice@localhost", None)
    })
    .await;
    alice.close().await.expect("close");
    expect(&mut bob, "implied unavailable", |e| {
        is_presence_from(e, "alice@localhost", Some("unavailable"))
    })
    .await;
}

#[tokio::test]
async fn own_resources_see_each_other_and_priority_routing() {
    let ts = server_with(&["alice", "bob"]).await;
    let mut a1 = ts.login("alice").await;
    a1.send(
        &Element::new("presence", ns::CLIENT).child(Element::new("priority", ns::CLIENT).text("5")),
    )
    .await
    .expect("send");
    let a1jid = a1.jid.to_string();
    expect(&mut a1, "own echo", |e| {
        e.name == "presence" && e.get_attr("from") == Some(a1jid.as_str())
    })
    .await;
    let mut a2 = ts.login("alice").await;
    a2.send(
        &Element::new("presence", ns::CLIENT).child(Element::new("priority", ns::CLIENT).text("1")),
    )
    .await
    .expect("send");
    let a2jid = a2.jid.to_string();
    expect(&mut a1, "a2 online", |e| {
        e.name == "presence" && e.get_attr("from") == Some(a2jid.as_str())
    })
    .await;
    expect(&mut a2, "a1's presence", |e| {
        e.name == "presence" && e.get_attr("from") == Some(a1jid.as_str())
    })
    .await;
    // A message to the bare JID goes to the highest priority only.
    let mut bob = ts.login_available("bob").await;
    bob.send(
        &Element::new("message", ns::CLIENT)
            .attr("to", "alice@localhost")
            .attr("type", "chat")
            .child(Element::new("body", ns::CLIENT).text("p")),
    )
    .await
    .expect("send");
    expect(&mut a1, "message", |e| e.name == "message").await;
    assert!(never(&mut a2, 300, |e| e.name == "message").await);
}

#[tokio::test]
async fn deleting_an_account_cancels_its_subscriptions() {
    let ts = server_with(&["alice", "bob"]).await;
    let (_alice, mut bob) = befriend(&ts).await;
    let jid = confab_proto::BareJid::new("alice@localhost").expect("jid");
    confab_server::accounts::delete_account_live(ts.server().ctx(), &jid)
        .await
        .expect("delete");
    expect(&mut bob, "alice unavailable", |e| {
        is_presence_from(e, "alice@localhost", Some("unavailable"))
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let q = get_roster(&mut bob).await;
        if item(&q, "alice@localhost").and_then(|i| i.get_attr("subscription")) == Some("none") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "bob's roster still subscribed: {q}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn blocking_a_contact_hides_presence_and_unblocking_restores_it() {
    const BLOCKING: &str = "urn:xmpp:blocking";
    let ts = server_with(&["alice", "bob"]).await;
    let (mut alice, mut bob) = befriend(&ts).await;
    let block = Element::new("block", BLOCKING)
        .child(Element::new("item", BLOCKING).attr("jid", "alice@localhost"));
    let r = iq(&mut bob, "set", None, block).await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");
    expect(&mut alice, "bob unavailable", |e| {
        is_presence_from(e, "bob@localhost", Some("unavailable"))
    })
    .await;
    // Later presence changes do not reach the blocked contact.
    bob.send(
        &Element::new("presence", ns::CLIENT)
            .child(Element::new("status", ns::CLIENT).text("hidden")),
    )
    .await
    .expect("send");
    assert!(
        never(&mut alice, 400, |e| is_presence_from(
            e,
            "bob@localhost",
            None
        ))
        .await
    );
    let unblock = Element::new("unblock", BLOCKING)
        .child(Element::new("item", BLOCKING).attr("jid", "alice@localhost"));
    let r = iq(&mut bob, "set", None, unblock).await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");
    let p = expect(&mut alice, "bob back", |e| {
        is_presence_from(e, "bob@localhost", None)
    })
    .await;
    assert_eq!(
        p.get_child("status", ns::CLIENT)
            .map(|s| s.text_content())
            .as_deref(),
        Some("hidden")
    );
}

#[tokio::test]
async fn simultaneous_mutual_subscriptions_end_as_both() {
    let ts = server_with(&["alice", "bob"]).await;
    let mut alice = online(&ts, "alice").await;
    let mut bob = online(&ts, "bob").await;
    get_roster(&mut alice).await;
    get_roster(&mut bob).await;
    // Each asks and approves at the same moment the other does.
    let (a, b) = tokio::join!(
        async {
            send_presence(&mut alice, "bob@localhost", "subscribe").await;
            send_presence(&mut alice, "bob@localhost", "subscribed").await;
        },
        async {
            send_presence(&mut bob, "alice@localhost", "subscribe").await;
            send_presence(&mut bob, "alice@localhost", "subscribed").await;
        }
    );
    let _ = (a, b);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let qa = get_roster(&mut alice).await;
        let qb = get_roster(&mut bob).await;
        let sa = item(&qa, "bob@localhost")
            .and_then(|i| i.get_attr("subscription"))
            .map(str::to_string);
        let sb = item(&qb, "alice@localhost")
            .and_then(|i| i.get_attr("subscription"))
            .map(str::to_string);
        if sa.as_deref() == Some("both") && sb.as_deref() == Some("both") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "alice: {sa:?}, bob: {sb:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn reconnecting_on_the_same_resource_is_not_a_logout() {
    let ts = server_with(&["alice", "bob"]).await;
    let (mut alice, bob) = befriend(&ts).await;
    let mut o = ts.options("bob");
    o.resource = Some(bob.jid.resource().to_string());
    // The new session takes over the resource (kick-old) and goes online at once.
    let mut bob2 = confab_stream::client::connect(&o).await.expect("reconnect");
    bob2.send(&Element::new("presence", ns::CLIENT))
        .await
        .expect("presence");
    // Its initial presence is handled as such: the probe brings alice's presence.
    expect(&mut bob2, "alice's presence", |e| {
        is_presence_from(e, "alice@localhost", None)
    })
    .await;
    // The old session's end is not broadcast as bob going offline.
    assert!(
        never(&mut alice, 500, |e| is_presence_from(
            e,
            "bob@localhost",
            Some("unavailable")
        ))
        .await,
        "a replaced session was announced as a logout"
    );
    drop(bob);
}

#[tokio::test]
async fn unsubscribing_brings_unavailable_from_each_of_the_contact_s_resources() {
    // RFC 6121 §3.3.3: the user no longer sees the contact, so the contact's server sends
    // unavailable from every available resource of the contact.
    let ts = server_with(&["alice", "bob"]).await;
    let (mut alice, bob) = befriend(&ts).await;
    let mut bob2 = online(&ts, "bob").await;
    ping(&mut bob2).await;
    expect(&mut alice, "bob's second resource", |e| {
        e.get_attr("from") == Some(bob2.jid.as_str()) && e.get_attr("type").is_none()
    })
    .await;
    send_presence(&mut alice, "bob@localhost", "unsubscribe").await;
    let mut gone = std::collections::HashSet::new();
    while gone.len() < 2 {
        let e = expect(&mut alice, "unavailable from bob", |e| {
            is_presence_from(e, "bob@localhost", Some("unavailable"))
        })
        .await;
        gone.insert(e.get_attr("from").unwrap_or_default().to_string());
    }
    assert!(
        gone.contains(bob.jid.as_str()) && gone.contains(bob2.jid.as_str()),
        "{gone:?}"
    );
}

#[tokio::test]
async fn a_failed_roster_read_changes_nothing_and_answers_wait() {
    let ts = server_with(&["alice", "bob"]).await;
    let mut alice = ts.login("alice").await;
    let set = iq(
        &mut alice,
        "set",
        None,
        Element::new("query", ROSTER).child(
            Element::new("item", ROSTER)
                .attr("jid", "bob@localhost")
                .attr("name", "Bobby")
                .child(Element::new("group", ROSTER).text("Friends")),
        ),
    )
    .await;
    assert_eq!(set.get_attr("type"), Some("result"), "{set}");
    // A row the store cannot read (while writes still work): the subscription that follows
    // must fail, not start from an empty item and overwrite name and groups.
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        ts.dir.path().join("confab.db").display()
    ))
    .await
    .expect("open the database");
    let corrupt = |sub: &'static str| {
        sqlx::query(
            "UPDATE roster_items SET subscription = ? WHERE username = 'alice' AND jid = 'bob@localhost'",
        )
        .bind(sub)
    };
    corrupt("unreadable").execute(&db).await.expect("corrupt");
    send_presence(&mut alice, "bob@localhost", "subscribe").await;
    let e = expect(&mut alice, "an error", |e| {
        e.name == "presence" && e.get_attr("type") == Some("error")
    })
    .await;
    assert_eq!(condition(&e), "internal-server-error");
    let err = confab_proto::StanzaError::from_stanza(&e).expect("error");
    assert_eq!(err.type_.as_str(), "wait");
    corrupt("none").execute(&db).await.expect("restore");
    let roster = get_roster(&mut alice).await;
    let bob = item(&roster, "bob@localhost").expect("bob is still there");
    assert_eq!(bob.get_attr("name"), Some("Bobby"), "{bob}");
    assert_eq!(bob.get_attr("ask"), None, "{bob}");
    assert_eq!(
        bob.get_child("group", ROSTER).map(|g| g.text_content()),
        Some("Friends".to_string()),
        "{bob}"
    );
}

#[tokio::test]
async fn a_stored_subscription_request_keeps_only_bounded_parts() {
    let ts = server_with(&["alice", "bob"]).await;
    let mut bob = ts.login("bob").await;
    // alice is offline: the request is stored with what it carries.
    let mut req = Element::new("presence", ns::CLIENT)
        .attr("to", "alice@localhost")
        .attr("type", "subscribe")
        .attr("id", "s1")
        .attr("junk", "j".repeat(60 * 1024))
        .child(Element::new("nick", "http://jabber.org/protocol/nick").text("n".repeat(60 * 1024)))
        .child(Element::new("x", "urn:example:bulk").text("b".repeat(30 * 1024)));
    req.attrs.push(confab_proto::xml::Attr {
        ns: "urn:example:attr".into(),
        name: "more".into(),
        value: "m".repeat(20 * 1024),
    });
    bob.send(&req).await.expect("subscribe");
    ping(&mut bob).await;
    let stored = ts
        .server()
        .ctx()
        .stores
        .roster
        .roster_item("localhost", "alice", "bob@localhost")
        .await
        .expect("read")
        .and_then(|i| i.pending_in)
        .expect("a pending request");
    assert!(stored.len() < 8 * 1024, "stored {} bytes", stored.len());
    assert!(
        stored.contains("nick") && stored.contains("id='s1'"),
        "{stored}"
    );
}
