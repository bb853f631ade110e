//! The chat module against an in-process confabd: messages, chat states, receipts (asked,
//! answered, surfaced; not answered when turned off; spoofed ones ignored), corrections,
//! bounced messages and nicknames.

use confab_client::{
    BareJid, Chat, ChatConfig, ChatEvent, ChatMessage, ChatState, Client, Config, Element, Jid,
    Presence, PresenceEvent, StanzaErrorCondition,
};
use confab_tests::TestServer;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

struct Conn {
    client: Client,
    chat: Arc<Chat>,
    presence: Arc<Presence>,
}

async fn connect_with(ts: &TestServer, user: &str, cfg: ChatConfig) -> Conn {
    let mut o = ts.options(user);
    o.resource = Some("desk".into());
    let chat = Chat::with_config(cfg);
    let presence = Presence::new();
    let client = Client::connect(Config::new(o).module(chat.clone()).module(presence.clone()))
        .await
        .expect("connects");
    Conn {
        client,
        chat,
        presence,
    }
}

async fn connect(ts: &TestServer, user: &str) -> Conn {
    connect_with(ts, user, ChatConfig::default()).await
}

/// The next event matching `pred`; bounded so a missing event fails.
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

/// Asserts no event matching `pred` arrives within `ms`, and that the client is still
/// connected (a closed stream would otherwise pass as "nothing arrived").
async fn none<T: Clone + std::fmt::Debug>(
    client: &Client,
    rx: &mut broadcast::Receiver<T>,
    ms: u64,
    pred: impl Fn(&T) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) => break,
            Ok(Ok(e)) => assert!(!pred(&e), "unexpected event {e:?}"),
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(broadcast::error::RecvError::Closed)) => panic!("event channel closed"),
        }
    }
    assert!(!client.is_closed(), "the client stopped");
}

fn jid(s: &str) -> Jid {
    Jid::new(s).expect("jid")
}

fn full(c: &Client) -> Jid {
    jid(c.jid().as_str())
}

#[tokio::test]
async fn messages_states_receipts_and_corrections() {
    let ts = TestServer::start().await;
    for u in ["alice", "bob"] {
        ts.add_user(u).await;
    }
    let alice = connect(&ts, "alice").await;
    let bob = connect(&ts, "bob").await;
    let mut alice_ev = alice.chat.events();
    let mut bob_ev = bob.chat.events();
    let bob_jid = full(&bob.client);

    // A message arrives typed, with `active` and a receipt request; bob's client answers
    // the request and alice sees the message delivered.
    let id = alice
        .chat
        .send(&alice.client, &bob_jid, "hello bob")
        .await
        .expect("send");
    assert_eq!(alice.chat.awaiting_receipts(), vec![id.clone()]);
    let got = next(&mut bob_ev, |e| matches!(e, ChatEvent::Message(_))).await;
    let ChatEvent::Message(m) = got else {
        unreachable!()
    };
    assert_eq!(m.body.as_deref(), Some("hello bob"));
    assert_eq!(m.state, Some(ChatState::Active));
    assert!(m.request_receipt);
    assert_eq!(m.id.as_deref(), Some(id.as_str()));
    assert_eq!(m.from, Some(full(&alice.client)));
    let d = next(&mut alice_ev, |e| matches!(e, ChatEvent::Delivered { .. })).await;
    assert_eq!(
        d,
        ChatEvent::Delivered {
            from: bob_jid.clone(),
            id: id.clone()
        }
    );
    assert!(alice.chat.awaiting_receipts().is_empty());

    // Typing, then paused: standalone states.
    for state in [ChatState::Composing, ChatState::Paused] {
        alice
            .chat
            .send_state(&alice.client, &bob_jid, state)
            .await
            .expect("state");
        let got = next(&mut bob_ev, |e| matches!(e, ChatEvent::State { .. })).await;
        assert_eq!(
            got,
            ChatEvent::State {
                from: full(&alice.client),
                state
            }
        );
    }

    // A correction names the message it replaces.
    let fix = alice
        .chat
        .correct(&alice.client, &bob_jid, &id, "hello, bob")
        .await
        .expect("correct");
    let got = next(&mut bob_ev, |e| matches!(e, ChatEvent::Message(_))).await;
    let ChatEvent::Message(m) = got else {
        unreachable!()
    };
    assert_eq!(m.replaces.as_deref(), Some(id.as_str()));
    assert_eq!(m.body.as_deref(), Some("hello, bob"));
    assert_eq!(m.id.as_deref(), Some(fix.as_str()));
    next(
        &mut alice_ev,
        |e| matches!(e, ChatEvent::Delivered { id, .. } if *id == fix),
    )
    .await;

    // A nickname in a message (XEP-0172).
    let mut m = ChatMessage::new(bob_jid.clone(), "it's me");
    m.nick = Some("Alice in Wonderland".into());
    alice
        .chat
        .send_message(&alice.client, m)
        .await
        .expect("send");
    let got = next(&mut bob_ev, |e| matches!(e, ChatEvent::Message(_))).await;
    assert!(
        matches!(&got, ChatEvent::Message(m) if m.nick.as_deref() == Some("Alice in Wonderland")),
        "{got:?}"
    );
}

#[tokio::test]
async fn receipts_not_answered_when_turned_off_and_spoofed_ones_ignored() {
    let ts = TestServer::start().await;
    for u in ["alice", "bob", "mallory"] {
        ts.add_user(u).await;
    }
    let alice = connect(&ts, "alice").await;
    let quiet = ChatConfig {
        answer_receipts: false,
        ..ChatConfig::default()
    };
    let bob = connect_with(&ts, "bob", quiet).await;
    let mallory = connect(&ts, "mallory").await;
    let mut alice_ev = alice.chat.events();
    let mut bob_ev = bob.chat.events();
    let bob_jid = full(&bob.client);

    let id = alice
        .chat
        .send(&alice.client, &bob_jid, "are you there?")
        .await
        .expect("send");
    next(&mut bob_ev, |e| matches!(e, ChatEvent::Message(_))).await;
    // Mallory claims delivery of alice's message: not from bob's account, so not surfaced.
    let forged = Element::new("message", "jabber:client")
        .attr("to", alice.client.jid().as_str())
        .child(Element::new("received", "urn:xmpp:receipts").attr("id", id.clone()));
    mallory.client.send(forged).await.expect("send");
    // A receipt without any id, and a state nobody knows: ignored, nothing breaks.
    let odd = Element::new("message", "jabber:client")
        .attr("to", alice.client.jid().as_str())
        .attr("type", "chat")
        .child(Element::new("received", "urn:xmpp:receipts"))
        .child(Element::new(
            "sleeping",
            "http://jabber.org/protocol/chatstates",
        ));
    mallory.client.send(odd).await.expect("send");
    none(&alice.client, &mut alice_ev, 800, |e| {
        matches!(e, ChatEvent::Delivered { .. } | ChatEvent::State { .. })
    })
    .await;
    assert_eq!(alice.chat.awaiting_receipts(), vec![id]);
}

#[tokio::test]
async fn bounced_message_is_reported() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    let alice = connect(&ts, "alice").await;
    let mut ev = alice.chat.events();
    // No such account: the server bounces it (RFC 6121 §8.5.2.2.1 service-unavailable).
    let id = alice
        .chat
        .send(&alice.client, &jid("nobody@localhost"), "hello?")
        .await
        .expect("send");
    let got = next(&mut ev, |e| matches!(e, ChatEvent::Failed { .. })).await;
    let ChatEvent::Failed {
        id: failed, error, ..
    } = got
    else {
        unreachable!()
    };
    assert_eq!(failed, id);
    assert_eq!(error.condition, StanzaErrorCondition::ServiceUnavailable);
    assert!(alice.chat.awaiting_receipts().is_empty());
    // A bounce of a message not sent through the module (a raw send) is not the module's.
    let raw = Element::new("message", "jabber:client")
        .attr("to", "nobody@localhost")
        .attr("type", "chat")
        .attr("id", "raw-1")
        .child(Element::new("body", "jabber:client").text("raw"));
    let mut raw_ev = alice.client.events();
    alice.client.send(raw).await.expect("send");
    // The application sees the bounce itself; the module stays quiet.
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(confab_client::Event::Message(m)) = raw_ev.recv().await {
                if m.id() == Some("raw-1") && m.is_error() {
                    break;
                }
            }
        }
    })
    .await
    .expect("the bounce");
    none(&alice.client, &mut ev, 300, |e| {
        matches!(e, ChatEvent::Failed { .. })
    })
    .await;
}

#[tokio::test]
async fn nickname_in_subscription_request() {
    let ts = TestServer::start().await;
    for u in ["alice", "bob"] {
        ts.add_user(u).await;
    }
    let alice = connect(&ts, "alice").await;
    let bob = connect(&ts, "bob").await;
    let mut bob_p = bob.presence.events();
    bob.presence
        .set(&bob.client, confab_client::Status::available())
        .await
        .expect("presence");
    alice
        .presence
        .subscribe_with_nick(
            &alice.client,
            &BareJid::new("bob@localhost").expect("jid"),
            "Alice",
        )
        .await
        .expect("subscribe");
    let got = next(&mut bob_p, |e| {
        matches!(e, PresenceEvent::SubscriptionRequest { .. })
    })
    .await;
    assert_eq!(
        got,
        PresenceEvent::SubscriptionRequest {
            from: BareJid::new("alice@localhost").expect("jid"),
            nick: Some("Alice".into())
        }
    );
}

#[tokio::test]
async fn offline_message_arrives_marked_delayed() {
    let ts = TestServer::start().await;
    for u in ["alice", "bob"] {
        ts.add_user(u).await;
    }
    let alice = connect(&ts, "alice").await;
    alice
        .chat
        .send(&alice.client, &jid("bob@localhost"), "while you were out")
        .await
        .expect("send");
    // A ping round trip: the server has stored it before bob comes.
    confab_client::Ping::new()
        .ping(&alice.client, None)
        .await
        .expect("ping");
    let bob = connect(&ts, "bob").await;
    let mut ev = bob.chat.events();
    // Offline messages come after the initial presence.
    bob.presence
        .set(&bob.client, confab_client::Status::available())
        .await
        .expect("presence");
    let got = next(&mut ev, |e| matches!(e, ChatEvent::Message(_))).await;
    assert!(
        matches!(&got, ChatEvent::Message(m) if m.body.as_deref() == Some("while you were out")
            && m.delayed.is_some()),
        "{got:?}"
    );
}
