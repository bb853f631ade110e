//! The set-up wizard. A server started without administrators (`[admin] admins` empty)
//! prints a one-time link with a random token; the token expires after
//! `setup_token_ttl` seconds and works once: opening it starts the wizard in that browser
//! (a cookie of its own). Steps: language, domain, database (SQLite, or a PostgreSQL /
//! MySQL URL with a connection test that really connects), administrator account. The
//! result goes to `<data_dir>/console.toml` (`Config::load` reads it over the
//! configuration file), the account is created in the chosen database, and the server is
//! restarted in-process when its embedder allows (confabd does), else the page says to
//! restart.

use crate::html::{self, csrf_field, esc, Frame};
use crate::i18n::Lang;
use crate::{audit, Console, Http};
use axum::http::{header, StatusCode};
use axum::response::Response;
use confab_proto::jid::BareJid;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The wizard's cookie.
pub const SETUP_COOKIE: &str = "confab_setup";

/// Where set-up stands.
#[derive(Default)]
pub struct SetupState {
    token: Option<String>,
    expires: Option<Instant>,
    used: bool,
    /// The printed link (while the token is valid).
    pub link: Option<String>,
    wizard: Option<Wizard>,
    /// The wizard finished: the settings are written, a restart applies them.
    pub done: bool,
}

/// One browser's walk through the wizard.
#[derive(Clone)]
struct Wizard {
    cookie: String,
    csrf: String,
    lang: Lang,
    step: u8,
    domain: String,
    /// `None`: SQLite in the data directory.
    db_url: Option<String>,
    expires: Instant,
}

/// Makes the one-time token and prints the link (called at start when no administrator is
/// configured).
pub fn open(console: &Console, addr: SocketAddr) {
    let token = crate::random_token();
    let host = if addr.ip().is_unspecified() {
        SocketAddr::new([127, 0, 0, 1].into(), addr.port())
    } else {
        addr
    };
    let scheme = if console.config.tls { "https" } else { "http" };
    let link = format!("{scheme}://{host}/setup?token={token}");
    let ttl = console.config.setup_token_ttl;
    if let Ok(mut s) = console.setup.lock() {
        s.token = Some(token);
        s.expires = Some(Instant::now() + Duration::from_secs(ttl));
        s.link = Some(link.clone());
    }
    tracing::warn!(
        "no administrator yet: open {link} within {} minutes to set up this server (the link works once)",
        ttl.div_ceil(60)
    );
}

/// Why a set-up request is refused.
enum Refused {
    /// 403: no such token, or no wizard cookie.
    BadToken,
    /// 410: the token expired or was used.
    Expired,
    /// 410: set-up is over.
    Closed,
}

fn refuse(req: &Http, why: Refused) -> Response {
    let (status, key, what) = match why {
        Refused::BadToken => (StatusCode::FORBIDDEN, "setup.token_bad", "invalid"),
        Refused::Expired => (StatusCode::GONE, "setup.token_expired", "expired or used"),
        Refused::Closed => (StatusCode::GONE, "setup.closed", "closed"),
    };
    tracing::warn!(peer = %req.peer, "admin console: set-up request refused ({what})");
    crate::auth::refusal(req, status, key)
}

fn closed(req: &Http, s: &SetupState) -> bool {
    !req.console.config.admins.is_empty() || s.done
}

/// GET /setup?token=… starts the wizard; GET /setup shows its current step.
pub async fn page(req: Http) -> Response {
    let Ok(mut s) = req.console.setup.lock() else {
        return refuse(&req, Refused::Closed);
    };
    if closed(&req, &s) {
        return refuse(&req, Refused::Closed);
    }
    if let Some(given) = req.query("token") {
        let Some(token) = s.token.clone() else {
            return refuse(&req, Refused::BadToken);
        };
        if !crate::same_token(&given, &token) {
            return refuse(&req, Refused::BadToken);
        }
        let expired = s.expires.is_none_or(|e| Instant::now() >= e);
        if s.used || expired {
            return refuse(&req, Refused::Expired);
        }
        s.used = true;
        s.link = None;
        let lang = Lang::from_tag(&req.console.config.language).unwrap_or(Lang::En);
        let w = Wizard {
            cookie: crate::random_token(),
            csrf: crate::random_token(),
            lang,
            step: 1,
            domain: req
                .ctx
                .config
                .server
                .domains
                .first()
                .cloned()
                .unwrap_or_default(),
            db_url: None,
            // The wizard lives as long as the link would have.
            expires: s.expires.unwrap_or_else(Instant::now),
        };
        let cookie = req.cookie_header(SETUP_COOKIE, &w.cookie, None);
        s.wizard = Some(w);
        tracing::info!(peer = %req.peer, "admin console: set-up started");
        let mut r = html::see_other("/setup");
        r.headers_mut().append(header::SET_COOKIE, cookie);
        return r;
    }
    let Some(w) = wizard_of(&req, &s) else {
        return refuse(&req, Refused::BadToken);
    };
    drop(s);
    render(&w, None, StatusCode::OK)
}

/// The wizard of this browser, if its cookie matches and it has not expired.
fn wizard_of(req: &Http, s: &SetupState) -> Option<Wizard> {
    let w = s.wizard.as_ref()?;
    let cookie = req.cookie(SETUP_COOKIE)?;
    (crate::same_token(cookie, &w.cookie) && Instant::now() < w.expires).then(|| w.clone())
}

/// POST /setup: one step's answer (`step` names it), or `back`.
pub async fn submit(req: Http) -> Response {
    let w = {
        let Ok(s) = req.console.setup.lock() else {
            return refuse(&req, Refused::Closed);
        };
        if closed(&req, &s) {
            return refuse(&req, Refused::Closed);
        }
        match wizard_of(&req, &s) {
            Some(w) => w,
            // A wizard that ran out of time, or no wizard of this browser at all.
            None if s.wizard.is_some() && req.cookie(SETUP_COOKIE).is_some() => {
                return refuse(&req, Refused::Expired)
            }
            None => return refuse(&req, Refused::BadToken),
        }
    };
    if let Err(r) = crate::auth::check_csrf(&req, &w.csrf) {
        return r;
    }
    let mut w = w;
    let mut message: Option<(String, &'static str)> = None;
    if req.field("back").is_some() {
        w.step = w.step.saturating_sub(1).max(1);
    } else {
        match req.field("step").unwrap_or_default() {
            "language" => {
                if let Some(l) = req.field("lang").and_then(Lang::from_tag) {
                    w.lang = l;
                    w.step = 2;
                }
            }
            "domain" => {
                let d = req
                    .field("domain")
                    .unwrap_or_default()
                    .trim()
                    .to_lowercase();
                if valid_domain(&d) {
                    w.domain = d;
                    w.step = 3;
                } else {
                    message = Some((w.lang.t("setup.domain_bad").into(), "error"));
                }
            }
            "database" => {
                let sqlite = req.field("db") != Some("url");
                let url = req.field("url").unwrap_or_default().trim().to_string();
                if sqlite {
                    w.db_url = None;
                    w.step = 4;
                } else {
                    match test_connection(&url).await {
                        Ok(()) if req.field("test").is_some() => {
                            w.db_url = Some(url);
                            message = Some((w.lang.t("setup.db_ok").into(), "ok"));
                        }
                        Ok(()) => {
                            w.db_url = Some(url);
                            w.step = 4;
                        }
                        Err(e) => {
                            w.db_url = Some(url);
                            let text = match e {
                                ConnError::BadUrl => w.lang.t("setup.db_bad_url").to_string(),
                                ConnError::Failed(e) => {
                                    format!("{} {e}", w.lang.t("setup.db_failed"))
                                }
                            };
                            message = Some((text, "error"));
                        }
                    }
                }
            }
            "admin" => match finish(&req, &w).await {
                Ok(r) => return r,
                Err(key) => message = Some((key, "error")),
            },
            _ => {}
        }
    }
    if let Ok(mut s) = req.console.setup.lock() {
        if let Some(cur) = s.wizard.as_mut() {
            *cur = w.clone();
        }
    }
    let status = if message.as_ref().is_some_and(|m| m.1 == "error") {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    render(&w, message.as_ref().map(|(t, k)| (t.as_str(), *k)), status)
}

fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && matches!(BareJid::new(d), Ok(j) if j.node().is_none() && j.as_str() == d)
        && !d.contains('/')
}

enum ConnError {
    BadUrl,
    Failed(String),
}

/// Connects to the database the URL names and reads its migration state (nothing is
/// changed), within ten seconds.
async fn test_connection(url: &str) -> Result<(), ConnError> {
    let backend = match confab_store::Backend::from_url(url) {
        Ok(b @ (confab_store::Backend::Postgres { .. } | confab_store::Backend::Mysql { .. })) => b,
        _ => return Err(ConnError::BadUrl),
    };
    match tokio::time::timeout(
        Duration::from_secs(10),
        confab_store::migration_status(&backend),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(ConnError::Failed(redact(url, &e.to_string()))),
        Err(_) => Err(ConnError::Failed("timed out".into())),
    }
}

/// An error message without the URL's password.
fn redact(url: &str, text: &str) -> String {
    let shown = confab_store::Backend::from_url(url)
        .map(|b| b.display_url())
        .unwrap_or_default();
    text.replace(url, &shown)
}

/// The last step: the account in the chosen database, the settings file, the restart.
async fn finish(req: &Http, w: &Wizard) -> Result<Response, String> {
    let l = w.lang;
    let user = req.field("username").unwrap_or_default().trim().to_string();
    let password = req.field("password").unwrap_or_default();
    if password != req.field("password2").unwrap_or_default() {
        return Err(l.t("setup.mismatch").into());
    }
    let jid = match BareJid::new(&format!("{user}@{}", w.domain)) {
        Ok(j) if j.node().is_some() && !user.is_empty() && !user.contains('@') => j,
        _ => return Err(l.t("setup.bad_user").into()),
    };
    if confab_server::accounts::prepare_password(password).is_err() {
        return Err(l.t("setup.bad_password").into());
    }
    let ctx = &req.ctx;
    let backend = match &w.db_url {
        Some(u) => confab_store::Backend::from_url(u).map_err(|_| l.t("setup.db_bad_url"))?,
        None => confab_store::Backend::Sqlite {
            path: ctx.config.sqlite_path(),
        },
    };
    let stores = if ctx.config.storage_backend().ok().as_ref() == Some(&backend) {
        ctx.stores.clone()
    } else {
        let pool = confab_store::PoolOptions {
            size: 2,
            acquire_timeout: Duration::from_secs(10),
        };
        confab_store::Stores::open_with(&backend, &pool)
            .await
            .map_err(|e| {
                format!(
                    "{} {}",
                    l.t("setup.db_failed"),
                    redact(w.db_url.as_deref().unwrap_or_default(), &e.to_string())
                )
            })?
    };
    match confab_server::accounts::create(&stores, &jid, password, ctx.config.auth.scram_iterations)
        .await
    {
        Ok(()) => {}
        Err(confab_server::accounts::AccountError::Exists) => {
            return Err(l.t("setup.exists").into())
        }
        Err(e) => return Err(format!("{} {e}", l.t("setup.failed"))),
    }
    let storage_url = match &backend {
        confab_store::Backend::Sqlite { path } => format!("sqlite://{}", path.display()),
        _ => w.db_url.clone().unwrap_or_default(),
    };
    let file = ctx.config.console_file();
    write_settings(&file, &w.domain, &storage_url, jid.as_str(), l)
        .map_err(|e| format!("{} {}: {e}", l.t("setup.failed"), file.display()))?;
    if let Ok(mut s) = req.console.setup.lock() {
        s.done = true;
        s.wizard = None;
        s.token = None;
    }
    audit::record(
        &stores,
        jid.as_str(),
        "setup",
        &format!("domain {}, storage {}", w.domain, backend.display_url()),
    )
    .await;
    tracing::info!(admin = %jid, file = %file.display(), "admin console: set-up complete");
    let restarting = match &req.console.restart {
        Some(n) => {
            let n = n.clone();
            // After this answer is on its way.
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                n.notify_one();
            });
            true
        }
        None => false,
    };
    let frame = Frame {
        lang: l,
        csrf: None,
        admin: None,
    };
    let body = format!(
        "{}<p>{} <strong id=\"admin-jid\">{}</strong></p><p>{} <code>{}</code></p><p><a class=\"button\" id=\"to-login\" href=\"/login?lang={}\">{}</a></p>",
        html::notice("ok", l.t("setup.done")),
        esc(l.t(if restarting { "setup.done_restart" } else { "setup.done_manual" })),
        esc(jid.as_str()),
        esc(l.t("setup.saved_to")),
        esc(&file.display().to_string()),
        l.tag(),
        esc(l.t("setup.to_login")),
    );
    let mut r = html::respond(StatusCode::OK, html::page(&frame, l.t("setup.done"), &body));
    r.headers_mut().append(
        header::SET_COOKIE,
        req.cookie_header(SETUP_COOKIE, "", Some(0)),
    );
    r.headers_mut().append(
        header::SET_COOKIE,
        req.cookie_header(crate::LANG_COOKIE, l.tag(), Some(365 * 86400)),
    );
    Ok(r)
}

/// Writes the wizard's choices into the console settings file, keeping what else it holds.
fn write_settings(
    file: &std::path::Path,
    domain: &str,
    storage_url: &str,
    admin: &str,
    lang: Lang,
) -> std::io::Result<()> {
    use confab_server::config::set_table_key as set;
    confab_server::config::edit_console_file(file, |table| {
        set(
            table,
            "server",
            "domains",
            toml::Value::Array(vec![toml::Value::String(domain.into())]),
        );
        set(
            table,
            "storage",
            "url",
            toml::Value::String(storage_url.into()),
        );
        set(
            table,
            "admin",
            "admins",
            toml::Value::Array(vec![toml::Value::String(admin.into())]),
        );
        set(
            table,
            "admin",
            "language",
            toml::Value::String(lang.tag().into()),
        );
    })
}

/// The page of the wizard's current step.
fn render(w: &Wizard, message: Option<(&str, &str)>, status: StatusCode) -> Response {
    let l = w.lang;
    let mut body = format!(
        "<p>{}</p><p class=\"steps\">{} {} / 4</p>",
        esc(l.t("setup.intro")),
        esc(l.t("setup.step")),
        w.step
    );
    if let Some((text, kind)) = message {
        body.push_str(&html::notice(kind, text));
    }
    let back = format!(
        "<button type=\"submit\" name=\"back\" value=\"1\" class=\"secondary\" formnovalidate>{}</button>",
        esc(l.t("setup.back"))
    );
    let form = |step: &str, inner: String, with_back: bool| {
        format!(
            "<form method=\"post\" action=\"/setup\" class=\"card\">{}<input type=\"hidden\" name=\"step\" value=\"{step}\">{inner}<div class=\"actions\">{}</div></form>",
            csrf_field(&w.csrf),
            if with_back { back.clone() } else { String::new() }
        )
    };
    let next = format!(
        "<button type=\"submit\" id=\"next\">{}</button>",
        esc(l.t("setup.next"))
    );
    let (title, inner) = match w.step {
        1 => {
            let mut opts = String::new();
            for other in Lang::ALL {
                opts.push_str(&format!(
                    "<label class=\"choice\"><input type=\"radio\" name=\"lang\" value=\"{}\"{}> {}</label>",
                    other.tag(),
                    if other == l { " checked" } else { "" },
                    other.own_name()
                ));
            }
            (
                l.t("setup.language"),
                form("language", format!("<fieldset>{opts}</fieldset>{next}"), false),
            )
        }
        2 => (
            l.t("setup.domain"),
            form(
                "domain",
                format!(
                    "<label>{}<input name=\"domain\" id=\"domain\" value=\"{}\" required></label><p class=\"help\">{}</p>{next}",
                    esc(l.t("setup.domain")),
                    esc(&w.domain),
                    esc(l.t("setup.domain_help"))
                ),
                true,
            ),
        ),
        3 => {
            let url = w.db_url.clone().unwrap_or_default();
            let sqlite = w.db_url.is_none();
            (
                l.t("setup.database"),
                form(
                    "database",
                    format!(
                        "<label class=\"choice\"><input type=\"radio\" name=\"db\" value=\"sqlite\" id=\"db-sqlite\"{}> {}</label>\
<label class=\"choice\"><input type=\"radio\" name=\"db\" value=\"url\" id=\"db-url\"{}> {}</label>\
<label><input name=\"url\" id=\"url\" value=\"{}\" placeholder=\"postgres://confab@127.0.0.1/confab\" autocomplete=\"off\"></label>\
<p class=\"help\">{}</p><button type=\"submit\" name=\"test\" value=\"1\" class=\"secondary\" id=\"test\">{}</button>{next}",
                        if sqlite { " checked" } else { "" },
                        esc(l.t("setup.db_sqlite")),
                        if sqlite { "" } else { " checked" },
                        esc(l.t("setup.db_url")),
                        esc(&url),
                        esc(l.t("setup.db_url_help")),
                        esc(l.t("setup.db_test")),
                    ),
                    true,
                ),
            )
        }
        _ => (
            l.t("setup.admin"),
            form(
                "admin",
                format!(
                    "<p class=\"help\"><strong>{}</strong></p>\
<label>{}<span class=\"with-domain\"><input name=\"username\" id=\"username\" value=\"admin\" required autocomplete=\"username\"><span>@{}</span></span></label>\
<label>{}<input type=\"password\" name=\"password\" id=\"password\" required autocomplete=\"new-password\"></label>\
<label>{}<input type=\"password\" name=\"password2\" id=\"password2\" required autocomplete=\"new-password\"></label>\
<button type=\"submit\" id=\"finish\">{}</button>",
                    esc(l.t("setup.admin_help")),
                    esc(l.t("setup.username")),
                    esc(&w.domain),
                    esc(l.t("login.password")),
                    esc(l.t("setup.password2")),
                    esc(l.t("setup.finish")),
                ),
                true,
            ),
        ),
    };
    let frame = Frame {
        lang: l,
        csrf: None,
        admin: None,
    };
    let mut page = html::page(&frame, &format!("{} · {title}", l.t("setup.title")), &body);
    page = page.replace("</main>", &format!("{inner}</main>"));
    html::respond(status, page)
}
