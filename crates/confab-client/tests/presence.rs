//! The SDK's presence module against an in-process confabd: a subscription handshake,
//! contacts' status changes and unavailability, and presence re-sent after a new session.

use confab_client::{
    BareJid, Client, Config, Presence, PresenceEvent, Reconnect, Show, Status, StreamManagement,
};
use confab_tests::TestServer;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

async fn connect(ts: &TestServer, user: &str, resource: &str) -> (Client, Arc<Presence>) {
    let mut o = ts.options(user);
    o.resource = Some(resource.to_string());
    let presence = Presence::new();
    let client = Client::connect(Config::new(o).module(presence.clone()))
        .await
        .expect("connects");
    (client, presence)
}

/// The next presence event matching `pred`; bounded so a missing event fails.
async fn next(
    rx: &mut broadcast::Receiver<PresenceEvent>,
    pred: impl Fn(&PresenceEvent) -> bool,
) -> PresenceEvent {
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
        .expect("timed out waiting for a presence event")
}

fn bare(s: &str) -> BareJid {
    BareJid::new(s).expect("bare jid")
}

#[tokio::test]
async fn subscription_handshake_and_status_changes() {
    let ts = TestServer::start().await;
    for u in ["alice", "bob"] {
        ts.add_user(u).await;
    }
    let (alice, alice_p) = connect(&ts, "alice", "pc").await;
    let (bob, bob_p) = connect(&ts, "bob", "phone").await;
    let mut alice_ev = alice_p.events();
    let mut bob_ev = bob_p.events();
    alice_p
        .set(&alice, Status::available())
        .await
        .expect("presence");
    bob_p
        .set(&bob, Status::available())
        .await
        .expect("presence");
    // Alice asks; bob sees the request and approves; alice is told.
    alice_p
        .subscribe(&alice, &bare("bob@localhost"))
        .await
        .expect("subscribe");
    let req = next(&mut bob_ev, |e| {
        matches!(e, PresenceEvent::SubscriptionRequest { .. })
    })
    .await;
    assert_eq!(
        req,
        PresenceEvent::SubscriptionRequest {
            from: bare("alice@localhost"),
            nick: None
        }
    );
    bob_p
        .approve(&bob, &bare("alice@localhost"))
        .await
        .expect("approve");
    next(&mut alice_ev, |e| {
        *e == PresenceEvent::Subscribed(bare("bob@localhost"))
    })
    .await;
    // Alice now sees bob's presence, and each change of it.
    next(
        &mut alice_ev,
        |e| matches!(e, PresenceEvent::Available(j, _) if j.as_str() == "bob@localhost/phone"),
    )
    .await;
    let away = Status {
        show: Some(Show::Away),
        status: Some("lunch".into()),
        priority: 5,
    };
    bob_p.set(&bob, away.clone()).await.expect("away");
    let ev = next(
        &mut alice_ev,
        |e| matches!(e, PresenceEvent::Available(_, s) if s.show == Some(Show::Away)),
    )
    .await;
    assert!(
        matches!(ev, PresenceEvent::Available(_, ref s) if *s == away),
        "{ev:?}"
    );
    let of_bob = alice_p.of(&bare("bob@localhost"));
    assert_eq!(of_bob.len(), 1);
    assert_eq!(of_bob[0].1, away);
    assert_eq!(bob_p.own(), Some(away));
    // Bob goes offline: alice is told and his resource is gone.
    bob.close().await.expect("close");
    next(
        &mut alice_ev,
        |e| matches!(e, PresenceEvent::Unavailable(j) if j.as_str() == "bob@localhost/phone"),
    )
    .await;
    assert!(alice_p.of(&bare("bob@localhost")).is_empty());
    // Alice cancels her subscription; nothing else breaks.
    alice_p
        .unsubscribe(&alice, &bare("bob@localhost"))
        .await
        .expect("unsubscribe");
    alice.close().await.expect("close");
}

#[tokio::test]
async fn presence_is_sent_again_after_a_new_session() {
    let ts = TestServer::start().await;
    for u in ["alice", "bob"] {
        ts.add_user(u).await;
    }
    let (alice, alice_p) = connect(&ts, "alice", "pc").await;
    let mut alice_ev = alice_p.events();
    alice_p
        .set(&alice, Status::available())
        .await
        .expect("presence");
    // Bob and alice see each other's presence.
    let mut o = ts.options("bob");
    o.resource = Some("phone".into());
    let bob_p = Presence::new();
    let proxy = confab_tests::TcpProxy::start(o.addr).await;
    o.addr = proxy.addr;
    let mut config = Config::new(o).module(bob_p.clone()).reconnect(Reconnect {
        initial_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(500),
        max_attempts: Some(50),
    });
    // No stream management: the reconnection is a new session.
    config.stream_management = StreamManagement {
        enabled: false,
        ..StreamManagement::default()
    };
    let bob = Client::connect(config).await.expect("connects");
    let mut bob_events = bob.events();
    for (c, p, other) in [
        (&alice, &alice_p, "bob@localhost"),
        (&bob, &bob_p, "alice@localhost"),
    ] {
        p.subscribe(c, &bare(other)).await.expect("subscribe");
        p.approve(c, &bare(other)).await.expect("pre-approve");
    }
    let dnd = Status {
        show: Some(Show::Dnd),
        status: None,
        priority: 0,
    };
    bob_p.set(&bob, dnd.clone()).await.expect("dnd");
    next(
        &mut alice_ev,
        |e| matches!(e, PresenceEvent::Available(_, s) if s.show == Some(Show::Dnd)),
    )
    .await;
    // Bob's connection dies; the server forgets the session and tells alice he is gone.
    proxy.cut();
    next(&mut alice_ev, |e| {
        matches!(e, PresenceEvent::Unavailable(_))
    })
    .await;
    // Bob's client reconnects with a new session; the module announces dnd again, without
    // the application doing anything.
    let reconnected = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if let Ok(confab_client::Event::Reconnected { resumed }) = bob_events.recv().await {
                return resumed;
            }
        }
    })
    .await
    .expect("reconnected");
    assert!(!reconnected);
    let ev = next(&mut alice_ev, |e| matches!(e, PresenceEvent::Available(..))).await;
    assert!(
        matches!(ev, PresenceEvent::Available(_, ref s) if *s == dnd),
        "{ev:?}"
    );
    let _ = bob.close().await;
    let _ = alice.close().await;
}
