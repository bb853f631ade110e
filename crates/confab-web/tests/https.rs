//! The HTTPS listener (`[http] tls_port`): WebSocket as `wss://` and BOSH as `https://`
//! with the server's certificate trusted explicitly (checked against the name `localhost`,
//! not accepted blindly), sessions counted as encrypted because of the TLS (loopback trust
//! is off here), host-meta per scheme, and handshakes that fail or stall.

use base64::Engine;
use confab_proto::parser::parse_fragment;
use confab_proto::xml::Element;
use confab_proto::{ns, Limits};
use confab_stream::framing::FRAMING_NS;
use confab_tests::*;
use confab_web::bosh::{BoshConfig, NS, XBOSH_NS};
use confab_web::websocket::WebSocketConfig;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A server whose web transports trust only TLS (not loopback) as encryption.
async fn server_with(f: impl FnOnce(&mut confab_server::config::Config)) -> TestServer {
    TestServer::start_with_modules(confab_web::all(), |c| {
        c.set_section(
            "websocket",
            &WebSocketConfig {
                trust_loopback: false,
                ..Default::default()
            },
        )
        .expect("websocket section");
        c.set_section(
            "bosh",
            &BoshConfig {
                trust_loopback: false,
                max_wait: 20,
                ..Default::default()
            },
        )
        .expect("bosh section");
        f(c)
    })
    .await
}

fn https_addr(ts: &TestServer) -> SocketAddr {
    ts.server().https_addr().expect("https listener")
}

/// A TLS connection to the HTTPS listener, verifying its certificate for `localhost` with
/// that certificate as the only root.
async fn tls_connect(ts: &TestServer) -> TlsStream<TcpStream> {
    let leaf = ts.server().ctx().tls.leaf_der.as_ref().clone();
    let cfg = confab_stream::tls::client_config(
        &confab_stream::tls::CertVerification::Roots(vec![leaf]),
        false,
    )
    .expect("client config");
    let tcp = TcpStream::connect(https_addr(ts)).await.expect("connect");
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .expect("TLS handshake with the server's certificate")
}

type Wss = WebSocketStream<TlsStream<TcpStream>>;

async fn wss_connect(ts: &TestServer) -> Wss {
    let port = https_addr(ts).port();
    let mut req = format!("wss://localhost:{port}/xmpp-websocket")
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("xmpp"));
    let (ws, _) = tokio_tungstenite::client_async(req, tls_connect(ts).await)
        .await
        .expect("WebSocket handshake over TLS");
    ws
}

async fn ws_send(ws: &mut WebSocketStream<impl AsyncRead + AsyncWrite + Unpin>, text: &str) {
    ws.send(Message::text(text)).await.expect("send");
}

async fn ws_element(ws: &mut WebSocketStream<impl AsyncRead + AsyncWrite + Unpin>) -> Element {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("timed out")
            .expect("socket open")
            .expect("message");
        if let Message::Text(t) = m {
            return parse_fragment(t.as_str(), "", &Limits::default())
                .unwrap_or_else(|| panic!("not one XML document: {t}"));
        }
    }
}

/// Opens the stream; returns the features.
async fn ws_open(ws: &mut WebSocketStream<impl AsyncRead + AsyncWrite + Unpin>) -> Element {
    ws_send(
        ws,
        &format!("<open xmlns='{FRAMING_NS}' to='localhost' version='1.0'/>"),
    )
    .await;
    assert!(ws_element(ws).await.is("open", FRAMING_NS));
    ws_element(ws).await
}

fn plain_auth(user: &str) -> String {
    let creds = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{PASSWORD}"));
    format!(
        "<auth xmlns='{}' mechanism='PLAIN'>{creds}</auth>",
        ns::SASL
    )
}

fn offers_plain(features: &Element) -> bool {
    features
        .get_child("mechanisms", ns::SASL)
        .is_some_and(|m| m.elements().any(|e| e.text_content() == "PLAIN"))
}

/// One HTTP/1.1 request on `io`: (status, body).
async fn http_request(
    mut io: impl AsyncRead + AsyncWrite + Unpin,
    method: &str,
    path: &str,
    host: &str,
    body: &str,
) -> (u16, String) {
    io.write_all(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/xml; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .expect("request");
    let mut out = Vec::new();
    // A peer that closes without TLS close_notify still gave us the whole response.
    let _ = tokio::time::timeout(Duration::from_secs(40), io.read_to_end(&mut out))
        .await
        .expect("timed out");
    let out = String::from_utf8(out).expect("utf-8");
    let (head, body) = out.split_once("\r\n\r\n").expect("a response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, body.to_string())
}

/// A BOSH session over HTTPS: its sid and next rid.
struct BoshClient {
    sid: String,
    rid: u64,
}

impl BoshClient {
    async fn post(ts: &TestServer, body: &str) -> Element {
        let port = https_addr(ts).port();
        let (status, text) = http_request(
            tls_connect(ts).await,
            "POST",
            "/http-bind",
            &format!("localhost:{port}"),
            body,
        )
        .await;
        assert_eq!(status, 200, "{text}");
        let b = parse_fragment(&text, "", &Limits::default())
            .unwrap_or_else(|| panic!("not one XML document: {text}"));
        assert!(b.is("body", NS), "{text}");
        assert_ne!(b.get_attr("type"), Some("terminate"), "{b}");
        b
    }

    async fn send(&mut self, ts: &TestServer, attrs: &str, payload: &str) -> Element {
        self.rid += 1;
        let req = format!(
            "<body xmlns='{NS}' rid='{}' sid='{}' {attrs}>{payload}</body>",
            self.rid, self.sid
        );
        BoshClient::post(ts, &req).await
    }

    /// Sends `payload`, then polls until a child matching `pred` arrives.
    async fn until(
        &mut self,
        ts: &TestServer,
        payload: &str,
        pred: impl Fn(&Element) -> bool,
    ) -> Element {
        let mut b = self.send(ts, "", payload).await;
        for _ in 0..10 {
            if let Some(e) = b.elements().find(|e| pred(e)) {
                return e.clone();
            }
            b = self.send(ts, "", "").await;
        }
        panic!("never came; last {b}");
    }

    /// Creates a session over HTTPS and logs in with PLAIN (offered only on an encrypted
    /// session here), binds `resource`, sends presence.
    async fn log_in(ts: &TestServer, user: &str, resource: &str) -> BoshClient {
        let created = BoshClient::post(
            ts,
            &format!(
                "<body xmlns='{NS}' rid='5000' to='localhost' xml:lang='en' wait='3' hold='1' \
                 ver='1.6' xmlns:xmpp='{XBOSH_NS}' xmpp:version='1.0'/>"
            ),
        )
        .await;
        let mut c = BoshClient {
            sid: created.get_attr("sid").expect("sid").to_string(),
            rid: 5000,
        };
        let features = match created.get_child("features", ns::STREAM) {
            Some(f) => f.clone(),
            None => c.until(ts, "", |e| e.is("features", ns::STREAM)).await,
        };
        assert!(offers_plain(&features), "PLAIN over HTTPS: {features}");
        let success = c.until(ts, &plain_auth(user), |e| e.ns == ns::SASL).await;
        assert!(success.is("success", ns::SASL), "{success}");
        let mut b = c
            .send(
                ts,
                &format!("to='localhost' xmpp:restart='true' xmlns:xmpp='{XBOSH_NS}'"),
                "",
            )
            .await;
        if b.get_child("features", ns::STREAM).is_none() {
            b = c.send(ts, "", "").await;
        }
        assert!(b.get_child("features", ns::STREAM).is_some(), "{b}");
        let bound = c
            .until(
                ts,
                &format!(
                    "<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='{}'>\
                     <resource>{resource}</resource></bind></iq>",
                    ns::BIND
                ),
                |e| e.name == "iq",
            )
            .await;
        assert_eq!(bound.get_attr("type"), Some("result"), "{bound}");
        c.send(ts, "", "<presence xmlns='jabber:client'/>").await;
        c
    }
}

fn chat(to: &str, text: &str) -> Element {
    Element::new("message", ns::CLIENT)
        .attr("to", to)
        .attr("type", "chat")
        .child(Element::new("body", ns::CLIENT).text(text))
}

#[tokio::test]
async fn wss_and_https_bosh_clients_chat_with_a_tcp_client() {
    let ts = server_with(|_| {}).await;
    for u in ["alice", "bob", "carol"] {
        ts.add_user(u).await;
    }
    let mut alice = ts.login_available("alice").await;

    // Plain HTTP from loopback is not encrypted here: no PLAIN on offer.
    let plain = ts.server().http_addr().expect("http listener");
    let mut req = format!("ws://{plain}/xmpp-websocket")
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("xmpp"));
    let (mut ws_plain, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("plain WebSocket");
    let features = ws_open(&mut ws_plain).await;
    assert!(!offers_plain(&features), "PLAIN over plain ws: {features}");

    // Over TLS it is.
    let mut bob = wss_connect(&ts).await;
    let features = ws_open(&mut bob).await;
    assert!(offers_plain(&features), "PLAIN over wss: {features}");
    ws_send(&mut bob, &plain_auth("bob")).await;
    assert!(ws_element(&mut bob).await.is("success", ns::SASL));
    ws_open(&mut bob).await;
    ws_send(
        &mut bob,
        &format!(
            "<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='{}'><resource>wss</resource></bind></iq>",
            ns::BIND
        ),
    )
    .await;
    assert_eq!(ws_element(&mut bob).await.get_attr("type"), Some("result"));
    ws_send(&mut bob, "<presence xmlns='jabber:client'/>").await;

    let mut carol = BoshClient::log_in(&ts, "carol", "https").await;

    alice
        .send(&chat("bob@localhost/wss", "hi wss"))
        .await
        .expect("send");
    let m = loop {
        let e = ws_element(&mut bob).await;
        if e.name == "message" {
            break e;
        }
    };
    assert_eq!(m.get_attr("from"), Some(alice.jid.as_str()), "{m}");
    ws_send(
        &mut bob,
        &format!(
            "<message xmlns='jabber:client' to='{}' type='chat'><body>hi from wss</body></message>",
            alice.jid
        ),
    )
    .await;
    let m = recv_message(&mut alice).await;
    assert_eq!(m.get_attr("from"), Some("bob@localhost/wss"));

    alice
        .send(&chat("carol@localhost/https", "hi https"))
        .await
        .expect("send");
    let m = carol.until(&ts, "", |e| e.name == "message").await;
    assert_eq!(m.get_attr("from"), Some(alice.jid.as_str()), "{m}");
    carol
        .send(
            &ts,
            "",
            &format!(
                "<message xmlns='jabber:client' to='{}' type='chat'><body>hi from https</body></message>",
                alice.jid
            ),
        )
        .await;
    let m = recv_message(&mut alice).await;
    assert_eq!(m.get_attr("from"), Some("carol@localhost/https"));
}

#[tokio::test]
async fn host_meta_lists_the_urls_of_the_requests_scheme() {
    let ts = server_with(|_| {}).await;
    let tls_port = https_addr(&ts).port();
    let (status, doc) = http_request(
        tls_connect(&ts).await,
        "GET",
        "/.well-known/host-meta.json",
        &format!("localhost:{tls_port}"),
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        doc.contains(&format!("\"wss://localhost:{tls_port}/xmpp-websocket\""))
            && doc.contains(&format!("\"https://localhost:{tls_port}/http-bind\""))
            && !doc.contains("ws://")
            && !doc.contains("http://"),
        "{doc}"
    );
    let plain = ts.server().http_addr().expect("http listener");
    let tcp = TcpStream::connect(plain).await.expect("connect");
    let (status, doc) = http_request(
        tcp,
        "GET",
        "/.well-known/host-meta",
        &format!("localhost:{}", plain.port()),
        "",
    )
    .await;
    assert_eq!(status, 200);
    let ws = doc
        .find(&format!("'ws://localhost:{}/xmpp-websocket'", plain.port()))
        .expect("ws:// listed");
    let wss = doc
        .find(&format!("'wss://localhost:{tls_port}/xmpp-websocket'"))
        .expect("wss:// listed");
    assert!(ws < wss, "the request's scheme first: {doc}");
    assert!(
        doc.contains(&format!("'https://localhost:{tls_port}/http-bind'")),
        "{doc}"
    );
}

#[tokio::test]
async fn failed_and_stalled_handshakes_end_alone() {
    let ts = server_with(|c| c.http.tls_handshake_timeout = 1).await;
    ts.add_user("bob").await;
    let addr = https_addr(&ts);
    // Stalls: says nothing.
    let mut stalled = TcpStream::connect(addr).await.expect("connect");
    let started = Instant::now();
    // Not TLS at all.
    let mut garbage = TcpStream::connect(addr).await.expect("connect");
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), garbage.read(&mut buf))
        .await
        .expect("a failed handshake ends its connection");
    assert!(
        !matches!(n, Ok(n) if n > 0 && buf[..n].starts_with(b"HTTP/")),
        "no HTTP over the TLS port"
    );
    // Others are served meanwhile.
    let mut ws = wss_connect(&ts).await;
    let features = ws_open(&mut ws).await;
    assert!(offers_plain(&features), "{features}");
    // The stalled one is cut after the handshake timeout.
    let n = tokio::time::timeout(Duration::from_secs(10), stalled.read(&mut buf))
        .await
        .expect("a stalled handshake is cut");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "cut after {took:?}");
}
