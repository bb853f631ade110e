//! The `[http]` connection limits on the HTTP listener, with short timeouts: a stalled or
//! trickled request head is cut at `header_timeout`, an idle kept-alive connection at
//! `idle_timeout` (not earlier), while a BOSH long-poll and a WebSocket outlast both; the
//! head's size and field count are bounded; `max_connections` holds further connections
//! back until one closes, or closes the oldest idle one for them; one address holds at
//! most `max_connections_per_ip`.

use confab_tests::*;
use confab_web::bosh::{BoshConfig, NS, XBOSH_NS};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

/// Longest any test here waits for the server to close a connection.
const BOUND: Duration = Duration::from_secs(15);

async fn server_with(f: impl FnOnce(&mut confab_server::config::Config)) -> TestServer {
    TestServer::start_with_modules(confab_web::all(), |c| {
        c.http.header_timeout = 1;
        c.http.idle_timeout = 3;
        c.set_section(
            "bosh",
            &BoshConfig {
                max_wait: 4,
                ..Default::default()
            },
        )
        .expect("bosh section");
        f(c)
    })
    .await
}

fn http_addr(ts: &TestServer) -> SocketAddr {
    ts.server().http_addr().expect("http listener")
}

/// Reads until the server closes the connection (EOF or reset), at most `BOUND`; returns
/// what was read.
async fn until_closed(tcp: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Err(_) => panic!("the server did not close the connection within {BOUND:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one response with a `Content-Length` (status, whole text), at most `BOUND`.
async fn response(tcp: &mut TcpStream) -> (u16, String) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let text = String::from_utf8_lossy(&out).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if body.len() >= len {
                let status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .expect("status");
                return (status, text);
            }
        }
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Err(_) => panic!("no response within {BOUND:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => panic!(
                "connection closed before a whole response: {}",
                String::from_utf8_lossy(&out)
            ),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

fn get(addr: SocketAddr) -> String {
    format!("GET /.well-known/host-meta HTTP/1.1\r\nHost: {addr}\r\n\r\n")
}

#[tokio::test]
async fn a_stalled_request_line_is_closed_at_the_header_timeout() {
    let ts = server_with(|_| {}).await;
    let addr = http_addr(&ts);
    // Half a request line, then nothing.
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(b"GET /.well-known/host-m")
        .await
        .expect("write");
    let got = until_closed(&mut tcp).await;
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    // Nothing at all: the first head's deadline runs from the connection's start.
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    until_closed(&mut silent).await;
    // The listener still serves others.
    let mut ok = TcpStream::connect(addr).await.expect("connect");
    ok.write_all(get(addr).as_bytes()).await.expect("write");
    assert_eq!(response(&mut ok).await.0, 200);
}

#[tokio::test]
async fn headers_sent_a_byte_at_a_time_are_cut_at_the_header_timeout() {
    let ts = server_with(|_| {}).await;
    let addr = http_addr(&ts);
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = tcp.into_split();
    // A byte every 200 ms, each short of the deadline: the head never completes in time.
    let request = format!(
        "GET /.well-known/host-meta HTTP/1.1\r\nHost: {addr}\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(60)
    );
    let writer = tokio::spawn(async move {
        for b in request.bytes() {
            if wr.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut out = Vec::new();
    let t = Instant::now();
    let read = tokio::time::timeout(BOUND, rd.read_to_end(&mut out)).await;
    writer.abort();
    assert!(
        read.is_ok(),
        "the server did not close a trickling connection within {BOUND:?}"
    );
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    // Closed at the header deadline, long before the ~20 s the whole head would take.
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

#[tokio::test]
async fn a_kept_alive_connection_outlasts_the_header_timeout_and_ends_when_idle() {
    let ts = server_with(|_| {}).await;
    let addr = http_addr(&ts);
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(get(addr).as_bytes()).await.expect("write");
    assert_eq!(response(&mut tcp).await.0, 200);
    // Idle past header_timeout (1 s) but within idle_timeout (3 s): still served.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tcp.write_all(get(addr).as_bytes()).await.expect("write");
    assert_eq!(response(&mut tcp).await.0, 200);
    // Then idle: closed.
    let got = until_closed(&mut tcp).await;
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
}

#[tokio::test]
async fn a_bosh_long_poll_outlasts_both_timeouts() {
    let ts = server_with(|c| {
        c.http.idle_timeout = 1;
    })
    .await;
    let addr = http_addr(&ts);
    let post = |body: String| {
        format!(
            "POST /http-bind HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/xml; charset=utf-8\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(
        post(format!(
            "<body xmlns='{NS}' rid='100' to='localhost' xml:lang='en' wait='4' hold='1' \
             ver='1.6' xmlns:xmpp='{XBOSH_NS}' xmpp:version='1.0'/>"
        ))
        .as_bytes(),
    )
    .await
    .expect("create");
    let (status, text) = response(&mut tcp).await;
    assert_eq!(status, 200, "{text}");
    let sid = text
        .split("sid='")
        .nth(1)
        .or_else(|| text.split("sid=\"").nth(1))
        .and_then(|s| s.split(['\'', '"']).next())
        .unwrap_or_else(|| panic!("no sid: {text}"))
        .to_string();
    // An empty request on the same connection is held for `wait` (4 s): longer than both
    // the header (1 s) and the idle (1 s) timeout.
    let t = Instant::now();
    tcp.write_all(post(format!("<body xmlns='{NS}' rid='101' sid='{sid}'/>")).as_bytes())
        .await
        .expect("poll");
    let (status, text) = response(&mut tcp).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        t.elapsed() >= Duration::from_secs(2),
        "answered after {:?}, before the wait: {text}",
        t.elapsed()
    );
}

#[tokio::test]
async fn a_websocket_is_not_cut_after_its_upgrade() {
    let ts = server_with(|c| {
        c.http.idle_timeout = 1;
    })
    .await;
    let mut req = format!("ws://{}/xmpp-websocket", http_addr(&ts))
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("xmpp"));
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("WebSocket handshake");
    // Silent for longer than both HTTP timeouts.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    ws.send(Message::text(
        "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>",
    ))
    .await
    .expect("send");
    let answer = tokio::time::timeout(BOUND, async {
        while let Some(m) = ws.next().await {
            if let Ok(Message::Text(t)) = m {
                return Some(t.to_string());
            }
        }
        None
    })
    .await
    .expect("an answer in time");
    let answer = answer.expect("the WebSocket was closed");
    assert!(answer.contains("<open"), "{answer}");
}

#[tokio::test]
async fn request_heads_are_bounded_in_size_and_fields() {
    let ts = server_with(|c| {
        c.http.max_headers = 8;
        c.http.max_header_bytes = 8192;
    })
    .await;
    let addr = http_addr(&ts);
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let many = (0..20)
        .map(|i| format!("X-H{i}: v\r\n"))
        .collect::<String>();
    tcp.write_all(
        format!("GET /.well-known/host-meta HTTP/1.1\r\nHost: {addr}\r\n{many}\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let got = String::from_utf8_lossy(&until_closed(&mut tcp).await).to_string();
    assert!(got.starts_with("HTTP/1.1 431"), "{got}");
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(
        format!(
            "GET /.well-known/host-meta HTTP/1.1\r\nHost: {addr}\r\nX-Big: {}\r\n\r\n",
            "b".repeat(10_000)
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let got = String::from_utf8_lossy(&until_closed(&mut tcp).await).to_string();
    assert!(got.starts_with("HTTP/1.1 431"), "{got}");
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let ts = server_with(|c| {
        c.http.max_connections = 1;
    })
    .await;
    let addr = http_addr(&ts);
    // The one connection allowed says nothing and is cut at the header timeout (1 s),
    // which starts when the server takes it, after this.
    let connected = Instant::now();
    let mut first = TcpStream::connect(addr).await.expect("connect");
    // The second is accepted by the kernel but not served until the first is gone.
    let mut second = TcpStream::connect(addr).await.expect("connect");
    second.write_all(get(addr).as_bytes()).await.expect("write");
    let answered = tokio::spawn(async move {
        let r = response(&mut second).await;
        (r, Instant::now())
    });
    until_closed(&mut first).await;
    let ((status, _), answered_at) = answered.await.expect("second");
    assert_eq!(status, 200);
    assert!(
        answered_at >= connected + Duration::from_millis(900),
        "the second connection was served while the first held the only place"
    );
}

#[tokio::test]
async fn a_trickled_bosh_body_is_refused_at_the_header_timeout() {
    let ts = server_with(|_| {}).await;
    let addr = http_addr(&ts);
    let body = format!(
        "<body xmlns='{NS}' rid='100' to='localhost' xml:lang='en' wait='4' hold='1' \
         ver='1.6' xmlns:xmpp='{XBOSH_NS}' xmpp:version='1.0'/>"
    );
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(
        format!(
            "POST /http-bind HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/xml; charset=utf-8\r\n\
             Content-Length: {}\r\n\r\n{}",
            body.len(),
            &body[..10]
        )
        .as_bytes(),
    )
    .await
    .expect("head and the body's start");
    // The rest never comes: the body's read ends at `header_timeout` (1 s), although a
    // request under way has no connection deadline. Without its start tag neither the
    // session nor `ver` is known: 403 with the terminal condition (XEP-0124 §17.6).
    let t = Instant::now();
    let (status, text) = response(&mut tcp).await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("policy-violation"), "{text}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

/// A connection from `from` (a loopback address) to `addr`.
async fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind(format!("{from}:0").parse().expect("address"))
        .expect("bind");
    sock.connect(addr).await.expect("connect")
}

#[tokio::test]
async fn one_address_holds_at_most_its_share() {
    let ts = server_with(|c| {
        c.http.max_connections_per_ip = 2;
    })
    .await;
    let addr = http_addr(&ts);
    // Two kept-alive connections from 127.0.0.1 (idle, not cut before 3 s).
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut tcp = connect_from("127.0.0.1", addr).await;
        tcp.write_all(get(addr).as_bytes()).await.expect("write");
        assert_eq!(response(&mut tcp).await.0, 200);
        held.push(tcp);
    }
    // A third from the same address is closed at once, unanswered.
    let started = Instant::now();
    let mut third = connect_from("127.0.0.1", addr).await;
    let _ = third.write_all(get(addr).as_bytes()).await;
    let got = until_closed(&mut third).await;
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "closed at the header timeout, not at once"
    );
    // Another address is served meanwhile.
    let mut other = connect_from("127.0.0.2", addr).await;
    other.write_all(get(addr).as_bytes()).await.expect("write");
    assert_eq!(response(&mut other).await.0, 200);
    // Once one of the two is gone, the address gets a place again.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = connect_from("127.0.0.1", addr).await;
    again.write_all(get(addr).as_bytes()).await.expect("write");
    assert_eq!(response(&mut again).await.0, 200);
}

#[tokio::test]
async fn a_trusted_proxy_is_not_held_to_the_per_address_cap() {
    let ts = server_with(|c| {
        c.http.max_connections_per_ip = 2;
        c.http.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    let addr = http_addr(&ts);
    // The proxy's address carries many clients: four kept-alive connections are served.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut tcp = connect_from("127.0.0.1", addr).await;
        tcp.write_all(get(addr).as_bytes()).await.expect("write");
        assert_eq!(response(&mut tcp).await.0, 200);
        held.push(tcp);
    }
    // Any other address still is.
    let mut other = Vec::new();
    for _ in 0..2 {
        let mut tcp = connect_from("127.0.0.2", addr).await;
        tcp.write_all(get(addr).as_bytes()).await.expect("write");
        assert_eq!(response(&mut tcp).await.0, 200);
        other.push(tcp);
    }
    let mut third = connect_from("127.0.0.2", addr).await;
    let _ = third.write_all(get(addr).as_bytes()).await;
    assert!(until_closed(&mut third).await.is_empty());
}

#[tokio::test]
async fn at_the_cap_the_oldest_idle_connection_makes_room() {
    let ts = server_with(|c| {
        c.http.max_connections = 2;
        c.http.idle_timeout = 60;
    })
    .await;
    let addr = http_addr(&ts);
    // Two kept-alive connections, idle after one request each; `older` first.
    let mut older = TcpStream::connect(addr).await.expect("connect");
    older.write_all(get(addr).as_bytes()).await.expect("write");
    assert_eq!(response(&mut older).await.0, 200);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut newer = TcpStream::connect(addr).await.expect("connect");
    newer.write_all(get(addr).as_bytes()).await.expect("write");
    assert_eq!(response(&mut newer).await.0, 200);
    // A third is served at once (well before any timeout), in place of `older`.
    let started = Instant::now();
    let mut third = TcpStream::connect(addr).await.expect("connect");
    third.write_all(get(addr).as_bytes()).await.expect("write");
    assert_eq!(response(&mut third).await.0, 200);
    assert!(started.elapsed() < Duration::from_millis(900));
    until_closed(&mut older).await;
    // `newer` is still open and served.
    newer.write_all(get(addr).as_bytes()).await.expect("write");
    assert_eq!(response(&mut newer).await.0, 200);
}

#[tokio::test]
async fn a_head_up_to_max_header_bytes_is_read() {
    let ts = server_with(|c| {
        c.http.max_header_bytes = 1024 * 1024;
        c.http.header_timeout = 10;
    })
    .await;
    let addr = http_addr(&ts);
    // 600 KiB of head: beyond hyper's default read buffer (~400 KiB), within the limit.
    let big = "a".repeat(600 * 1024);
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let req =
        format!("GET /.well-known/host-meta HTTP/1.1\r\nHost: {addr}\r\nX-Big: {big}\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.expect("write");
    assert_eq!(response(&mut tcp).await.0, 200);
    // Beyond the limit: 431.
    let bigger = "a".repeat(1024 * 1024 + 1);
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let req =
        format!("GET /.well-known/host-meta HTTP/1.1\r\nHost: {addr}\r\nX-Big: {bigger}\r\n\r\n");
    let _ = tcp.write_all(req.as_bytes()).await;
    let got = until_closed(&mut tcp).await;
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

/// Creates a BOSH session (with `ver`) on `tcp`; its sid.
async fn bosh_session(tcp: &mut TcpStream, addr: SocketAddr) -> String {
    let body = format!(
        "<body xmlns='{NS}' rid='100' to='localhost' xml:lang='en' wait='4' hold='1' \
         ver='1.6' xmlns:xmpp='{XBOSH_NS}' xmpp:version='1.0'/>"
    );
    tcp.write_all(bosh_post(addr, &body, body.len()).as_bytes())
        .await
        .expect("create");
    let (status, text) = response(tcp).await;
    assert_eq!(status, 200, "{text}");
    text.split("sid='")
        .nth(1)
        .or_else(|| text.split("sid=\"").nth(1))
        .and_then(|s| s.split(['\'', '"']).next())
        .unwrap_or_else(|| panic!("no sid: {text}"))
        .to_string()
}

fn bosh_post(addr: SocketAddr, body: &str, len: usize) -> String {
    format!(
        "POST /http-bind HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/xml; charset=utf-8\r\n\
         Content-Length: {len}\r\n\r\n{body}"
    )
}

#[tokio::test]
async fn a_refused_bosh_body_ends_its_session_as_xep_0124_says() {
    let ts = server_with(|c| {
        c.set_section(
            "bosh",
            &BoshConfig {
                max_wait: 4,
                max_body_size: Some(2000),
                ..Default::default()
            },
        )
        .expect("bosh section");
    })
    .await;
    let addr = http_addr(&ts);
    for late in [false, true] {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        let sid = bosh_session(&mut tcp, addr).await;
        let start = format!("<body xmlns='{NS}' rid='101' sid='{sid}'>");
        let req = if late {
            // The start tag, then nothing more of the promised body.
            bosh_post(addr, &start, start.len() + 100)
        } else {
            let body = format!("{start}{}</body>", " ".repeat(3000));
            bosh_post(addr, &body, body.len())
        };
        tcp.write_all(req.as_bytes()).await.expect("request");
        // The client sent `ver`: HTTP 200 with the terminal condition.
        let (status, text) = response(&mut tcp).await;
        assert_eq!(status, 200, "late {late}: {text}");
        assert!(
            text.contains("type='terminate'") || text.contains("type=\"terminate\""),
            "late {late}: {text}"
        );
        assert!(text.contains("policy-violation"), "late {late}: {text}");
        // The session has ended: its next request is answered with the end, not held.
        let mut next = TcpStream::connect(addr).await.expect("connect");
        let poll = format!("<body xmlns='{NS}' rid='102' sid='{sid}'/>");
        next.write_all(bosh_post(addr, &poll, poll.len()).as_bytes())
            .await
            .expect("poll");
        let t = Instant::now();
        let (_, text) = response(&mut next).await;
        assert!(text.contains("terminate"), "late {late}: {text}");
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "late {late}: held, not ended"
        );
    }
}
