//! vcard-temp (XEP-0054), private XML storage (XEP-0049), entity time (XEP-0202), last
//! activity (XEP-0012), account disco (XEP-0030), server caps (XEP-0115) and pings to idle
//! clients (XEP-0199).

use base64::Engine as _;
use confab_modules::vcard::VcardConfig;
use confab_proto::ns;
use confab_proto::parser::StreamEvent;
use confab_proto::xml::Element;
use confab_store::{RosterItem, Subscription};
use confab_stream::client::{stream_header, ClientSession};
use confab_tests::*;
use sha1::{Digest, Sha1};
use std::time::Duration;

const VCARD: &str = "vcard-temp";
const PRIVATE: &str = "jabber:iq:private";
const TIME: &str = "urn:xmpp:time";
const LAST: &str = "jabber:iq:last";

fn next_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("t{}", N.fetch_add(1, Ordering::Relaxed))
}

fn payload<'a>(r: &'a Element, name: &str, ns: &str) -> &'a Element {
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");
    r.get_child(name, ns)
        .unwrap_or_else(|| panic!("no {name} in {r}"))
}

async fn subscribe_from(ts: &TestServer, user: &str, contact: &str, sub: Subscription) {
    let mut item = RosterItem::new(&format!("{contact}@{DOMAIN}"));
    item.subscription = sub;
    item.in_roster = true;
    ts.server()
        .ctx()
        .stores
        .roster
        .put_roster_item(DOMAIN, user, &item)
        .await
        .expect("roster item");
}

fn features(q: &Element) -> Vec<String> {
    q.elements()
        .filter(|e| e.name == "feature")
        .filter_map(|f| f.get_attr("var").map(str::to_string))
        .collect()
}

// ---------------------------------------------------------------- XEP-0054 vcard-temp

fn vcard(fn_: &str) -> Element {
    Element::new("vCard", VCARD).child(Element::new("FN", VCARD).text(fn_))
}

#[tokio::test]
async fn vcard_set_and_get_own_and_others() {
    let ts = TestServer::start().await;
    for u in ["alice", "bob", "carol"] {
        ts.add_user(u).await;
    }
    let mut alice = ts.login("alice").await;
    let mut bob = ts.login("bob").await;
    // None yet: an empty vCard (XEP-0054 §3.1 allows it instead of item-not-found).
    let r = iq(&mut alice, "get", None, Element::new("vCard", VCARD)).await;
    assert_eq!(payload(&r, "vCard", VCARD).elements().count(), 0);
    let r = iq(&mut alice, "set", None, vcard("Alice A.")).await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");
    // Own, with and without `to`.
    for to in [None, Some("alice@localhost")] {
        let r = iq(&mut alice, "get", to, Element::new("vCard", VCARD)).await;
        let v = payload(&r, "vCard", VCARD);
        assert_eq!(
            v.get_child("FN", VCARD)
                .map(|f| f.text_content())
                .as_deref(),
            Some("Alice A.")
        );
    }
    // Another account's, answered by the server (bob is not subscribed).
    let r = iq(
        &mut bob,
        "get",
        Some("alice@localhost"),
        Element::new("vCard", VCARD),
    )
    .await;
    assert_eq!(r.get_attr("from"), Some("alice@localhost"));
    let v = payload(&r, "vCard", VCARD);
    assert_eq!(
        v.get_child("FN", VCARD)
            .map(|f| f.text_content())
            .as_deref(),
        Some("Alice A.")
    );
    let r = iq(
        &mut bob,
        "get",
        Some("carol@localhost"),
        Element::new("vCard", VCARD),
    )
    .await;
    assert_eq!(payload(&r, "vCard", VCARD).elements().count(), 0);
    // Setting someone else's: forbidden, and nothing changes.
    let r = iq(&mut bob, "set", Some("alice@localhost"), vcard("Mallory")).await;
    assert_eq!(condition(&r), "forbidden");
    let r = iq(
        &mut bob,
        "get",
        Some("alice@localhost"),
        Element::new("vCard", VCARD),
    )
    .await;
    let v = payload(&r, "vCard", VCARD);
    assert_eq!(
        v.get_child("FN", VCARD)
            .map(|f| f.text_content())
            .as_deref(),
        Some("Alice A.")
    );
    // Replacing replaces the whole vCard.
    let r = iq(
        &mut alice,
        "set",
        None,
        Element::new("vCard", VCARD).child(Element::new("NICKNAME", VCARD).text("al")),
    )
    .await;
    assert_eq!(r.get_attr("type"), Some("result"));
    let r = iq(&mut alice, "get", None, Element::new("vCard", VCARD)).await;
    let v = payload(&r, "vCard", VCARD);
    assert!(v.get_child("FN", VCARD).is_none());
    assert!(v.get_child("NICKNAME", VCARD).is_some());
    // Unknown account: service-unavailable from routing; wrong element: bad-request.
    let r = iq(
        &mut bob,
        "get",
        Some("nobody@localhost"),
        Element::new("vCard", VCARD),
    )
    .await;
    assert_eq!(condition(&r), "service-unavailable");
    let r = iq(&mut alice, "set", None, Element::new("card", VCARD)).await;
    assert_eq!(condition(&r), "bad-request");
    // The server does not answer vCard requests for itself.
    let r = iq(
        &mut alice,
        "get",
        Some("localhost"),
        Element::new("vCard", VCARD),
    )
    .await;
    assert_eq!(condition(&r), "service-unavailable");
}

#[tokio::test]
async fn vcard_size_limit() {
    let ts = TestServer::start_with(|c| {
        c.update_section("vcard", |v: &mut VcardConfig| v.max_size = 2048)
            .expect("vcard section")
    })
    .await;
    ts.add_user("alice").await;
    let mut alice = ts.login("alice").await;
    let r = iq(&mut alice, "set", None, vcard(&"x".repeat(3000))).await;
    assert_eq!(condition(&r), "not-acceptable");
    let r = iq(&mut alice, "get", None, Element::new("vCard", VCARD)).await;
    assert_eq!(payload(&r, "vCard", VCARD).elements().count(), 0);
    let r = iq(&mut alice, "set", None, vcard(&"x".repeat(1500))).await;
    assert_eq!(r.get_attr("type"), Some("result"));
}

#[tokio::test]
async fn vcard_avatar_hash_and_update_passes_through() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let mut alice = ts.login("alice").await;
    let mut bob = ts.login("bob").await;
    let ctx = ts.server().ctx();
    let account = confab_proto::BareJid::new("alice@localhost").expect("jid");
    assert_eq!(
        confab_modules::vcard::avatar_hash(ctx, &account).await,
        None
    );
    let image = b"\x89PNG not really an image".to_vec();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&image);
    // Wrapped like clients do.
    let wrapped = format!("{}\n{}", &b64[..10], &b64[10..]);
    let v = Element::new("vCard", VCARD).child(
        Element::new("PHOTO", VCARD)
            .child(Element::new("TYPE", VCARD).text("image/png"))
            .child(Element::new("BINVAL", VCARD).text(wrapped)),
    );
    let r = iq(&mut alice, "set", None, v).await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");
    let expected: String = Sha1::digest(&image)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        confab_modules::vcard::avatar_hash(ctx, &account).await,
        Some(expected.clone())
    );
    // Not base64: refused, the stored vCard and hash stay.
    let bad = Element::new("vCard", VCARD)
        .child(Element::new("PHOTO", VCARD).child(Element::new("BINVAL", VCARD).text("#!")));
    let r = iq(&mut alice, "set", None, bad).await;
    assert_eq!(condition(&r), "bad-request");
    assert_eq!(
        confab_modules::vcard::avatar_hash(ctx, &account).await,
        Some(expected.clone())
    );
    // Without a photo the hash is empty (XEP-0153: "no avatar").
    let r = iq(&mut alice, "set", None, vcard("A")).await;
    assert_eq!(r.get_attr("type"), Some("result"));
    assert_eq!(
        confab_modules::vcard::avatar_hash(ctx, &account).await,
        Some(String::new())
    );
    // XEP-0153: presence without an annotation gets the stored hash (empty: no avatar).
    alice
        .send(&Element::new("presence", ns::CLIENT).attr("to", bob.jid.to_string()))
        .await
        .expect("send");
    let p = recv(&mut bob).await;
    let x = p
        .get_child("x", "vcard-temp:x:update")
        .unwrap_or_else(|| panic!("not annotated: {p}"));
    assert_eq!(
        x.get_child("photo", "vcard-temp:x:update")
            .map(|e| e.text_content()),
        Some(String::new())
    );
    // The presence annotation reaches the recipient untouched.
    let update = Element::new("x", "vcard-temp:x:update")
        .child(Element::new("photo", "vcard-temp:x:update").text(expected.clone()));
    alice
        .send(
            &Element::new("presence", ns::CLIENT)
                .attr("to", bob.jid.to_string())
                .child(update.clone()),
        )
        .await
        .expect("send");
    let p = recv(&mut bob).await;
    assert_eq!(p.name, "presence", "{p}");
    assert_eq!(p.get_child("x", "vcard-temp:x:update"), Some(&update));
}

// ---------------------------------------------------------------- XEP-0049 private XML

fn private(children: Vec<Element>) -> Element {
    let mut q = Element::new("query", PRIVATE);
    for c in children {
        q.push_child(c);
    }
    q
}

fn bookmarks(name: &str) -> Element {
    Element::new("storage", "storage:bookmarks")
        .child(Element::new("conference", "storage:bookmarks").attr("name", name))
}

#[tokio::test]
async fn private_storage_rules() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let mut alice = ts.login("alice").await;
    let mut bob = ts.login("bob").await;
    let empty = || Element::new("storage", "storage:bookmarks");
    // Unknown key: the empty element.
    let r = iq(&mut alice, "get", None, private(vec![empty()])).await;
    let q = payload(&r, "query", PRIVATE);
    assert_eq!(q.elements().collect::<Vec<_>>(), vec![&empty()]);
    // Several children in one set are stored each under its own key.
    let delim = Element::new("roster", "roster:delimiter").text("::");
    let r = iq(
        &mut alice,
        "set",
        None,
        private(vec![bookmarks("a"), delim.clone()]),
    )
    .await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");
    let r = iq(&mut alice, "get", None, private(vec![empty()])).await;
    assert_eq!(
        payload(&r, "query", PRIVATE).elements().collect::<Vec<_>>(),
        vec![&bookmarks("a")]
    );
    let r = iq(
        &mut alice,
        "get",
        Some("alice@localhost"),
        private(vec![Element::new("roster", "roster:delimiter")]),
    )
    .await;
    assert_eq!(
        payload(&r, "query", PRIVATE).elements().collect::<Vec<_>>(),
        vec![&delim]
    );
    // Same namespace, another element name: another key.
    let r = iq(
        &mut alice,
        "get",
        None,
        private(vec![Element::new("other", "storage:bookmarks")]),
    )
    .await;
    assert_eq!(
        payload(&r, "query", PRIVATE)
            .elements()
            .next()
            .map(|e| e.elements().count()),
        Some(0)
    );
    // Overwrite.
    let r = iq(&mut alice, "set", None, private(vec![bookmarks("b")])).await;
    assert_eq!(r.get_attr("type"), Some("result"));
    let r = iq(&mut alice, "get", None, private(vec![empty()])).await;
    assert_eq!(
        payload(&r, "query", PRIVATE).elements().collect::<Vec<_>>(),
        vec![&bookmarks("b")]
    );
    // Bob's data is his own.
    let r = iq(&mut bob, "get", None, private(vec![empty()])).await;
    assert_eq!(
        payload(&r, "query", PRIVATE).elements().collect::<Vec<_>>(),
        vec![&empty()]
    );
    // Another user's: forbidden (get and set).
    let r = iq(
        &mut bob,
        "get",
        Some("alice@localhost"),
        private(vec![empty()]),
    )
    .await;
    assert_eq!(condition(&r), "forbidden");
    let r = iq(
        &mut bob,
        "set",
        Some("alice@localhost"),
        private(vec![bookmarks("x")]),
    )
    .await;
    assert_eq!(condition(&r), "forbidden");
    // Bad shapes.
    let r = iq(&mut alice, "get", None, private(vec![])).await;
    assert_eq!(condition(&r), "bad-request");
    let r = iq(
        &mut alice,
        "get",
        None,
        private(vec![empty(), Element::new("a", "urn:a")]),
    )
    .await;
    assert_eq!(condition(&r), "bad-request");
    let r = iq(&mut alice, "set", None, private(vec![])).await;
    assert_eq!(condition(&r), "not-acceptable");
    for reserved in [ns::CLIENT, PRIVATE, ns::SERVER] {
        let r = iq(
            &mut alice,
            "set",
            None,
            private(vec![Element::new("x", reserved)]),
        )
        .await;
        assert_eq!(condition(&r), "not-acceptable", "{reserved}");
        let r = iq(
            &mut alice,
            "get",
            None,
            private(vec![Element::new("x", reserved)]),
        )
        .await;
        assert_eq!(condition(&r), "not-acceptable", "{reserved}");
    }
    let r = iq(&mut alice, "set", None, Element::new("other", PRIVATE)).await;
    assert_eq!(condition(&r), "bad-request");
    // Nothing was changed by the refused requests.
    let r = iq(&mut alice, "get", None, private(vec![empty()])).await;
    assert_eq!(
        payload(&r, "query", PRIVATE).elements().collect::<Vec<_>>(),
        vec![&bookmarks("b")]
    );
}

#[tokio::test]
async fn private_storage_fragment_limit() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    let mut alice = ts.login("alice").await;
    let max = confab_modules::private::MAX_FRAGMENTS;
    let many = |n: usize| {
        private(
            (0..n)
                .map(|i| Element::new("x", format!("urn:test:{i}")))
                .collect(),
        )
    };
    // One too many in one set: refused as a whole.
    let r = iq(&mut alice, "set", None, many(max + 1)).await;
    assert_eq!(condition(&r), "resource-constraint");
    let r = iq(
        &mut alice,
        "get",
        None,
        private(vec![Element::new("x", "urn:test:0")]),
    )
    .await;
    assert_eq!(payload(&r, "query", PRIVATE).elements().count(), 1);
    let list = ts
        .server()
        .ctx()
        .stores
        .data
        .list_account_data(DOMAIN, "alice", "private")
        .await
        .expect("list");
    assert!(list.is_empty());
    let r = iq(&mut alice, "set", None, many(max)).await;
    assert_eq!(r.get_attr("type"), Some("result"));
    // Rewriting existing keys is fine; a new one is not.
    let r = iq(&mut alice, "set", None, many(2)).await;
    assert_eq!(r.get_attr("type"), Some("result"));
    let r = iq(
        &mut alice,
        "set",
        None,
        private(vec![Element::new("y", "urn:new")]),
    )
    .await;
    assert_eq!(condition(&r), "resource-constraint");
}

// ---------------------------------------------------------------- XEP-0202 entity time

#[tokio::test]
async fn server_time() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    let mut alice = ts.login("alice").await;
    let r = iq(
        &mut alice,
        "get",
        Some("localhost"),
        Element::new("time", TIME),
    )
    .await;
    let t = payload(&r, "time", TIME);
    assert_eq!(
        t.get_child("tzo", TIME)
            .map(|e| e.text_content())
            .as_deref(),
        Some("+00:00")
    );
    let utc = t
        .get_child("utc", TIME)
        .map(|e| e.text_content())
        .expect("utc");
    let secs = confab_proto::datetime::parse_datetime(&utc).expect("XEP-0082 DateTime");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    assert!((now - secs).abs() <= 5, "{utc}");
    // Only the server answers; an account's time is its clients' business.
    let r = iq(&mut alice, "get", None, Element::new("time", TIME)).await;
    assert_eq!(condition(&r), "service-unavailable");
}

// ---------------------------------------------------------------- XEP-0012 last activity

async fn last(c: &mut ClientSession, to: Option<&str>) -> Element {
    iq(c, "get", to, Element::new("query", LAST)).await
}

fn seconds(r: &Element) -> u64 {
    payload(r, "query", LAST)
        .get_attr("seconds")
        .and_then(|s| s.parse().ok())
        .expect("seconds")
}

#[tokio::test]
async fn last_activity_of_server_and_users() {
    let ts = TestServer::start().await;
    for u in ["alice", "bob", "carol", "dave"] {
        ts.add_user(u).await;
    }
    let mut bob = ts.login("bob").await;
    // The server: its uptime, no text.
    let r = last(&mut bob, Some("localhost")).await;
    assert!(seconds(&r) < 60);
    assert_eq!(payload(&r, "query", LAST).text_content(), "");
    // No subscription: as for a missing account, whether or not alice ever logged in.
    let r = last(&mut bob, Some("alice@localhost")).await;
    assert_eq!(condition(&r), "service-unavailable");
    // A subscription in the wrong direction (alice sees bob) is not enough.
    subscribe_from(&ts, "alice", "bob", Subscription::To).await;
    let r = last(&mut bob, Some("alice@localhost")).await;
    assert_eq!(condition(&r), "service-unavailable");
    subscribe_from(&ts, "alice", "bob", Subscription::From).await;
    // Never logged in: item-not-found.
    let r = last(&mut bob, Some("alice@localhost")).await;
    assert_eq!(condition(&r), "item-not-found");
    // Connected but not available is not "online" either.
    let mut alice = ts.login("alice").await;
    let r = last(&mut bob, Some("alice@localhost")).await;
    assert_eq!(condition(&r), "item-not-found");
    alice
        .send(&Element::new("presence", ns::CLIENT))
        .await
        .expect("presence");
    ping(&mut alice).await;
    let r = last(&mut bob, Some("alice@localhost")).await;
    assert_eq!(seconds(&r), 0);
    // The user themself, with and without `to`.
    assert_eq!(seconds(&last(&mut alice, None).await), 0);
    assert_eq!(seconds(&last(&mut alice, Some("alice@localhost")).await), 0);
    // A second session closing is not a logout.
    let alice2 = ts.login("alice").await;
    alice2.close().await.expect("close");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(seconds(&last(&mut bob, Some("alice@localhost")).await), 0);
    // Logging out with a status.
    alice
        .send(
            &Element::new("presence", ns::CLIENT)
                .attr("type", "unavailable")
                .child(Element::new("status", ns::CLIENT).text("Heading Home")),
        )
        .await
        .expect("presence");
    alice.close().await.expect("close");
    let mut answer = None;
    for _ in 0..50 {
        let r = last(&mut bob, Some("alice@localhost")).await;
        if r.get_attr("type") == Some("result")
            && !payload(&r, "query", LAST).text_content().is_empty()
        {
            answer = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = answer.expect("logout recorded");
    assert_eq!(payload(&r, "query", LAST).text_content(), "Heading Home");
    assert!(seconds(&r) < 10);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(seconds(&last(&mut bob, Some("alice@localhost")).await) >= 1);
    // `both` is a from-subscription too; a logout without status has no text.
    subscribe_from(&ts, "carol", "bob", Subscription::Both).await;
    let carol = ts.login("carol").await;
    carol.close().await.expect("close");
    let mut ok = false;
    for _ in 0..50 {
        let r = last(&mut bob, Some("carol@localhost")).await;
        if r.get_attr("type") == Some("result") {
            assert_eq!(payload(&r, "query", LAST).text_content(), "");
            ok = true;
            break;
        }
        assert_eq!(condition(&r), "item-not-found");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok);
    // Unknown account: service-unavailable; a bad payload: bad-request.
    let r = last(&mut bob, Some("nobody@localhost")).await;
    assert_eq!(condition(&r), "service-unavailable");
    let r = iq(
        &mut bob,
        "get",
        Some("localhost"),
        Element::new("other", LAST),
    )
    .await;
    assert_eq!(condition(&r), "bad-request");
    let r = iq(
        &mut bob,
        "set",
        Some("localhost"),
        Element::new("query", LAST),
    )
    .await;
    assert_eq!(condition(&r), "service-unavailable");
}

#[tokio::test]
async fn last_activity_query_to_a_resource_needs_a_subscription() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let mut alice = ts.login_available("alice").await;
    let mut bob = ts.login("bob").await;
    let alice_full = alice.jid.to_string();
    // Not subscribed: the server answers forbidden; alice's client never sees the query.
    let r = last(&mut bob, Some(&alice_full)).await;
    assert_eq!(condition(&r), "forbidden");
    assert_eq!(r.get_attr("from"), Some(alice_full.as_str()));
    assert!(nothing_arrives(&mut alice, 300).await);
    // Subscribed: delivered to the client, which answers itself.
    subscribe_from(&ts, "alice", "bob", Subscription::Both).await;
    let id = next_id();
    bob.send(
        &Element::new("iq", ns::CLIENT)
            .attr("type", "get")
            .attr("id", id.clone())
            .attr("to", alice_full.clone())
            .child(Element::new("query", LAST)),
    )
    .await
    .expect("send");
    let q = recv(&mut alice).await;
    assert_eq!(q.get_attr("id"), Some(id.as_str()), "{q}");
    assert!(q.get_child("query", LAST).is_some());
    // Other queries to the resource are not affected, subscribed or not.
    subscribe_from(&ts, "alice", "bob", Subscription::None).await;
    bob.send(
        &Element::new("iq", ns::CLIENT)
            .attr("type", "get")
            .attr("id", "v")
            .attr("to", alice_full.clone())
            .child(Element::new("query", "jabber:iq:version")),
    )
    .await
    .expect("send");
    let q = recv(&mut alice).await;
    assert_eq!(q.get_attr("id"), Some("v"), "{q}");
}

#[tokio::test]
async fn account_deletion_removes_stored_data() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    let mut alice = ts.login("alice").await;
    let r = iq(&mut alice, "set", None, vcard("A")).await;
    assert_eq!(r.get_attr("type"), Some("result"));
    let r = iq(&mut alice, "set", None, private(vec![bookmarks("a")])).await;
    assert_eq!(r.get_attr("type"), Some("result"));
    alice.close().await.expect("close");
    let ctx = ts.server().ctx();
    let data = &ctx.stores.data;
    let mut recorded = false;
    for _ in 0..50 {
        if !data
            .list_account_data(DOMAIN, "alice", "last")
            .await
            .expect("list")
            .is_empty()
        {
            recorded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(recorded, "logout recorded");
    let jid = confab_proto::BareJid::new("alice@localhost").expect("jid");
    for l in ctx.registry.lifecycle_listeners() {
        l.account_deleted(ctx, &jid).await;
    }
    for kind in ["vcard", "private", "last"] {
        let left = data
            .list_account_data(DOMAIN, "alice", kind)
            .await
            .expect("list");
        assert!(left.is_empty(), "{kind}: {left:?}");
    }
}

// ---------------------------------------------------------------- XEP-0030 for accounts

fn disco_info(node: Option<&str>) -> Element {
    let mut q = Element::new("query", ns::DISCO_INFO);
    if let Some(n) = node {
        q.set_attr("node", n);
    }
    q
}

#[tokio::test]
async fn account_disco() {
    let ts = TestServer::start().await;
    for u in ["alice", "bob"] {
        ts.add_user(u).await;
    }
    let mut alice = ts.login("alice").await;
    let mut bob = ts.login("bob").await;
    for to in [None, Some("alice@localhost")] {
        let r = iq(&mut alice, "get", to, disco_info(None)).await;
        let q = payload(&r, "query", ns::DISCO_INFO);
        let id = q.get_child("identity", ns::DISCO_INFO).expect("identity");
        assert_eq!(id.get_attr("category"), Some("account"));
        assert_eq!(id.get_attr("type"), Some("registered"));
        let f = features(q);
        for want in [VCARD, LAST, ns::DISCO_INFO] {
            assert!(f.iter().any(|x| x == want), "{want} in {f:?}");
        }
        // Server-only features are not the account's.
        assert!(!f.iter().any(|x| x == TIME), "{f:?}");
    }
    // Not subscribed (or only alice to bob): service-unavailable, like a missing account.
    let r = iq(&mut bob, "get", Some("alice@localhost"), disco_info(None)).await;
    assert_eq!(condition(&r), "service-unavailable");
    subscribe_from(&ts, "alice", "bob", Subscription::To).await;
    let r = iq(&mut bob, "get", Some("alice@localhost"), disco_info(None)).await;
    assert_eq!(condition(&r), "service-unavailable");
    let r = iq(&mut bob, "get", Some("nobody@localhost"), disco_info(None)).await;
    assert_eq!(condition(&r), "service-unavailable");
    subscribe_from(&ts, "alice", "bob", Subscription::From).await;
    let r = iq(&mut bob, "get", Some("alice@localhost"), disco_info(None)).await;
    let q = payload(&r, "query", ns::DISCO_INFO);
    assert!(features(q).iter().any(|x| x == VCARD));
    // Unknown node: item-not-found.
    let r = iq(
        &mut bob,
        "get",
        Some("alice@localhost"),
        disco_info(Some("urn:x")),
    )
    .await;
    assert_eq!(condition(&r), "item-not-found");
    // Items: empty, for everyone.
    for (c, to) in [(&mut alice, None), (&mut bob, Some("alice@localhost"))] {
        let r = iq(c, "get", to, Element::new("query", ns::DISCO_ITEMS)).await;
        assert_eq!(payload(&r, "query", ns::DISCO_ITEMS).elements().count(), 0);
    }
    let mut carol_less = ts.login("bob").await;
    let r = iq(
        &mut carol_less,
        "get",
        Some("alice@localhost"),
        Element::new("query", ns::DISCO_ITEMS),
    )
    .await;
    assert_eq!(payload(&r, "query", ns::DISCO_ITEMS).elements().count(), 0);
}

#[tokio::test]
async fn server_disco_lists_new_features_and_disabling_removes_them() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    let mut alice = ts.login("alice").await;
    let r = iq(&mut alice, "get", Some("localhost"), disco_info(None)).await;
    let f = features(payload(&r, "query", ns::DISCO_INFO));
    for want in [VCARD, LAST, TIME, ns::CAPS, ns::PING] {
        assert!(f.iter().any(|x| x == want), "{want} in {f:?}");
    }
    let ts = TestServer::start_with(|c| {
        c.modules.disabled = vec![
            "vcard".into(),
            "last".into(),
            "time".into(),
            "private".into(),
        ]
    })
    .await;
    ts.add_user("alice").await;
    let mut alice = ts.login("alice").await;
    let r = iq(&mut alice, "get", Some("localhost"), disco_info(None)).await;
    let f = features(payload(&r, "query", ns::DISCO_INFO));
    for gone in [VCARD, LAST, TIME] {
        assert!(!f.iter().any(|x| x == gone), "{gone} in {f:?}");
    }
    let r = iq(&mut alice, "get", None, private(vec![bookmarks("a")])).await;
    assert_eq!(condition(&r), "service-unavailable");
}

// ---------------------------------------------------------------- XEP-0115 server caps

/// XEP-0115 §5.1, written out independently of the server's implementation.
fn expected_ver(q: &Element) -> String {
    let mut ids: Vec<String> = q
        .elements()
        .filter(|e| e.name == "identity")
        .map(|i| {
            format!(
                "{}/{}/{}/{}",
                i.get_attr("category").unwrap_or(""),
                i.get_attr("type").unwrap_or(""),
                i.get_attr_ns(ns::XML, "lang").unwrap_or(""),
                i.get_attr("name").unwrap_or("")
            )
        })
        .collect();
    ids.sort();
    let mut f = features(q);
    f.sort();
    let s: String = ids
        .iter()
        .chain(f.iter())
        .map(|x| format!("{x}<"))
        .collect();
    base64::engine::general_purpose::STANDARD.encode(Sha1::digest(s.as_bytes()))
}

#[tokio::test]
async fn server_caps_in_stream_features_and_caps_node() {
    let ts = TestServer::start_with(|c| {
        c.c2s.require_tls = false;
        c.c2s.allow_plain_without_tls = true;
    })
    .await;
    ts.add_user("alice").await;
    // Before authentication: no caps.
    let mut raw = ts.raw().await;
    let f = raw.open().await;
    assert!(f.get_child("c", ns::CAPS).is_none(), "{f}");
    let creds = base64::engine::general_purpose::STANDARD.encode(format!("\0alice\0{PASSWORD}"));
    raw.send(&format!(
        "<auth xmlns='{}' mechanism='PLAIN'>{creds}</auth>",
        ns::SASL
    ))
    .await;
    assert_eq!(raw.element().await.name, "success");
    raw.stream.restart();
    raw.send(&stream_header(DOMAIN)).await;
    assert!(matches!(raw.event().await, StreamEvent::Header(_)));
    let f = raw.element().await;
    let c = f
        .get_child("c", ns::CAPS)
        .unwrap_or_else(|| panic!("no caps in {f}"));
    assert_eq!(c.get_attr("hash"), Some("sha-1"));
    let node = c.get_attr("node").expect("node").to_string();
    let ver = c.get_attr("ver").expect("ver").to_string();
    // The ver matches the server's disco#info.
    let mut alice = ts.login("alice").await;
    let r = iq(&mut alice, "get", Some("localhost"), disco_info(None)).await;
    let q = payload(&r, "query", ns::DISCO_INFO).clone();
    assert_eq!(expected_ver(&q), ver);
    assert!(features(&q).iter().any(|x| x == ns::CAPS));
    // The caps node answers with the same info.
    let caps_node = format!("{node}#{ver}");
    let r = iq(
        &mut alice,
        "get",
        Some("localhost"),
        disco_info(Some(&caps_node)),
    )
    .await;
    let qn = payload(&r, "query", ns::DISCO_INFO);
    assert_eq!(qn.get_attr("node"), Some(caps_node.as_str()));
    assert_eq!(expected_ver(qn), ver);
    // Any other node: item-not-found.
    for other in [format!("{node}#wrong"), node.clone()] {
        let r = iq(
            &mut alice,
            "get",
            Some("localhost"),
            disco_info(Some(&other)),
        )
        .await;
        assert_eq!(condition(&r), "item-not-found");
    }
    let mut items = Element::new("query", ns::DISCO_ITEMS);
    items.set_attr("node", caps_node.as_str());
    let r = iq(&mut alice, "get", Some("localhost"), items).await;
    assert_eq!(condition(&r), "item-not-found");
    // Disabling a module changes the ver.
    let ts2 = TestServer::start_with(|c| c.modules.disabled = vec!["time".into()]).await;
    ts2.add_user("alice").await;
    let mut a2 = ts2.login("alice").await;
    let r = iq(&mut a2, "get", Some("localhost"), disco_info(None)).await;
    let q2 = payload(&r, "query", ns::DISCO_INFO);
    assert_ne!(expected_ver(q2), ver);
    let r = iq(
        &mut a2,
        "get",
        Some("localhost"),
        disco_info(Some(&caps_node)),
    )
    .await;
    assert_eq!(condition(&r), "item-not-found");
}

// ---------------------------------------------------------------- XEP-0199 server pings

/// Reads until the server pings; returns the ping.
async fn await_server_ping(c: &mut ClientSession) -> Element {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(5), c.recv())
            .await
            .expect("a ping within 5 s")
            .expect("stream open");
        if e.name == "iq" && e.get_child("ping", ns::PING).is_some() {
            return e;
        }
    }
}

#[tokio::test]
async fn server_pings_idle_clients_and_closes_silent_ones() {
    let ts = TestServer::start_with(|c| {
        c.set_section(
            "ping",
            &confab_modules::ping::PingConfig {
                interval: 1,
                timeout: 1,
            },
        )
        .expect("ping section");
    })
    .await;
    for u in ["alice", "bob", "carol"] {
        ts.add_user(u).await;
    }
    let mut alice = ts.login("alice").await;
    let mut bob = ts.login("bob").await;
    let mut carol = ts.login("carol").await;
    // Alice answers with a result, carol with an error (also proof of life).
    let answerer = |mut c: ClientSession, error: bool| {
        tokio::spawn(async move {
            let mut seen = 0;
            while seen < 3 {
                let p = await_server_ping(&mut c).await;
                assert_eq!(p.get_attr("type"), Some("get"));
                assert_eq!(p.get_attr("from"), Some("localhost"));
                assert_eq!(p.get_attr("to"), Some(c.jid.to_string().as_str()));
                let mut reply = Element::new("iq", ns::CLIENT)
                    .attr("id", p.get_attr("id").unwrap_or(""))
                    .attr("to", "localhost");
                if error {
                    reply.set_attr("type", "error");
                    reply.push_child(
                        confab_proto::StanzaError::new(
                            confab_proto::StanzaErrorCondition::ServiceUnavailable,
                        )
                        .to_element(ns::CLIENT),
                    );
                } else {
                    reply.set_attr("type", "result");
                }
                c.send(&reply).await.expect("answer");
                seen += 1;
            }
            c
        })
    };
    let a = answerer(alice, false);
    let c = answerer(carol, true);
    // Bob never answers: the first ping arrives, then the stream error.
    let p = await_server_ping(&mut bob).await;
    assert!(p.get_attr("id").is_some());
    assert_eq!(
        expect_session_stream_error(&mut bob).await,
        confab_proto::StreamErrorCondition::ConnectionTimeout
    );
    alice = a.await.expect("alice answered three pings");
    carol = c.await.expect("carol answered three pings");
    // Both still work, and the answers produced no stray replies.
    ping(&mut alice).await;
    ping(&mut carol).await;
    // A client that keeps talking is not pinged.
    let mut quiet = true;
    for _ in 0..6 {
        ping(&mut alice).await;
        if !nothing_arrives(&mut alice, 300).await {
            quiet = false;
        }
    }
    assert!(quiet, "an active client was pinged");
}

#[tokio::test]
async fn no_server_pings_by_default() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    let mut alice = ts.login("alice").await;
    assert!(nothing_arrives(&mut alice, 2500).await);
    ping(&mut alice).await;
}

// ------------------------------------------------ account existence (RFC 6121 §8.5.1)

/// The reply to a get with this payload sent to `to` (always with the same id), with `to`
/// written as `TARGET`, so replies about different accounts can be compared whole.
async fn reply_about(c: &mut ClientSession, to: &str, payload: Element) -> String {
    c.send(
        &Element::new("iq", ns::CLIENT)
            .attr("type", "get")
            .attr("id", "existence")
            .attr("to", to)
            .child(payload),
    )
    .await
    .expect("send");
    let r = expect(c, "reply", |e| {
        e.name == "iq" && e.get_attr("id") == Some("existence")
    })
    .await;
    r.to_xml(ns::CLIENT).replace(to, "TARGET")
}

#[tokio::test]
async fn ping_last_activity_and_disco_do_not_reveal_accounts_to_strangers() {
    let ts = TestServer::start().await;
    for u in ["alice", "carol", "bob"] {
        ts.add_user(u).await;
    }
    // alice is online, carol has an account but never logged in, nobody does not exist.
    let _alice = ts.login_available("alice").await;
    let mut bob = ts.login("bob").await;
    for payload in [
        Element::new("ping", ns::PING),
        Element::new("query", LAST),
        Element::new("query", ns::DISCO_INFO),
        Element::new("query", ns::DISCO_ITEMS),
    ] {
        let missing = reply_about(&mut bob, "nobody@localhost", payload.clone()).await;
        assert!(missing.contains("service-unavailable"), "{missing}");
        for user in ["alice", "carol"] {
            let to = format!("{user}@{DOMAIN}");
            // No subscription, or one in the wrong direction: exactly as for nobody.
            for sub in [Subscription::None, Subscription::To] {
                subscribe_from(&ts, user, "bob", sub).await;
                let reply = reply_about(&mut bob, &to, payload.clone()).await;
                assert_eq!(reply, missing, "{to}, {sub:?}");
            }
        }
    }
    // A contact allowed to see alice's presence gets the real answers.
    subscribe_from(&ts, "alice", "bob", Subscription::From).await;
    let r = iq(
        &mut bob,
        "get",
        Some("alice@localhost"),
        Element::new("ping", ns::PING),
    )
    .await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");
    assert_eq!(seconds(&last(&mut bob, Some("alice@localhost")).await), 0);
    // And so does the user themself.
    let r = iq(
        &mut bob,
        "get",
        Some("bob@localhost"),
        Element::new("ping", ns::PING),
    )
    .await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");
}
