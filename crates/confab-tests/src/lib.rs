//! The harness of the whole-server integration tests (`tests/`): an in-process server with
//! the built-in modules on ephemeral loopback ports with a temporary data directory, and
//! clients that talk to it.

use confab_proto::parser::{Limits, StreamEvent};
use confab_proto::xml::Element;
use confab_proto::{ns, StreamError, StreamErrorCondition};
use confab_server::config::Config;
use confab_server::Server;
use confab_stream::client::{connect, stream_header, ClientOptions, ClientSession, TlsMode};
use confab_stream::{Transport, XmlStream};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

pub const DOMAIN: &str = "localhost";
pub const PASSWORD: &str = "correct horse battery staple";

/// Starts a server with the built-in modules and `extra` ones (test-only modules).
pub async fn start_server(
    config: Config,
    extra: Vec<std::sync::Arc<dyn confab_server::module::Module>>,
) -> Result<Server, confab_server::StartError> {
    let mut modules = confab_modules::all();
    modules.extend(extra);
    Server::start(config, modules).await
}

pub struct TestServer {
    pub server: Option<Server>,
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub tls_addr: SocketAddr,
}

pub fn test_config(dir: &std::path::Path) -> Config {
    let mut c = Config::default();
    c.server.data_dir = dir.to_path_buf();
    c.c2s.interfaces = vec!["127.0.0.1".into()];
    c.c2s.port = 0;
    c.c2s.tls_port = 0;
    c.http.interfaces = vec!["127.0.0.1".into()];
    c.http.port = 0;
    c.http.tls_port = 0;
    c.c2s.auth_failure_delay_ms = 200;
    c.c2s.shutdown_grace = 5;
    // Every test client comes from 127.0.0.1.
    c.limits.max_connections_per_ip = 5000;
    c.limits.max_connections_per_subnet = 5000;
    c.http.max_connections_per_ip = 5000;
    c
}

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(f: impl FnOnce(&mut Config)) -> TestServer {
        Self::start_with_modules(Vec::new(), f).await
    }

    /// A server with test-only modules beside the built-in ones.
    pub async fn start_with_modules(
        extra: Vec<std::sync::Arc<dyn confab_server::module::Module>>,
        f: impl FnOnce(&mut Config),
    ) -> TestServer {
        init_logs();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = test_config(dir.path());
        f(&mut c);
        let server = start_server(c, extra).await.expect("server starts");
        let addr = server.c2s_addr().expect("starttls endpoint");
        let tls_addr = server.c2s_tls_addr().expect("direct tls endpoint");
        TestServer {
            server: Some(server),
            dir,
            addr,
            tls_addr,
        }
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("running")
    }

    pub async fn add_user(&self, name: &str) {
        let jid = confab_proto::BareJid::new(&format!("{name}@{DOMAIN}")).expect("jid");
        let ctx = self.server().ctx();
        confab_server::accounts::create(&ctx.stores, &jid, PASSWORD, 4096)
            .await
            .expect("user created");
    }

    pub fn options(&self, user: &str) -> ClientOptions {
        let mut o = ClientOptions::new(self.addr, DOMAIN, user, PASSWORD);
        // The test server's certificate is self-signed.
        o.verify = confab_stream::tls::CertVerification::Insecure;
        o
    }

    /// Creates `user@domain` on a server configured with more domains than `localhost`.
    pub async fn add_account(&self, jid: &str) {
        let jid = confab_proto::BareJid::new(jid).expect("jid");
        let ctx = self.server().ctx();
        confab_server::accounts::create(&ctx.stores, &jid, PASSWORD, 4096)
            .await
            .expect("account created");
    }

    pub async fn login(&self, user: &str) -> ClientSession {
        connect(&self.options(user)).await.expect("login succeeds")
    }

    /// Logs in and sends initial presence, so bare-JID messages reach this session.
    pub async fn login_available(&self, user: &str) -> ClientSession {
        let mut c = self.login(user).await;
        c.send(&Element::new("presence", ns::CLIENT))
            .await
            .expect("presence");
        // A ping round trip makes sure the presence was processed before the test goes on.
        ping(&mut c).await;
        c
    }

    pub async fn raw(&self) -> Raw {
        Raw::connect(self.addr).await
    }

    /// A raw plaintext stream authenticated as `user` with PLAIN (the server must allow it
    /// without TLS) that has not bound a resource yet.
    pub async fn authenticated_raw(&self, user: &str) -> Raw {
        use base64::Engine;
        let mut r = self.raw().await;
        r.open().await;
        let creds =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{PASSWORD}"));
        r.send(&format!(
            "<auth xmlns='{}' mechanism='PLAIN'>{creds}</auth>",
            ns::SASL
        ))
        .await;
        let e = r.element().await;
        assert!(e.is("success", ns::SASL), "{e}");
        r.stream.restart();
        let features = r.open().await;
        assert!(features.get_child("bind", ns::BIND).is_some(), "{features}");
        r
    }
}

pub async fn ping(c: &mut ClientSession) {
    let id = format!("ping-{}", rand_id());
    c.send(
        &Element::new("iq", ns::CLIENT)
            .attr("type", "get")
            .attr("id", id.clone())
            .child(Element::new("ping", ns::PING)),
    )
    .await
    .expect("send ping");
    loop {
        let e = recv(c).await;
        if e.name == "iq" && e.get_attr("id") == Some(id.as_str()) {
            assert_eq!(e.get_attr("type"), Some("result"), "{e}");
            return;
        }
    }
}

pub fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Receives with a timeout so a missing stanza fails the test instead of hanging it.
pub async fn recv(c: &mut ClientSession) -> Element {
    tokio::time::timeout(Duration::from_secs(10), c.recv())
        .await
        .expect("timed out waiting for a stanza")
        .expect("stream still open")
}

/// True if nothing arrives within the window.
pub async fn nothing_arrives(c: &mut ClientSession, ms: u64) -> bool {
    tokio::time::timeout(Duration::from_millis(ms), c.recv())
        .await
        .is_err()
}

/// A raw client for transcript-style tests: send exactly these bytes, expect these events.
pub struct Raw {
    pub stream: XmlStream<Transport>,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        Raw {
            stream: XmlStream::new(Transport::Tcp(tcp), Limits::default()),
        }
    }

    pub async fn send(&mut self, data: &str) {
        self.stream
            .write_bytes(data.as_bytes())
            .await
            .expect("write");
    }

    pub async fn open(&mut self) -> Element {
        self.send(&stream_header(DOMAIN)).await;
        match self.event().await {
            StreamEvent::Header(h) => assert_eq!(h.from.as_deref(), Some(DOMAIN)),
            other => panic!("expected a stream header, got {other:?}"),
        }
        self.element().await
    }

    pub async fn event(&mut self) -> StreamEvent {
        tokio::time::timeout(Duration::from_secs(10), self.stream.next_event())
            .await
            .expect("timed out")
            .expect("stream readable")
    }

    pub async fn element(&mut self) -> Element {
        match self.event().await {
            StreamEvent::Element(e) => e,
            other => panic!("expected an element, got {other:?}"),
        }
    }

    /// Expects a stream error (after the server's header, if it had not sent one), then the
    /// close of the stream.
    pub async fn expect_stream_error(&mut self) -> StreamErrorCondition {
        let mut ev = self.event().await;
        if let StreamEvent::Header(_) = ev {
            ev = self.event().await;
        }
        let cond = match ev {
            StreamEvent::Element(e) => {
                StreamError::from_element(&e)
                    .unwrap_or_else(|| panic!("expected a stream error, got {e}"))
                    .condition
            }
            other => panic!("expected a stream error, got {other:?}"),
        };
        assert!(matches!(self.event().await, StreamEvent::Close));
        cond
    }
}

/// Expects that the session is ended by the server with a stream error; stanzas still in
/// flight before it (e.g. presence of the user's other resources) are skipped.
pub async fn expect_session_stream_error(c: &mut ClientSession) -> StreamErrorCondition {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, c.recv()).await {
            Ok(Err(confab_stream::client::ClientError::Stream(e))) => return e.condition,
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => panic!("expected a stream error, got {e}"),
            Err(_) => panic!("timed out waiting for a stream error"),
        }
    }
}

pub fn tls_opts(ts: &TestServer, user: &str, mode: TlsMode) -> ClientOptions {
    let mut o = ts.options(user);
    if mode == TlsMode::Direct {
        o.addr = ts.tls_addr;
    }
    o.tls = mode;
    o
}

/// Reads until a stanza matches, skipping others (pushes, presence) on the way.
pub async fn expect(c: &mut ClientSession, what: &str, pred: impl Fn(&Element) -> bool) -> Element {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, c.recv()).await {
            Ok(Ok(e)) if pred(&e) => return e,
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => panic!("stream ended waiting for {what}: {e}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

/// True if no stanza matching `pred` arrives within `ms` (others are skipped). A stream
/// that ends or fails meanwhile fails the test: a session the server closed receives
/// nothing either, which must not pass for "nothing was sent".
pub async fn never(c: &mut ClientSession, ms: u64, pred: impl Fn(&Element) -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
    loop {
        match tokio::time::timeout_at(deadline, c.recv()).await {
            Ok(Ok(e)) if pred(&e) => return false,
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => panic!("the stream ended while waiting for silence: {e}"),
            Err(_) => return true,
        }
    }
}

/// The next message, skipping other stanzas.
pub async fn recv_message(c: &mut ClientSession) -> Element {
    expect(c, "a message", |e| e.name == "message").await
}

/// True if no message arrives within the window (other stanzas are ignored).
pub async fn no_message(c: &mut ClientSession, ms: u64) -> bool {
    never(c, ms, |e| e.name == "message").await
}

/// Sends an iq and returns its reply (result or error), skipping other stanzas.
pub async fn iq(c: &mut ClientSession, type_: &str, to: Option<&str>, payload: Element) -> Element {
    let id = format!("iq-{}", rand_id());
    let mut e = Element::new("iq", ns::CLIENT)
        .attr("type", type_)
        .attr("id", id.clone())
        .child(payload);
    if let Some(t) = to {
        e.set_attr("to", t);
    }
    c.send(&e).await.expect("send");
    expect(c, "iq reply", |r| {
        r.name == "iq"
            && r.get_attr("id") == Some(id.as_str())
            && matches!(r.get_attr("type"), Some("result" | "error"))
    })
    .await
}

/// The stanza error condition of an error reply (or a note that there is none).
pub fn condition(e: &Element) -> String {
    confab_proto::StanzaError::from_stanza(e)
        .map(|e| e.condition.as_str().to_string())
        .unwrap_or_else(|| format!("no error in {e}"))
}

/// A loopback TCP proxy in front of a server, for tests of lost connections: `cut` drops
/// every open connection at once (bytes in flight are lost, neither side sees a stream
/// close), `stop` also refuses new ones until `restore`.
pub struct TcpProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    upstream: SocketAddr,
    /// True while `freeze` holds: nothing is forwarded either way. Replaced by `cut`, so
    /// the connections it drops can never forward what they held.
    frozen: std::sync::Arc<std::sync::Mutex<tokio::sync::watch::Sender<bool>>>,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    listener: Option<tokio::task::JoinHandle<()>>,
    conns: std::sync::Arc<std::sync::Mutex<tokio::task::JoinSet<()>>>,
}

impl TcpProxy {
    pub async fn start(upstream: SocketAddr) -> TcpProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy listen");
        let addr = listener.local_addr().expect("proxy addr");
        let mut proxy = TcpProxy {
            addr,
            upstream,
            frozen: std::sync::Arc::new(std::sync::Mutex::new(
                tokio::sync::watch::channel(false).0,
            )),
            accepted: Default::default(),
            listener: None,
            conns: Default::default(),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let upstream = self.upstream;
        let conns = self.conns.clone();
        let frozen = self.frozen.clone();
        let accepted = self.accepted.clone();
        self.listener = Some(tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (Ok(mut set), Ok(f)) = (conns.lock(), frozen.lock()) else {
                    return;
                };
                let (up, down) = (f.subscribe(), f.subscribe());
                set.spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    // A cut resets both connections (RST), as a dying network path or
                    // NAT does: no orderly close that a peer not reading would miss.
                    let _ = client.set_zero_linger();
                    let _ = server.set_zero_linger();
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::select! {
                        _ = forward(cr, sw, up) => {}
                        _ = forward(sr, cw, down) => {}
                    }
                });
            }
        }));
    }

    /// How many connections the proxy has accepted.
    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops forwarding both ways (a network that black-holes traffic): what either side
    /// writes meanwhile stays in the proxy's socket buffers, and is lost on `cut`.
    pub fn freeze(&self) {
        if let Ok(f) = self.frozen.lock() {
            f.send_replace(true);
        }
    }

    /// Drops every open connection; new ones are still accepted (and forwarded: a freeze
    /// ends here).
    pub fn cut(&self) {
        if let Ok(mut set) = self.conns.lock() {
            set.abort_all();
        }
        // The old flag goes with the old connections: a task not yet aborted sees it
        // closed and stops, instead of forwarding what it held.
        if let Ok(mut f) = self.frozen.lock() {
            *f = tokio::sync::watch::channel(false).0;
        }
    }

    /// Drops every open connection and refuses new ones (the port is closed).
    pub async fn stop(&mut self) {
        if let Some(l) = self.listener.take() {
            l.abort();
            let _ = l.await;
        }
        self.cut();
    }

    /// Accepts connections again, on the same port.
    pub async fn restore(&mut self) {
        let started = tokio::time::Instant::now();
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(
                        started.elapsed() < Duration::from_secs(10),
                        "proxy port {}: {e}",
                        self.addr
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        self.serve(listener);
    }
}

/// Copies one direction until either side closes, pausing while `frozen` is true.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Bytes read as the freeze began are held back too, and lost on a cut.
        if frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        if let Some(l) = self.listener.take() {
            l.abort();
        }
        self.cut();
    }
}
