//! `[http] trusted_proxies`: behind a trusted proxy the forwarded client address is what the
//! connection limits count and what the session records (the console's sessions page shows
//! it), and `X-Forwarded-Proto: https` counts as encryption; the same headers from a peer
//! that is not trusted change nothing.

use base64::Engine;
use confab_proto::parser::parse_fragment;
use confab_proto::xml::Element;
use confab_proto::{ns, Limits};
use confab_stream::framing::FRAMING_NS;
use confab_tests::*;
use confab_web::websocket::WebSocketConfig;
use futures_util::{SinkExt, StreamExt};
use std::net::IpAddr;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// One connection per client address; loopback is not trusted as encryption.
async fn server(trusted: &[&str]) -> TestServer {
    let trusted: Vec<String> = trusted.iter().map(|s| s.to_string()).collect();
    TestServer::start_with_modules(confab_web::all(), move |c| {
        c.http.trusted_proxies = trusted;
        c.limits.max_connections_per_ip = 1;
        c.set_section(
            "websocket",
            &WebSocketConfig {
                trust_loopback: false,
                ..Default::default()
            },
        )
        .expect("websocket section");
    })
    .await
}

/// A WebSocket handshake carrying `headers`: the socket, or the HTTP status it got.
async fn ws_connect(ts: &TestServer, headers: &[(&'static str, &str)]) -> Result<Ws, u16> {
    let addr = ts.server().http_addr().expect("http listener");
    let mut req = format!("ws://{addr}/xmpp-websocket")
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("xmpp"));
    for (k, v) in headers {
        req.headers_mut()
            .insert(*k, HeaderValue::from_str(v).expect("header"));
    }
    match connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("handshake: {e}"),
    }
}

async fn element(ws: &mut Ws) -> Element {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("timed out")
            .expect("open")
            .expect("message");
        if let Message::Text(t) = m {
            return parse_fragment(t.as_str(), "", &Limits::default()).expect("one document");
        }
    }
}

async fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.expect("send");
}

async fn open(ws: &mut Ws) -> Element {
    send(
        ws,
        &format!("<open xmlns='{FRAMING_NS}' to='localhost' version='1.0'/>"),
    )
    .await;
    assert!(element(ws).await.is("open", FRAMING_NS));
    element(ws).await
}

fn offers_plain(features: &Element) -> bool {
    features
        .get_child("mechanisms", ns::SASL)
        .is_some_and(|m| m.elements().any(|e| e.text_content() == "PLAIN"))
}

/// Logs `user` in (PLAIN) and binds `resource`.
async fn log_in(ws: &mut Ws, user: &str, resource: &str) {
    let features = open(ws).await;
    assert!(offers_plain(&features), "{features}");
    let creds = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{PASSWORD}"));
    send(
        ws,
        &format!(
            "<auth xmlns='{}' mechanism='PLAIN'>{creds}</auth>",
            ns::SASL
        ),
    )
    .await;
    assert!(element(ws).await.is("success", ns::SASL));
    open(ws).await;
    send(
        ws,
        &format!(
            "<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='{}'><resource>{resource}</resource></bind></iq>",
            ns::BIND
        ),
    )
    .await;
    assert_eq!(element(ws).await.get_attr("type"), Some("result"));
}

fn session_addresses(ts: &TestServer) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = ts
        .server()
        .ctx()
        .router
        .all_sessions()
        .iter()
        .filter_map(|s| s.connection().map(|c| c.peer.ip()))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_trusted_proxys_client_address_is_counted_and_recorded() {
    let ts = server(&["127.0.0.0/8"]).await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let https = [
        ("x-forwarded-for", "6.6.6.6, 198.51.100.7"),
        ("x-forwarded-proto", "https"),
    ];
    let mut a = ws_connect(&ts, &https).await.expect("first client");
    // Another client behind the same proxy is another address.
    let mut b = ws_connect(
        &ts,
        &[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
        ],
    )
    .await
    .expect("second client");
    // The same client again is over its limit of one, whatever it wrote to the left.
    assert_eq!(
        ws_connect(&ts, &[("x-forwarded-for", "1.1.1.1, 198.51.100.7")])
            .await
            .err(),
        Some(503)
    );
    // The proxy said HTTPS: PLAIN is offered although loopback is not trusted.
    log_in(&mut a, "alice", "a").await;
    log_in(&mut b, "bob", "b").await;
    assert_eq!(
        session_addresses(&ts),
        ["198.51.100.7", "203.0.113.9"]
            .map(|s| s.parse::<IpAddr>().expect("ip"))
            .to_vec()
    );
    // Without X-Forwarded-Proto the client used plain HTTP.
    let mut c = ws_connect(&ts, &[("x-forwarded-for", "192.0.2.1")])
        .await
        .expect("third client");
    let features = open(&mut c).await;
    assert!(!offers_plain(&features), "{features}");
}

#[tokio::test]
async fn an_untrusted_peers_forwarding_headers_change_nothing() {
    let ts = server(&["10.0.0.0/8"]).await;
    ts.add_user("alice").await;
    let mut a = ws_connect(
        &ts,
        &[
            ("x-forwarded-for", "198.51.100.7"),
            ("x-forwarded-proto", "https"),
        ],
    )
    .await
    .expect("first");
    // Counted as 127.0.0.1, which already holds its one connection.
    assert_eq!(
        ws_connect(&ts, &[("x-forwarded-for", "203.0.113.9")])
            .await
            .err(),
        Some(503)
    );
    // Not encrypted either: the proto header was not believed.
    let features = open(&mut a).await;
    assert!(!offers_plain(&features), "{features}");
}
