//! The admin console in-process: the set-up wizard (token once, expiry, settings file,
//! restart request), login (admins only, rate limit), CSRF on every form, no page without an
//! admin session, users and sessions managed through the pages.

use confab_admin::{Admin, AdminConfig};
use confab_server::config::Config;
use confab_tests::{start_server, test_config, TestServer, PASSWORD};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP answer.
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The CSRF token of the page's first form.
    fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no csrf field in {}", self.body));
        let rest = &self.body[at + 19..];
        rest[..rest.find('"').expect("end of value")].to_string()
    }
}

/// A browser of sorts: keeps cookies, speaks HTTP/1.1 with one request per connection.
#[derive(Default)]
struct Browser {
    addr: Option<SocketAddr>,
    cookies: HashMap<String, String>,
    /// The `Host` header sent (the address by default).
    host: Option<String>,
    /// More headers sent with every request.
    extra: Vec<(String, String)>,
}

impl Browser {
    fn new(addr: SocketAddr) -> Browser {
        Browser {
            addr: Some(addr),
            ..Default::default()
        }
    }

    async fn request(&mut self, method: &str, path: &str, form: Option<&[(&str, &str)]>) -> Resp {
        let addr = self.addr.expect("addr");
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let body = form
            .map(|f| {
                form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(f.iter())
                    .finish()
            })
            .unwrap_or_default();
        let cookies: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let host = self.host.clone().unwrap_or_else(|| addr.to_string());
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in &self.extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if form.is_some() {
            req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        }
        if !cookies.is_empty() {
            req.push_str(&format!("Cookie: {}\r\n", cookies.join("; ")));
        }
        req.push_str("\r\n");
        req.push_str(&body);
        s.write_all(req.as_bytes()).await.expect("write");
        let mut raw = Vec::new();
        tokio::time::timeout(std::time::Duration::from_secs(30), s.read_to_end(&mut raw))
            .await
            .expect("answer in time")
            .expect("read");
        let text = String::from_utf8_lossy(&raw).to_string();
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        let mut lines = head.lines();
        let status: u16 = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .expect("status");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        for (k, v) in &headers {
            if k.eq_ignore_ascii_case("set-cookie") {
                let pair = v.split(';').next().unwrap_or_default();
                if let Some((name, value)) = pair.split_once('=') {
                    if value.is_empty() || v.contains("Max-Age=0") {
                        self.cookies.remove(name);
                    } else {
                        self.cookies.insert(name.to_string(), value.to_string());
                    }
                }
            }
        }
        Resp {
            status,
            headers,
            body: body.to_string(),
        }
    }

    async fn get(&mut self, path: &str) -> Resp {
        self.request("GET", path, None).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Resp {
        self.request("POST", path, Some(form)).await
    }

    /// Logs in; returns the answer to the form.
    async fn login(&mut self, jid: &str, password: &str) -> Resp {
        let page = self.get("/login").await;
        let csrf = page.csrf();
        self.post(
            "/login",
            &[("csrf", &csrf), ("jid", jid), ("password", password)],
        )
        .await
    }
}

/// A server with the console on an ephemeral loopback port; `f` adjusts the config.
async fn server_with(
    admin: Arc<Admin>,
    dir: &std::path::Path,
    f: impl FnOnce(&mut Config),
) -> (confab_server::Server, SocketAddr) {
    confab_tests::init_logs();
    let mut c = test_config(dir);
    c.update_section::<AdminConfig>("admin", |a| a.listen = "127.0.0.1:0".into())
        .expect("admin section");
    f(&mut c);
    let mut modules: Vec<Arc<dyn confab_server::module::Module>> = confab_muc::all();
    modules.push(admin);
    let server = start_server(c, modules).await.expect("server starts");
    let addr = server.listener_addr("admin").expect("admin listener");
    (server, addr)
}

/// A configured server (one admin, `boss@localhost`) with an account `alice`.
async fn configured(f: impl FnOnce(&mut Config)) -> (TestServer, SocketAddr) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, addr) = server_with(Arc::new(Admin::new()), dir.path(), |c| {
        c.update_section::<AdminConfig>("admin", |a| a.admins = vec!["boss@localhost".into()])
            .expect("admins");
        f(c);
    })
    .await;
    let ts = TestServer {
        addr: server.c2s_addr().expect("c2s"),
        tls_addr: server.c2s_tls_addr().expect("tls"),
        server: Some(server),
        dir,
    };
    ts.add_user("boss").await;
    ts.add_user("alice").await;
    (ts, addr)
}

#[tokio::test]
async fn wizard_sets_up_the_server_then_the_admin_manages_users_and_sessions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let restart = Arc::new(tokio::sync::Notify::new());
    let admin = Arc::new(Admin::with_restart(restart.clone()));
    let (server, addr) = server_with(admin.clone(), dir.path(), |_| {}).await;
    let link = admin
        .setup_link()
        .expect("a set-up link while no admin exists");
    let path = &link[link.find("/setup").expect("path")..];
    let mut b = Browser::new(addr);
    // Nothing but the link opens the wizard; the login page says so.
    assert_eq!(b.get("/setup").await.status, 403);
    assert_eq!(b.get("/setup?token=forged").await.status, 403);
    assert!(b.get("/login").await.body.contains("no administrator yet"));
    let r = b.get(path).await;
    assert_eq!(r.status, 303, "{}", r.body);
    // The link works once, even in another browser.
    assert_eq!(Browser::new(addr).get(path).await.status, 410);
    let step1 = b.get("/setup").await;
    assert_eq!(step1.status, 200);
    let csrf = step1.csrf();
    // A forged token is refused and changes nothing.
    let r = b
        .post(
            "/setup",
            &[("csrf", "forged"), ("step", "language"), ("lang", "zh-CN")],
        )
        .await;
    assert_eq!(r.status, 403);
    let r = b
        .post(
            "/setup",
            &[("csrf", &csrf), ("step", "language"), ("lang", "zh-CN")],
        )
        .await;
    assert!(r.body.contains("域名"), "step 2 in Chinese: {}", r.body);
    let r = b
        .post(
            "/setup",
            &[
                ("csrf", &csrf),
                ("step", "domain"),
                ("domain", "Not A Domain"),
            ],
        )
        .await;
    assert_eq!(r.status, 422);
    let r = b
        .post(
            "/setup",
            &[("csrf", &csrf), ("step", "domain"), ("domain", "localhost")],
        )
        .await;
    assert!(r.body.contains("SQLite"), "{}", r.body);
    // A database that is not there is reported, not accepted.
    let r = b
        .post(
            "/setup",
            &[
                ("csrf", &csrf),
                ("step", "database"),
                ("db", "url"),
                ("url", "postgres://confab@127.0.0.1:1/none"),
                ("test", "1"),
            ],
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("无法连接"), "{}", r.body);
    let r = b
        .post(
            "/setup",
            &[("csrf", &csrf), ("step", "database"), ("db", "sqlite")],
        )
        .await;
    assert!(r.body.contains("请勿跳过"), "admin step: {}", r.body);
    let r = b
        .post(
            "/setup",
            &[
                ("csrf", &csrf),
                ("step", "admin"),
                ("username", "boss"),
                ("password", PASSWORD),
                ("password2", "other"),
            ],
        )
        .await;
    assert_eq!(r.status, 422, "passwords differ");
    let r = b
        .post(
            "/setup",
            &[
                ("csrf", &csrf),
                ("step", "admin"),
                ("username", "boss"),
                ("password", PASSWORD),
                ("password2", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("boss@localhost"));
    tokio::time::timeout(std::time::Duration::from_secs(5), restart.notified())
        .await
        .expect("the wizard asks for a restart");
    let written = std::fs::read_to_string(dir.path().join("console.toml")).expect("settings file");
    assert!(
        written.contains("boss@localhost") && written.contains("zh-CN"),
        "{written}"
    );
    // Set-up is over for everyone.
    assert_eq!(b.get("/setup").await.status, 410);
    server.shutdown().await;

    // The restart: the configuration as confabd reloads it, with the console's file.
    let env = vec![(
        "CONFABD_SERVER__DATA_DIR".to_string(),
        dir.path().display().to_string(),
    )];
    let loaded = Config::load_with_env(None, env.into_iter()).expect("config with console.toml");
    let admins: AdminConfig = loaded.section("admin").expect("admin section");
    assert_eq!(admins.admins, vec!["boss@localhost".to_string()]);
    let admin2 = Arc::new(Admin::new());
    let (server, addr) = server_with(admin2.clone(), dir.path(), |c| {
        c.sections = loaded.sections.clone();
        c.server.domains = loaded.server.domains.clone();
        c.storage = loaded.storage.clone();
        let _ = c.update_section::<AdminConfig>("admin", |a| a.listen = "127.0.0.1:0".into());
    })
    .await;
    assert!(
        admin2.setup_link().is_none(),
        "no set-up link once an admin exists"
    );
    let ts = TestServer {
        addr: server.c2s_addr().expect("c2s"),
        tls_addr: server.c2s_tls_addr().expect("tls"),
        server: Some(server),
        dir,
    };
    let mut b = Browser::new(addr);
    let r = b.login("boss@localhost", PASSWORD).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), Some("/dashboard"));
    let cookie = r
        .headers
        .iter()
        .find(|(k, v)| k.eq_ignore_ascii_case("set-cookie") && v.starts_with("confab_admin="))
        .map(|(_, v)| v.clone())
        .expect("session cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let dash = b.get("/dashboard").await;
    assert_eq!(dash.status, 200);
    assert!(
        dash.body.contains("在线会话"),
        "the language chosen in the wizard"
    );
    // Create a user, see them online, disconnect the session.
    let users = b.get("/users").await;
    let csrf = users.csrf();
    let r = b
        .post(
            "/users/create",
            &[
                ("csrf", &csrf),
                ("jid", "carol@localhost"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let r = b
        .post(
            "/users/create",
            &[
                ("csrf", &csrf),
                ("jid", "carol@localhost"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 409, "exists");
    assert!(b.get("/users?q=car").await.body.contains("carol@localhost"));
    let mut carol = ts.login("carol").await;
    let sessions = b.get("/sessions").await;
    assert!(
        sessions.body.contains("carol@localhost/"),
        "{}",
        sessions.body
    );
    let id = {
        let at = sessions
            .body
            .find("name=\"id\" value=\"")
            .expect("session id");
        let rest = &sessions.body[at + 17..];
        rest[..rest.find('"').expect("end")].to_string()
    };
    let jid = {
        let at = sessions
            .body
            .find("name=\"jid\" value=\"")
            .expect("session jid");
        let rest = &sessions.body[at + 18..];
        rest[..rest.find('"').expect("end")].to_string()
    };
    let r = b
        .post(
            "/sessions/disconnect",
            &[("csrf", &csrf), ("jid", &jid), ("id", &id)],
        )
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(
        confab_tests::expect_session_stream_error(&mut carol).await,
        confab_proto::error::StreamErrorCondition::PolicyViolation
    );
    // Reset the password, switch the language, delete the user; all in the audit log.
    let r = b
        .post(
            "/user/password",
            &[
                ("csrf", &csrf),
                ("jid", "carol@localhost"),
                ("password", "new one"),
            ],
        )
        .await;
    assert_eq!(r.status, 303);
    let r = b
        .post("/language", &[("csrf", &csrf), ("lang", "en")])
        .await;
    assert_eq!(r.status, 303);
    assert!(b.get("/dashboard").await.body.contains("Online sessions"));
    let r = b
        .post(
            "/user/delete",
            &[
                ("csrf", &csrf),
                ("jid", "carol@localhost"),
                ("confirm", "carol@localhost"),
            ],
        )
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(b.get("/user?jid=carol%40localhost").await.status, 404);
    let audit = b.get("/audit").await.body;
    for action in [
        "setup",
        "login",
        "user-create",
        "session-disconnect",
        "user-password",
        "user-delete",
    ] {
        assert!(
            audit.contains(&format!("<td>{action}</td>")),
            "{action} in {audit}"
        );
    }
}

#[tokio::test]
async fn nothing_is_reachable_without_an_admin_session_and_forms_need_their_csrf_token() {
    let (_ts, addr) = configured(|_| {}).await;
    let mut anon = Browser::new(addr);
    for path in [
        "/dashboard",
        "/users",
        "/user?jid=alice%40localhost",
        "/sessions",
        "/settings",
        "/audit",
        "/stats.json",
    ] {
        let r = anon.get(path).await;
        assert_eq!(r.status, 303, "{path}");
        assert_eq!(r.header("location"), Some("/login"), "{path}");
    }
    let posts = [
        "/users/create",
        "/user/password",
        "/user/delete",
        "/sessions/disconnect",
        "/language",
        "/logout",
    ];
    for path in posts {
        let r = anon
            .post(
                path,
                &[("csrf", "x"), ("jid", "alice@localhost"), ("password", "p")],
            )
            .await;
        assert_eq!(r.status, 401, "{path}");
    }
    // A login form posted without its cookie, or with a forged token, is refused.
    let r = anon
        .post(
            "/login",
            &[
                ("csrf", "x"),
                ("jid", "boss@localhost"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 403);
    let mut b = Browser::new(addr);
    assert_eq!(b.login("boss@localhost", PASSWORD).await.status, 303);
    for path in posts {
        let r = b
            .post(
                path,
                &[
                    ("csrf", "forged"),
                    ("jid", "alice@localhost"),
                    ("password", "p"),
                    ("lang", "en"),
                ],
            )
            .await;
        assert_eq!(r.status, 403, "{path}");
    }
    // The settings page shows the certificate (the generated one names the domain).
    let settings = b.get("/settings").await.body;
    assert!(settings.contains("names: localhost"), "{settings}");
    assert!(settings.contains("days left:"), "{settings}");
    // Still there, password unchanged.
    assert!(b.get("/users").await.body.contains("alice@localhost"));
    for path in [
        "/dashboard",
        "/users",
        "/sessions",
        "/settings",
        "/audit",
        "/stats.json",
    ] {
        let r = b.get(path).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(r.header("content-security-policy").is_some(), "{path}");
    }
    // Logged out, the cookie is worth nothing.
    let csrf = b.get("/users").await.csrf();
    let old = b.cookies.get("confab_admin").cloned().expect("cookie");
    assert_eq!(b.post("/logout", &[("csrf", &csrf)]).await.status, 303);
    b.cookies.insert("confab_admin".into(), old);
    assert_eq!(b.get("/users").await.status, 303);
}

#[tokio::test]
async fn only_admins_log_in_and_failures_are_limited_per_address() {
    let (_ts, addr) = configured(|c| {
        let _ = c.update_section::<AdminConfig>("admin", |a| a.login_attempts = 3);
    })
    .await;
    let mut b = Browser::new(addr);
    assert_eq!(
        b.login("alice@localhost", PASSWORD).await.status,
        403,
        "not an admin"
    );
    assert_eq!(b.login("boss@localhost", "wrong").await.status, 401);
    assert_eq!(
        b.login("nobody@localhost", "wrong").await.status,
        401,
        "same as a wrong password"
    );
    let r = b.login("boss@localhost", PASSWORD).await;
    assert_eq!(r.status, 429, "limited even with the right password");
    assert!(r.header("retry-after").is_some());
    assert!(!b.cookies.contains_key("confab_admin"));
}

#[tokio::test]
async fn other_host_names_are_refused_against_dns_rebinding() {
    let (_ts, addr) = configured(|c| {
        let _ = c.update_section::<AdminConfig>("admin", |a| {
            a.allowed_hosts = vec!["admin.example.org".into()]
        });
    })
    .await;
    let port = addr.port();
    for (host, status) in [
        (format!("evil.example:{port}"), 421),
        (format!("localhost.evil.example:{port}"), 421),
        (format!("localhost:{port}"), 200),
        (format!("admin.example.org:{port}"), 200),
        (addr.to_string(), 200),
    ] {
        let mut b = Browser::new(addr);
        b.host = Some(host.clone());
        assert_eq!(b.get("/login").await.status, status, "{host}");
    }
    // Before the login form, the API and the static files too.
    let mut b = Browser::new(addr);
    b.host = Some("evil.example".into());
    assert_eq!(b.get("/api/v1/openapi.json").await.status, 421);
    let form = [
        ("csrf", "x"),
        ("jid", "boss@localhost"),
        ("password", PASSWORD),
    ];
    assert_eq!(b.post("/login", &form).await.status, 421);
    assert!(!b.cookies.contains_key("confab_admin"));
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_login_limit_counts_each_client() {
    let (_ts, addr) = configured(|c| {
        c.http.trusted_proxies = vec!["127.0.0.1".into()];
        let _ = c.update_section::<AdminConfig>("admin", |a| a.login_attempts = 2);
    })
    .await;
    let via = |client: &str| {
        let mut b = Browser::new(addr);
        b.extra = vec![("X-Forwarded-For".into(), client.into())];
        b
    };
    let mut guesser = via("198.51.100.1");
    assert_eq!(guesser.login("boss@localhost", "wrong").await.status, 401);
    assert_eq!(guesser.login("boss@localhost", "wrong").await.status, 401);
    assert_eq!(guesser.login("boss@localhost", "wrong").await.status, 429);
    // Spoofing another address in front of its own gets the guesser nothing.
    let mut spoofer = via("203.0.113.5, 198.51.100.1");
    assert_eq!(spoofer.login("boss@localhost", PASSWORD).await.status, 429);
    // Another client behind the same proxy is not locked out.
    let mut admin = via("198.51.100.2");
    let r = admin.login("boss@localhost", PASSWORD).await;
    assert_ne!(r.status, 429);
    assert!(admin.cookies.contains_key("confab_admin"), "{}", r.status);
}

#[tokio::test]
async fn an_expired_setup_link_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let admin = Arc::new(Admin::new());
    let (_server, addr) = server_with(admin.clone(), dir.path(), |c| {
        let _ = c.update_section::<AdminConfig>("admin", |a| a.setup_token_ttl = 1);
    })
    .await;
    let link = admin.setup_link().expect("link");
    let path = link[link.find("/setup").expect("path")..].to_string();
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    let r = Browser::new(addr).get(&path).await;
    assert_eq!(r.status, 410);
    assert!(!dir.path().join("console.toml").exists());
}

/// The database URL of a server the tests may connect to, or `None` (skip, said on stderr)
/// when it is not reachable, unless `CONFAB_REQUIRE_SERVICES=1`, where that fails.
fn service(var: &str, default: &str, port: u16) -> Option<String> {
    let url = std::env::var(var).unwrap_or_else(|_| default.to_string());
    let reachable = std::net::TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        std::time::Duration::from_secs(2),
    )
    .is_ok();
    if reachable || std::env::var(var).is_ok() {
        return Some(url);
    }
    if std::env::var("CONFAB_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{default} is not reachable and CONFAB_REQUIRE_SERVICES=1");
    }
    eprintln!(
        "SKIP: nothing listens on 127.0.0.1:{port}; the wizard's connection test to it is not run"
    );
    None
}

#[tokio::test]
async fn the_database_step_really_connects_to_postgresql_and_mariadb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let admin = Arc::new(Admin::new());
    let (_server, addr) = server_with(admin.clone(), dir.path(), |_| {}).await;
    let link = admin.setup_link().expect("link");
    let mut b = Browser::new(addr);
    assert_eq!(
        b.get(&link[link.find("/setup").expect("path")..])
            .await
            .status,
        303
    );
    let csrf = b.get("/setup").await.csrf();
    b.post(
        "/setup",
        &[("csrf", &csrf), ("step", "language"), ("lang", "en")],
    )
    .await;
    b.post(
        "/setup",
        &[("csrf", &csrf), ("step", "domain"), ("domain", "localhost")],
    )
    .await;
    let urls = [
        service(
            "CONFAB_TEST_POSTGRES_URL",
            "postgres://postgres@127.0.0.1:5432/test",
            5432,
        ),
        service(
            "CONFAB_TEST_MYSQL_URL",
            "mysql://root@127.0.0.1:3306/test",
            3306,
        ),
    ];
    for url in urls.into_iter().flatten() {
        // "Test connection" connects and reads the schema state; nothing is changed.
        let r = b
            .post(
                "/setup",
                &[
                    ("csrf", &csrf),
                    ("step", "database"),
                    ("db", "url"),
                    ("url", &url),
                    ("test", "1"),
                ],
            )
            .await;
        assert_eq!(r.status, 200, "{url}: {}", r.body);
        assert!(r.body.contains("Connected."), "{url}: {}", r.body);
        // A wrong password or database is reported with the server's reason.
        let bad = url.replacen("/test", "/no_such_database_confab", 1);
        let r = b
            .post(
                "/setup",
                &[
                    ("csrf", &csrf),
                    ("step", "database"),
                    ("db", "url"),
                    ("url", &bad),
                    ("test", "1"),
                ],
            )
            .await;
        assert_eq!(r.status, 422, "{bad}: {}", r.body);
        assert!(r.body.contains("Could not connect"), "{bad}: {}", r.body);
    }
    // Not a database URL at all.
    let r = b
        .post(
            "/setup",
            &[
                ("csrf", &csrf),
                ("step", "database"),
                ("db", "url"),
                ("url", "sqlite:///etc/passwd"),
                ("test", "1"),
            ],
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("must start with postgres://"), "{}", r.body);
}

#[tokio::test]
async fn rooms_are_listed_and_an_admin_destroys_one() {
    use confab_proto::xml::Element;
    let (ts, addr) = configured(|_| {}).await;
    let mut alice = ts.login("alice").await;
    let join = Element::new("presence", confab_proto::ns::CLIENT)
        .attr("to", "lounge@conference.localhost/alice")
        .child(Element::new("x", "http://jabber.org/protocol/muc"));
    alice.send(&join).await.expect("send");
    confab_tests::expect(&mut alice, "the room's subject", |e| {
        e.name == "message" && e.get_child("subject", confab_proto::ns::CLIENT).is_some()
    })
    .await;
    let mut b = Browser::new(addr);
    assert_eq!(b.login("boss@localhost", PASSWORD).await.status, 303);
    let page = b.get("/rooms").await;
    assert!(
        page.body
            .contains("data-room=\"lounge@conference.localhost\""),
        "{}",
        page.body
    );
    let csrf = page.csrf();
    let r = b
        .post(
            "/rooms/act",
            &[
                ("csrf", "forged"),
                ("id", "lounge@conference.localhost"),
                ("action", "destroy"),
            ],
        )
        .await;
    assert_eq!(r.status, 403);
    let r = b
        .post(
            "/rooms/act",
            &[
                ("csrf", &csrf),
                ("id", "lounge@conference.localhost"),
                ("action", "destroy"),
            ],
        )
        .await;
    assert_eq!(r.header("location"), Some("/rooms?msg=rooms.destroyed"));
    let gone = confab_tests::expect(&mut alice, "the room's destruction", |e| {
        e.name == "presence" && e.get_attr("type") == Some("unavailable")
    })
    .await;
    let destroy = gone
        .get_child("x", "http://jabber.org/protocol/muc#user")
        .and_then(|x| x.get_child("destroy", "http://jabber.org/protocol/muc#user"));
    assert!(destroy.is_some(), "{gone}");
    assert!(
        !b.get("/rooms").await.body.contains("data-room="),
        "the room is gone"
    );
    let r = b
        .post(
            "/rooms/act",
            &[
                ("csrf", &csrf),
                ("id", "lounge@conference.localhost"),
                ("action", "destroy"),
            ],
        )
        .await;
    assert_eq!(r.header("location"), Some("/rooms?msg=rooms.gone"));
    assert!(b.get("/audit").await.body.contains("room-destroy"));
}

/// An API token made on the console page by boss.
async fn api_token(addr: SocketAddr) -> String {
    let mut b = Browser::new(addr);
    assert_eq!(b.login("boss@localhost", PASSWORD).await.status, 303);
    let csrf = b.get("/api-tokens").await.csrf();
    let page = b
        .post("/api-tokens/create", &[("csrf", &csrf), ("name", "rooms")])
        .await;
    let at = page.body.find("id=\"new-token\">").expect("token shown");
    let rest = &page.body[at + 15..];
    rest[..rest.find('<').expect("end")].to_string()
}

/// The REST API does what the rooms page does: list the rooms, destroy one (the occupants
/// are told), 404 for a room that is not there, 401 without a token.
#[tokio::test]
async fn the_api_lists_and_destroys_rooms() {
    use confab_proto::xml::Element;
    let (ts, addr) = configured(|_| {}).await;
    let mut alice = ts.login("alice").await;
    let join = Element::new("presence", confab_proto::ns::CLIENT)
        .attr("to", "den@conference.localhost/alice")
        .child(Element::new("x", "http://jabber.org/protocol/muc"));
    alice.send(&join).await.expect("send");
    confab_tests::expect(&mut alice, "the room's subject", |e| {
        e.name == "message" && e.get_child("subject", confab_proto::ns::CLIENT).is_some()
    })
    .await;
    assert_eq!(
        api(addr, "GET", "/api/v1/rooms", None, None).await.status,
        401
    );
    let token = api_token(addr).await;
    let t = Some(token.as_str());
    let list = api(addr, "GET", "/api/v1/rooms", t, None).await;
    assert_eq!(list.status, 200, "{}", list.body);
    let v: serde_json::Value = serde_json::from_str(&list.body).expect("json");
    let rooms = v["rooms"].as_array().expect("rooms");
    assert_eq!(rooms.len(), 1, "{v}");
    assert_eq!(rooms[0]["id"], "den@conference.localhost");
    assert_eq!(rooms[0]["occupants"], "1");
    let den = r#"{"id":"den@conference.localhost"}"#;
    let r = api(addr, "POST", "/api/v1/rooms/destroy", t, Some(den)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let gone = confab_tests::expect(&mut alice, "the room's destruction", |e| {
        e.name == "presence" && e.get_attr("type") == Some("unavailable")
    })
    .await;
    assert!(
        gone.get_child("x", "http://jabber.org/protocol/muc#user")
            .and_then(|x| x.get_child("destroy", "http://jabber.org/protocol/muc#user"))
            .is_some(),
        "{gone}"
    );
    let list = api(addr, "GET", "/api/v1/rooms", t, None).await;
    let v: serde_json::Value = serde_json::from_str(&list.body).expect("json");
    assert_eq!(v["rooms"].as_array().map(Vec::len), Some(0), "{v}");
    let r = api(addr, "POST", "/api/v1/rooms/destroy", t, Some(den)).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn an_admin_whose_account_is_deleted_is_logged_out() {
    let (ts, addr) = configured(|c| {
        let _ = c.update_section::<AdminConfig>("admin", |a| {
            a.admins = vec!["boss@localhost".into(), "alice@localhost".into()]
        });
    })
    .await;
    let mut boss = Browser::new(addr);
    let mut alice = Browser::new(addr);
    assert_eq!(boss.login("boss@localhost", PASSWORD).await.status, 303);
    assert_eq!(alice.login("alice@localhost", PASSWORD).await.status, 303);
    assert_eq!(alice.get("/users").await.status, 200);
    let csrf = boss.get("/users").await.csrf();
    let r = boss
        .post(
            "/user/delete",
            &[
                ("csrf", &csrf),
                ("jid", "alice@localhost"),
                ("confirm", "alice@localhost"),
            ],
        )
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(alice.get("/users").await.status, 303, "logged out");
    assert_eq!(boss.get("/users").await.status, 200);
    drop(ts);
}

/// One API call: `Authorization: Bearer token` (if any), a JSON body (if any).
async fn api(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Resp {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let body = body.unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("head");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    Resp {
        status,
        headers: Vec::new(),
        body: body.to_string(),
    }
}

#[tokio::test]
async fn the_rest_api_needs_a_token_from_the_console_and_manages_users_and_sessions() {
    let (ts, addr) = configured(|_| {}).await;
    // The description is public and is JSON.
    let doc = api(addr, "GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(doc.status, 200);
    let v: serde_json::Value = serde_json::from_str(&doc.body).expect("openapi is JSON");
    assert!(v["paths"]["/users"]["post"].is_object());
    assert_eq!(
        api(addr, "GET", "/api/v1/users", None, None).await.status,
        401
    );
    assert_eq!(
        api(addr, "GET", "/api/v1/users", Some("guess"), None)
            .await
            .status,
        401
    );
    // A token made on the console page, shown once.
    let mut b = Browser::new(addr);
    assert_eq!(b.login("boss@localhost", PASSWORD).await.status, 303);
    let csrf = b.get("/api-tokens").await.csrf();
    assert_eq!(
        b.post("/api-tokens/create", &[("csrf", "forged"), ("name", "x")])
            .await
            .status,
        403
    );
    let page = b
        .post(
            "/api-tokens/create",
            &[("csrf", &csrf), ("name", "deploy script")],
        )
        .await;
    let at = page.body.find("id=\"new-token\">").expect("token shown");
    let rest = &page.body[at + 15..];
    let token = rest[..rest.find('<').expect("end")].to_string();
    assert!(
        !b.get("/api-tokens").await.body.contains(&token),
        "shown once only"
    );
    let t = Some(token.as_str());
    let users = api(addr, "GET", "/api/v1/users?q=ali", t, None).await;
    assert_eq!(users.status, 200, "{}", users.body);
    assert!(users.body.contains("alice@localhost"), "{}", users.body);
    let body = format!("{{\"jid\":\"dave@localhost\",\"password\":\"{PASSWORD}\"}}");
    assert_eq!(
        api(addr, "POST", "/api/v1/users", t, Some(&body))
            .await
            .status,
        201
    );
    assert_eq!(
        api(addr, "POST", "/api/v1/users", t, Some(&body))
            .await
            .status,
        409
    );
    assert_eq!(
        api(addr, "POST", "/api/v1/users", t, Some("{"))
            .await
            .status,
        400
    );
    let bad = r#"{"jid":"dave@elsewhere.example","password":"x"}"#;
    assert_eq!(
        api(addr, "POST", "/api/v1/users", t, Some(bad))
            .await
            .status,
        422
    );
    let mut dave = ts.login("dave").await;
    let sessions = api(addr, "GET", "/api/v1/sessions", t, None).await;
    let v: serde_json::Value = serde_json::from_str(&sessions.body).expect("json");
    let s = v["sessions"]
        .as_array()
        .and_then(|a| {
            a.iter().find(|s| {
                s["jid"]
                    .as_str()
                    .is_some_and(|j| j.starts_with("dave@localhost/"))
            })
        })
        .cloned()
        .expect("dave's session listed");
    assert_eq!(s["transport"], "tcp");
    let kick = format!("{{\"jid\":{},\"id\":{}}}", s["jid"], s["id"]);
    assert_eq!(
        api(addr, "POST", "/api/v1/sessions/disconnect", t, Some(&kick))
            .await
            .status,
        200
    );
    assert_eq!(
        confab_tests::expect_session_stream_error(&mut dave).await,
        confab_proto::error::StreamErrorCondition::PolicyViolation
    );
    assert_eq!(
        api(addr, "POST", "/api/v1/sessions/disconnect", t, Some(&kick))
            .await
            .status,
        404
    );
    let pw = r#"{"jid":"dave@localhost","password":"another one"}"#;
    assert_eq!(
        api(addr, "POST", "/api/v1/users/password", t, Some(pw))
            .await
            .status,
        200
    );
    assert_eq!(
        api(
            addr,
            "DELETE",
            "/api/v1/users?jid=dave%40localhost",
            t,
            None
        )
        .await
        .status,
        200
    );
    assert_eq!(
        api(
            addr,
            "DELETE",
            "/api/v1/users?jid=dave%40localhost",
            t,
            None
        )
        .await
        .status,
        404
    );
    assert!(b.get("/audit").await.body.contains("api:deploy script"));
    // Revoked, the token is worth nothing.
    let tokens = b.get("/api-tokens").await.body;
    let at = tokens.find("name=\"id\" value=\"").expect("token row");
    let id = tokens[at + 17..].split('"').next().expect("id").to_string();
    assert_eq!(
        b.post("/api-tokens/revoke", &[("csrf", &csrf), ("id", &id)])
            .await
            .status,
        303
    );
    assert_eq!(api(addr, "GET", "/api/v1/users", t, None).await.status, 401);
}

#[tokio::test]
async fn guessing_api_tokens_is_limited_per_address() {
    let (_ts, addr) = configured(|c| {
        let _ = c.update_section::<AdminConfig>("admin", |a| a.login_attempts = 2);
    })
    .await;
    assert_eq!(
        api(addr, "GET", "/api/v1/sessions", Some("a"), None)
            .await
            .status,
        401
    );
    assert_eq!(
        api(addr, "GET", "/api/v1/sessions", Some("b"), None)
            .await
            .status,
        401
    );
    assert_eq!(
        api(addr, "GET", "/api/v1/sessions", Some("c"), None)
            .await
            .status,
        429
    );
}

#[tokio::test]
async fn with_tls_the_console_speaks_https_only_and_its_cookie_is_secure() {
    let (ts, addr) = configured(|c| {
        let _ = c.update_section::<AdminConfig>("admin", |a| a.tls = true);
    })
    .await;
    // Plain HTTP gets no page.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        tcp.read_to_end(&mut raw),
    )
    .await
    .expect("closed in time");
    assert!(!raw.starts_with(b"HTTP/1.1 200"), "a page over plain HTTP");
    // HTTPS, the server's certificate checked for `localhost`.
    let leaf = ts.server().ctx().tls.leaf_der.as_ref().clone();
    let cfg = confab_stream::tls::client_config(
        &confab_stream::tls::CertVerification::Roots(vec![leaf]),
        false,
    )
    .expect("client config");
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    tls.write_all(b"GET /login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        tls.read_to_end(&mut raw),
    )
    .await
    .expect("answer in time");
    let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    let cookie = text
        .lines()
        .find(|l| l.starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie: {text}"));
    assert!(cookie.contains("; secure"), "{cookie}");
}

#[tokio::test]
async fn the_users_page_and_the_api_list_accounts_a_page_at_a_time() {
    use confab_proto::sasl::{ScramCredentials, ScramHash};
    let (ts, addr) = configured(|_| {}).await;
    // 58 more accounts beside boss and alice: 60, three pages of 25.
    let creds = vec![ScramCredentials::new_random(ScramHash::Sha256, "pw", 4096).expect("creds")];
    let accounts = &ts.server().ctx().stores.accounts;
    for i in 0..58 {
        accounts
            .create_account("localhost", &format!("u{i:02}"), &creds)
            .await
            .expect("account");
    }
    let mut b = Browser::new(addr);
    assert_eq!(b.login("boss@localhost", PASSWORD).await.status, 303);
    let rows = |r: &Resp| r.body.matches("<tr><td><a href=\"/user?jid=").count();
    let first = b.get("/users").await;
    assert_eq!(rows(&first), 25, "{}", first.body);
    assert!(first.body.contains("Page 1 / 3"), "{}", first.body);
    assert!(first.body.contains(">alice@localhost<"));
    let last = b.get("/users?page=3").await;
    assert_eq!(rows(&last), 10);
    assert!(last.body.contains(">u57@localhost<"));
    let beyond = b.get("/users?page=99").await;
    assert_eq!(rows(&beyond), 10, "past the end: the last page");
    assert!(beyond.body.contains("Page 3 / 3"));
    let found = b.get("/users?q=U0").await;
    assert_eq!(rows(&found), 10, "u00…u09, case-folded");
    assert!(found.body.contains("Page 1 / 1"));
    let exact = b.get("/users?q=alice%40loc").await;
    assert_eq!(rows(&exact), 1);
    assert!(exact.body.contains(">alice@localhost<"));
    let dash = b.get("/dashboard").await;
    assert!(dash.body.contains("id=\"stat-users\">60<"), "{}", dash.body);
    // The API: offset and limit, the total beside the page.
    let csrf = b.get("/api-tokens").await.csrf();
    let page = b
        .post("/api-tokens/create", &[("csrf", &csrf), ("name", "t")])
        .await;
    let at = page.body.find("id=\"new-token\">").expect("token shown");
    let rest = &page.body[at + 15..];
    let token = rest[..rest.find('<').expect("end")].to_string();
    let t = Some(token.as_str());
    let r = api(addr, "GET", "/api/v1/users?offset=40&limit=50", t, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(v["total"], 60);
    assert_eq!(v["users"].as_array().map(Vec::len), Some(20));
    assert_eq!(v["users"][19]["jid"], "u57@localhost");
    let r = api(addr, "GET", "/api/v1/users?q=u1&limit=3", t, None).await;
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(v["total"], 10);
    assert_eq!(v["users"].as_array().map(Vec::len), Some(3));
    for bad in ["limit=0", "limit=1001", "limit=x", "offset=-1"] {
        let r = api(addr, "GET", &format!("/api/v1/users?{bad}"), t, None).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
}

#[tokio::test]
async fn the_console_closes_a_stalled_request_at_the_header_timeout() {
    let (_ts, addr) = configured(|c| c.http.header_timeout = 1).await;
    // Half a request line, then nothing: the `[http]` header deadline holds here too.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(b"GET /log").await.expect("write");
    let mut out = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        tcp.read_to_end(&mut out),
    )
    .await;
    assert!(
        read.is_ok(),
        "the console did not close a stalled connection"
    );
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    // And it still serves.
    assert_eq!(Browser::new(addr).get("/login").await.status, 200);
}

#[tokio::test]
async fn a_form_body_not_sent_in_time_gets_408() {
    let (_ts, addr) = configured(|c| c.http.header_timeout = 1).await;
    // The head and a tenth of the promised form, then nothing: the body's read is bounded
    // by the header timeout, although a request being served has no connection deadline.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let started = std::time::Instant::now();
    tcp.write_all(
        format!(
            "POST /login HTTP/1.1\r\nHost: {addr}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\njid=boss%4"
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // The answer (the connection may stay open after it).
    while !String::from_utf8_lossy(&out).contains("\r\n\r\n") {
        match tokio::time::timeout(std::time::Duration::from_secs(15), tcp.read(&mut buf))
            .await
            .expect("an answer in time")
        {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(900),
        "answered before the timeout: {text}"
    );
    // And it still serves.
    assert_eq!(Browser::new(addr).get("/login").await.status, 200);
}
