//! The SDK against an in-process confabd (confab-tests harness).

use confab_client::payloads::roster::RosterItem;
use confab_client::{
    iq, ns, Client, Config, DisconnectReason, Element, Error, Event, IqType, Jid, Ping, Roster,
    StanzaErrorCondition,
};
use confab_tests::TestServer;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

struct Conn {
    client: Client,
    roster: Arc<Roster>,
    ping: Arc<Ping>,
}

fn config(ts: &TestServer, user: &str, resource: &str) -> Config {
    let mut o = ts.options(user);
    o.resource = Some(resource.to_string());
    Config::new(o)
}

async fn connect_with(config: Config) -> Conn {
    let roster = Roster::new();
    let ping = Ping::new();
    let config = config.module(roster.clone()).module(ping.clone());
    let client = Client::connect(config).await.expect("connects");
    Conn {
        client,
        roster,
        ping,
    }
}

async fn connect(ts: &TestServer, user: &str, resource: &str) -> Conn {
    connect_with(config(ts, user, resource)).await
}

/// The next event matching `pred`, skipping others; bounded so a missing event fails.
async fn next_event(rx: &mut broadcast::Receiver<Event>, pred: impl Fn(&Event) -> bool) -> Event {
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

fn jid(s: &str) -> Jid {
    Jid::new(s).expect("valid jid")
}

fn full(c: &Client) -> Jid {
    jid(c.jid().as_str())
}

fn body(e: &Element) -> Option<String> {
    e.get_child("body", ns::CLIENT).map(|b| b.text_content())
}

fn chat(to: &Jid, text: &str) -> Element {
    Element::new("message", ns::CLIENT)
        .attr("to", to.as_str())
        .attr("type", "chat")
        .child(Element::new("body", ns::CLIENT).text(text))
}

fn custom_get(to: &Jid) -> Element {
    iq(
        IqType::Get,
        Some(to),
        Element::new("query", "urn:example:custom"),
    )
}

#[tokio::test]
async fn connects_and_binds() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    let a = connect(&ts, "alice", "desk").await;
    assert_eq!(a.client.jid().as_str(), "alice@localhost/desk");
    assert!(!a.client.is_closed());
    a.client.close().await.expect("close");
}

#[tokio::test]
async fn wrong_password_is_an_error() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    let mut c = config(&ts, "alice", "desk");
    c.options.password = "wrong".into();
    match Client::connect(c).await {
        Err(Error::Connect(_)) => {}
        other => panic!("expected a connect error, got {other:?}"),
    }
}

#[tokio::test]
async fn message_round_trip() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let a = connect(&ts, "alice", "desk").await;
    let b = connect(&ts, "bob", "phone").await;
    let mut a_ev = a.client.events();
    let mut b_ev = b.client.events();

    a.client
        .send(chat(&full(&b.client), "hello bob"))
        .await
        .expect("send");
    let got = next_event(&mut b_ev, |e| matches!(e, Event::Message(_))).await;
    let Event::Message(m) = got else {
        unreachable!()
    };
    assert_eq!(body(&m.el).as_deref(), Some("hello bob"));
    let from = m.from.expect("from");
    assert_eq!(from.as_str(), "alice@localhost/desk");

    b.client.send(chat(&from, "hi alice")).await.expect("reply");
    let Event::Message(m) = next_event(&mut a_ev, |e| matches!(e, Event::Message(_))).await else {
        unreachable!()
    };
    assert_eq!(body(&m.el).as_deref(), Some("hi alice"));
}

#[tokio::test]
async fn request_timeout_error_and_app_answers() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let a = connect(&ts, "alice", "desk").await;
    let mut bc = config(&ts, "bob", "phone");
    bc.iq_answer_timeout = Duration::from_millis(1500);
    let b = connect_with(bc).await;
    let bob = full(&b.client);

    // Bob listens but does not answer: Alice's short timeout fires first.
    let mut b_ev = b.client.events();
    match a
        .client
        .request_with_timeout(custom_get(&bob), Duration::from_millis(300))
        .await
    {
        Err(Error::Timeout) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    let _ = next_event(&mut b_ev, |e| matches!(e, Event::Iq(_))).await;

    // Left unanswered, the client answers service-unavailable for the application.
    match a.client.request(custom_get(&bob)).await {
        Err(Error::Stanza { error, .. }) => {
            assert_eq!(error.condition, StanzaErrorCondition::ServiceUnavailable)
        }
        other => panic!("expected an error reply, got {other:?}"),
    }

    // The application answers: the result comes back to the requester.
    let answer = {
        let mut rx = b.client.events();
        tokio::spawn(async move {
            let Event::Iq(req) = next_event(&mut rx, |e| matches!(e, Event::Iq(_))).await else {
                unreachable!()
            };
            req.reply(Some(
                Element::new("query", "urn:example:custom").attr("ok", "1"),
            ))
            .await
            .expect("reply");
            assert!(matches!(req.reply(None).await, Err(Error::AlreadyAnswered)));
        })
    };
    let r = a.client.request(custom_get(&bob)).await.expect("result");
    assert_eq!(
        r.get_child("query", "urn:example:custom")
            .and_then(|q| q.get_attr("ok")),
        Some("1")
    );
    answer.await.expect("answering task");

    // Nobody listening at all: answered at once, well within a short timeout.
    drop(b_ev);
    match a
        .client
        .request_with_timeout(custom_get(&bob), Duration::from_millis(1000))
        .await
    {
        Err(Error::Stanza { error, .. }) => {
            assert_eq!(error.condition, StanzaErrorCondition::ServiceUnavailable)
        }
        other => panic!("expected service-unavailable, got {other:?}"),
    }

    // Not an iq get/set: refused before anything is sent.
    assert!(matches!(
        a.client.request(chat(&bob, "x")).await,
        Err(Error::InvalidRequest(_))
    ));
}

#[tokio::test]
async fn roster_add_is_pushed_to_other_resource() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let desk = connect(&ts, "alice", "desk").await;
    let phone = connect(&ts, "alice", "phone").await;
    assert!(desk
        .roster
        .fetch(&desk.client)
        .await
        .expect("fetch")
        .is_empty());
    assert!(phone
        .roster
        .fetch(&phone.client)
        .await
        .expect("fetch")
        .is_empty());
    let mut changes = phone.roster.changes();
    let mut desk_changes = desk.roster.changes();

    let bob = jid("bob@localhost");
    let mut item = RosterItem::new(bob.clone());
    item.name = Some("Bob".into());
    item.groups = vec!["Friends".into()];
    desk.roster.add(&desk.client, item).await.expect("add");

    let pushed = tokio::time::timeout(Duration::from_secs(10), changes.recv())
        .await
        .expect("push in time")
        .expect("change");
    assert_eq!(pushed.jid, bob);
    let cached = phone.roster.get(&bob).expect("phone's cache has bob");
    assert_eq!(cached.name.as_deref(), Some("Bob"));
    assert_eq!(cached.groups, vec!["Friends".to_string()]);
    // The adding resource gets the push too.
    tokio::time::timeout(Duration::from_secs(10), desk_changes.recv())
        .await
        .expect("push in time")
        .expect("change");
    assert!(desk.roster.get(&bob).is_some());

    // A versioned re-fetch keeps the same contents.
    let ver = phone.roster.version();
    assert!(ver.is_some(), "confabd versions rosters");
    let again = phone.roster.fetch(&phone.client).await.expect("refetch");
    assert_eq!(again.len(), 1);

    desk.roster
        .remove(&desk.client, &bob)
        .await
        .expect("remove");
    let removed = tokio::time::timeout(Duration::from_secs(10), changes.recv())
        .await
        .expect("push in time")
        .expect("change");
    assert!(removed.is_remove());
    assert!(phone.roster.get(&bob).is_none());
}

#[tokio::test]
async fn ping_both_ways() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let a = connect(&ts, "alice", "desk").await;
    let b = connect(&ts, "bob", "phone").await;
    a.ping.ping(&a.client, None).await.expect("server answers");
    a.ping
        .ping(&a.client, Some(&full(&b.client)))
        .await
        .expect("bob's ping module answers");
    b.ping
        .ping(&b.client, Some(&full(&a.client)))
        .await
        .expect("alice's ping module answers");

    // A client without the ping module (and no listener) answers service-unavailable.
    let bare = Client::connect(config(&ts, "bob", "bare"))
        .await
        .expect("connects");
    match a.ping.ping(&a.client, Some(&full(&bare))).await {
        Err(Error::Stanza { error, .. }) => {
            assert_eq!(error.condition, StanzaErrorCondition::ServiceUnavailable)
        }
        other => panic!("expected service-unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn close_ends_the_client() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let a = connect(&ts, "alice", "desk").await;
    let b = connect(&ts, "bob", "phone").await;
    let alice = full(&a.client);
    let other = a.client.clone();
    let mut ev = a.client.events();
    tokio::time::timeout(Duration::from_secs(10), a.client.close())
        .await
        .expect("close is bounded")
        .expect("close");
    let e = next_event(&mut ev, |e| matches!(e, Event::Disconnected { .. })).await;
    assert!(matches!(
        e,
        Event::Disconnected {
            reason: DisconnectReason::Closed,
            will_reconnect: false
        }
    ));
    assert!(other.is_closed());
    assert!(matches!(
        other.send(chat(&jid("bob@localhost"), "late")).await,
        Err(Error::Disconnected)
    ));
    assert!(matches!(
        a.ping.ping(&other, None).await,
        Err(Error::Disconnected)
    ));
    // The server has ended the session: the old full JID no longer answers.
    match b.ping.ping(&b.client, Some(&alice)).await {
        Err(Error::Stanza { .. }) => {}
        other => panic!("expected an error reply for a closed session, got {other:?}"),
    }
}

#[tokio::test]
async fn by_default_a_self_signed_server_is_not_trusted() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    // Default options: the certificate is checked against the system's roots.
    let o =
        confab_client::ClientOptions::new(ts.addr, "localhost", "alice", confab_tests::PASSWORD);
    match Client::connect(Config::new(o)).await {
        Err(Error::Connect(confab_stream::client::ClientError::Tls(_))) => {}
        Err(e) => panic!("expected a TLS failure, got {e}"),
        Ok(_) => panic!("a self-signed certificate was accepted by default"),
    }
    // Trusting exactly the server's certificate works.
    let pem = std::fs::read_to_string(ts.dir.path().join("tls/cert.pem")).expect("cert");
    let der = pem_to_der(&pem);
    let mut o =
        confab_client::ClientOptions::new(ts.addr, "localhost", "alice", confab_tests::PASSWORD);
    o.verify = confab_client::CertVerification::Roots(vec![der]);
    let client = Client::connect(Config::new(o)).await.expect("trusted");
    client.close().await.expect("closed");
}

/// The DER inside a PEM certificate (base64 between the armour lines).
fn pem_to_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64")
}
