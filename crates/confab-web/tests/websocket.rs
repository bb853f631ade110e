//! XMPP over WebSocket against an in-process server, with a WebSocket client library we did
//! not write (tokio-tungstenite) speaking RFC 7395 by hand.

use base64::Engine;
use confab_proto::parser::parse_fragment;
use confab_proto::xml::Element;
use confab_proto::{ns, Limits};
use confab_stream::framing::FRAMING_NS;
use confab_tests::*;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

async fn server_with(f: impl FnOnce(&mut confab_server::config::Config)) -> TestServer {
    TestServer::start_with_modules(confab_web::all(), f).await
}

fn ws_url(ts: &TestServer) -> String {
    let addr = ts.server().http_addr().expect("http listener");
    format!("ws://{addr}/xmpp-websocket")
}

async fn ws_connect(ts: &TestServer) -> Ws {
    let mut req = ws_url(ts).into_client_request().expect("request");
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("xmpp"));
    let (ws, resp) = connect_async(req).await.expect("WebSocket handshake");
    // RFC 7395 §3.1: the server confirms the subprotocol.
    assert_eq!(
        resp.headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok()),
        Some("xmpp")
    );
    ws
}

async fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.expect("send");
}

/// The next text message (pings skipped), or `None` when the socket closed.
async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("timed out");
        match m {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return None,
            Some(Ok(Message::Text(t))) => return Some(t.as_str().to_owned()),
            Some(Ok(_)) => continue,
        }
    }
}

async fn next_element(ws: &mut Ws) -> Element {
    let text = next_text(ws).await.expect("socket open");
    parse_fragment(&text, "", &Limits::default())
        .unwrap_or_else(|| panic!("not one XML document: {text}"))
}

async fn open(ws: &mut Ws) -> Element {
    send(
        ws,
        &format!("<open xmlns='{FRAMING_NS}' to='localhost' version='1.0'/>"),
    )
    .await;
    let open = next_element(ws).await;
    assert!(open.is("open", FRAMING_NS), "{open}");
    let features = next_element(ws).await;
    assert!(features.is("features", ns::STREAM), "{features}");
    features
}

/// Opens, authenticates with PLAIN, binds `resource` and sends initial presence.
async fn log_in(ws: &mut Ws, user: &str, resource: &str) {
    let features = open(ws).await;
    assert!(
        features.get_child("starttls", ns::TLS).is_none(),
        "{features}"
    );
    let creds = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{PASSWORD}"));
    send(
        ws,
        &format!(
            "<auth xmlns='{}' mechanism='PLAIN'>{creds}</auth>",
            ns::SASL
        ),
    )
    .await;
    let success = next_element(ws).await;
    assert!(success.is("success", ns::SASL), "{success}");
    let features = open(ws).await;
    assert!(features.get_child("bind", ns::BIND).is_some(), "{features}");
    send(
        ws,
        &format!(
            "<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='{}'><resource>{resource}</resource></bind></iq>",
            ns::BIND
        ),
    )
    .await;
    let bound = next_element(ws).await;
    assert_eq!(bound.get_attr("type"), Some("result"), "{bound}");
    send(ws, "<presence xmlns='jabber:client'/>").await;
}

async fn next_message(ws: &mut Ws) -> Element {
    loop {
        let e = next_element(ws).await;
        if e.name == "message" {
            return e;
        }
    }
}

#[tokio::test]
async fn a_websocket_client_chats_with_a_tcp_client() {
    let ts = server_with(|_| {}).await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let mut alice = ts.login_available("alice").await;
    let mut bob = ws_connect(&ts).await;
    log_in(&mut bob, "bob", "web").await;
    alice
        .send(
            &Element::new("message", ns::CLIENT)
                .attr("to", "bob@localhost/web")
                .attr("type", "chat")
                .child(Element::new("body", ns::CLIENT).text("hi from tcp")),
        )
        .await
        .expect("send");
    let m = next_message(&mut bob).await;
    assert!(m.is("message", ns::CLIENT), "{m}");
    assert_eq!(m.get_attr("from"), Some(alice.jid.as_str()));
    send(
        &mut bob,
        &format!(
            "<message xmlns='jabber:client' to='{}' type='chat'><body>hi from the web</body></message>",
            alice.jid
        ),
    )
    .await;
    let m = recv_message(&mut alice).await;
    assert_eq!(m.get_attr("from"), Some("bob@localhost/web"));
    // Closing: <close/> answered with <close/>, then the socket closes.
    send(&mut bob, &format!("<close xmlns='{FRAMING_NS}'/>")).await;
    loop {
        match next_text(&mut bob).await {
            Some(t) if t.starts_with("<close") => break,
            Some(_) => continue,
            None => panic!("socket closed before <close/>"),
        }
    }
    assert_eq!(
        next_text(&mut bob).await,
        None,
        "socket closes after <close/>"
    );
}

#[tokio::test]
async fn a_handshake_without_the_xmpp_subprotocol_is_refused() {
    let ts = server_with(|_| {}).await;
    match connect_async(ws_url(&ts)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 400)
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("accepted without the xmpp subprotocol"),
    }
}

#[tokio::test]
async fn bad_messages_end_only_their_own_connection() {
    let ts = server_with(|c| {
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
    let mut bob = ws_connect(&ts).await;
    log_in(&mut bob, "bob", "web").await;
    // Larger than a stanza may be: the connection ends.
    let mut big = ws_connect(&ts).await;
    open(&mut big).await;
    send(
        &mut big,
        &format!(
            "<message xmlns='jabber:client'><body>{}</body></message>",
            "x".repeat(20_000)
        ),
    )
    .await;
    while next_text(&mut big).await.is_some() {}
    // Not one XML document: a stream error, then the connection ends.
    let mut two = ws_connect(&ts).await;
    open(&mut two).await;
    send(
        &mut two,
        "<presence xmlns='jabber:client'/><presence xmlns='jabber:client'/>",
    )
    .await;
    let err = next_text(&mut two).await.expect("stream error");
    assert!(err.contains("not-well-formed"), "{err}");
    while next_text(&mut two).await.is_some() {}
    // Binary frames are not XMPP (RFC 7395 §3.2): the connection ends.
    let mut bin = ws_connect(&ts).await;
    open(&mut bin).await;
    bin.send(Message::binary(vec![0u8, 1, 2]))
        .await
        .expect("send");
    while next_text(&mut bin).await.is_some() {}
    // The others' sessions go on.
    alice
        .send(
            &Element::new("message", ns::CLIENT)
                .attr("to", "bob@localhost/web")
                .attr("type", "chat")
                .child(Element::new("body", ns::CLIENT).text("still here?")),
        )
        .await
        .expect("send");
    let m = next_message(&mut bob).await;
    assert_eq!(m.get_attr("from"), Some(alice.jid.as_str()));
}

#[tokio::test]
async fn websocket_connections_count_against_the_connection_limits() {
    let ts = server_with(|c| c.limits.max_connections_per_ip = 1).await;
    // One TCP connection from 127.0.0.1 takes the address's only slot.
    let _held = ts.raw().await;
    let mut req = ws_url(&ts).into_client_request().expect("request");
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("xmpp"));
    match connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 503)
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a WebSocket beyond the per-address limit was accepted"),
    }
}

#[tokio::test]
async fn untrusted_plain_websockets_cannot_authenticate_when_tls_is_required() {
    let ts = server_with(|c| {
        c.set_section(
            "websocket",
            &confab_web::websocket::WebSocketConfig {
                trust_loopback: false,
                ..Default::default()
            },
        )
        .expect("websocket section");
    })
    .await;
    ts.add_user("bob").await;
    let mut ws = ws_connect(&ts).await;
    // No mechanism may be used without TLS: the stream is refused at once with a reason
    // (empty features would leave the client waiting).
    send(
        &mut ws,
        &format!("<open xmlns='{FRAMING_NS}' to='localhost' version='1.0'/>"),
    )
    .await;
    let opened = next_element(&mut ws).await;
    assert!(opened.is("open", FRAMING_NS), "{opened}");
    let err = next_element(&mut ws).await;
    let err = confab_proto::StreamError::from_element(&err).expect("a stream error");
    assert_eq!(
        err.condition,
        confab_proto::StreamErrorCondition::PolicyViolation
    );
    assert!(err.text.is_some_and(|t| t.contains("TLS")));
}

/// A plain HTTP/1.1 GET, answered as (head, body).
async fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("request");
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut out))
        .await
        .expect("timed out")
        .expect("read");
    let (head, body) = out.split_once("\r\n\r\n").expect("a response");
    (head.to_ascii_lowercase(), body.to_string())
}

#[tokio::test]
async fn host_meta_links_the_websocket_endpoint() {
    let ts = server_with(|_| {}).await;
    let addr = ts.server().http_addr().expect("http listener");
    let want = format!("ws://{addr}/xmpp-websocket");
    let (head, body) = http_get(addr, "/.well-known/host-meta").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("access-control-allow-origin: *"), "{head}");
    let xrd = parse_fragment(
        &body[body.find("<XRD").expect("XRD")..],
        "",
        &Limits::default(),
    )
    .expect("XRD parses");
    let link = xrd.elements().next().expect("a link");
    assert_eq!(
        link.get_attr("rel"),
        Some("urn:xmpp:alt-connections:websocket")
    );
    assert_eq!(link.get_attr("href"), Some(want.as_str()));
    let (head, body) = http_get(addr, "/.well-known/host-meta.json").await;
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(body.contains(&format!("\"href\":\"{want}\"")), "{body}");
}

#[tokio::test]
async fn stream_management_frames_are_well_formed_over_websocket() {
    let ts = server_with(|c| {
        c.update_section(
            "stream_management",
            |s: &mut confab_modules::stream_management::StreamManagementConfig| s.request_every = 2,
        )
        .expect("stream_management section");
    })
    .await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let mut alice = ts.login_available("alice").await;
    let mut bob = ws_connect(&ts).await;
    log_in(&mut bob, "bob", "web").await;
    let sm = confab_modules::stream_management::NS;
    send(&mut bob, &format!("<enable xmlns='{sm}'/>")).await;
    loop {
        if next_element(&mut bob).await.is("enabled", sm) {
            break;
        }
    }
    for i in 0..2 {
        alice
            .send(
                &Element::new("message", ns::CLIENT)
                    .attr("to", "bob@localhost/web")
                    .attr("type", "chat")
                    .child(Element::new("body", ns::CLIENT).text(format!("m{i}"))),
            )
            .await
            .expect("send");
    }
    // The server's ack request declares its own namespace, once (a second `xmlns` would
    // not be well-formed XML, RFC 7395 §3.3.3).
    let r = loop {
        let t = next_text(&mut bob).await.expect("socket open");
        if t.starts_with("<r ") {
            break t;
        }
    };
    assert_eq!(r.matches("xmlns=").count(), 1, "{r}");
    assert!(r.contains(sm), "{r}");
}
