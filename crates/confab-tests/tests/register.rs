//! XEP-0077 In-Band Registration (module `register`): registration before authentication
//! under each policy, XEP-0445 invitation tokens, password change and account removal.

use base64::Engine;
use confab_modules::register::{
    self, RegistrationConfig, RegistrationPolicy, FEATURE_NS, NS, TOKEN_FEATURE_NS,
};
use confab_proto::error::{StanzaError, StanzaErrorType};
use confab_proto::parser::Limits;
use confab_proto::xml::Element;
use confab_proto::{ns, StreamErrorCondition};
use confab_server::config::Config;
use confab_stream::client::{connect, ClientOptions};
use confab_stream::tls::{client_config, CertVerification};
use confab_stream::{Transport, XmlStream};
use confab_tests::*;
use rustls::pki_types::ServerName;
use std::time::Duration;

const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const GOOD_PASSWORD: &str = "a long enough password";

/// A raw STARTTLS stream, negotiated up to the encrypted stream's features.
async fn tls_raw(ts: &TestServer) -> (Raw, Element) {
    let mut r = ts.raw().await;
    let features = r.open().await;
    assert!(
        features.get_child("register", FEATURE_NS).is_none(),
        "registration offered before TLS: {features}"
    );
    r.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        .await;
    assert!(r.element().await.is("proceed", ns::TLS));
    let tcp = match r.stream.into_inner() {
        Transport::Tcp(t) => t,
        _ => panic!("already TLS"),
    };
    let cfg = client_config(&CertVerification::Insecure, false).expect("tls config");
    let name = ServerName::try_from(DOMAIN.to_string()).expect("name");
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .expect("tls handshake");
    let mut r = Raw {
        stream: XmlStream::new(Transport::ClientTls(Box::new(tls)), Limits::default()),
    };
    let features = r.open().await;
    (r, features)
}

/// Sends an iq with this payload and returns the reply (checking the id and that a
/// pre-authentication reply has no `to`).
async fn iq(r: &mut Raw, type_: &str, payload: &str) -> Element {
    let id = format!("r{}", rand_suffix());
    r.send(&format!("<iq type='{type_}' id='{id}'>{payload}</iq>"))
        .await;
    let e = r.element().await;
    assert!(e.is("iq", ns::CLIENT), "{e}");
    assert_eq!(e.get_attr("id"), Some(id.as_str()), "{e}");
    assert_eq!(e.get_attr("to"), None, "{e}");
    e
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn esc(s: &str) -> String {
    confab_proto::xml::escape(s).to_string()
}

async fn register(r: &mut Raw, user: &str, password: &str) -> Element {
    iq(
        r,
        "set",
        &format!(
            "<query xmlns='{NS}'><username>{}</username><password>{}</password></query>",
            esc(user),
            esc(password)
        ),
    )
    .await
}

/// The stanza error condition of a reply, or "result".
fn outcome(e: &Element) -> String {
    if e.get_attr("type") == Some("result") {
        return "result".into();
    }
    StanzaError::from_stanza(e)
        .map(|x| x.condition.as_str().to_string())
        .unwrap_or_else(|| format!("unexpected reply {e}"))
}

async fn exists(ts: &TestServer, user: &str) -> bool {
    ts.server()
        .ctx()
        .stores
        .accounts
        .account_exists(DOMAIN, user)
        .await
        .expect("store")
}

async fn account_count(ts: &TestServer) -> usize {
    ts.server()
        .ctx()
        .stores
        .accounts
        .list_accounts(DOMAIN)
        .await
        .expect("store")
        .len()
}

async fn can_login(ts: &TestServer, user: &str, password: &str) -> bool {
    connect(&insecure(ClientOptions::new(
        ts.addr, DOMAIN, user, password,
    )))
    .await
    .is_ok()
}

/// Changes the test server's `[registration]` section.
fn set_registration(c: &mut Config, change: impl FnOnce(&mut RegistrationConfig)) {
    c.update_section("registration", change)
        .expect("registration section");
}

/// The test server's certificate is self-signed.
fn insecure(mut o: ClientOptions) -> ClientOptions {
    o.verify = CertVerification::Insecure;
    o
}

async fn open_server() -> TestServer {
    TestServer::start_with(|c| {
        set_registration(c, |r| {
            r.policy = RegistrationPolicy::Open;
            r.rate_limit_per_ip = 100;
        });
    })
    .await
}

async fn disco_features(ts: &TestServer, user: &str, password: &str) -> Vec<String> {
    let mut c = connect(&insecure(ClientOptions::new(
        ts.addr, DOMAIN, user, password,
    )))
    .await
    .expect("login");
    c.send(
        &Element::new("iq", ns::CLIENT)
            .attr("type", "get")
            .attr("id", "d1")
            .attr("to", DOMAIN)
            .child(Element::new("query", DISCO_INFO)),
    )
    .await
    .expect("send");
    let e = recv(&mut c).await;
    e.get_child("query", DISCO_INFO)
        .expect("disco result")
        .elements()
        .filter(|f| f.name == "feature")
        .filter_map(|f| f.get_attr("var").map(str::to_string))
        .collect()
}

/// Sends an iq on an authenticated session and waits for its reply.
async fn session_iq(c: &mut confab_stream::client::ClientSession, iq: Element) -> Element {
    let id = iq.get_attr("id").unwrap_or_default().to_string();
    c.send(&iq).await.expect("send");
    loop {
        let e = recv(c).await;
        if e.name == "iq" && e.get_attr("id") == Some(id.as_str()) {
            return e;
        }
    }
}

fn register_iq(id: &str, children: Vec<Element>) -> Element {
    let mut q = Element::new("query", NS);
    for c in children {
        q.push_child(c);
    }
    Element::new("iq", ns::CLIENT)
        .attr("type", "set")
        .attr("id", id)
        .child(q)
}

fn text_el(name: &str, text: &str) -> Element {
    Element::new(name, NS).text(text)
}

#[tokio::test]
async fn open_policy_registers_then_authenticates_on_the_same_stream() {
    let ts = open_server().await;
    let (mut r, features) = tls_raw(&ts).await;
    assert!(
        features.get_child("register", FEATURE_NS).is_some(),
        "{features}"
    );
    assert!(features.get_child("register", TOKEN_FEATURE_NS).is_none());
    // XEP-0077 §3.1: the form.
    let form = iq(&mut r, "get", &format!("<query xmlns='{NS}'/>")).await;
    assert_eq!(outcome(&form), "result");
    let q = form.get_child("query", NS).expect("query");
    for f in ["instructions", "username", "password"] {
        assert!(q.get_child(f, NS).is_some(), "{form}");
    }
    assert!(q.get_child("registered", NS).is_none());
    // `to` naming the server is fine too; usernames are normalised.
    r.send(&format!(
        "<iq type='set' id='reg' to='{DOMAIN}'><query xmlns='{NS}'><username>Frank</username>\
         <password>{GOOD_PASSWORD}</password></query></iq>"
    ))
    .await;
    let ok = r.element().await;
    assert_eq!(outcome(&ok), "result", "{ok}");
    assert_eq!(ok.get_attr("to"), None);
    assert!(exists(&ts, "frank").await);
    // One identity per stream (XEP-0077 §3.1.1).
    let second = register(&mut r, "frank2", GOOD_PASSWORD).await;
    assert_eq!(outcome(&second), "not-acceptable");
    assert!(!exists(&ts, "frank2").await);
    // Then SASL on the same stream.
    let plain =
        base64::engine::general_purpose::STANDARD.encode(format!("\0frank\0{GOOD_PASSWORD}"));
    r.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain}</auth>"
    ))
    .await;
    assert!(r.element().await.is("success", ns::SASL));
    // And a fresh login (SCRAM).
    assert!(can_login(&ts, "frank", GOOD_PASSWORD).await);
    // Disco advertises registration.
    assert!(disco_features(&ts, "frank", GOOD_PASSWORD)
        .await
        .contains(&NS.to_string()));
}

#[tokio::test]
async fn closed_policy_refuses_and_hides_the_feature() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    let (mut r, features) = tls_raw(&ts).await;
    assert!(
        features.get_child("register", FEATURE_NS).is_none(),
        "{features}"
    );
    assert!(features.get_child("mechanisms", ns::SASL).is_some());
    let get = iq(&mut r, "get", &format!("<query xmlns='{NS}'/>")).await;
    assert_eq!(outcome(&get), "service-unavailable");
    let set = register(&mut r, "mallory", GOOD_PASSWORD).await;
    assert_eq!(outcome(&set), "service-unavailable");
    assert!(!set.to_xml(ns::CLIENT).contains(GOOD_PASSWORD), "{set}");
    assert!(!exists(&ts, "mallory").await);
    assert_eq!(account_count(&ts).await, 1);
    assert!(!disco_features(&ts, "alice", PASSWORD)
        .await
        .contains(&NS.to_string()));
}

#[tokio::test]
async fn registration_is_not_offered_or_accepted_before_tls() {
    // With TLS required, the plain-text features offer only STARTTLS (checked in tls_raw)
    // and a registration attempt is refused.
    let ts = open_server().await;
    let mut r = ts.raw().await;
    let features = r.open().await;
    assert!(features.get_child("register", FEATURE_NS).is_none());
    let set = register(&mut r, "eve", GOOD_PASSWORD).await;
    assert_eq!(outcome(&set), "not-authorized");
    assert!(!exists(&ts, "eve").await);
    // With TLS optional, still not over a plain stream.
    let ts = TestServer::start_with(|c| {
        set_registration(c, |r| {
            r.policy = RegistrationPolicy::Open;
        });
        c.c2s.require_tls = false;
    })
    .await;
    let mut r = ts.raw().await;
    let features = r.open().await;
    assert!(
        features.get_child("mechanisms", ns::SASL).is_some(),
        "{features}"
    );
    assert!(
        features.get_child("register", FEATURE_NS).is_none(),
        "{features}"
    );
    let get = iq(&mut r, "get", &format!("<query xmlns='{NS}'/>")).await;
    assert_eq!(outcome(&get), "not-authorized");
    let set = register(&mut r, "eve", GOOD_PASSWORD).await;
    assert_eq!(outcome(&set), "not-authorized");
    assert!(!exists(&ts, "eve").await);
    // Any other IQ before authentication still ends the stream.
    r.send("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(
        r.expect_stream_error().await,
        StreamErrorCondition::NotAuthorized
    );
}

#[tokio::test]
async fn bad_registrations_store_nothing() {
    // Many attempts on one stream: lift the per-stream cap (tested on its own below).
    let ts = TestServer::start_with(|c| {
        set_registration(c, |r| {
            r.policy = RegistrationPolicy::Open;
            r.rate_limit_per_ip = 100;
            r.max_attempts_per_stream = 0;
        });
    })
    .await;
    ts.add_user("alice").await;
    let (mut r, _) = tls_raw(&ts).await;
    // Existing user, also after normalisation.
    for name in ["alice", "ALICE"] {
        let e = register(&mut r, name, GOOD_PASSWORD).await;
        assert_eq!(outcome(&e), "conflict", "{name}");
        assert!(!e.to_xml(ns::CLIENT).contains(GOOD_PASSWORD), "{e}");
    }
    // Invalid localparts.
    let long = "x".repeat(2000);
    for name in ["a@b", "a/b", "bad name", long.as_str(), "tab\tname"] {
        let e = register(&mut r, name, GOOD_PASSWORD).await;
        assert_eq!(outcome(&e), "jid-malformed", "{name:?}");
    }
    // Missing or empty fields (XEP-0077 §3.1: not-acceptable).
    for payload in [
        format!("<query xmlns='{NS}'><username>bob</username></query>"),
        format!("<query xmlns='{NS}'><password>{GOOD_PASSWORD}</password></query>"),
        format!("<query xmlns='{NS}'><username>bob</username><password/></query>"),
        format!("<query xmlns='{NS}'><username/><password>{GOOD_PASSWORD}</password></query>"),
        format!("<query xmlns='{NS}'/>"),
    ] {
        let e = iq(&mut r, "set", &payload).await;
        assert_eq!(outcome(&e), "not-acceptable", "{payload}");
    }
    // Too short (default minimum 8 characters; counted in characters, not bytes).
    for pw in ["short", "ééééééé"] {
        let e = register(&mut r, "bob", pw).await;
        assert_eq!(outcome(&e), "not-acceptable", "{pw}");
    }
    // A removal from an unregistered entity.
    let e = iq(
        &mut r,
        "set",
        &format!("<query xmlns='{NS}'><remove/></query>"),
    )
    .await;
    assert_eq!(outcome(&e), "unexpected-request");
    // Another server's domain.
    r.send(&format!(
        "<iq type='get' id='x' to='example.net'><query xmlns='{NS}'/></iq>"
    ))
    .await;
    assert_eq!(outcome(&r.element().await), "service-unavailable");
    assert_eq!(account_count(&ts).await, 1);
    assert!(!exists(&ts, "bob").await);
    // The stream still works: a valid registration succeeds.
    assert_eq!(
        outcome(&register(&mut r, "bob", "ééééééééé").await),
        "result"
    );
    assert!(can_login(&ts, "bob", "ééééééééé").await);
    // A control character is not even XML: the stream ends, nothing is stored.
    let (mut r, _) = tls_raw(&ts).await;
    r.send(&format!(
        "<iq type='set' id='c'><query xmlns='{NS}'><username>bad name&#7;</username>\
         <password>{GOOD_PASSWORD}</password></query></iq>"
    ))
    .await;
    assert_eq!(
        r.expect_stream_error().await,
        StreamErrorCondition::NotWellFormed
    );
    assert_eq!(account_count(&ts).await, 2);
}

#[tokio::test]
async fn rate_limit_per_ip() {
    let ts = TestServer::start_with(|c| {
        set_registration(c, |r| {
            r.policy = RegistrationPolicy::Open;
            r.rate_limit_per_ip = 2;
        });
    })
    .await;
    ts.add_user("taken").await;
    // Refused attempts do not count (a taken name does: see below).
    let (mut r, _) = tls_raw(&ts).await;
    assert_eq!(
        outcome(&register(&mut r, "short", "x").await),
        "not-acceptable"
    );
    for name in ["one", "two"] {
        let (mut r, _) = tls_raw(&ts).await;
        assert_eq!(
            outcome(&register(&mut r, name, GOOD_PASSWORD).await),
            "result"
        );
    }
    let (mut r, _) = tls_raw(&ts).await;
    let e = register(&mut r, "three", GOOD_PASSWORD).await;
    assert_eq!(outcome(&e), "policy-violation", "{e}");
    assert_eq!(
        StanzaError::from_stanza(&e).map(|x| x.type_),
        Some(StanzaErrorType::Wait)
    );
    assert!(!exists(&ts, "three").await);
    assert_eq!(account_count(&ts).await, 3);
}

async fn preauth(r: &mut Raw, token: &str) -> Element {
    iq(
        r,
        "set",
        &format!("<preauth xmlns='urn:xmpp:pars:0' token='{}'/>", esc(token)),
    )
    .await
}

#[tokio::test]
async fn invite_tokens_are_single_use_and_expire() {
    let ts = TestServer::start_with(|c| {
        set_registration(c, |r| {
            r.policy = RegistrationPolicy::Invite;
            r.rate_limit_per_ip = 100;
        });
    })
    .await;
    ts.add_user("taken").await;
    let stores = ts.server().ctx().stores.clone();
    let inv = register::create_invite(&stores, DOMAIN, 3600)
        .await
        .expect("invite");
    assert_eq!(
        inv.uri(),
        format!("xmpp:{DOMAIN}?register;preauth={}", inv.token)
    );
    let (mut r, features) = tls_raw(&ts).await;
    assert!(features.get_child("register", FEATURE_NS).is_some());
    assert!(features.get_child("register", TOKEN_FEATURE_NS).is_some());
    // Without an invitation.
    let e = register(&mut r, "gina", GOOD_PASSWORD).await;
    assert_eq!(outcome(&e), "not-allowed");
    // Unknown, malformed and empty tokens.
    for bad in ["nope", "../../x", &"a".repeat(500)] {
        assert_eq!(
            outcome(&preauth(&mut r, bad).await),
            "item-not-found",
            "{bad}"
        );
    }
    assert_eq!(outcome(&preauth(&mut r, "").await), "bad-request");
    let e = register(&mut r, "gina", GOOD_PASSWORD).await;
    assert_eq!(outcome(&e), "not-allowed");
    // A good token; failed registrations do not use it up.
    assert_eq!(outcome(&preauth(&mut r, &inv.token).await), "result");
    assert_eq!(
        outcome(&register(&mut r, "taken", GOOD_PASSWORD).await),
        "conflict"
    );
    assert_eq!(
        outcome(&register(&mut r, "gina", "short").await),
        "not-acceptable"
    );
    assert_eq!(
        register::list_invites(&stores, DOMAIN)
            .await
            .expect("list")
            .len(),
        1
    );
    assert_eq!(
        outcome(&register(&mut r, "gina", GOOD_PASSWORD).await),
        "result"
    );
    assert!(can_login(&ts, "gina", GOOD_PASSWORD).await);
    // Used up: gone from the store and refused on another stream.
    assert!(register::list_invites(&stores, DOMAIN)
        .await
        .expect("list")
        .is_empty());
    let (mut r2, _) = tls_raw(&ts).await;
    assert_eq!(
        outcome(&preauth(&mut r2, &inv.token).await),
        "item-not-found"
    );
    assert_eq!(
        outcome(&register(&mut r2, "hank", GOOD_PASSWORD).await),
        "not-allowed"
    );
    assert!(!exists(&ts, "hank").await);

    // Expiry is checked when the token is presented (XEP-0445 §4), not again later.
    let short = register::create_invite(&stores, DOMAIN, 1)
        .await
        .expect("invite");
    let (mut early, _) = tls_raw(&ts).await;
    assert_eq!(outcome(&preauth(&mut early, &short.token).await), "result");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (mut late, _) = tls_raw(&ts).await;
    assert_eq!(
        outcome(&preauth(&mut late, &short.token).await),
        "item-not-found"
    );
    assert_eq!(
        outcome(&register(&mut late, "ivy", GOOD_PASSWORD).await),
        "not-allowed"
    );
    assert_eq!(
        outcome(&register(&mut early, "ivy", GOOD_PASSWORD).await),
        "result"
    );
    assert!(exists(&ts, "ivy").await);
}

/// Sends one `<iq type='set'/>` with these payloads on each stream at the same moment (a
/// barrier releases them together) and returns the outcomes in stream order. Asserts that
/// the requests really overlapped: every one was sent before the first reply arrived.
async fn all_at_once(streams: Vec<Raw>, payloads: Vec<String>) -> Vec<String> {
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(streams.len()));
    let tasks: Vec<_> = streams
        .into_iter()
        .zip(payloads)
        .enumerate()
        .map(|(i, (mut r, payload))| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                r.send(&format!("<iq type='set' id='c{i}'>{payload}</iq>"))
                    .await;
                let sent = std::time::Instant::now();
                let reply = r.element().await;
                assert_eq!(reply.get_attr("id"), Some(format!("c{i}").as_str()));
                (sent, std::time::Instant::now(), outcome(&reply))
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("client task"));
    }
    let last_sent = results.iter().map(|r| r.0).max();
    let first_reply = results.iter().map(|r| r.1).min();
    assert!(
        last_sent < first_reply,
        "the requests did not overlap: last sent {last_sent:?}, first answered {first_reply:?}"
    );
    results.into_iter().map(|r| r.2).collect()
}

fn registration(user: &str) -> String {
    format!("<query xmlns='{NS}'><username>{user}</username><password>{GOOD_PASSWORD}</password></query>")
}

#[tokio::test]
async fn concurrent_registrations_of_one_name_let_exactly_one_win() {
    // Each derivation takes a while at this count, so all requests are in flight together
    // and pass the "is the name free" check before any account is stored.
    let ts = TestServer::start_with(|c| {
        set_registration(c, |r| {
            r.policy = RegistrationPolicy::Open;
            r.rate_limit_per_ip = 100;
        });
        c.auth.scram_iterations = 20_000;
    })
    .await;
    let mut streams = Vec::new();
    for _ in 0..4 {
        streams.push(tls_raw(&ts).await.0);
    }
    let mut outcomes = all_at_once(streams, vec![registration("mia"); 4]).await;
    outcomes.sort();
    assert_eq!(outcomes, ["conflict", "conflict", "conflict", "result"]);
    assert_eq!(account_count(&ts).await, 1);
    assert!(can_login(&ts, "mia", GOOD_PASSWORD).await);
}

#[tokio::test]
async fn invite_token_cannot_be_used_twice_concurrently() {
    let ts = TestServer::start_with(|c| {
        set_registration(c, |r| {
            r.policy = RegistrationPolicy::Invite;
            r.rate_limit_per_ip = 100;
        });
    })
    .await;
    let stores = ts.server().ctx().stores.clone();
    let inv = register::create_invite(&stores, DOMAIN, 3600)
        .await
        .expect("invite");
    // Every stream presents the token first (valid for each), then all register at once.
    let names = ["jack", "kate", "liam", "nina"];
    let mut streams = Vec::new();
    for _ in names {
        let (mut r, _) = tls_raw(&ts).await;
        assert_eq!(outcome(&preauth(&mut r, &inv.token).await), "result");
        streams.push(r);
    }
    let outcomes = all_at_once(streams, names.iter().map(|n| registration(n)).collect()).await;
    let winners: Vec<&str> = names
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| *o == "result")
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    assert_eq!(
        outcomes.iter().filter(|o| *o == "not-allowed").count(),
        names.len() - 1,
        "{outcomes:?}"
    );
    assert_eq!(account_count(&ts).await, 1);
    for n in names {
        assert_eq!(exists(&ts, n).await, winners.contains(&n), "{n}");
    }
}

#[tokio::test]
async fn password_change() {
    // Self-service works whatever the registration policy (default: closed).
    let ts = TestServer::start().await;
    ts.add_user("bob").await;
    ts.add_user("alice").await;
    let mut c = ts.login("bob").await;
    // Registered state (XEP-0077 §3.1), with or without `to`.
    for to in [None, Some(DOMAIN), Some("bob@localhost")] {
        let mut get = Element::new("iq", ns::CLIENT)
            .attr("type", "get")
            .attr("id", "g")
            .child(Element::new("query", NS));
        if let Some(t) = to {
            get.set_attr("to", t);
        }
        let e = session_iq(&mut c, get).await;
        let q = e.get_child("query", NS).unwrap_or_else(|| panic!("{e}"));
        assert!(q.get_child("registered", NS).is_some());
        assert_eq!(
            q.get_child("username", NS).map(|u| u.text_content()),
            Some("bob".into())
        );
    }
    let new = "a brand new password";
    let bad_cases: Vec<(Vec<Element>, &str)> = vec![
        (
            vec![text_el("username", "alice"), text_el("password", new)],
            "bad-request",
        ),
        (vec![text_el("password", new)], "bad-request"),
        (
            vec![text_el("username", "bob"), Element::new("password", NS)],
            "bad-request",
        ),
        (vec![text_el("username", "bob")], "bad-request"),
        (
            vec![text_el("username", "bob"), text_el("password", "short")],
            "not-acceptable",
        ),
    ];
    for (i, (children, cond)) in bad_cases.into_iter().enumerate() {
        let e = session_iq(&mut c, register_iq(&format!("b{i}"), children)).await;
        assert_eq!(outcome(&e), cond, "case {i}: {e}");
        // XEP-0077 §3.3: the original XML (with the password) is not returned.
        assert!(e.get_child("query", NS).is_none(), "{e}");
    }
    // Someone else's account.
    let other = register_iq(
        "o",
        vec![text_el("username", "alice"), text_el("password", new)],
    )
    .attr("to", "alice@localhost");
    assert_eq!(outcome(&session_iq(&mut c, other).await), "forbidden");
    assert!(can_login(&ts, "bob", PASSWORD).await);
    assert!(can_login(&ts, "alice", PASSWORD).await);
    // The change itself.
    let ok = session_iq(
        &mut c,
        register_iq(
            "ok",
            vec![text_el("username", "bob"), text_el("password", new)],
        ),
    )
    .await;
    assert_eq!(outcome(&ok), "result", "{ok}");
    assert!(can_login(&ts, "bob", new).await);
    assert!(!can_login(&ts, "bob", PASSWORD).await);
    // The session that changed it goes on.
    ping(&mut c).await;
}

#[tokio::test]
async fn account_removal_ends_every_session_and_deletes_all_data() {
    let ts = TestServer::start().await;
    ts.add_user("dave").await;
    ts.add_user("erin").await;
    let ctx = ts.server().ctx().clone();
    let mut item = confab_store::RosterItem::new("erin@localhost");
    item.in_roster = true;
    ctx.stores
        .roster
        .put_roster_item(DOMAIN, "dave", &item)
        .await
        .expect("roster");
    ctx.stores
        .offline
        .push_offline(DOMAIN, "dave", "<message/>", 1, 100)
        .await
        .expect("offline");
    ctx.stores
        .data
        .set_account_data(DOMAIN, "dave", "vcard", "", "<vCard/>")
        .await
        .expect("data");
    let mut c1 = ts.login("dave").await;
    let mut c2 = ts.login_available("dave").await;
    let mut erin = ts.login("erin").await;
    // <remove/> must be alone.
    let extra = register_iq(
        "x",
        vec![Element::new("remove", NS), text_el("username", "dave")],
    );
    assert_eq!(outcome(&session_iq(&mut c1, extra).await), "bad-request");
    // Removing someone else's account is forbidden.
    let other = register_iq("y", vec![Element::new("remove", NS)]).attr("to", "erin@localhost");
    assert_eq!(outcome(&session_iq(&mut c1, other).await), "forbidden");
    assert!(exists(&ts, "erin").await);
    // The removal: result first, then <not-authorized/> on every session of the account.
    let ok = session_iq(&mut c1, register_iq("rm", vec![Element::new("remove", NS)])).await;
    assert_eq!(outcome(&ok), "result", "{ok}");
    assert_eq!(
        expect_session_stream_error(&mut c1).await,
        StreamErrorCondition::NotAuthorized
    );
    assert_eq!(
        expect_session_stream_error(&mut c2).await,
        StreamErrorCondition::NotAuthorized
    );
    // Everything of the account is gone.
    assert!(!exists(&ts, "dave").await);
    let (_, roster) = ctx
        .stores
        .roster
        .roster(DOMAIN, "dave")
        .await
        .expect("roster");
    assert!(roster.is_empty());
    assert!(ctx
        .stores
        .offline
        .offline_messages(DOMAIN, "dave")
        .await
        .expect("offline")
        .is_empty());
    assert!(ctx
        .stores
        .data
        .get_account_data(DOMAIN, "dave", "vcard", "")
        .await
        .expect("data")
        .is_none());
    // The sessions are unbound, the account cannot log in, others are untouched.
    for _ in 0..50 {
        if ctx
            .router
            .sessions_of(&"dave@localhost".parse().expect("jid"))
            .is_empty()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ctx
        .router
        .sessions_of(&"dave@localhost".parse().expect("jid"))
        .is_empty());
    assert!(!can_login(&ts, "dave", PASSWORD).await);
    ping(&mut erin).await;
    assert!(exists(&ts, "erin").await);
}

#[tokio::test]
async fn self_service_can_be_switched_off() {
    let ts = TestServer::start_with(|c| {
        set_registration(c, |r| {
            r.allow_password_change = false;
            r.allow_account_removal = false;
        });
    })
    .await;
    ts.add_user("fred").await;
    let mut c = ts.login("fred").await;
    let change = register_iq(
        "c",
        vec![
            text_el("username", "fred"),
            text_el("password", GOOD_PASSWORD),
        ],
    );
    assert_eq!(outcome(&session_iq(&mut c, change).await), "not-allowed");
    let rm = register_iq("r", vec![Element::new("remove", NS)]);
    assert_eq!(outcome(&session_iq(&mut c, rm).await), "not-allowed");
    assert!(exists(&ts, "fred").await);
    assert!(can_login(&ts, "fred", PASSWORD).await);
    ping(&mut c).await;
}

#[tokio::test]
async fn disabled_module_leaves_pre_auth_iqs_refused() {
    let ts = TestServer::start_with(|c| {
        set_registration(c, |r| {
            r.policy = RegistrationPolicy::Open;
        });
        c.modules.disabled = vec!["register".into()];
    })
    .await;
    let (mut r, features) = tls_raw(&ts).await;
    assert!(features.get_child("register", FEATURE_NS).is_none());
    r.send(&format!("<iq type='get' id='g'><query xmlns='{NS}'/></iq>"))
        .await;
    assert_eq!(
        r.expect_stream_error().await,
        StreamErrorCondition::NotAuthorized
    );
}

/// Soft hyphens (U+00AD) are mapped to nothing by SASLprep, which SCRAM applies.
const SOFT_HYPHEN: char = '\u{AD}';

#[tokio::test]
async fn password_rules_apply_to_the_saslprepped_form() {
    let ts = open_server().await;
    ts.add_user("bob").await;
    let hyphens: String = std::iter::repeat_n(SOFT_HYPHEN, 8).collect();
    let (mut r, _) = tls_raw(&ts).await;
    // Empty, and three characters, once prepared: both refused, nothing stored.
    for pw in [hyphens.clone(), format!("abc{hyphens}")] {
        let e = register(&mut r, "carol", &pw).await;
        assert_eq!(outcome(&e), "not-acceptable", "{pw:?}: {e}");
    }
    assert!(!exists(&ts, "carol").await);
    // Long enough after preparation is fine.
    let ok = format!("{GOOD_PASSWORD}{hyphens}");
    assert_eq!(outcome(&register(&mut r, "carol", &ok).await), "result");
    assert!(can_login(&ts, "carol", GOOD_PASSWORD).await);

    // Password change: the same rules.
    let mut c = ts.login("bob").await;
    for (i, pw) in [hyphens.clone(), format!("abc{hyphens}")]
        .iter()
        .enumerate()
    {
        let change = register_iq(
            &format!("c{i}"),
            vec![text_el("username", "bob"), text_el("password", pw)],
        );
        let e = session_iq(&mut c, change).await;
        assert_eq!(outcome(&e), "not-acceptable", "{pw:?}: {e}");
    }
    assert!(can_login(&ts, "bob", PASSWORD).await);
}

#[tokio::test]
async fn taken_names_are_refused_before_key_derivation() {
    // Deriving keys at this count takes over 20 s in a debug build, far longer than the
    // reply may take (see below): a conflict answered in time cannot have derived any.
    let ts = TestServer::start_with(|c| {
        set_registration(c, |r| {
            r.policy = RegistrationPolicy::Open;
        });
        c.auth.scram_iterations = 2_000_000;
    })
    .await;
    ts.add_user("taken").await;
    let (mut r, _) = tls_raw(&ts).await;
    let started = std::time::Instant::now();
    for name in ["taken", "TAKEN"] {
        let e = tokio::time::timeout(
            Duration::from_secs(5),
            register(&mut r, name, GOOD_PASSWORD),
        )
        .await
        .expect("a taken name is refused without deriving keys");
        assert_eq!(outcome(&e), "conflict", "{e}");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn registration_attempts_per_stream_are_capped() {
    let ts = TestServer::start_with(|c| {
        set_registration(c, |r| {
            r.policy = RegistrationPolicy::Open;
            r.rate_limit_per_ip = 100;
            r.max_attempts_per_stream = 3;
        });
    })
    .await;
    ts.add_user("taken").await;
    let (mut r, _) = tls_raw(&ts).await;
    // Failed attempts count, whatever made them fail.
    assert_eq!(
        outcome(&register(&mut r, "taken", GOOD_PASSWORD).await),
        "conflict"
    );
    assert_eq!(
        outcome(&register(&mut r, "a@b", GOOD_PASSWORD).await),
        "jid-malformed"
    );
    assert_eq!(
        outcome(&register(&mut r, "lena", "short").await),
        "not-acceptable"
    );
    // The fourth is refused, even a good one, and nothing is stored.
    let e = register(&mut r, "lena", GOOD_PASSWORD).await;
    assert_eq!(outcome(&e), "policy-violation", "{e}");
    assert_eq!(
        StanzaError::from_stanza(&e).map(|x| x.type_),
        Some(StanzaErrorType::Cancel)
    );
    assert!(!exists(&ts, "lena").await);
    // The form is still readable; a new stream starts afresh.
    assert_eq!(
        outcome(&iq(&mut r, "get", &format!("<query xmlns='{NS}'/>")).await),
        "result"
    );
    let (mut r2, _) = tls_raw(&ts).await;
    assert_eq!(
        outcome(&register(&mut r2, "lena", GOOD_PASSWORD).await),
        "result"
    );
}

#[tokio::test]
async fn probing_taken_names_counts_against_the_address() {
    // A cheap "name taken" answer would let anyone list accounts at connection speed: the
    // refusals count against the address's registrations like successes.
    let ts = TestServer::start_with(|c| {
        set_registration(c, |r| {
            r.policy = RegistrationPolicy::Open;
            r.rate_limit_per_ip = 2;
        });
    })
    .await;
    ts.add_user("alice").await;
    let mut answers = Vec::new();
    for _ in 0..3 {
        let (mut r, _) = tls_raw(&ts).await;
        let reply = register(&mut r, "alice", GOOD_PASSWORD).await;
        answers.push((
            outcome(&reply),
            StanzaError::from_stanza(&reply).map(|e| e.type_),
        ));
    }
    assert_eq!(answers[0].0, "conflict");
    assert_eq!(answers[1].0, "conflict");
    assert_eq!(
        answers[2],
        ("policy-violation".to_string(), Some(StanzaErrorType::Wait))
    );
}
