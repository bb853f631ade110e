//! The admin console of Confab: server-rendered pages for administrators on a listener of
//! its own (`[admin] listen`, 127.0.0.1:9090 by default), apart from the public `[http]`
//! listener so it can stay on loopback. A first start without an administrator prints a
//! one-time set-up link (`setup.rs`); afterwards only the accounts named in `[admin] admins`
//! log in (`auth.rs`). Pages (`pages.rs`) are plain HTML forms with a CSRF token each; one
//! small script draws the dashboard's charts. Every string is in `i18n.rs` (English and
//! 简体中文); admin actions go to a durable audit log (`audit.rs`).

// Handlers return `Result<_, Response>`: the refusal is the answer, built once per request;
// its size on the error path costs nothing worth boxing.
#![allow(clippy::result_large_err)]

use axum::extract::{ConnectInfo, FromRequest, Request};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use confab_server::module::{LifecycleListener, Module, ModuleConfig, Registry};
use confab_server::ServerCtx;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

pub mod api;
pub mod audit;
pub mod auth;
pub mod html;
pub mod i18n;
mod pages;
pub mod setup;
pub mod stats;

use i18n::Lang;

/// The listener name (`Server::listener_addr("admin")`).
pub const LISTENER: &str = "admin";

/// Largest form body accepted (bytes); the console's forms are small.
const MAX_FORM: usize = 16 * 1024;

/// `[admin]`: the console's listener, who administers, and its security limits.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Serve the console (`[modules] disabled = ["admin"]` switches it off too).
    pub enabled: bool,
    /// Address and port of the console; keep it on loopback and reach it through an SSH
    /// tunnel (it is plain HTTP unless `tls`).
    pub listen: String,
    /// Accounts that may log in to the console (bare JIDs). Empty: the server is not set up
    /// yet, and a set-up link is printed in the log at start.
    pub admins: Vec<String>,
    /// The console's language until an administrator picks another (`en`, `zh-CN`).
    pub language: String,
    /// Seconds the printed set-up link stays valid.
    pub setup_token_ttl: u64,
    /// Seconds of inactivity after which an administrator is logged out.
    pub session_timeout: u64,
    /// Failed logins allowed per client address within `login_window` seconds.
    pub login_attempts: u32,
    pub login_window: u64,
    /// Mark the session cookie `Secure`: set it when a TLS-terminating proxy serves the
    /// console over HTTPS (the listener itself is plain HTTP).
    pub secure_cookie: bool,
    /// Serve the console over HTTPS with the server's certificate (`[tls]`); the session
    /// cookie is then `Secure`.
    pub tls: bool,
    /// Host names the console answers to besides `localhost` and IP addresses (against DNS
    /// rebinding: a page on another name that resolves to this address gets 421).
    pub allowed_hosts: Vec<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            listen: "127.0.0.1:9090".into(),
            admins: Vec::new(),
            language: "en".into(),
            setup_token_ttl: 3600,
            session_timeout: 1800,
            login_attempts: 5,
            login_window: 300,
            secure_cookie: false,
            tls: false,
            allowed_hosts: Vec::new(),
        }
    }
}

impl ModuleConfig for AdminConfig {
    fn validate(&self) -> Result<(), String> {
        if self.listen.parse::<SocketAddr>().is_err() {
            return Err(format!(
                "listen: '{}' is not an address:port such as 127.0.0.1:9090",
                self.listen
            ));
        }
        for a in &self.admins {
            match confab_proto::jid::BareJid::new(a) {
                Ok(j) if j.node().is_some() => {}
                _ => return Err(format!("admins: '{a}' is not an account address")),
            }
        }
        if Lang::from_tag(&self.language).is_none() {
            return Err(format!(
                "language: '{}' is not one of en, zh-CN",
                self.language
            ));
        }
        if self.setup_token_ttl == 0 || self.session_timeout == 0 || self.login_window == 0 {
            return Err(
                "setup_token_ttl, session_timeout and login_window must be positive".into(),
            );
        }
        if self.login_attempts == 0 {
            return Err("login_attempts must be at least 1".into());
        }
        for h in &self.allowed_hosts {
            if h.is_empty()
                || !h
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            {
                return Err(format!("allowed_hosts: '{h}' is not a host name"));
            }
        }
        Ok(())
    }
}

impl AdminConfig {
    /// Whether `jid` (a bare JID as normalised) is an administrator.
    pub fn is_admin(&self, jid: &str) -> bool {
        self.admins.iter().any(|a| {
            confab_proto::jid::BareJid::new(a)
                .map(|j| j.as_str() == jid)
                .unwrap_or(false)
        })
    }
}

/// The `admin` module. `confabd` builds it with a restart handle, so the set-up wizard can
/// restart the server in-process with the settings it wrote.
#[derive(Default)]
pub struct Admin {
    restart: Option<Arc<tokio::sync::Notify>>,
    /// The console of the server registered last (what tests and embedders inspect).
    current: Mutex<Option<Arc<Console>>>,
}

impl Admin {
    /// A console whose set-up wizard ends by telling the operator to restart confabd.
    pub fn new() -> Admin {
        Admin::default()
    }

    /// A console whose set-up wizard asks for an in-process restart through `restart`
    /// (`notify_one` once the settings are written); the embedder then shuts the server
    /// down and starts it again with the configuration reloaded.
    pub fn with_restart(restart: Arc<tokio::sync::Notify>) -> Admin {
        Admin {
            restart: Some(restart),
            current: Mutex::new(None),
        }
    }

    /// The set-up link of the running server while it waits to be set up (the same link
    /// the log shows), for tests and embedders.
    pub fn setup_link(&self) -> Option<String> {
        let console = self.current.lock().ok()?.clone()?;
        let link = console.setup.lock().ok()?.link.clone();
        link
    }
}

/// Every console module `confabd` lists (one).
pub fn all() -> Vec<Arc<dyn Module>> {
    vec![Arc::new(Admin::new())]
}

/// The state of one server's console.
pub struct Console {
    pub config: AdminConfig,
    pub sessions: auth::Sessions,
    pub limiter: auth::LoginLimiter,
    pub setup: Mutex<setup::SetupState>,
    pub stats: stats::Stats,
    restart: Option<Arc<tokio::sync::Notify>>,
}

impl Module for Admin {
    fn name(&self) -> &'static str {
        "admin"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        let config = reg.section::<AdminConfig>("admin");
        if !config.enabled {
            return;
        }
        let Ok(addr) = config.listen.parse::<SocketAddr>() else {
            return; // validation already reported it
        };
        let console = Arc::new(Console {
            sessions: auth::Sessions::new(config.session_timeout),
            limiter: auth::LoginLimiter::new(config.login_attempts, config.login_window),
            setup: Mutex::new(setup::SetupState::default()),
            stats: stats::Stats::default(),
            restart: self.restart.clone(),
            config,
        });
        if let Ok(mut cur) = self.current.lock() {
            *cur = Some(console.clone());
        }
        if console.config.tls {
            reg.https_listener(LISTENER, vec![addr], router(console.clone()));
        } else {
            reg.http_listener(LISTENER, vec![addr], router(console.clone()));
        }
        reg.lifecycle(Arc::new(Started(console.clone())));
        reg.timer(stats::PERIOD, Arc::new(stats::Sampler(console)));
    }
}

/// At start: the set-up link, if no administrator is configured.
struct Started(Arc<Console>);

#[async_trait::async_trait]
impl LifecycleListener for Started {
    async fn server_started(&self, ctx: &ServerCtx) {
        if !self.0.config.admins.is_empty() {
            return;
        }
        let Some(addr) = ctx
            .listener_addrs
            .iter()
            .find(|(n, _)| *n == LISTENER)
            .map(|(_, a)| *a)
        else {
            return;
        };
        setup::open(&self.0, addr);
    }
}

/// The console's routes, with the security headers on every answer.
fn router(console: Arc<Console>) -> axum::Router<ServerCtx> {
    axum::Router::new()
        .route("/", get(pages::root))
        .route("/static/console.css", get(pages::css))
        .route("/static/console.js", get(pages::js))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/language", post(pages::set_language))
        .route("/setup", get(setup::page).post(setup::submit))
        .route("/dashboard", get(pages::dashboard))
        .route("/stats.json", get(pages::stats_json))
        .route("/users", get(pages::users))
        .route("/users/create", post(pages::create_user))
        .route("/user", get(pages::user))
        .route("/user/password", post(pages::reset_password))
        .route("/user/delete", post(pages::delete_user))
        .route("/sessions", get(pages::sessions))
        .route("/sessions/disconnect", post(pages::disconnect))
        .route("/rooms", get(pages::rooms))
        .route("/rooms/act", post(pages::room_action))
        .route("/settings", get(pages::settings))
        .route("/api-tokens", get(api::tokens_page))
        .route("/api-tokens/create", post(api::create_token))
        .route("/api-tokens/revoke", post(api::revoke_token))
        .route("/api/v1/openapi.json", get(api::openapi))
        .route(
            "/api/v1/users",
            get(api::list_users)
                .post(api::create_user)
                .delete(api::delete_user),
        )
        .route("/api/v1/users/password", post(api::set_password))
        .route("/api/v1/sessions", get(api::list_sessions))
        .route("/api/v1/sessions/disconnect", post(api::disconnect))
        .route("/api/v1/rooms", get(api::list_rooms))
        .route("/api/v1/rooms/destroy", post(api::destroy_room))
        .route("/audit", get(pages::audit))
        .fallback(pages::not_found)
        .layer(axum::middleware::map_response(security_headers))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(console.config.allowed_hosts.clone()),
            check_host,
        ))
        .layer(axum::Extension(console))
}

/// Whether the console answers a request with this `Host` header: an IP address (a page of
/// another site cannot make a browser send one for its own name), `localhost`, or a name
/// in `[admin] allowed_hosts`; any port. A name that rebinds to this address is none of
/// those.
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        // `[::1]:9090`: an IPv6 literal.
        Some(rest) => {
            return rest.split_once(']').is_some_and(|(a, tail)| {
                a.parse::<std::net::Ipv6Addr>().is_ok()
                    && (tail.is_empty() || tail.starts_with(':'))
            })
        }
        None => host.rsplit_once(':').map_or(host, |(n, _)| n),
    };
    let name = name.trim_end_matches('.');
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
}

/// Refuses requests for other host names before anything else sees them: 421 Misdirected
/// Request, or 400 without a `Host`.
async fn check_host(
    axum::extract::State(allowed): axum::extract::State<Arc<Vec<String>>>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    match host {
        Some(h) if host_allowed(h, &allowed) => next.run(req).await,
        Some(h) => {
            tracing::warn!(host = %h.escape_debug(), "admin console: request for a host name not allowed; refused (421)");
            (
                StatusCode::MISDIRECTED_REQUEST,
                "unknown host name; see [admin] allowed_hosts\n",
            )
                .into_response()
        }
        None => (StatusCode::BAD_REQUEST, "Host header required\n").into_response(),
    }
}

/// No framing, no foreign scripts or form targets, no caching of admin pages, no referrer.
async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

/// One request to the console: the server, the console, the client's address, headers,
/// query and (for POST) the form fields.
pub struct Http {
    pub ctx: ServerCtx,
    pub console: Arc<Console>,
    pub peer: IpAddr,
    pub method: Method,
    pub headers: HeaderMap,
    pub uri: Uri,
    form: Vec<(String, String)>,
    /// The request body (POST, PUT, DELETE), bounded by `MAX_FORM`.
    pub body: axum::body::Bytes,
}

impl FromRequest<ServerCtx> for Http {
    type Rejection = Response;

    async fn from_request(req: Request, state: &ServerCtx) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let Some(console) = parts.extensions.get::<Arc<Console>>().cloned() else {
            return Err(StatusCode::INTERNAL_SERVER_ERROR.into_response());
        };
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let body = if parts.method == Method::GET || parts.method == Method::HEAD {
            axum::body::Bytes::new()
        } else {
            // Bounded in time as well as size: a request being served has no connection
            // deadline, so a trickled form would otherwise hold its connection forever.
            let read = std::time::Duration::from_secs(state.config.http.header_timeout);
            tokio::time::timeout(read, axum::body::to_bytes(body, MAX_FORM))
                .await
                .map_err(|_| StatusCode::REQUEST_TIMEOUT.into_response())?
                .map_err(|_| StatusCode::PAYLOAD_TOO_LARGE.into_response())?
        };
        let is_form = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let form = if is_form {
            form_urlencoded::parse(&body).into_owned().collect()
        } else {
            Vec::new()
        };
        Ok(Http {
            ctx: state.clone(),
            console,
            peer,
            method: parts.method,
            headers: parts.headers,
            uri: parts.uri,
            form,
            body,
        })
    }
}

impl Http {
    /// A form field (the first of that name).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter.
    pub fn query(&self, name: &str) -> Option<String> {
        let q = self.uri.query()?;
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// A cookie's value.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// The language: `?lang=`, else the cookie, else `[admin] language`.
    pub fn lang(&self) -> Lang {
        self.query("lang")
            .and_then(|t| Lang::from_tag(&t))
            .or_else(|| self.cookie(LANG_COOKIE).and_then(Lang::from_tag))
            .or_else(|| Lang::from_tag(&self.console.config.language))
            .unwrap_or(Lang::En)
    }

    /// A `Set-Cookie` value with the console's attributes: HttpOnly, SameSite=Strict,
    /// Path=/, Secure when configured; `max_age` 0 deletes it.
    pub fn cookie_header(&self, name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
        let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
        if let Some(a) = max_age {
            c.push_str(&format!("; Max-Age={a}"));
        }
        if self.console.config.secure_cookie || self.console.config.tls {
            c.push_str("; Secure");
        }
        HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static("x=; Max-Age=0"))
    }
}

/// The cookie that keeps the language chosen (before and after login).
pub const LANG_COOKIE: &str = "confab_lang";

/// Adds a `Set-Cookie` for the language when the request chose one with `?lang=`.
pub fn remember_lang(req: &Http, mut r: Response) -> Response {
    if let Some(l) = req.query("lang").and_then(|t| Lang::from_tag(&t)) {
        let v = req.cookie_header(LANG_COOKIE, l.tag(), Some(365 * 86400));
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// A fresh random token (32 bytes, URL-safe base64).
pub fn random_token() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Constant-time equality of two tokens.
pub fn same_token(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_addresses_localhost_and_allowed_names_are_served() {
        let allowed = vec!["admin.example.org".to_string()];
        for ok in [
            "127.0.0.1:9090",
            "127.0.0.1",
            "[::1]:9090",
            "localhost:9090",
            "LOCALHOST",
            "admin.example.org",
            "Admin.Example.org.:443",
            "192.0.2.4:9090",
        ] {
            assert!(host_allowed(ok, &allowed), "{ok}");
        }
        for bad in [
            "evil.example:9090",
            "localhost.evil.example",
            "127.0.0.1.nip.io:9090",
            "[::1",
            "[evil]:9090",
            "",
        ] {
            assert!(!host_allowed(bad, &allowed), "{bad}");
        }
    }
}
