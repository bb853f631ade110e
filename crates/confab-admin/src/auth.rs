//! Who may use the console: administrators' sessions (a random cookie, kept in memory; a
//! restart logs everyone out), the CSRF token of each session, the per-address login limit,
//! and password checks through the account store (SCRAM keys, derivation on the blocking
//! pool).

use crate::html::{self, csrf_field, esc, Frame};
use crate::{audit, Http};
use axum::http::{header, StatusCode};
use axum::response::Response;
use confab_proto::sasl::{ScramCredentials, ScramHash};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The session cookie of a logged-in administrator.
pub const SESSION_COOKIE: &str = "confab_admin";
/// The login form's CSRF cookie (double submit: the form carries the same value).
pub const LOGIN_COOKIE: &str = "confab_login";
/// Most administrator sessions held at once (the oldest goes first).
const MAX_SESSIONS: usize = 256;
/// Most client addresses the login limit tracks (the stalest goes first).
const MAX_TRACKED: usize = 10_000;

/// A logged-in administrator.
#[derive(Clone, Debug)]
pub struct AdminSession {
    pub jid: String,
    pub csrf: String,
    last_seen: Instant,
}

/// The administrators' sessions, by cookie value.
pub struct Sessions {
    map: Mutex<HashMap<String, AdminSession>>,
    timeout: Duration,
}

impl Sessions {
    pub fn new(timeout_secs: u64) -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            timeout: Duration::from_secs(timeout_secs),
        }
    }

    /// Starts a session for `jid`; returns the cookie value.
    pub fn create(&self, jid: &str) -> String {
        let token = crate::random_token();
        let Ok(mut map) = self.map.lock() else {
            return token;
        };
        let timeout = self.timeout;
        map.retain(|_, s| s.last_seen.elapsed() < timeout);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            token.clone(),
            AdminSession {
                jid: jid.to_string(),
                csrf: crate::random_token(),
                last_seen: Instant::now(),
            },
        );
        token
    }

    /// The live session of this cookie value (and it counts as activity).
    pub fn get(&self, token: &str) -> Option<AdminSession> {
        let mut map = self.map.lock().ok()?;
        let s = map.get_mut(token)?;
        if s.last_seen.elapsed() >= self.timeout {
            map.remove(token);
            return None;
        }
        s.last_seen = Instant::now();
        Some(s.clone())
    }

    /// Ends every session of `jid` (its account was deleted).
    pub fn remove_jid(&self, jid: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.retain(|_, s| s.jid != jid);
        }
    }

    pub fn remove(&self, token: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(token);
        }
    }
}

/// Failed logins per client address within a window.
pub struct LoginLimiter {
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    max: u32,
    window: Duration,
}

impl LoginLimiter {
    pub fn new(max: u32, window_secs: u64) -> LoginLimiter {
        LoginLimiter {
            failures: Mutex::new(HashMap::new()),
            max,
            window: Duration::from_secs(window_secs),
        }
    }

    /// Whether `ip` used up its failures for the current window.
    pub fn blocked(&self, ip: IpAddr) -> bool {
        let Ok(map) = self.failures.lock() else {
            return true;
        };
        matches!(map.get(&ip), Some((start, n)) if start.elapsed() < self.window && *n >= self.max)
    }

    pub fn failed(&self, ip: IpAddr) {
        let Ok(mut map) = self.failures.lock() else {
            return;
        };
        if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
            let window = self.window;
            map.retain(|_, (start, _)| start.elapsed() < window);
            if map.len() >= MAX_TRACKED {
                if let Some(stalest) = map.iter().min_by_key(|(_, (s, _))| *s).map(|(k, _)| *k) {
                    map.remove(&stalest);
                }
            }
        }
        let e = map.entry(ip).or_insert((Instant::now(), 0));
        if e.0.elapsed() >= self.window {
            *e = (Instant::now(), 0);
        }
        e.1 = e.1.saturating_add(1);
    }

    pub fn succeeded(&self, ip: IpAddr) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(&ip);
        }
    }
}

/// The administrator of this request, or the answer to give instead: a page asks for a
/// login (303 to `/login`), anything else is refused with 401.
pub fn require_admin(req: &Http) -> Result<AdminSession, Response> {
    if let Some(s) = req
        .cookie(SESSION_COOKIE)
        .and_then(|t| req.console.sessions.get(t))
    {
        return Ok(s);
    }
    if req.method == axum::http::Method::GET {
        Err(html::see_other("/login"))
    } else {
        tracing::warn!(peer = %req.peer, path = %req.uri.path(), "admin console: request without an admin session refused");
        Err(refusal(req, StatusCode::UNAUTHORIZED, "error.forbidden"))
    }
}

/// Checks the form's CSRF token against `expected`; a mismatch is refused with 403 and
/// logged.
pub fn check_csrf(req: &Http, expected: &str) -> Result<(), Response> {
    match req.field("csrf") {
        Some(got) if crate::same_token(got, expected) => Ok(()),
        _ => {
            tracing::warn!(peer = %req.peer, path = %req.uri.path(), "admin console: missing or forged CSRF token refused");
            Err(refusal(req, StatusCode::FORBIDDEN, "error.csrf"))
        }
    }
}

/// A short error page.
pub fn refusal(req: &Http, status: StatusCode, key: &str) -> Response {
    let l = req.lang();
    let frame = Frame {
        lang: l,
        csrf: None,
        admin: None,
    };
    html::respond(
        status,
        html::page(
            &frame,
            l.t("error.forbidden"),
            &format!(
                "{}<p><a href=\"/\">Confab</a></p>",
                html::notice("error", l.t(key))
            ),
        ),
    )
}

/// GET /login
pub async fn login_page(req: Http) -> Response {
    let r = login_form(&req, StatusCode::OK, None);
    crate::remember_lang(&req, r)
}

fn login_form(req: &Http, status: StatusCode, error: Option<&str>) -> Response {
    let l = req.lang();
    let token = crate::random_token();
    let mut body = String::new();
    if req.console.config.admins.is_empty() {
        let done = req.console.setup.lock().map(|s| s.done).unwrap_or(false);
        body.push_str(&html::notice(
            "info",
            l.t(if done {
                "login.restart"
            } else {
                "login.no_admin"
            }),
        ));
    }
    if let Some(key) = error {
        body.push_str(&html::notice("error", l.t(key)));
    }
    body.push_str(&format!(
        "<form method=\"post\" action=\"/login\" class=\"card\">{csrf}\
<label>{jid}<input name=\"jid\" id=\"jid\" autocomplete=\"username\" required></label>\
<label>{pw}<input type=\"password\" name=\"password\" id=\"password\" autocomplete=\"current-password\" required></label>\
<button type=\"submit\">{submit}</button></form>",
        csrf = csrf_field(&token),
        jid = esc(l.t("login.jid")),
        pw = esc(l.t("login.password")),
        submit = esc(l.t("login.submit")),
    ));
    let frame = Frame {
        lang: l,
        csrf: None,
        admin: None,
    };
    let mut r = html::respond(status, html::page(&frame, l.t("login.title"), &body));
    r.headers_mut().append(
        header::SET_COOKIE,
        req.cookie_header(LOGIN_COOKIE, &token, Some(3600)),
    );
    r
}

/// POST /login: rate limit, CSRF (double submit), then the password through the store.
pub async fn login(req: Http) -> Response {
    let peer = req.peer;
    if req.console.limiter.blocked(peer) {
        tracing::warn!(%peer, "admin console: login refused, too many failures from this address");
        let mut r = login_form(&req, StatusCode::TOO_MANY_REQUESTS, Some("login.limited"));
        if let Ok(v) = req.console.config.login_window.to_string().parse() {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let expected = req.cookie(LOGIN_COOKIE).unwrap_or_default().to_string();
    if expected.is_empty() {
        tracing::warn!(%peer, "admin console: login without its CSRF cookie refused");
        return login_form(&req, StatusCode::FORBIDDEN, Some("error.csrf"));
    }
    if let Err(r) = check_csrf(&req, &expected) {
        return r;
    }
    let jid_text = req.field("jid").unwrap_or_default().trim().to_string();
    let password = req.field("password").unwrap_or_default().to_string();
    let account = confab_server::accounts::parse_account(&jid_text, &req.ctx.config.server.domains)
        .ok()
        .map(|j| j.to_string());
    let ok = match &account {
        Some(a) => verify_password(&req.ctx, a, &password).await,
        None => {
            decoy(&req.ctx, &password).await;
            false
        }
    };
    let stores = &req.ctx.stores;
    if !ok {
        req.console.limiter.failed(peer);
        tracing::warn!(%peer, jid = %jid_text, "admin console: login failed (wrong address or password)");
        audit::record(stores, &jid_text, "login-failed", &peer.to_string()).await;
        return login_form(&req, StatusCode::UNAUTHORIZED, Some("login.failed"));
    }
    let account = account.unwrap_or_default();
    if !req.console.config.is_admin(&account) {
        req.console.limiter.failed(peer);
        tracing::warn!(%peer, jid = %account, "admin console: login refused, not an administrator");
        audit::record(stores, &account, "login-refused", "not an administrator").await;
        return login_form(&req, StatusCode::FORBIDDEN, Some("login.not_admin"));
    }
    req.console.limiter.succeeded(peer);
    let token = req.console.sessions.create(&account);
    tracing::info!(%peer, jid = %account, "admin console: administrator logged in");
    audit::record(stores, &account, "login", &peer.to_string()).await;
    let mut r = html::see_other("/dashboard");
    r.headers_mut().append(
        header::SET_COOKIE,
        req.cookie_header(SESSION_COOKIE, &token, None),
    );
    r.headers_mut().append(
        header::SET_COOKIE,
        req.cookie_header(LOGIN_COOKIE, "", Some(0)),
    );
    r
}

/// POST /logout
pub async fn logout(req: Http) -> Response {
    let s = match require_admin(&req) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Err(r) = check_csrf(&req, &s.csrf) {
        return r;
    }
    if let Some(t) = req.cookie(SESSION_COOKIE) {
        req.console.sessions.remove(t);
    }
    audit::record(&req.ctx.stores, &s.jid, "logout", "").await;
    let mut r = html::see_other("/login");
    r.headers_mut().append(
        header::SET_COOKIE,
        req.cookie_header(SESSION_COOKIE, "", Some(0)),
    );
    r
}

/// Whether `password` is the account's, checked against its stored SCRAM keys on the
/// blocking pool. A missing account costs the same derivation.
pub async fn verify_password(ctx: &confab_server::ServerCtx, jid: &str, password: &str) -> bool {
    let Some((user, domain)) = jid.split_once('@') else {
        return false;
    };
    let stored = match ctx.stores.accounts.credentials(domain, user).await {
        Ok(Some(c)) => c
            .iter()
            .find(|c| c.hash == ScramHash::Sha256)
            .or(c.first())
            .cloned(),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "admin console: storage failed while checking a login");
            return false;
        }
    };
    let Some(creds) = stored else {
        decoy(ctx, password).await;
        return false;
    };
    let password = password.to_string();
    tokio::task::spawn_blocking(move || creds.verify_password(&password))
        .await
        .unwrap_or(false)
}

/// The key derivation a real check would cost, so timing does not tell missing accounts.
async fn decoy(ctx: &confab_server::ServerCtx, password: &str) {
    let password = password.to_string();
    let salt = ctx.auth.decoy_secret.clone();
    let iterations = ctx.auth.decoy_iterations;
    let _ = tokio::task::spawn_blocking(move || {
        ScramCredentials::derive(ScramHash::Sha256, &password, &salt, iterations)
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_blocks_after_the_allowed_failures_per_address() {
        let l = LoginLimiter::new(2, 60);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        l.failed(a);
        assert!(!l.blocked(a));
        l.failed(a);
        assert!(l.blocked(a));
        assert!(!l.blocked(b), "other addresses are not affected");
        l.succeeded(a);
        assert!(!l.blocked(a));
    }

    #[test]
    fn sessions_expire_and_are_bounded() {
        let s = Sessions::new(3600);
        let t = s.create("admin@localhost");
        assert_eq!(s.get(&t).map(|x| x.jid), Some("admin@localhost".into()));
        s.remove(&t);
        assert!(s.get(&t).is_none());
        let expired = Sessions::new(0);
        let t = expired.create("admin@localhost");
        assert!(expired.get(&t).is_none());
        for _ in 0..MAX_SESSIONS + 10 {
            s.create("a@b");
        }
        assert!(s.map.lock().map(|m| m.len()).unwrap_or(0) <= MAX_SESSIONS);
    }
}
