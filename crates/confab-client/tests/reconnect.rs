//! Reconnecting with XEP-0198: a client whose connection (through a loopback proxy) is
//! black-holed and cut while messages flow both ways resumes its session, and every message
//! arrives exactly once at both ends; when the server has given the session up, the client
//! starts a new one and nothing sent meanwhile is lost.

use confab_client::{ns, Client, Config, DisconnectReason, Element, Event, Jid, Reconnect};
use confab_modules::stream_management::StreamManagementConfig;
use confab_tests::{TcpProxy, TestServer};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::broadcast;

fn fast_reconnect() -> Reconnect {
    Reconnect {
        initial_delay: Duration::from_millis(300),
        max_delay: Duration::from_millis(1000),
        max_attempts: Some(100),
    }
}

fn chat(to: &Jid, text: &str) -> Element {
    Element::new("message", ns::CLIENT)
        .attr("to", to.as_str())
        .attr("type", "chat")
        .child(Element::new("body", ns::CLIENT).text(text))
}

fn body(e: &Element) -> Option<String> {
    e.get_child("body", ns::CLIENT).map(|b| b.text_content())
}

fn jid(s: &str) -> Jid {
    Jid::new(s).expect("valid jid")
}

/// Alice, through the proxy, reconnecting, with acknowledgement requests far apart so
/// many stanzas are unacknowledged when the connection goes.
async fn alice_via(ts: &TestServer, proxy: &TcpProxy) -> Client {
    let mut o = ts.options("alice");
    o.addr = proxy.addr;
    o.resource = Some("phone".into());
    let mut c = Config::new(o).reconnect(fast_reconnect());
    c.stream_management.request_every = 40;
    c.event_capacity = 4096;
    Client::connect(c).await.expect("alice connects")
}

async fn bob(ts: &TestServer) -> Client {
    let mut o = ts.options("bob");
    o.resource = Some("desk".into());
    let mut c = Config::new(o);
    c.event_capacity = 4096;
    Client::connect(c).await.expect("bob connects")
}

/// Sends `n` numbered messages, a little apart, so some are in flight at any moment.
fn sender(c: Client, to: Jid, prefix: &'static str, n: usize) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for i in 0..n {
            c.send(chat(&to, &format!("{prefix}{i}")))
                .await
                .expect("send is kept across the reconnection");
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    })
}

/// Counts the bodies of received messages by their text.
fn count(counts: &mut HashMap<String, usize>, ev: &Event) {
    if let Event::Message(m) = ev {
        if let Some(b) = body(&m.el) {
            *counts.entry(b).or_default() += 1;
        }
    }
}

fn all_once(counts: &HashMap<String, usize>, prefix: &str, n: usize) -> Result<(), String> {
    let missing: Vec<usize> = (0..n)
        .filter(|i| !counts.contains_key(&format!("{prefix}{i}")))
        .collect();
    let twice: Vec<(&String, &usize)> = counts.iter().filter(|(_, c)| **c > 1).collect();
    if missing.is_empty() && twice.is_empty() {
        Ok(())
    } else {
        Err(format!("missing {missing:?}, more than once {twice:?}"))
    }
}

fn recv_some(rx: &mut broadcast::Receiver<Event>) -> Option<Event> {
    match rx.try_recv() {
        Ok(e) => Some(e),
        Err(broadcast::error::TryRecvError::Lagged(n)) => panic!("lost {n} events"),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_while_messages_flow_resumes_with_every_message_once() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let proxy = TcpProxy::start(ts.addr).await;
    let alice = alice_via(&ts, &proxy).await;
    let bob = bob(&ts).await;
    let (alice_jid, bob_jid) = (jid(alice.jid().as_str()), jid(bob.jid().as_str()));
    let mut a_ev = alice.events();
    let mut b_ev = bob.events();

    const N: usize = 400;
    const FREEZE_MS: u64 = 300;
    let a_send = sender(alice.clone(), bob_jid, "a", N);
    let b_send = sender(bob.clone(), alice_jid.clone(), "b", N);
    let mut at_alice = HashMap::new();
    let mut at_bob = HashMap::new();
    let mut resumed = Vec::new();
    let mut cuts = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out: alice {:?}, bob {:?}, reconnections {resumed:?}",
            all_once(&at_alice, "b", N),
            all_once(&at_bob, "a", N)
        );
        let mut idle = true;
        while let Some(e) = recv_some(&mut a_ev) {
            idle = false;
            count(&mut at_alice, &e);
            match e {
                Event::Reconnected { resumed: r } => resumed.push(r),
                Event::Disconnected {
                    will_reconnect: false,
                    reason,
                } => panic!("alice gave up: {reason:?}"),
                _ => {}
            }
        }
        while let Some(e) = recv_some(&mut b_ev) {
            idle = false;
            count(&mut at_bob, &e);
        }
        // Twice, each time with traffic black-holed first, so both sides have written
        // stanzas the other never got when the connection is cut.
        let flowing = at_bob.len() + at_alice.len();
        if cuts < 2 && resumed.len() == cuts && flowing > 150 + cuts * 300 {
            proxy.freeze();
            tokio::time::sleep(Duration::from_millis(FREEZE_MS)).await;
            proxy.cut();
            cuts += 1;
        }
        if at_alice.len() == N && at_bob.len() == N && a_send.is_finished() && resumed.len() == 2 {
            break;
        }
        if idle {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    a_send.await.expect("alice's sender");
    b_send.await.expect("bob's sender");
    // Anything sent twice would arrive about now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Some(e) = recv_some(&mut a_ev) {
        count(&mut at_alice, &e);
    }
    while let Some(e) = recv_some(&mut b_ev) {
        count(&mut at_bob, &e);
    }
    assert_eq!(
        resumed,
        [true, true],
        "both reconnections resumed the session"
    );
    all_once(&at_alice, "b", N).expect("bob's messages at alice");
    all_once(&at_bob, "a", N).expect("alice's messages at bob");
    assert_eq!(alice.jid().as_str(), "alice@localhost/phone");
    alice.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_resume_timeout_a_new_session_gets_what_was_sent_meanwhile() {
    let ts = TestServer::start_with(|c| {
        c.update_section("stream_management", |s: &mut StreamManagementConfig| {
            s.resume_timeout = 1;
        })
        .expect("stream_management section");
    })
    .await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let mut proxy = TcpProxy::start(ts.addr).await;
    let alice = alice_via(&ts, &proxy).await;
    let bob = bob(&ts).await;
    let (alice_jid, bob_jid) = (jid(alice.jid().as_str()), jid(bob.jid().as_str()));
    let mut a_ev = alice.events();
    let mut b_ev = bob.events();
    alice
        .send(Element::new("presence", ns::CLIENT))
        .await
        .expect("presence");
    alice.send(chat(&bob_jid, "before")).await.expect("send");
    let mut at_bob = HashMap::new();
    while !at_bob.contains_key("before") {
        let e = next(&mut b_ev).await;
        count(&mut at_bob, &e);
    }

    // The network goes for longer than the server keeps the session.
    proxy.stop().await;
    for i in 0..5 {
        bob.send(chat(&alice_jid, &format!("away{i}")))
            .await
            .expect("bob sends");
    }
    // Alice's sends wait for the new connection.
    let a_send = sender(alice.clone(), bob_jid.clone(), "held", 3);
    let mut at_alice = HashMap::new();
    loop {
        match next(&mut a_ev).await {
            Event::Disconnected {
                will_reconnect: true,
                ..
            } => break,
            Event::Disconnected { reason, .. } => panic!("gave up: {reason:?}"),
            e => count(&mut at_alice, &e),
        }
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    proxy.restore().await;

    let resumed = loop {
        match next(&mut a_ev).await {
            Event::Reconnected { resumed } => break resumed,
            Event::Disconnected {
                will_reconnect: false,
                reason,
            } => panic!("gave up: {reason:?}"),
            e => count(&mut at_alice, &e),
        }
    };
    assert!(!resumed, "the server had ended the session");
    // A new session, not yet available: initial presence brings the offline messages.
    alice
        .send(Element::new("presence", ns::CLIENT))
        .await
        .expect("presence");
    a_send.await.expect("held sends written");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while all_once_of(&at_alice, "away", 5).is_err() || all_once_of(&at_bob, "held", 3).is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "alice: {at_alice:?}, bob: {at_bob:?}"
        );
        tokio::select! {
            e = next(&mut a_ev) => count(&mut at_alice, &e),
            e = next(&mut b_ev) => count(&mut at_bob, &e),
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Some(e) = recv_some(&mut a_ev) {
        count(&mut at_alice, &e);
    }
    while let Some(e) = recv_some(&mut b_ev) {
        count(&mut at_bob, &e);
    }
    all_once_of(&at_alice, "away", 5).expect("messages to the old session, from offline storage");
    all_once_of(&at_bob, "held", 3).expect("alice's sends while away");
    // The new session works both ways.
    assert_eq!(alice.jid().as_str(), "alice@localhost/phone");
    alice.send(chat(&bob_jid, "after")).await.expect("send");
    bob.send(chat(&alice_jid, "back")).await.expect("send");
    while !at_bob.contains_key("after") {
        let e = next(&mut b_ev).await;
        count(&mut at_bob, &e);
    }
    while !at_alice.contains_key("back") {
        let e = next(&mut a_ev).await;
        count(&mut at_alice, &e);
    }
    alice.close().await.expect("close");
    let e = loop {
        let e = next(&mut a_ev).await;
        if matches!(e, Event::Disconnected { .. }) {
            break e;
        }
    };
    assert!(matches!(
        e,
        Event::Disconnected {
            reason: DisconnectReason::Closed,
            will_reconnect: false
        }
    ));
}

/// Like `all_once`, for the keys with this prefix only (the counts hold other messages).
fn all_once_of(counts: &HashMap<String, usize>, prefix: &str, n: usize) -> Result<(), String> {
    let mine: HashMap<String, usize> = counts
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    all_once(&mine, prefix, n)
}

async fn next(rx: &mut broadcast::Receiver<Event>) -> Event {
    match tokio::time::timeout(Duration::from_secs(20), rx.recv()).await {
        Ok(Ok(e)) => e,
        Ok(Err(e)) => panic!("event channel: {e}"),
        Err(_) => panic!("timed out waiting for an event"),
    }
}
