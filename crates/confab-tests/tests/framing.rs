//! One negotiation and one session over another framing: RFC 7395 messages over an
//! in-memory channel, talking to a client on the classic TCP stream.

use async_trait::async_trait;
use base64::Engine;
use confab_proto::parser::parse_fragment;
use confab_proto::xml::Element;
use confab_proto::{ns, Limits};
use confab_stream::framing::{FramedXml, MessageTransport, FRAMING_NS};
use confab_tests::*;
use std::time::Duration;
use tokio::sync::mpsc;

/// The server's end of an in-memory message channel. What the server sends arrives as the
/// very bytes it handed over, so a test can see two recipients share one buffer.
struct Channel {
    rx: mpsc::Receiver<String>,
    tx: mpsc::Sender<bytes::Bytes>,
}

#[async_trait]
impl MessageTransport for Channel {
    async fn recv(&mut self) -> std::io::Result<Option<String>> {
        Ok(self.rx.recv().await)
    }

    async fn send(&mut self, text: bytes::Bytes) -> std::io::Result<()> {
        self.tx
            .send(text)
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }

    async fn close(&mut self) -> std::io::Result<()> {
        self.rx.close();
        Ok(())
    }

    fn is_secure(&self) -> bool {
        true
    }
}

/// The client's end: raw messages in and out.
struct Peer {
    tx: mpsc::Sender<String>,
    rx: mpsc::Receiver<bytes::Bytes>,
}

impl Peer {
    fn connect(ts: &TestServer) -> Peer {
        let (to_server, server_rx) = mpsc::channel(64);
        let (server_tx, from_server) = mpsc::channel(64);
        let framing = FramedXml::new(
            Channel {
                rx: server_rx,
                tx: server_tx,
            },
            Limits::default(),
        );
        let server = ts.server();
        tokio::spawn(confab_server::c2s::serve_framing(
            server.ctx().clone(),
            Box::new(framing),
            "127.0.0.1:1".parse().expect("addr"),
            server.shutdown_signal(),
        ));
        Peer {
            tx: to_server,
            rx: from_server,
        }
    }

    async fn send(&self, text: &str) {
        self.tx.send(text.to_string()).await.expect("send");
    }

    async fn recv_bytes(&mut self) -> bytes::Bytes {
        tokio::time::timeout(Duration::from_secs(10), self.rx.recv())
            .await
            .expect("timed out")
            .expect("channel open")
    }

    async fn recv_text(&mut self) -> String {
        String::from_utf8(self.recv_bytes().await.to_vec()).expect("UTF-8")
    }

    /// Negotiates a session for `user` with `resource` and sends initial presence.
    async fn log_in(&mut self, user: &str, resource: &str) {
        self.open().await;
        let creds =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{PASSWORD}"));
        self.send(&format!(
            "<auth xmlns='{}' mechanism='PLAIN'>{creds}</auth>",
            ns::SASL
        ))
        .await;
        let success = self.recv().await;
        assert!(success.is("success", ns::SASL), "{success}");
        self.open().await;
        self.send(&format!(
            "<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='{}'><resource>{resource}</resource></bind></iq>",
            ns::BIND
        ))
        .await;
        let bound = self.recv().await;
        assert_eq!(bound.get_attr("type"), Some("result"), "{bound}");
        self.send("<presence xmlns='jabber:client'/>").await;
    }

    /// The next message stanza, as the bytes the server handed to the transport.
    async fn next_message(&mut self) -> bytes::Bytes {
        loop {
            let b = self.recv_bytes().await;
            if b.starts_with(b"<message") {
                return b;
            }
        }
    }

    /// The next message as an element; each must be a document of its own.
    async fn recv(&mut self) -> Element {
        let text = self.recv_text().await;
        parse_fragment(&text, "", &Limits::default())
            .unwrap_or_else(|| panic!("not one element: {text}"))
    }

    async fn open(&mut self) -> Element {
        self.send(&format!(
            "<open xmlns='{FRAMING_NS}' to='localhost' version='1.0'/>"
        ))
        .await;
        let open = self.recv().await;
        assert!(open.is("open", FRAMING_NS), "{open}");
        assert_eq!(open.get_attr("from"), Some("localhost"));
        let features = self.recv().await;
        assert!(features.is("features", ns::STREAM), "{features}");
        features
    }
}

#[tokio::test]
async fn a_framed_session_negotiates_and_chats_with_a_tcp_client() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let mut alice = ts.login_available("alice").await;
    let mut bob = Peer::connect(&ts);
    let features = bob.open().await;
    // Secure underneath: no STARTTLS; no channel binding, so no -PLUS.
    assert!(
        features.get_child("starttls", ns::TLS).is_none(),
        "{features}"
    );
    let mechs: Vec<String> = features
        .get_child("mechanisms", ns::SASL)
        .expect("mechanisms")
        .elements()
        .map(|m| m.text_content())
        .collect();
    assert!(mechs.iter().any(|m| m == "PLAIN"), "{mechs:?}");
    assert!(!mechs.iter().any(|m| m.ends_with("-PLUS")), "{mechs:?}");
    let creds = base64::engine::general_purpose::STANDARD.encode(format!("\0bob\0{PASSWORD}"));
    bob.send(&format!(
        "<auth xmlns='{}' mechanism='PLAIN'>{creds}</auth>",
        ns::SASL
    ))
    .await;
    let success = bob.recv().await;
    assert!(success.is("success", ns::SASL), "{success}");
    let features = bob.open().await;
    assert!(features.get_child("bind", ns::BIND).is_some(), "{features}");
    bob.send(&format!(
        "<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='{}'><resource>web</resource></bind></iq>",
        ns::BIND
    ))
    .await;
    let bound = bob.recv().await;
    assert_eq!(bound.get_attr("type"), Some("result"), "{bound}");
    bob.send("<presence xmlns='jabber:client'/>").await;
    // TCP to framed: the stanza arrives as its own message, declaring jabber:client.
    alice
        .send(
            &Element::new("message", ns::CLIENT)
                .attr("to", "bob@localhost/web")
                .attr("type", "chat")
                .child(Element::new("body", ns::CLIENT).text("hi web")),
        )
        .await
        .expect("send");
    let text = loop {
        let t = bob.recv_text().await;
        if t.starts_with("<message") {
            break t;
        }
    };
    assert!(text.starts_with("<message xmlns='jabber:client'"), "{text}");
    let m = parse_fragment(&text, "", &Limits::default()).expect("element");
    assert!(m.is("message", ns::CLIENT));
    assert_eq!(m.get_attr("from"), Some(alice.jid.as_str()));
    // Framed to TCP.
    bob.send(&format!(
        "<message xmlns='jabber:client' to='{}' type='chat'><body>hi tcp</body></message>",
        alice.jid
    ))
    .await;
    let m = recv_message(&mut alice).await;
    assert_eq!(m.get_attr("from"), Some("bob@localhost/web"));
    // Closing: the server answers <close/> and the session goes.
    bob.send(&format!("<close xmlns='{FRAMING_NS}'/>")).await;
    let close = loop {
        let e = bob.recv().await;
        if e.name == "close" {
            break e;
        }
    };
    assert!(close.is("close", FRAMING_NS));
    let ctx = ts.server().ctx();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let bob_jid = confab_proto::BareJid::new("bob@localhost").expect("jid");
    while !ctx.router.sessions_of(&bob_jid).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the framed session stayed bound"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn bad_framed_input_gets_a_framed_stream_error() {
    let ts = TestServer::start().await;
    let mut peer = Peer::connect(&ts);
    peer.open().await;
    // Two elements in one message: not one document.
    peer.send("<presence xmlns='jabber:client'/><presence xmlns='jabber:client'/>")
        .await;
    let err = peer.recv_text().await;
    assert!(
        err.starts_with("<stream:error xmlns:stream='http://etherx.jabber.org/streams'>"),
        "{err}"
    );
    assert!(err.contains("not-well-formed"), "{err}");
    let close = peer.recv().await;
    assert!(close.is("close", FRAMING_NS), "{close}");
}

#[tokio::test]
async fn framed_recipients_share_one_serialization() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let mut alice = ts.login_available("alice").await;
    let mut web1 = Peer::connect(&ts);
    web1.log_in("bob", "web1").await;
    let mut web2 = Peer::connect(&ts);
    web2.log_in("bob", "web2").await;
    // A headline to the bare JID goes to every available resource (RFC 6121 §8.5.2.1.1).
    alice
        .send(
            &Element::new("message", ns::CLIENT)
                .attr("to", "bob@localhost")
                .attr("type", "headline")
                .child(Element::new("body", ns::CLIENT).text("news")),
        )
        .await
        .expect("send");
    let (one, two) = (web1.next_message().await, web2.next_message().await);
    assert!(
        one.starts_with(b"<message xmlns='jabber:client'"),
        "{one:?}"
    );
    assert_eq!(one, two);
    // Framed once for both: the second connection wrote the first one's buffer.
    assert_eq!(
        one.as_ptr(),
        two.as_ptr(),
        "each recipient got its own copy"
    );
}
