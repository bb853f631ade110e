//! BOSH (XEP-0124 / XEP-0206) against an in-process server, over plain HTTP/1.1 requests
//! written by hand: session creation, SASL, restart, bind, stanzas both ways with a TCP
//! client, long polling, rid order and errors, unknown sids, inactivity, terminate.

use base64::Engine;
use confab_proto::parser::parse_fragment;
use confab_proto::xml::Element;
use confab_proto::{ns, Limits};
use confab_tests::*;
use confab_web::bosh::{BoshConfig, NS, XBOSH_NS};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn server_with(
    bosh: BoshConfig,
    f: impl FnOnce(&mut confab_server::config::Config),
) -> TestServer {
    TestServer::start_with_modules(confab_web::all(), |c| {
        c.set_section("bosh", &bosh).expect("bosh section");
        f(c)
    })
    .await
}

fn http_addr(ts: &TestServer) -> SocketAddr {
    ts.server().http_addr().expect("http listener")
}

/// One POST on its own connection: (status, headers in lower case, body).
async fn post(addr: SocketAddr, body: &str) -> (u16, String, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(
        format!(
            "POST /http-bind HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/xml; charset=utf-8\r\n\
             Origin: https://web.example\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .expect("request");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(40), tcp.read_to_end(&mut out))
        .await
        .expect("timed out")
        .expect("read");
    let out = String::from_utf8(out).expect("utf-8");
    let (head, body) = out.split_once("\r\n\r\n").expect("a response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, head.to_ascii_lowercase(), body.to_string())
}

fn parse_body(text: &str) -> Element {
    let b = parse_fragment(text, "", &Limits::default())
        .unwrap_or_else(|| panic!("not one XML document: {text}"));
    assert!(b.is("body", NS), "{text}");
    b
}

/// A BOSH client: its sid and the next rid.
struct Client {
    addr: SocketAddr,
    sid: String,
    rid: u64,
}

impl Client {
    /// Creates a session; returns the client and the creation answer.
    async fn create(ts: &TestServer, extra: &str) -> (Client, Element) {
        let addr = http_addr(ts);
        let rid = 1000;
        let (status, head, text) = post(
            addr,
            &format!(
                "<body xmlns='{NS}' rid='{rid}' to='localhost' xml:lang='en' wait='20' hold='1' \
                 ver='1.6' xmlns:xmpp='{XBOSH_NS}' xmpp:version='1.0' {extra}/>"
            ),
        )
        .await;
        assert_eq!(status, 200, "{head}");
        assert!(head.contains("content-type: text/xml"), "{head}");
        assert!(head.contains("access-control-allow-origin: *"), "{head}");
        let b = parse_body(&text);
        let sid = b
            .get_attr("sid")
            .unwrap_or_else(|| panic!("no sid: {text}"));
        (
            Client {
                addr,
                sid: sid.to_string(),
                rid: rid + 1,
            },
            b,
        )
    }

    /// The next request's text, with `attrs` and `payload`, taking the next rid.
    fn next(&mut self, attrs: &str, payload: &str) -> (u64, String) {
        let rid = self.rid;
        self.rid += 1;
        (rid, self.with_rid(rid, attrs, payload))
    }

    fn with_rid(&self, rid: u64, attrs: &str, payload: &str) -> String {
        format!(
            "<body xmlns='{NS}' rid='{rid}' sid='{}' {attrs}>{payload}</body>",
            self.sid
        )
    }

    async fn send(&mut self, payload: &str) -> Element {
        let (_, req) = self.next("", payload);
        self.request(&req).await
    }

    async fn request(&self, req: &str) -> Element {
        let (status, _, text) = post(self.addr, req).await;
        let b = parse_body(&text);
        // A session no longer known is also a 404 (XEP-0124 §17.6, for legacy clients).
        if status == 404 {
            assert_eq!(b.get_attr("condition"), Some("item-not-found"), "{text}");
        } else {
            assert_eq!(status, 200, "{text}");
        }
        b
    }

    /// Sends `payload`, then polls until a child matching `pred` arrives.
    async fn send_until(&mut self, payload: &str, pred: impl Fn(&Element) -> bool) -> Element {
        let mut b = self.send(payload).await;
        for _ in 0..10 {
            if let Some(e) = b.elements().find(|e| pred(e)) {
                return e.clone();
            }
            assert_ne!(b.get_attr("type"), Some("terminate"), "{b}");
            b = self.send("").await;
        }
        panic!("never came; last {b}");
    }

    /// SASL PLAIN, restart, bind `resource`, initial presence.
    async fn log_in(ts: &TestServer, user: &str, resource: &str) -> Client {
        let (mut c, created) = Client::create(ts, "").await;
        assert_eq!(created.get_attr("requests"), Some("2"), "{created}");
        assert_eq!(
            created.get_attr_ns(XBOSH_NS, "version"),
            Some("1.0"),
            "{created}"
        );
        let features = match created.get_child("features", ns::STREAM) {
            Some(f) => f.clone(),
            None => c.send_until("", |e| e.is("features", ns::STREAM)).await,
        };
        assert!(
            features.get_child("mechanisms", ns::SASL).is_some(),
            "{features}"
        );
        let creds =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{PASSWORD}"));
        let success = c
            .send_until(
                &format!(
                    "<auth xmlns='{}' mechanism='PLAIN'>{creds}</auth>",
                    ns::SASL
                ),
                |e| e.ns == ns::SASL,
            )
            .await;
        assert!(success.is("success", ns::SASL), "{success}");
        let (_, restart) = c.next(
            &format!("to='localhost' xml:lang='en' xmpp:restart='true' xmlns:xmpp='{XBOSH_NS}'"),
            "",
        );
        let mut b = c.request(&restart).await;
        if b.get_child("features", ns::STREAM).is_none() {
            b = c.send("").await;
        }
        let features = b.get_child("features", ns::STREAM).expect("features");
        assert!(features.get_child("bind", ns::BIND).is_some(), "{features}");
        let bound = c
            .send_until(
                &format!(
                    "<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='{}'>\
                     <resource>{resource}</resource></bind></iq>",
                    ns::BIND
                ),
                |e| e.name == "iq",
            )
            .await;
        assert_eq!(bound.get_attr("type"), Some("result"), "{bound}");
        let pong = c
            .send_until(
                "<presence xmlns='jabber:client'/><iq xmlns='jabber:client' type='get' id='p'>\
                 <ping xmlns='urn:xmpp:ping'/></iq>",
                |e| e.name == "iq",
            )
            .await;
        assert_eq!(pong.get_attr("id"), Some("p"), "{pong}");
        c
    }
}

fn quick() -> BoshConfig {
    BoshConfig {
        max_wait: 20,
        ..Default::default()
    }
}

fn chat(to: &str, text: &str) -> Element {
    Element::new("message", ns::CLIENT)
        .attr("to", to)
        .attr("type", "chat")
        .child(Element::new("body", ns::CLIENT).text(text))
}

fn body_text(m: &Element) -> String {
    m.get_child("body", ns::CLIENT)
        .map(|b| b.text_content())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_bosh_client_chats_with_a_tcp_client_through_long_polls() {
    let ts = server_with(quick(), |_| {}).await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let mut alice = ts.login_available("alice").await;
    let mut bob = Client::log_in(&ts, "bob", "web").await;

    // A held request is answered as soon as something arrives for the session.
    let (_, poll) = bob.next("", "");
    let poller = Client {
        addr: bob.addr,
        sid: bob.sid.clone(),
        rid: 0,
    };
    let held = tokio::spawn(async move {
        let t = Instant::now();
        (poller.request(&poll).await, t.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    alice
        .send(&chat("bob@localhost/web", "hi from tcp"))
        .await
        .expect("send");
    let (b, took) = held.await.expect("poll");
    let m = b
        .elements()
        .find(|e| e.name == "message")
        .unwrap_or_else(|| panic!("no message in {b}"));
    assert_eq!(m.ns, ns::CLIENT);
    assert_eq!(m.get_attr("from"), Some(alice.jid.as_str()));
    assert_eq!(body_text(m), "hi from tcp");
    assert!(
        took < Duration::from_secs(10),
        "answered after {took:?}, not at once"
    );

    // And the other way.
    let b = bob
        .send(&format!(
            "<message xmlns='jabber:client' to='{}' type='chat'><body>hi from bosh</body></message>",
            alice.jid
        ))
        .await;
    assert_ne!(b.get_attr("type"), Some("terminate"), "{b}");
    let m = recv_message(&mut alice).await;
    assert_eq!(m.get_attr("from"), Some("bob@localhost/web"));
    assert_eq!(body_text(&m), "hi from bosh");
}

#[tokio::test]
async fn an_empty_request_is_held_until_wait() {
    let ts = server_with(
        BoshConfig {
            max_wait: 2,
            ..Default::default()
        },
        |_| {},
    )
    .await;
    ts.add_user("bob").await;
    let mut bob = Client::log_in(&ts, "bob", "web").await;
    let t = Instant::now();
    let b = bob.send("").await;
    let took = t.elapsed();
    assert_eq!(b.elements().count(), 0, "{b}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(8),
        "held {took:?}, wait is 2 s"
    );
    // A second request releases the held one at once (hold = 1).
    let (_, first) = bob.next("", "");
    let c = Client {
        addr: bob.addr,
        sid: bob.sid.clone(),
        rid: 0,
    };
    let held = tokio::spawn(async move {
        let t = Instant::now();
        c.request(&first).await;
        t.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, second) = bob.next("", "");
    let second = tokio::spawn({
        let c = Client {
            addr: bob.addr,
            sid: bob.sid.clone(),
            rid: 0,
        };
        async move { c.request(&second).await }
    });
    let took = held.await.expect("first");
    assert!(took < Duration::from_millis(1500), "first held {took:?}");
    second.await.expect("second");
}

#[tokio::test]
async fn requests_are_taken_in_rid_order_and_repeats_are_answered_from_the_cache() {
    let ts = server_with(quick(), |_| {}).await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let mut alice = ts.login_available("alice").await;
    let mut bob = Client::log_in(&ts, "bob", "web").await;
    let msg = |t: &str| {
        format!(
            "<message xmlns='jabber:client' to='{}' type='chat'><body>{t}</body></message>",
            alice.jid
        )
    };
    let (_, first) = bob.next("", &msg("first"));
    let (_, second) = bob.next("", &msg("second"));
    // The second arrives first: it waits for the first.
    let c = Client {
        addr: bob.addr,
        sid: bob.sid.clone(),
        rid: 0,
    };
    let later = tokio::spawn(async move { c.request(&second).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(no_message(&mut alice, 300).await, "rid order not kept");
    let answer = bob.request(&first).await;
    assert_eq!(body_text(&recv_message(&mut alice).await), "first");
    assert_eq!(body_text(&recv_message(&mut alice).await), "second");
    later.await.expect("second answered");

    // The same request again gets the same answer, and is not taken twice.
    let again = bob.request(&first).await;
    assert_eq!(again.to_string(), answer.to_string());
    assert!(
        no_message(&mut alice, 300).await,
        "a repeated rid was taken again"
    );

    // A rid beyond the window ends the session at once (XEP-0124 §14.3), without waiting
    // for the rids before it.
    let far = bob.with_rid(bob.rid + 10, "", "");
    let t = Instant::now();
    let b = bob.request(&far).await;
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "answered after {:?}",
        t.elapsed()
    );
    assert_eq!(b.get_attr("type"), Some("terminate"), "{b}");
    assert_eq!(b.get_attr("condition"), Some("item-not-found"), "{b}");
    let b = bob.send("").await;
    assert_eq!(b.get_attr("type"), Some("terminate"), "{b}");
}

#[tokio::test]
async fn unknown_sids_and_bad_bodies_get_the_xeps_errors_and_others_go_on() {
    let ts = server_with(quick(), |c| {
        c.limits.max_stanza_size = 10_000;
        c.update_section("vcard", |v: &mut confab_modules::vcard::VcardConfig| {
            v.max_size = 8_000
        })
        .expect("vcard section");
    })
    .await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let mut alice = ts.login_available("alice").await;
    let mut bob = Client::log_in(&ts, "bob", "web").await;
    let addr = bob.addr;

    // An unknown sid: the terminate body, and 404 for legacy clients (XEP-0124 §17.6).
    let (status, _, text) = post(addr, &format!("<body xmlns='{NS}' rid='5' sid='nope'/>")).await;
    assert_eq!(status, 404);
    let b = parse_body(&text);
    assert_eq!(b.get_attr("type"), Some("terminate"));
    assert_eq!(b.get_attr("condition"), Some("item-not-found"));

    for bad in [
        "<body xmlns='http://jabber.org/protocol/httpbind' rid='1'".to_string(),
        "<body xmlns='urn:wrong' rid='1' to='localhost'/>".to_string(),
        "not xml".to_string(),
    ] {
        let (status, _, text) = post(addr, &bad).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(
            parse_body(&text).get_attr("condition"),
            Some("bad-request"),
            "{bad}"
        );
    }
    let (status, _, text) = post(
        addr,
        &format!("<body xmlns='{NS}' ver='1.6' to='localhost'/>"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(parse_body(&text).get_attr("condition"), Some("bad-request"));
    let big = format!(
        "<body xmlns='{NS}' rid='1' ver='1.6' to='localhost'>{}</body>",
        "x".repeat(50_000)
    );
    // Too large: the terminal policy-violation, as the start tag's `ver` asks (§17).
    let (status, _, text) = post(addr, &big).await;
    assert_eq!(status, 200);
    assert_eq!(
        parse_body(&text).get_attr("condition"),
        Some("policy-violation")
    );
    // A host we do not serve: the stream error as a terminate condition.
    let (status, _, text) = post(
        addr,
        &format!(
            "<body xmlns='{NS}' rid='1' to='elsewhere.example' ver='1.6' wait='5' hold='1' \
             xmlns:xmpp='{XBOSH_NS}' xmpp:version='1.0'/>"
        ),
    )
    .await;
    assert_eq!(status, 200);
    let b = parse_body(&text);
    assert_eq!(b.get_attr("type"), Some("terminate"), "{text}");
    assert_eq!(b.get_attr("condition"), Some("host-unknown"), "{text}");

    // Bob's session is untouched.
    alice
        .send(&chat("bob@localhost/web", "still here?"))
        .await
        .expect("send");
    let m = bob.send_until("", |e| e.name == "message").await;
    assert_eq!(body_text(&m), "still here?");
}

#[tokio::test]
async fn an_inactive_session_ends_but_a_held_request_keeps_it_alive() {
    let ts = server_with(
        BoshConfig {
            max_wait: 8,
            inactivity: 5,
            ..Default::default()
        },
        |_| {},
    )
    .await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let mut alice = ts.login_available("alice").await;
    let mut bob = Client::log_in(&ts, "bob", "web").await;
    // Held for 8 s, longer than the inactivity: the session lives on.
    let b = bob.send("").await;
    assert_ne!(b.get_attr("type"), Some("terminate"), "{b}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let b = bob.send("").await;
    assert_ne!(b.get_attr("type"), Some("terminate"), "{b}");
    // Nothing for longer than the inactivity: ended.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let b = bob.send("").await;
    assert_eq!(b.get_attr("type"), Some("terminate"), "{b}");
    assert_eq!(b.get_attr("condition"), Some("item-not-found"), "{b}");
    // The session is gone from the router: a message to it is not delivered to it.
    let reply = iq(
        &mut alice,
        "get",
        Some("bob@localhost/web"),
        Element::new("ping", "urn:xmpp:ping"),
    )
    .await;
    assert_eq!(reply.get_attr("type"), Some("error"), "{reply}");
}

#[tokio::test]
async fn a_terminate_request_ends_the_session() {
    let ts = server_with(quick(), |_| {}).await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let mut alice = ts.login_available("alice").await;
    // Alice sees Bob come and go.
    alice
        .send(
            &Element::new("presence", ns::CLIENT)
                .attr("to", "bob@localhost")
                .attr("type", "subscribe"),
        )
        .await
        .expect("send");
    let mut bob = Client::log_in(&ts, "bob", "web").await;
    let (_, term) = bob.next(
        "type='terminate'",
        "<presence xmlns='jabber:client' type='unavailable'/>",
    );
    let b = bob.request(&term).await;
    assert_eq!(b.get_attr("type"), Some("terminate"), "{b}");
    let b = bob.send("").await;
    assert_eq!(b.get_attr("type"), Some("terminate"), "{b}");
    assert_eq!(b.get_attr("condition"), Some("item-not-found"), "{b}");
    let reply = iq(
        &mut alice,
        "get",
        Some("bob@localhost/web"),
        Element::new("ping", "urn:xmpp:ping"),
    )
    .await;
    assert_eq!(reply.get_attr("type"), Some("error"), "{reply}");
}

#[tokio::test]
async fn bosh_sessions_count_against_the_connection_limits() {
    let ts = server_with(quick(), |c| c.limits.max_connections_per_ip = 1).await;
    let _held = ts.raw().await;
    let (status, _, text) = post(
        http_addr(&ts),
        &format!(
            "<body xmlns='{NS}' rid='1' to='localhost' ver='1.6' wait='5' hold='1' \
             xmlns:xmpp='{XBOSH_NS}' xmpp:version='1.0'/>"
        ),
    )
    .await;
    assert_eq!(status, 200);
    let b = parse_body(&text);
    assert_eq!(b.get_attr("type"), Some("terminate"), "{text}");
    assert_eq!(b.get_attr("condition"), Some("policy-violation"), "{text}");
    assert!(b.get_attr("sid").is_none(), "{text}");
}

#[tokio::test]
async fn cors_preflight_and_host_meta_list_bosh() {
    let ts = server_with(quick(), |_| {}).await;
    let addr = http_addr(&ts);
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(
        format!(
            "OPTIONS /http-bind HTTP/1.1\r\nHost: {addr}\r\nOrigin: https://web.example\r\n\
             Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .expect("request");
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.expect("read");
    let out = out.to_ascii_lowercase();
    assert!(out.starts_with("http/1.1 204"), "{out}");
    assert!(out.contains("access-control-allow-origin: *"), "{out}");
    assert!(
        out.contains("access-control-allow-methods: post, options"),
        "{out}"
    );
    assert!(
        out.contains("access-control-allow-headers: content-type"),
        "{out}"
    );

    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(
        format!("GET /.well-known/host-meta HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .expect("request");
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.expect("read");
    assert!(
        out.contains(&format!(
            "<Link rel='urn:xmpp:alt-connections:xbosh' href='http://{addr}/http-bind'/>"
        )),
        "{out}"
    );
    assert!(out.contains("urn:xmpp:alt-connections:websocket"), "{out}");
}

#[tokio::test]
async fn a_pause_answers_held_requests_and_outlasts_the_inactivity() {
    let ts = server_with(
        BoshConfig {
            max_wait: 8,
            inactivity: 5,
            max_pause: 30,
            ..Default::default()
        },
        |_| {},
    )
    .await;
    ts.add_user("bob").await;
    let mut bob = Client::log_in(&ts, "bob", "web").await;
    let (_, poll) = bob.next("", "");
    let c = Client {
        addr: bob.addr,
        sid: bob.sid.clone(),
        rid: 0,
    };
    let held = tokio::spawn(async move {
        c.request(&poll).await;
        Instant::now()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    let (_, pause) = bob.next("pause='12'", "");
    let b = bob.request(&pause).await;
    assert_ne!(b.get_attr("type"), Some("terminate"), "{b}");
    let released = held.await.expect("held request");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "pause answered after {:?}",
        t.elapsed()
    );
    assert!(
        released.duration_since(t) < Duration::from_secs(3),
        "held request not released"
    );
    // Idle longer than the inactivity, within the pause: the session is still there.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let pong = bob
        .send_until(
            "<iq xmlns='jabber:client' type='get' id='p2'><ping xmlns='urn:xmpp:ping'/></iq>",
            |e| e.name == "iq",
        )
        .await;
    assert_eq!(pong.get_attr("type"), Some("result"), "{pong}");
}

#[tokio::test]
async fn a_polling_client_is_answered_at_once() {
    let ts = server_with(quick(), |_| {}).await;
    let addr = http_addr(&ts);
    let (_, _, text) = post(
        addr,
        &format!(
            "<body xmlns='{NS}' rid='7' to='localhost' wait='20' hold='0' ver='1.6' \
             xmlns:xmpp='{XBOSH_NS}' xmpp:version='1.0'/>"
        ),
    )
    .await;
    let b = parse_body(&text);
    assert_eq!(b.get_attr("hold"), Some("0"), "{text}");
    assert_eq!(b.get_attr("requests"), Some("1"), "{text}");
    let mut c = Client {
        addr,
        sid: b.get_attr("sid").expect("sid").to_string(),
        rid: 8,
    };
    // Every request comes back at once, empty or not, until the features are there.
    let mut features = b.get_child("features", ns::STREAM).cloned();
    for _ in 0..5 {
        if features.is_some() {
            break;
        }
        let t = Instant::now();
        let b = c.send("").await;
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "polled {:?}",
            t.elapsed()
        );
        features = b.get_child("features", ns::STREAM).cloned();
    }
    assert!(features.is_some(), "no features");
    // Nothing to send: the poll still returns at once, empty.
    let t = Instant::now();
    let b = c.send("").await;
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "polled {:?}",
        t.elapsed()
    );
    assert_eq!(b.elements().count(), 0, "{b}");
}

#[tokio::test]
async fn an_inactive_session_with_stream_management_is_parked_and_resumed_elsewhere() {
    let sm = confab_modules::stream_management::NS;
    let ts = server_with(
        BoshConfig {
            max_wait: 5,
            inactivity: 5,
            ..Default::default()
        },
        |c| {
            c.c2s.require_tls = false;
            c.c2s.allow_plain_without_tls = true;
        },
    )
    .await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let mut alice = ts.login_available("alice").await;
    let mut bob = Client::log_in(&ts, "bob", "web").await;
    let enabled = bob
        .send_until(&format!("<enable xmlns='{sm}' resume='true'/>"), |e| {
            e.ns == sm
        })
        .await;
    assert!(enabled.is("enabled", sm), "{enabled}");
    let id = enabled.get_attr("id").expect("resumption id").to_string();
    // Bob's client goes away; the session outlives its BOSH session, as a WebSocket's does.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let b = bob.send("").await;
    assert_eq!(b.get_attr("type"), Some("terminate"), "{b}");
    alice
        .send(&chat("bob@localhost/web", "while you were away"))
        .await
        .expect("send");
    let mut tcp = ts.authenticated_raw("bob").await;
    tcp.send(&format!("<resume xmlns='{sm}' previd='{id}' h='0'/>"))
        .await;
    let resumed = tcp.element().await;
    assert!(resumed.is("resumed", sm), "{resumed}");
    let m = loop {
        let e = tcp.element().await;
        if e.name == "message" {
            break e;
        }
    };
    assert_eq!(body_text(&m), "while you were away");
}

#[tokio::test]
async fn acknowledgements_both_ways_and_a_missed_answer_is_reported() {
    let ts = server_with(
        BoshConfig {
            max_wait: 2,
            ..Default::default()
        },
        |_| {},
    )
    .await;
    // Without ack='1' at creation: no acknowledgements.
    let (_, plain) = Client::create(&ts, "").await;
    assert_eq!(plain.get_attr("ack"), None, "{plain}");
    // With it, the creation answer acknowledges the creation request (§9.1).
    let (mut c, created) = Client::create(&ts, "ack='1'").await;
    assert_eq!(created.get_attr("ack"), Some("1000"), "{created}");
    // Whatever the session has to say first (its stream features).
    c.send("").await;

    // A held request answered because the next one came carries the next one's rid.
    let (held_rid, held_req) = c.next("", "");
    let holder = Client {
        addr: c.addr,
        sid: c.sid.clone(),
        rid: 0,
    };
    let held = tokio::spawn(async move { holder.request(&held_req).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (next_rid, next_req) = c.next(&format!("ack='{}'", held_rid - 1), "");
    let next = tokio::spawn({
        let again = Client {
            addr: c.addr,
            sid: c.sid.clone(),
            rid: 0,
        };
        async move { again.request(&next_req).await }
    });
    let released = held.await.expect("held");
    assert_eq!(
        released.get_attr("ack"),
        Some(next_rid.to_string().as_str()),
        "{released}"
    );
    // Answered at `wait` with no ack: its own rid is the highest.
    let next_answer = next.await.expect("next");
    assert_eq!(next_answer.get_attr("ack"), None, "{next_answer}");

    // The client says it never got that answer: after a moment, the next request is
    // answered at once with report and time (§9.2)…
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (_, req) = c.next(&format!("ack='{held_rid}'"), "");
    let t = Instant::now();
    let reported = c.request(&req).await;
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "answered at once"
    );
    assert_eq!(
        reported.get_attr("report"),
        Some(next_rid.to_string().as_str()),
        "{reported}"
    );
    let time: u64 = reported
        .get_attr("time")
        .and_then(|t| t.parse().ok())
        .expect("time");
    assert!(time >= 500, "{reported}");
    // …and the missed answer is sent again for its rid.
    let again = c.request(&c.with_rid(next_rid, "", "")).await;
    assert_eq!(again.to_string(), next_answer.to_string());
    // Reported once: the same ack again is not answered at once.
    let (_, req) = c.next(&format!("ack='{held_rid}'"), "");
    let t = Instant::now();
    let quiet = c.request(&req).await;
    assert_eq!(quiet.get_attr("report"), None, "{quiet}");
    assert!(t.elapsed() >= Duration::from_millis(1500), "held as usual");
}
