//! The MAM and carbons modules against an in-process confabd: paging through the account's
//! archive and a room's, and copies of messages sent and received by the account's other
//! clients (forged copies ignored).

use confab_client::{
    BareJid, CarbonEvent, Carbons, Chat, Client, Config, Element, Jid, JoinOptions, Mam, MamQuery,
    Muc,
};
use confab_tests::TestServer;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

async fn next<T: Clone>(rx: &mut broadcast::Receiver<T>, pred: impl Fn(&T) -> bool) -> T {
    let wait = async {
        loop {
            match rx.recv().await {
                Ok(e) if pred(&e) => return e,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => panic!("event channel closed"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("timed out waiting for an event")
}

fn body(e: &Element) -> Option<String> {
    e.get_child("body", "jabber:client")
        .map(|b| b.text_content())
}

fn has_body(e: &CarbonEvent) -> bool {
    match e {
        CarbonEvent::Sent(m) | CarbonEvent::Received(m) => body(m).is_some(),
    }
}

struct Conn {
    client: Client,
    chat: Arc<Chat>,
    mam: Arc<Mam>,
    carbons: Arc<Carbons>,
    muc: Arc<Muc>,
}

async fn connect(ts: &TestServer, user: &str, resource: &str) -> Conn {
    let mut o = ts.options(user);
    o.resource = Some(resource.into());
    let chat = Chat::new();
    let mam = Mam::new();
    let carbons = Carbons::new();
    let muc = Muc::new();
    let client = Client::connect(
        Config::new(o)
            .module(mam.clone())
            .module(carbons.clone())
            .module(muc.clone())
            .module(chat.clone()),
    )
    .await
    .expect("connects");
    Conn {
        client,
        chat,
        mam,
        carbons,
        muc,
    }
}

/// Sends `n` numbered messages from `from` to `to` and waits until `to` has them all.
async fn exchange(from: &Conn, to: &Conn, n: usize) {
    let mut ev = to.chat.events();
    let to_jid = Jid::new(to.client.jid().as_str()).expect("jid");
    for i in 0..n {
        from.chat
            .send(&from.client, &to_jid, &format!("message {i}"))
            .await
            .expect("send");
    }
    let last = format!("message {}", n - 1);
    next(&mut ev, |e| {
        matches!(e, confab_client::ChatEvent::Message(m) if m.body.as_deref() == Some(last.as_str()))
    })
    .await;
}

#[tokio::test]
async fn paging_through_the_own_archive_and_a_rooms() {
    let ts = TestServer::start_with_modules(confab_muc::all(), |_| {}).await;
    for u in ["alice", "bob"] {
        ts.add_user(u).await;
    }
    let alice = connect(&ts, "alice", "pc").await;
    let bob = connect(&ts, "bob", "pc").await;
    exchange(&alice, &bob, 25).await;

    // Forward in pages of 10: 10, 10, 5, the last one complete, in order.
    let with = Jid::new("alice@localhost").expect("jid");
    let mut q = MamQuery {
        with: Some(with),
        ..MamQuery::first(10)
    };
    let mut bodies = Vec::new();
    let mut sizes = Vec::new();
    for _ in 0..5 {
        let page = bob.mam.query(&bob.client, None, &q).await.expect("page");
        sizes.push(page.messages.len());
        for m in &page.messages {
            assert_eq!(
                m.from.as_ref().map(|f| f.to_bare().to_string()).as_deref(),
                Some("alice@localhost")
            );
            assert!(m.stamp.is_some());
            bodies.push(m.body.clone().expect("body"));
        }
        if page.complete {
            break;
        }
        q = q.next_page(&page).expect("a last id");
    }
    assert_eq!(sizes, [10, 10, 5]);
    let expected: Vec<String> = (0..25).map(|i| format!("message {i}")).collect();
    assert_eq!(bodies, expected);

    // The last page, asked for directly.
    let last = bob
        .mam
        .query(
            &bob.client,
            None,
            &MamQuery {
                before: Some(String::new()),
                ..MamQuery::first(3)
            },
        )
        .await
        .expect("last page");
    let tail: Vec<_> = last
        .messages
        .iter()
        .filter_map(|m| m.body.clone())
        .collect();
    assert_eq!(tail, ["message 22", "message 23", "message 24"]);

    // A room's archive.
    let room = BareJid::new("log@conference.localhost").expect("jid");
    let joined = alice
        .muc
        .join(&alice.client, &room, JoinOptions::new("Alice"))
        .await
        .expect("join");
    assert!(joined.created);
    alice
        .muc
        .accept_default_config(&alice.client, &room)
        .await
        .expect("instant room");
    let mut ev = alice.muc.events();
    for i in 0..4 {
        alice
            .muc
            .send(&alice.client, &room, &format!("room {i}"))
            .await
            .expect("send");
    }
    next(
        &mut ev,
        |e| matches!(e, confab_client::MucEvent::Message(m) if m.body == "room 3"),
    )
    .await;
    let page = alice
        .mam
        .query(&alice.client, Some(&room), &MamQuery::first(2))
        .await
        .expect("room page");
    let got: Vec<_> = page
        .messages
        .iter()
        .filter_map(|m| m.body.clone())
        .collect();
    assert_eq!(got, ["room 0", "room 1"]);
    assert!(!page.complete);
}

#[tokio::test]
async fn carbons_of_both_directions_and_forgeries_ignored() {
    let ts = TestServer::start().await;
    for u in ["alice", "bob", "mallory"] {
        ts.add_user(u).await;
    }
    let pc = connect(&ts, "alice", "pc").await;
    let phone = connect(&ts, "alice", "phone").await;
    let bob = connect(&ts, "bob", "pc").await;
    let mallory = connect(&ts, "mallory", "x").await;
    assert!(phone.carbons.enable(&phone.client).await.expect("enable"));
    assert!(phone.carbons.is_enabled());
    let mut copies = phone.carbons.events();

    // Bob writes to alice's pc: her phone gets a copy.
    let pc_jid = Jid::new(pc.client.jid().as_str()).expect("jid");
    bob.chat
        .send(&bob.client, &pc_jid, "to your pc")
        .await
        .expect("send");
    let got = next(&mut copies, has_body).await;
    assert!(
        matches!(&got, CarbonEvent::Received(m) if body(m).as_deref() == Some("to your pc")),
        "{got:?}"
    );
    // Alice's pc writes to bob: her phone gets a copy of what was sent.
    let bob_jid = Jid::new("bob@localhost").expect("jid");
    pc.chat
        .send(&pc.client, &bob_jid, "from my pc")
        .await
        .expect("send");
    let got = next(&mut copies, has_body).await;
    assert!(
        matches!(&got, CarbonEvent::Sent(m) if body(m).as_deref() == Some("from my pc")),
        "{got:?}"
    );

    // Mallory forges a "sent" carbon to the phone: not surfaced.
    let forged = format!(
        "<message xmlns='jabber:client' to='{}'><sent xmlns='urn:xmpp:carbons:2'>\
         <forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' \
         from='alice@localhost/pc' to='bob@localhost' type='chat'><body>forged</body>\
         </message></forwarded></sent></message>",
        phone.client.jid()
    );
    let forged = confab_proto::parser::parse_fragment(
        &forged,
        "jabber:client",
        &confab_proto::parser::Limits::default(),
    )
    .expect("xml");
    let mut phone_chat = phone.chat.events();
    mallory.client.send(forged).await.expect("send");
    // A message after it on the same path: once the phone has it, the forgery was handled.
    let phone_jid = Jid::new(phone.client.jid().as_str()).expect("jid");
    mallory
        .chat
        .send(&mallory.client, &phone_jid, "marker")
        .await
        .expect("send");
    next(&mut phone_chat, |e| {
        matches!(e, confab_client::ChatEvent::Message(m) if m.body.as_deref() == Some("marker"))
    })
    .await;
    while let Ok(e) = copies.try_recv() {
        assert!(!has_body(&e), "a forged copy surfaced: {e:?}");
    }
    assert!(!phone.client.is_closed());

    // Off: no more copies.
    phone.carbons.disable(&phone.client).await.expect("disable");
    bob.chat
        .send(&bob.client, &pc_jid, "no copy")
        .await
        .expect("send");
    let deadline = tokio::time::Instant::now() + Duration::from_millis(600);
    loop {
        match tokio::time::timeout_at(deadline, copies.recv()).await {
            Err(_) => break,
            Ok(Ok(e)) => assert!(!has_body(&e), "a copy after disabling: {e:?}"),
            Ok(Err(e)) => panic!("event channel: {e}"),
        }
    }
    assert!(!phone.client.is_closed());
}
