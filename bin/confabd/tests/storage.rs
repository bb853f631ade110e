//! Storage through the real binary, on every backend: an accepted offline message survives
//! `kill -9`, a database that goes away while the server runs gives error replies and the
//! server recovers, a database down at start stops it, and `confabd migrate`.
//!
//! SQLite always runs; PostgreSQL (127.0.0.1:5432) and MariaDB/MySQL (127.0.0.1:3306) each
//! get a database of their own, dropped afterwards, and are skipped with a line on stderr
//! when not reachable, unless `CONFAB_REQUIRE_SERVICES=1` (then they fail).

// The conformance suite's harness: one way to create and drop test databases, one skip rule.
#[allow(dead_code)]
#[path = "../../../crates/confab-store/tests/harness/mod.rs"]
mod harness;

use confab_proto::xml::Element;
use confab_stream::client::{connect, ClientOptions, ClientSession};
use harness::{Kind, TestDb};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every wait on the server in these tests is at most this long.
const WAIT: Duration = Duration::from_secs(20);

fn confabd(config: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_confabd"));
    c.arg("--config").arg(config).env_remove("RUST_LOG");
    c
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The storage URL confabd is given for a test database.
fn storage_url(db: &TestDb) -> String {
    match &db.backend {
        confab_store::Backend::Sqlite { path } => format!("sqlite://{}", path.display()),
        confab_store::Backend::Postgres { url } | confab_store::Backend::Mysql { url } => {
            url.clone()
        }
    }
}

/// A configuration on loopback ports with this storage URL and `[storage]` extras.
fn write_config(dir: &Path, port: u16, url: &str, storage_extra: &str) -> PathBuf {
    let p = dir.join("confabd.toml");
    std::fs::write(
        &p,
        format!(
            "[server]\ndomains = ['localhost']\ndata_dir = '{}'\n\
             [c2s]\ninterfaces = ['127.0.0.1']\nport = {port}\ntls_port = {}\n\
             [http]\ninterfaces = ['127.0.0.1']\nport = {}\ntls_port = {}\n\
             [admin]\nlisten = '127.0.0.1:{}'\n\
             [storage]\nurl = '{url}'\n{storage_extra}",
            dir.join("data").display(),
            free_port(),
            free_port(),
            free_port(),
            free_port()
        ),
    )
    .expect("write config");
    p
}

/// Runs `confabd user add` (inside the tests' multi-threaded runtime: the proxy tasks go
/// on running while this thread waits).
fn add_user(cfg: &Path, user: &str) {
    let run = || {
        confabd(cfg)
            .args([
                "user",
                "add",
                &format!("{user}@localhost"),
                "--password",
                "pw",
            ])
            .output()
            .expect("run confabd user add")
    };
    let out = match tokio::runtime::Handle::try_current() {
        Ok(_) => tokio::task::block_in_place(run),
        Err(_) => run(),
    };
    assert!(
        out.status.success(),
        "user add {user}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running `confabd`, stopped (SIGKILL, by its pid) if a test ends without stopping it.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// Starts the server and waits until its c2s port accepts connections.
    async fn start(cfg: &Path, port: u16) -> Server {
        let child = confabd(cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start confabd");
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let started = Instant::now();
        while tokio::net::TcpStream::connect(server.addr).await.is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("confabd exited at start: {status}");
            }
            assert!(started.elapsed() < WAIT, "confabd did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    async fn login(&self, user: &str) -> ClientSession {
        tokio::time::timeout(
            WAIT,
            connect(&{
                let mut o = ClientOptions::new(self.addr, "localhost", user, "pw");
                o.verify = confab_stream::tls::CertVerification::Insecure;
                o
            }),
        )
        .await
        .expect("login timed out")
        .unwrap_or_else(|e| panic!("login {user}: {e}"))
    }

    /// Whether the process is still running (it did not crash).
    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL: nothing is flushed or closed by the server.
    fn kill9(mut self) {
        // `Child::kill` sends SIGKILL to this child's pid on Unix.
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
    }

    /// SIGTERM, and a bounded wait for the exit.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + WAIT;
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The next element from the server, within `WAIT`.
async fn recv(s: &mut ClientSession) -> Element {
    tokio::time::timeout(WAIT, s.recv())
        .await
        .expect("no answer from the server in time")
        .expect("stream ended")
}

/// Sends an IQ and returns its reply (skipping other stanzas), with how long it took.
async fn iq(s: &mut ClientSession, iq: Element) -> (Element, Duration) {
    let id = iq.get_attr("id").expect("iq id").to_string();
    let sent = Instant::now();
    s.send(&iq).await.expect("send iq");
    loop {
        let e = recv(s).await;
        if e.name == "iq" && e.get_attr("id") == Some(id.as_str()) {
            return (e, sent.elapsed());
        }
    }
}

fn ping(id: &str) -> Element {
    Element::new("iq", "jabber:client")
        .attr("type", "get")
        .attr("id", id)
        .attr("to", "localhost")
        .child(Element::new("ping", "urn:xmpp:ping"))
}

fn roster_get(id: &str) -> Element {
    Element::new("iq", "jabber:client")
        .attr("type", "get")
        .attr("id", id)
        .child(Element::new("query", "jabber:iq:roster"))
}

fn vcard_get(id: &str) -> Element {
    Element::new("iq", "jabber:client")
        .attr("type", "get")
        .attr("id", id)
        .child(Element::new("vCard", "vcard-temp"))
}

/// The stanza error condition of an error reply and its type.
fn stanza_error(e: &Element) -> Option<(String, String)> {
    let err = e.get_child("error", "jabber:client")?;
    let condition = err
        .elements()
        .find(|c| c.ns == "urn:ietf:params:xml:ns:xmpp-stanzas" && c.name != "text")?;
    Some((
        condition.name.clone(),
        err.get_attr("type").unwrap_or_default().to_string(),
    ))
}

async fn test_db(kind: Kind) -> Option<TestDb> {
    TestDb::new(kind).await
}

// ---------------------------------------------------------------------------------------
// An accepted offline message survives kill -9.

const BODY: &str = "kept across kill -9: \u{1F4BE} \u{00E9}";

async fn survives_kill_9(kind: Kind) {
    let Some(db) = test_db(kind).await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let cfg = write_config(dir.path(), port, &storage_url(&db), "");
    add_user(&cfg, "alice");
    add_user(&cfg, "bob");

    let server = Server::start(&cfg, port).await;
    let mut alice = server.login("alice").await;
    let message = Element::new("message", "jabber:client")
        .attr("to", "bob@localhost")
        .attr("type", "chat")
        .attr("id", "m1")
        .child(Element::new("body", "jabber:client").text(BODY));
    alice.send(&message).await.expect("send message");
    // A session's stanzas are handled in order: the ping's answer comes after the message
    // was stored (or bounced, which would arrive first).
    alice.send(&ping("p1")).await.expect("send ping");
    loop {
        let e = recv(&mut alice).await;
        assert!(
            e.get_attr("type") != Some("error"),
            "the server refused the message: {e}"
        );
        if e.name == "iq" && e.get_attr("id") == Some("p1") {
            break;
        }
    }
    server.kill9();

    let server = Server::start(&cfg, port).await;
    let mut bob = server.login("bob").await;
    bob.send(&Element::new("presence", "jabber:client"))
        .await
        .expect("send presence");
    let delivered = loop {
        let e = recv(&mut bob).await;
        if e.name == "message" {
            break e;
        }
    };
    let body = delivered
        .get_child("body", "jabber:client")
        .map(|b| b.text_content());
    assert_eq!(body.as_deref(), Some(BODY), "{delivered}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_message_survives_kill_9_sqlite() {
    survives_kill_9(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_message_survives_kill_9_postgres() {
    survives_kill_9(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_message_survives_kill_9_mysql() {
    survives_kill_9(Kind::Mysql).await;
}

// ---------------------------------------------------------------------------------------
// The database goes away while the server runs, and comes back.

/// A loopback TCP proxy to a database server that can cut every connection and refuse new
/// ones (its port closed), then listen again on the same port.
struct Proxy {
    port: u16,
    upstream: String,
    listener: Option<tokio::task::JoinHandle<()>>,
    conns: Arc<Mutex<tokio::task::JoinSet<()>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy listen");
        let port = listener.local_addr().expect("proxy addr").port();
        let mut proxy = Proxy {
            port,
            upstream,
            listener: None,
            conns: Arc::new(Mutex::new(tokio::task::JoinSet::new())),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let upstream = self.upstream.clone();
        let conns = self.conns.clone();
        self.listener = Some(tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let Ok(mut set) = conns.lock() else { return };
                set.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        }));
    }

    /// The database "goes away": open connections are dropped and the port refuses new ones.
    async fn cut(&mut self) {
        if let Some(l) = self.listener.take() {
            l.abort();
            let _ = l.await;
        }
        if let Ok(mut set) = self.conns.lock() {
            set.abort_all();
        }
    }

    /// The database is back, on the same port.
    async fn restore(&mut self) {
        let started = Instant::now();
        let listener = loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(started.elapsed() < WAIT, "proxy port {}: {e}", self.port);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        self.serve(listener);
    }
}

/// `scheme://user@host:port/db` → (`host:port`, the same URL through `127.0.0.1:proxy`).
fn through_proxy(url: &str, proxy_port: u16) -> (String, String) {
    let (scheme, rest) = url.split_once("://").expect("url scheme");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (user, host) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    (
        host.to_string(),
        format!("{scheme}://{user}127.0.0.1:{proxy_port}{path}"),
    )
}

/// Requests that need the database get an error reply, within a bounded time, while it is
/// away; the session stays; after it is back the same requests succeed and the data is as
/// it was (nothing replaced by defaults).
async fn database_goes_away(kind: Kind) {
    let Some(db) = test_db(kind).await else {
        return;
    };
    let (upstream, _) = through_proxy(&storage_url(&db), 0);
    let mut proxy = Proxy::start(upstream).await;
    let (_, url) = through_proxy(&storage_url(&db), proxy.port);
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    // A short acquire timeout keeps the test quick; the bound is what is tested.
    let acquire_timeout = Duration::from_secs(2);
    let cfg = write_config(
        dir.path(),
        port,
        &url,
        &format!("acquire_timeout = {}\n", acquire_timeout.as_secs()),
    );
    add_user(&cfg, "alice");
    add_user(&cfg, "bob");
    let mut server = Server::start(&cfg, port).await;
    let mut alice = server.login("alice").await;

    let vcard = Element::new("iq", "jabber:client")
        .attr("type", "set")
        .attr("id", "v0")
        .child(
            Element::new("vCard", "vcard-temp")
                .child(Element::new("FN", "vcard-temp").text("Alice Kept")),
        );
    let (reply, _) = iq(&mut alice, vcard).await;
    assert_eq!(reply.get_attr("type"), Some("result"), "{reply}");
    let (reply, _) = iq(&mut alice, roster_get("r0")).await;
    assert_eq!(reply.get_attr("type"), Some("result"), "{reply}");

    proxy.cut().await;
    // Allowed per request: the acquire timeout, and a few seconds of slack.
    let bound = acquire_timeout + Duration::from_secs(5);
    for (n, request) in [roster_get("r1"), vcard_get("v1"), roster_get("r2")]
        .into_iter()
        .enumerate()
    {
        let (reply, took) = iq(&mut alice, request).await;
        assert_eq!(
            reply.get_attr("type"),
            Some("error"),
            "request {n} during the outage: {reply}"
        );
        // RFC 6120 §8.3.3.6, of type `wait`: it may work once the database is back.
        let (condition, type_) = stanza_error(&reply).unwrap_or_default();
        assert_eq!(condition, "internal-server-error", "{reply}");
        assert_eq!(type_, "wait", "{reply}");
        assert!(took < bound, "request {n} took {took:?} (bound {bound:?})");
    }
    // A message to an offline user that cannot be stored comes back as an error, never
    // silently dropped.
    let message = Element::new("message", "jabber:client")
        .attr("to", "bob@localhost")
        .attr("type", "chat")
        .attr("id", "m1")
        .child(Element::new("body", "jabber:client").text("during the outage"));
    let sent = Instant::now();
    alice.send(&message).await.expect("send message");
    let bounce = loop {
        let e = recv(&mut alice).await;
        if e.name == "message" && e.get_attr("id") == Some("m1") {
            break e;
        }
    };
    assert_eq!(bounce.get_attr("type"), Some("error"), "{bounce}");
    assert!(
        sent.elapsed() < bound + acquire_timeout,
        "{:?}",
        sent.elapsed()
    );
    // The session is up (a ping needs no database) and the server did not crash.
    let (reply, _) = iq(&mut alice, ping("p1")).await;
    assert_eq!(reply.get_attr("type"), Some("result"), "{reply}");
    assert!(server.running(), "confabd exited during the outage");

    proxy.restore().await;
    // The pool reconnects by itself; the first request after the return may still meet
    // the end of a backoff, so a few tries are allowed, each bounded.
    let started = Instant::now();
    let mut n = 0;
    let reply = loop {
        n += 1;
        let (reply, _) = iq(&mut alice, roster_get(&format!("r-back-{n}"))).await;
        if reply.get_attr("type") == Some("result") || started.elapsed() > WAIT {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        reply.get_attr("type"),
        Some("result"),
        "after restore: {reply}"
    );
    let (reply, _) = iq(&mut alice, vcard_get("v2")).await;
    assert_eq!(reply.get_attr("type"), Some("result"), "{reply}");
    let full_name = reply
        .get_child("vCard", "vcard-temp")
        .and_then(|v| v.get_child("FN", "vcard-temp"))
        .map(|f| f.text_content());
    assert_eq!(full_name.as_deref(), Some("Alice Kept"), "{reply}");
    assert!(server.running());
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_goes_away_and_comes_back() {
    database_goes_away(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_goes_away_and_comes_back() {
    database_goes_away(Kind::Mysql).await;
}

// ---------------------------------------------------------------------------------------
// A database that is down at start.

#[test]
fn a_database_down_at_start_stops_the_server_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A port nothing listens on.
    let closed = free_port();
    for (url, name) in [
        (
            format!("postgres://confab:secret@127.0.0.1:{closed}/confab"),
            "PostgreSQL",
        ),
        (
            format!("mysql://confab:secret@127.0.0.1:{closed}/confab"),
            "MySQL/MariaDB",
        ),
    ] {
        let cfg = write_config(dir.path(), free_port(), &url, "");
        let started = Instant::now();
        let out = confabd(&cfg).output().expect("run confabd");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{name}: started without its database"
        );
        assert!(
            stderr.contains(&format!("cannot connect to {name} at 127.0.0.1:{closed}")),
            "{stderr}"
        );
        assert!(!stderr.contains("secret"), "the password leaked: {stderr}");
        assert!(started.elapsed() < WAIT);
        // `migrate` and `check` fail the same way.
        let out = confabd(&cfg).arg("migrate").output().expect("run");
        assert!(!out.status.success());
        let out = confabd(&cfg).arg("check").output().expect("run");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success());
        assert!(
            stdout.contains(&format!("FAIL  storage ({name} ")) && stdout.contains(":***@"),
            "{stdout}"
        );
        assert!(!stdout.contains("secret"), "{stdout}");
    }
}

// ---------------------------------------------------------------------------------------
// confabd migrate.

/// The `pending`/`applied` names `confabd migrate` printed.
fn listed(stdout: &str, prefix: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .map(str::to_string)
        .collect()
}

async fn migrate_command(kind: Kind) {
    let Some(db) = test_db(kind).await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), free_port(), &storage_url(&db), "");
    let run = |args: &[&str]| {
        let out = confabd(&cfg).args(args).output().expect("run confabd");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    // A new database lacks every migration; the dry run changes nothing.
    let dry = run(&["migrate", "--dry-run"]);
    let pending = listed(&dry, "pending ");
    assert!(pending.len() >= 4, "{dry}");
    assert!(pending.iter().any(|p| p == "accounts-1"), "{dry}");
    assert_eq!(listed(&run(&["migrate", "--dry-run"]), "pending "), pending);
    if let confab_store::Backend::Sqlite { path } = &db.backend {
        assert!(!path.exists(), "the dry run created the database");
    }
    let applied = run(&["migrate"]);
    assert_eq!(listed(&applied, "applied "), pending, "{applied}");
    let again = run(&["migrate"]);
    assert!(listed(&again, "applied ").is_empty(), "{again}");
    assert!(again.contains("up to date"), "{again}");
    let dry = run(&["migrate", "--dry-run"]);
    assert!(listed(&dry, "pending ").is_empty(), "{dry}");
    assert!(
        dry.contains(&format!("{} applied, 0 pending", pending.len())),
        "{dry}"
    );
    // The migrated database serves the server's commands.
    add_user(&cfg, "alice");
}

#[test]
fn migrate_sqlite() {
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(migrate_command(Kind::Sqlite));
}

#[test]
fn migrate_postgres() {
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(migrate_command(Kind::Postgres));
}

#[test]
fn migrate_mysql() {
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(migrate_command(Kind::Mysql));
}
