//! Output a session causes itself waits for room instead of cutting it as a slow reader;
//! only traffic from others counts toward that cut. A blocked write still ends a session
//! in bounded time, and what was queued for it is accounted for.

use confab_proto::xml::Element;
use confab_proto::{ns, BareJid};
use confab_store::{RosterItem, Subscription};
use confab_stream::client::{connect, ClientSession, TlsMode};
use confab_tests::*;
use std::time::Duration;

fn vcard_of_size(bytes: usize) -> Element {
    Element::new("vCard", "vcard-temp")
        .child(Element::new("FN", "vcard-temp").text("Alice"))
        .child(Element::new("NOTE", "vcard-temp").text("v".repeat(bytes)))
}

fn vcard_get(id: &str, to: &str) -> Element {
    Element::new("iq", ns::CLIENT)
        .attr("type", "get")
        .attr("id", id)
        .attr("to", to)
        .child(Element::new("vCard", "vcard-temp"))
}

#[tokio::test]
async fn twenty_large_vcards_requested_at_once_all_arrive() {
    // 20 × 180 KiB is far beyond the 2 MiB queue limit for traffic from others.
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    let mut alice = ts.login("alice").await;
    let set = iq(&mut alice, "set", None, vcard_of_size(180 * 1024)).await;
    assert_eq!(set.get_attr("type"), Some("result"), "{set}");
    for i in 0..20 {
        alice
            .send(&vcard_get(&format!("v{i}"), "alice@localhost"))
            .await
            .expect("send");
    }
    let mut got = 0;
    while got < 20 {
        let e = recv(&mut alice).await;
        if e.name == "iq" && e.get_attr("id").is_some_and(|id| id.starts_with('v')) {
            assert_eq!(
                e.get_attr("type"),
                Some("result"),
                "{}",
                e.get_attr("id").unwrap_or("")
            );
            got += 1;
        }
    }
    ping(&mut alice).await;
}

async fn login_plain(ts: &TestServer, user: &str) -> ClientSession {
    let mut o = ts.options(user);
    o.tls = TlsMode::None;
    connect(&o).await.expect("login")
}

fn both_ways(contact: &str) -> RosterItem {
    let mut item = RosterItem::new(contact);
    item.subscription = Subscription::Both;
    item
}

#[tokio::test]
async fn login_with_600_online_contacts_and_pending_requests_stays_connected() {
    const CONTACTS: usize = 600;
    let ts = TestServer::start_with(|c| {
        c.c2s.require_tls = false;
        c.c2s.allow_plain_without_tls = true;
    })
    .await;
    ts.add_user("alice").await;
    let stores = &ts.server().ctx().stores;
    let mut contacts = Vec::new();
    for i in 0..CONTACTS {
        let name = format!("c{i}");
        // Few iterations: 600 key derivations would dominate the test's time.
        let jid = BareJid::new(&format!("{name}@{DOMAIN}")).expect("jid");
        confab_server::accounts::create(stores, &jid, PASSWORD, 16)
            .await
            .expect("contact");
        stores
            .roster
            .put_roster_item(DOMAIN, "alice", &both_ways(&format!("{name}@{DOMAIN}")))
            .await
            .expect("roster");
        stores
            .roster
            .put_roster_item(DOMAIN, &name, &both_ways(&format!("alice@{DOMAIN}")))
            .await
            .expect("roster");
    }
    // Requests waiting while alice is offline, each with a quarter-megabyte nickname.
    let senders: Vec<String> = (0..9).map(|i| format!("req{i}")).collect();
    for s in &senders {
        ts.add_user(s).await;
        let mut c = ts.login(s).await;
        c.send(
            &Element::new("presence", ns::CLIENT)
                .attr("to", "alice@localhost")
                .attr("type", "subscribe")
                .child(
                    Element::new("nick", "http://jabber.org/protocol/nick")
                        .text("n".repeat(250 * 1024)),
                ),
        )
        .await
        .expect("subscribe");
        ping(&mut c).await;
    }
    for i in 0..CONTACTS {
        let mut c = login_plain(&ts, &format!("c{i}")).await;
        c.send(&Element::new("presence", ns::CLIENT))
            .await
            .expect("presence");
        contacts.push(c);
    }
    for c in contacts.iter_mut() {
        ping(c).await;
    }
    let mut alice = login_plain(&ts, "alice").await;
    alice
        .send(&Element::new("presence", ns::CLIENT))
        .await
        .expect("presence");
    let mut online = std::collections::HashSet::new();
    let mut requests = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while online.len() < CONTACTS || requests.len() < senders.len() {
        let e = match tokio::time::timeout_at(deadline, alice.recv()).await {
            Ok(Ok(e)) => e,
            Ok(Err(e)) => panic!(
                "alice was disconnected after {} presences and {} requests: {e}",
                online.len(),
                requests.len()
            ),
            Err(_) => panic!(
                "timed out after {} presences and {} requests",
                online.len(),
                requests.len()
            ),
        };
        if e.name != "presence" {
            continue;
        }
        let from = e.get_attr("from").unwrap_or_default().to_string();
        match e.get_attr("type") {
            None => {
                online.insert(BareJid::new(&from).map(|j| j.to_string()).unwrap_or(from));
            }
            Some("subscribe") => {
                let nick = e
                    .get_child("nick", "http://jabber.org/protocol/nick")
                    .map(|n| n.text_content())
                    .unwrap_or_default();
                // Kept, but bounded.
                assert!(
                    !nick.is_empty() && nick.len() <= 4096,
                    "nick of {}",
                    nick.len()
                );
                requests.insert(from);
            }
            _ => {}
        }
    }
    ping(&mut alice).await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_after_the_write_timeout() {
    let ts = TestServer::start_with(|c| {
        c.c2s.write_timeout = 2;
        // Queue limits out of the way: only the write timeout can end this session.
        c.limits.outbound_queue = 1_000_000;
        c.limits.max_outbound_bytes = 1 << 30;
        c.limits.read_rate = 0;
    })
    .await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let mut bob = ts.login_available("bob").await;
    let alice = ts.login_available("alice").await;
    let alice_jid = alice.jid.to_string();
    // Alice reads nothing from here on; bob sends until her socket buffers are full.
    let body = "z".repeat(64 * 1024);
    for i in 0..400 {
        bob.send(
            &Element::new("message", ns::CLIENT)
                .attr("to", alice_jid.as_str())
                .attr("type", "chat")
                .attr("id", format!("m{i}"))
                .child(Element::new("body", ns::CLIENT).text(body.clone())),
        )
        .await
        .expect("send");
    }
    ping(&mut bob).await;
    let ctx = ts.server().ctx();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while ctx.router.resource_bound(&alice.jid) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a session blocked on writing was never closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(alice);
}

#[tokio::test]
async fn iqs_queued_for_a_session_that_ends_are_answered() {
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
    // Bob reads nothing; alice sends him large requests until he is cut as a slow reader.
    let pad = "q".repeat(16 * 1024);
    let mut answered = std::collections::HashSet::new();
    let mut take_errors = |e: Element| {
        if e.name == "iq" && e.get_attr("type") == Some("error") {
            answered.insert(e.get_attr("id").unwrap_or_default().to_string());
        }
    };
    for i in 0..N {
        alice
            .send(
                &Element::new("iq", ns::CLIENT)
                    .attr("type", "get")
                    .attr("id", format!("q{i}"))
                    .attr("to", bob_jid.as_str())
                    .child(Element::new("query", "urn:example:pad").text(pad.clone())),
            )
            .await
            .expect("send");
        while let Ok(Ok(e)) = tokio::time::timeout(Duration::from_millis(1), alice.recv()).await {
            take_errors(e);
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(Ok(e)) = tokio::time::timeout_at(deadline, alice.recv()).await {
        take_errors(e);
    }
    // What reached bob's socket before the cut he can still read.
    let mut bob = bob;
    let mut received = std::collections::HashSet::new();
    while let Ok(Ok(e)) = tokio::time::timeout(Duration::from_secs(3), bob.recv()).await {
        if e.name == "iq" {
            received.insert(e.get_attr("id").unwrap_or_default().to_string());
        }
    }
    assert!(!answered.is_empty(), "bob was never cut");
    let lost: Vec<usize> = (0..N)
        .filter(|i| {
            let id = format!("q{i}");
            !answered.contains(&id) && !received.contains(&id)
        })
        .collect();
    assert!(
        lost.is_empty(),
        "requests neither delivered nor answered: {lost:?}"
    );
}

#[tokio::test]
async fn a_blocked_resource_does_not_keep_offline_messages_from_another() {
    // More than loopback socket buffers hold, so the first resource's writes block.
    const N: usize = 200;
    let ts = TestServer::start_with(|c| {
        c.c2s.write_timeout = 2;
        c.limits.read_rate = 0;
    })
    .await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let mut bob = ts.login_available("bob").await;
    let body = "o".repeat(64 * 1024);
    for i in 0..N {
        bob.send(
            &Element::new("message", ns::CLIENT)
                .attr("to", "alice@localhost")
                .attr("type", "chat")
                .attr("id", format!("o{i}"))
                .child(Element::new("body", ns::CLIENT).text(body.clone())),
        )
        .await
        .expect("send");
    }
    ping(&mut bob).await;
    // The first resource takes the delivery and then reads nothing.
    let mut stuck = ts.login("alice").await;
    stuck
        .send(&Element::new("presence", ns::CLIENT))
        .await
        .expect("presence");
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The second gets what the first did not, once the first is closed for not reading,
    // instead of waiting behind it for good.
    let mut other = ts.login("alice").await;
    other
        .send(&Element::new("presence", ns::CLIENT))
        .await
        .expect("presence");
    let mut got = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(deadline, other.recv()).await {
            Ok(Ok(e)) if e.name == "message" => {
                got.insert(e.get_attr("id").unwrap_or_default().to_string());
                if got.len() == N {
                    break;
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("the second resource was disconnected: {e}"),
            // Quiet for a while: the first resource has what is missing, or nothing came.
            Err(_) => break,
        }
        if !got.is_empty() {
            // Once delivery started, a pause means it is done.
            if let Ok(Ok(e)) = tokio::time::timeout(Duration::from_secs(3), other.recv()).await {
                if e.name == "message" {
                    got.insert(e.get_attr("id").unwrap_or_default().to_string());
                }
                continue;
            }
            break;
        }
    }
    assert!(
        !got.is_empty(),
        "the second resource got no offline message"
    );
    // Whatever the second did not get reached the first one's connection before it was cut.
    let mut first = std::collections::HashSet::new();
    while let Ok(Ok(e)) = tokio::time::timeout(Duration::from_secs(3), stuck.recv()).await {
        if e.name == "message" {
            first.insert(e.get_attr("id").unwrap_or_default().to_string());
        }
    }
    let lost: Vec<usize> = (0..N)
        .filter(|i| {
            let id = format!("o{i}");
            !got.contains(&id) && !first.contains(&id)
        })
        .collect();
    assert!(lost.is_empty(), "offline messages lost: {lost:?}");
}
