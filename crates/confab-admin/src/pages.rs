//! The console's pages once logged in: dashboard, users, sessions, settings, audit log.
//! Each handler checks the admin session first and, for a change, the form's CSRF token;
//! every change is recorded in the audit log.

use crate::auth::{check_csrf, require_admin, AdminSession};
use crate::html::{self, csrf_field, esc, Frame};
use crate::i18n::Lang;
use crate::{audit, Http};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use confab_proto::jid::{BareJid, FullJid};
use confab_store::{AccountQuery, AccountSearch};
use std::fmt::Write;

/// Users shown per page.
const PAGE_SIZE: usize = 25;
/// Flash messages a redirect may ask a page to show (`?msg=`): only these keys.
const MESSAGES: &[&str] = &[
    "users.created",
    "users.deleted",
    "users.password_set",
    "sessions.disconnected",
    "sessions.gone",
    "rooms.destroyed",
    "api.revoked",
    "rooms.gone",
];

macro_rules! admin {
    ($req:expr) => {
        match require_admin(&$req) {
            Ok(s) => s,
            Err(r) => return r,
        }
    };
}

macro_rules! admin_post {
    ($req:expr) => {{
        let s = admin!($req);
        if let Err(r) = check_csrf(&$req, &s.csrf) {
            return r;
        }
        s
    }};
}

pub(crate) fn frame<'a>(req: &Http, s: &'a AdminSession) -> Frame<'a> {
    Frame {
        lang: req.lang(),
        csrf: Some(&s.csrf),
        admin: Some(&s.jid),
    }
}

pub(crate) fn flash(req: &Http, l: Lang) -> String {
    match req.query("msg") {
        Some(m) if MESSAGES.contains(&m.as_str()) => html::notice("ok", l.t(&m)),
        _ => String::new(),
    }
}

fn storage_error(req: &Http, e: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "admin console: storage failed");
    crate::auth::refusal(req, StatusCode::SERVICE_UNAVAILABLE, "error.storage")
}

/// GET /
pub async fn root(req: Http) -> Response {
    let admin = req
        .cookie(crate::auth::SESSION_COOKIE)
        .and_then(|t| req.console.sessions.get(t));
    html::see_other(if admin.is_some() {
        "/dashboard"
    } else {
        "/login"
    })
}

pub async fn not_found(req: Http) -> Response {
    crate::auth::refusal(&req, StatusCode::NOT_FOUND, "error.not_found")
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}

pub async fn css() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../static/console.css"),
    )
}

pub async fn js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../static/console.js"),
    )
}

/// POST /language: the administrator's language (a cookie).
pub async fn set_language(req: Http) -> Response {
    let s = admin_post!(req);
    let Some(l) = req.field("lang").and_then(Lang::from_tag) else {
        return crate::auth::refusal(&req, StatusCode::BAD_REQUEST, "error.not_found");
    };
    let back = req
        .headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.split_once("://").map(|(_, rest)| rest))
        .and_then(|rest| rest.find('/').map(|i| rest[i..].to_string()))
        // A path of this console only: browsers read `/\\host` like `//host`.
        .filter(|p| p.starts_with('/') && !p.starts_with("//") && !p.contains('\\'))
        .unwrap_or_else(|| "/dashboard".into());
    let _ = s;
    let mut r = html::see_other(&back);
    r.headers_mut().append(
        header::SET_COOKIE,
        req.cookie_header(crate::LANG_COOKIE, l.tag(), Some(365 * 86400)),
    );
    r
}

async fn count_users(req: &Http) -> Result<u64, confab_store::StoreError> {
    let mut n = 0;
    for d in &req.ctx.config.server.domains {
        n += req.ctx.stores.accounts.count_accounts(d, None).await?;
    }
    Ok(n)
}

/// What a search `q` asks of each served domain (sorted): nothing (every account of a domain
/// whose name contains `q`), usernames containing `q`, or for `user@dom`, usernames ending
/// with `user` on domains starting with `dom`. `q` is case-folded, as usernames are.
pub(crate) fn account_searches(
    domains: &[String],
    q: &str,
) -> Vec<(String, Option<AccountSearch>)> {
    let q = q.trim().to_lowercase();
    let mut domains: Vec<String> = domains.to_vec();
    domains.sort();
    domains
        .into_iter()
        .filter_map(|d| {
            if q.is_empty() {
                return Some((d, None));
            }
            if let Some((user, dom)) = q.rsplit_once('@') {
                return d.starts_with(dom).then(|| {
                    let s = (!user.is_empty()).then(|| AccountSearch::EndsWith(user.to_string()));
                    (d, s)
                });
            }
            let s = (!d.contains(&q)).then(|| AccountSearch::Contains(q.clone()));
            Some((d, s))
        })
        .collect()
}

/// One page of the accounts `searches` select, as bare JIDs, domain by domain, and how many
/// there are in all: two small queries per domain, never every account.
pub(crate) async fn account_listing(
    ctx: &confab_server::ServerCtx,
    searches: &[(String, Option<AccountSearch>)],
    mut offset: u64,
    limit: u32,
) -> Result<(u64, Vec<String>), confab_store::StoreError> {
    let accounts = &ctx.stores.accounts;
    let mut total = 0;
    let mut jids = Vec::new();
    for (d, search) in searches {
        let n = accounts.count_accounts(d, search.as_ref()).await?;
        total += n;
        let want = u64::from(limit).saturating_sub(jids.len() as u64);
        if offset >= n {
            offset -= n;
            continue;
        }
        if want == 0 {
            continue;
        }
        let q = AccountQuery {
            search: search.clone(),
            offset,
            limit: u32::try_from(want).unwrap_or(limit),
        };
        offset = 0;
        jids.extend(
            accounts
                .account_page(d, &q)
                .await?
                .into_iter()
                .map(|u| format!("{u}@{d}")),
        );
    }
    Ok((total, jids))
}

/// GET /dashboard
pub async fn dashboard(req: Http) -> Response {
    let s = admin!(req);
    let l = req.lang();
    let ctx = &req.ctx;
    let users = match count_users(&req).await {
        Ok(n) => n.to_string(),
        Err(e) => {
            tracing::warn!(error = %e, "admin console: counting users failed");
            "?".into()
        }
    };
    req.console.stats.sample(ctx);
    let last = req.console.stats.samples().pop().unwrap_or_default();
    let by_transport = if last.by_transport.is_empty() {
        "–".to_string()
    } else {
        last.by_transport
            .iter()
            .map(|(t, n)| format!("{t}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let storage = ctx
        .config
        .storage_backend()
        .map(|b| format!("{} ({})", b.name(), b.display_url()))
        .unwrap_or_default();
    let card = |key: &str, id: &str, value: &str| {
        format!(
            "<div class=\"stat\"><div class=\"label\">{}</div><div class=\"value\" id=\"{id}\">{}</div></div>",
            esc(l.t(key)),
            esc(value)
        )
    };
    let mut body = String::from("<div class=\"stats\">");
    body.push_str(&card(
        "dash.sessions",
        "stat-sessions",
        &last.sessions.to_string(),
    ));
    body.push_str(&card("dash.by_transport", "stat-transports", &by_transport));
    body.push_str(&card("dash.users", "stat-users", &users));
    body.push_str(&card(
        "dash.rate",
        "stat-rate",
        &format!("{:.1}", last.stanzas_per_sec),
    ));
    body.push_str(&card(
        "dash.uptime",
        "stat-uptime",
        &html::duration(ctx.started.elapsed().as_secs()),
    ));
    body.push_str(&card(
        "dash.memory",
        "stat-memory",
        &last
            .rss
            .map(|b| format!("{:.1} MiB", b as f64 / 1048576.0))
            .unwrap_or_else(|| "–".into()),
    ));
    body.push_str(&card(
        "dash.cpu",
        "stat-cpu",
        &last
            .cpu_percent
            .map(|c| format!("{c:.1} %"))
            .unwrap_or_else(|| "–".into()),
    ));
    body.push_str(&card("dash.storage", "stat-storage", &storage));
    body.push_str("</div>");
    for (key, series) in [
        ("dash.chart_sessions", "sessions"),
        ("dash.chart_rate", "rate"),
    ] {
        let _ = write!(
            body,
            "<figure class=\"chart\"><figcaption>{}</figcaption><svg data-series=\"{series}\" viewBox=\"0 0 300 60\" preserveAspectRatio=\"none\" role=\"img\"></svg></figure>",
            esc(l.t(key))
        );
    }
    html::respond(
        StatusCode::OK,
        html::page(&frame(&req, &s), l.t("nav.dashboard"), &body),
    )
}

/// GET /stats.json: the samples for the live charts.
pub async fn stats_json(req: Http) -> Response {
    let _ = admin!(req);
    let samples = req.console.stats.samples();
    let list = |f: &dyn Fn(&crate::stats::Sample) -> String| {
        samples.iter().map(f).collect::<Vec<_>>().join(",")
    };
    let body = format!(
        "{{\"sessions\":[{}],\"rate\":[{}],\"uptime\":{}}}",
        list(&|s| s.sessions.to_string()),
        list(&|s| format!("{:.2}", s.stanzas_per_sec)),
        req.ctx.started.elapsed().as_secs()
    );
    let mut r = body.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// GET /users?q=&page=
pub async fn users(req: Http) -> Response {
    let s = admin!(req);
    let l = req.lang();
    let q = req.query("q").unwrap_or_default().trim().to_lowercase();
    let page: usize = req
        .query("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let searches = account_searches(&req.ctx.config.server.domains, &q);
    // Beyond the last page: the last page (counted first, then fetched).
    let offset = (page as u64 - 1).saturating_mul(PAGE_SIZE as u64);
    let (total, mut shown) =
        match account_listing(&req.ctx, &searches, offset, PAGE_SIZE as u32).await {
            Ok(r) => r,
            Err(e) => return storage_error(&req, e),
        };
    let pages = usize::try_from(total.div_ceil(PAGE_SIZE as u64))
        .unwrap_or(usize::MAX)
        .max(1);
    let page = page.min(pages);
    if shown.is_empty() && total > 0 {
        let last = (pages as u64 - 1) * PAGE_SIZE as u64;
        shown = match account_listing(&req.ctx, &searches, last, PAGE_SIZE as u32).await {
            Ok((_, s)) => s,
            Err(e) => return storage_error(&req, e),
        };
    }
    let mut body = flash(&req, l);
    let _ = write!(
        body,
        "<form method=\"get\" action=\"/users\" class=\"search\"><input name=\"q\" id=\"q\" value=\"{}\" type=\"search\"><button>{}</button></form>",
        esc(&q),
        esc(l.t("users.search"))
    );
    if shown.is_empty() {
        let _ = write!(body, "<p>{}</p>", esc(l.t("users.none")));
    } else {
        body.push_str("<table id=\"users\"><tbody>");
        for j in &shown {
            let online = BareJid::new(j)
                .map(|b| req.ctx.router.sessions_of(&b).len())
                .unwrap_or(0);
            let _ = write!(
                body,
                "<tr><td><a href=\"/user?jid={}\">{}</a></td><td>{}</td></tr>",
                esc(&urlencode(j)),
                esc(j),
                if online > 0 {
                    format!(
                        "<span class=\"online\">{} ({online})</span>",
                        esc(l.t("users.online"))
                    )
                } else {
                    esc(l.t("users.offline"))
                }
            );
        }
        body.push_str("</tbody></table>");
        let _ = write!(
            body,
            "<p class=\"pager\">{} {page} / {pages} ",
            esc(l.t("users.page"))
        );
        if page > 1 {
            let _ = write!(
                body,
                "<a href=\"/users?q={}&amp;page={}\">{}</a> ",
                esc(&urlencode(&q)),
                page - 1,
                esc(l.t("users.prev"))
            );
        }
        if page < pages {
            let _ = write!(
                body,
                "<a href=\"/users?q={}&amp;page={}\">{}</a>",
                esc(&urlencode(&q)),
                page + 1,
                esc(l.t("users.next"))
            );
        }
        body.push_str("</p>");
    }
    let _ = write!(
        body,
        "<h2>{}</h2><form method=\"post\" action=\"/users/create\" class=\"card\">{}\
<label>{}<input name=\"jid\" id=\"new-jid\" required placeholder=\"alice@{}\"></label>\
<label>{}<input type=\"password\" name=\"password\" id=\"new-password\" required autocomplete=\"new-password\"></label>\
<button id=\"create\">{}</button></form>",
        esc(l.t("users.create")),
        csrf_field(&s.csrf),
        esc(l.t("users.jid")),
        esc(req.ctx.config.server.domains.first().map(String::as_str).unwrap_or("localhost")),
        esc(l.t("login.password")),
        esc(l.t("users.create")),
    );
    html::respond(
        StatusCode::OK,
        html::page(&frame(&req, &s), l.t("nav.users"), &body),
    )
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn error_page(
    req: &Http,
    s: &AdminSession,
    status: StatusCode,
    title: &str,
    text: &str,
) -> Response {
    let l = req.lang();
    html::respond(
        status,
        html::page(
            &frame(req, s),
            title,
            &format!(
                "{}<p><a href=\"javascript:history.back()\" onclick=\"history.back();return false\">{}</a></p>",
                html::notice("error", text),
                esc(l.t("setup.back"))
            ),
        ),
    )
}

/// POST /users/create
pub async fn create_user(req: Http) -> Response {
    use confab_server::accounts::{self, AccountError};
    let s = admin_post!(req);
    let l = req.lang();
    let jid_text = req.field("jid").unwrap_or_default().trim();
    let jid = match accounts::parse_account(jid_text, &req.ctx.config.server.domains) {
        Ok(j) => j,
        Err(_) => {
            return error_page(
                &req,
                &s,
                StatusCode::UNPROCESSABLE_ENTITY,
                l.t("users.create"),
                l.t("users.invalid"),
            )
        }
    };
    let password = req.field("password").unwrap_or_default();
    match accounts::create(
        &req.ctx.stores,
        &jid,
        password,
        req.ctx.config.auth.scram_iterations,
    )
    .await
    {
        Ok(()) => {
            audit::record(&req.ctx.stores, &s.jid, "user-create", jid.as_str()).await;
            html::see_other(&format!(
                "/user?jid={}&msg=users.created",
                urlencode(jid.as_str())
            ))
        }
        Err(AccountError::Exists) => error_page(
            &req,
            &s,
            StatusCode::CONFLICT,
            l.t("users.create"),
            l.t("users.exists"),
        ),
        Err(AccountError::BadPassword) => error_page(
            &req,
            &s,
            StatusCode::UNPROCESSABLE_ENTITY,
            l.t("users.create"),
            l.t("users.bad_password"),
        ),
        Err(e) => storage_error(&req, e),
    }
}

/// The account a `jid` query parameter or form field names, if it exists.
async fn existing_account(req: &Http, text: &str) -> Result<Option<BareJid>, Response> {
    let Ok(jid) = confab_server::accounts::parse_account(text, &req.ctx.config.server.domains)
    else {
        return Ok(None);
    };
    let (d, u) = confab_server::accounts::parts(&jid);
    match req.ctx.stores.accounts.account_exists(d, u).await {
        Ok(true) => Ok(Some(jid)),
        Ok(false) => Ok(None),
        Err(e) => Err(storage_error(req, e)),
    }
}

pub(crate) fn format_time(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    confab_proto::datetime::format_datetime(secs)
}

/// The sessions table (all sessions, or one account's).
fn sessions_table(
    l: Lang,
    csrf: &str,
    sessions: &[std::sync::Arc<confab_server::session::SessionInfo>],
) -> String {
    if sessions.is_empty() {
        return format!("<p>{}</p>", esc(l.t("sessions.none")));
    }
    let mut out = format!(
        "<table id=\"sessions\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr></thead><tbody>",
        esc(l.t("sessions.jid")),
        esc(l.t("sessions.peer")),
        esc(l.t("sessions.transport")),
        esc(l.t("sessions.tls")),
        esc(l.t("sessions.client")),
        esc(l.t("sessions.since")),
    );
    for s in sessions {
        let c = s.connection();
        let _ = write!(
            out,
            "<tr data-jid=\"{jid}\"><td>{jid}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
<td><form method=\"post\" action=\"/sessions/disconnect\" class=\"inline\">{}<input type=\"hidden\" name=\"jid\" value=\"{jid}\"><input type=\"hidden\" name=\"id\" value=\"{}\"><button class=\"danger\">{}</button></form></td></tr>",
            esc(&c.map(|c| c.peer.ip().to_string()).unwrap_or_default()),
            esc(c.map_or("", |c| c.transport)),
            esc(l.t(if c.is_some_and(|c| c.secure) { "yes" } else { "no" })),
            esc(s.jid.resource().as_str()),
            esc(&c.map(|c| format_time(c.since)).unwrap_or_default()),
            csrf_field(csrf),
            s.id,
            esc(l.t("sessions.disconnect")),
            jid = esc(s.jid.as_str()),
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// GET /user?jid=
pub async fn user(req: Http) -> Response {
    let s = admin!(req);
    let l = req.lang();
    let text = req.query("jid").unwrap_or_default();
    let jid = match existing_account(&req, &text).await {
        Ok(Some(j)) => j,
        Ok(None) => {
            return error_page(
                &req,
                &s,
                StatusCode::NOT_FOUND,
                l.t("users.detail"),
                l.t("users.not_found"),
            )
        }
        Err(r) => return r,
    };
    let (d, u) = confab_server::accounts::parts(&jid);
    let roster = match req.ctx.stores.roster.roster(d, u).await {
        Ok((_, items)) => items,
        Err(e) => return storage_error(&req, e),
    };
    let mut body = flash(&req, l);
    let _ = write!(body, "<h2>{}</h2>", esc(l.t("nav.sessions")));
    body.push_str(&sessions_table(
        l,
        &s.csrf,
        &req.ctx.router.sessions_of(&jid),
    ));
    let _ = write!(body, "<h2>{}</h2>", esc(l.t("users.roster")));
    let items: Vec<_> = roster.iter().filter(|i| i.in_roster).collect();
    if items.is_empty() {
        let _ = write!(body, "<p>{}</p>", esc(l.t("users.roster_empty")));
    } else {
        let _ = write!(
            body,
            "<table id=\"roster\"><thead><tr><th>JID</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
            esc(l.t("users.name")),
            esc(l.t("users.subscription")),
            esc(l.t("users.groups"))
        );
        for i in items {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{:?}</td><td>{}</td></tr>",
                esc(&i.jid),
                esc(i.name.as_deref().unwrap_or("")),
                i.subscription,
                esc(&i.groups.join(", "))
            );
        }
        body.push_str("</tbody></table>");
    }
    let hidden = format!(
        "{}<input type=\"hidden\" name=\"jid\" value=\"{}\">",
        csrf_field(&s.csrf),
        esc(jid.as_str())
    );
    let _ = write!(
        body,
        "<h2>{reset}</h2><form method=\"post\" action=\"/user/password\" class=\"card\">{hidden}\
<label>{newpw}<input type=\"password\" name=\"password\" id=\"reset-password\" required autocomplete=\"new-password\"></label><button id=\"reset\">{reset}</button></form>\
<h2>{del}</h2><form method=\"post\" action=\"/user/delete\" class=\"card danger\">{hidden}\
<label>{confirm}<input name=\"confirm\" id=\"confirm\" required></label><button class=\"danger\" id=\"delete\">{del}</button></form>",
        reset = esc(l.t("users.reset")),
        newpw = esc(l.t("users.new_password")),
        del = esc(l.t("users.delete")),
        confirm = esc(l.t("users.delete_confirm")),
    );
    html::respond(
        StatusCode::OK,
        html::page(
            &frame(&req, &s),
            &format!("{} {}", l.t("users.detail"), jid),
            &body,
        ),
    )
}

/// POST /user/password
pub async fn reset_password(req: Http) -> Response {
    use confab_server::accounts::{self, AccountError};
    let s = admin_post!(req);
    let l = req.lang();
    let jid = match existing_account(&req, req.field("jid").unwrap_or_default()).await {
        Ok(Some(j)) => j,
        Ok(None) => {
            return error_page(
                &req,
                &s,
                StatusCode::NOT_FOUND,
                l.t("users.reset"),
                l.t("users.not_found"),
            )
        }
        Err(r) => return r,
    };
    let password = req.field("password").unwrap_or_default();
    match accounts::set_password(
        &req.ctx.stores,
        &jid,
        password,
        req.ctx.config.auth.scram_iterations,
    )
    .await
    {
        Ok(()) => {
            audit::record(&req.ctx.stores, &s.jid, "user-password", jid.as_str()).await;
            html::see_other(&format!(
                "/user?jid={}&msg=users.password_set",
                urlencode(jid.as_str())
            ))
        }
        Err(AccountError::BadPassword) => error_page(
            &req,
            &s,
            StatusCode::UNPROCESSABLE_ENTITY,
            l.t("users.reset"),
            l.t("users.bad_password"),
        ),
        Err(AccountError::NotFound) => error_page(
            &req,
            &s,
            StatusCode::NOT_FOUND,
            l.t("users.reset"),
            l.t("users.not_found"),
        ),
        Err(e) => storage_error(&req, e),
    }
}

/// POST /user/delete (the address typed again as confirmation)
pub async fn delete_user(req: Http) -> Response {
    let s = admin_post!(req);
    let l = req.lang();
    let text = req.field("jid").unwrap_or_default();
    if req.field("confirm").map(str::trim) != Some(text) {
        return error_page(
            &req,
            &s,
            StatusCode::UNPROCESSABLE_ENTITY,
            l.t("users.delete"),
            l.t("users.delete_confirm"),
        );
    }
    let jid = match existing_account(&req, text).await {
        Ok(Some(j)) => j,
        Ok(None) => {
            return error_page(
                &req,
                &s,
                StatusCode::NOT_FOUND,
                l.t("users.delete"),
                l.t("users.not_found"),
            )
        }
        Err(r) => return r,
    };
    match confab_server::accounts::delete_account_live(&req.ctx, &jid).await {
        Ok(()) => {
            // An administrator whose account goes is logged out at once.
            req.console.sessions.remove_jid(jid.as_str());
            audit::record(&req.ctx.stores, &s.jid, "user-delete", jid.as_str()).await;
            html::see_other("/users?msg=users.deleted")
        }
        Err(confab_server::accounts::AccountError::NotFound) => error_page(
            &req,
            &s,
            StatusCode::NOT_FOUND,
            l.t("users.delete"),
            l.t("users.not_found"),
        ),
        Err(e) => storage_error(&req, e),
    }
}

/// GET /sessions
pub async fn sessions(req: Http) -> Response {
    let s = admin!(req);
    let l = req.lang();
    let mut all = req.ctx.router.all_sessions();
    all.sort_by(|a, b| a.jid.as_str().cmp(b.jid.as_str()));
    let mut body = flash(&req, l);
    body.push_str(&sessions_table(l, &s.csrf, &all));
    html::respond(
        StatusCode::OK,
        html::page(&frame(&req, &s), l.t("nav.sessions"), &body),
    )
}

/// POST /sessions/disconnect: ends one session (by full JID and session id, so a newer
/// session on the same resource is not hit) with a `<policy-violation/>` stream error.
pub async fn disconnect(req: Http) -> Response {
    let s = admin_post!(req);
    let jid = req.field("jid").and_then(|j| FullJid::new(j).ok());
    let id: Option<u64> = req.field("id").and_then(|i| i.parse().ok());
    let session = match (&jid, id) {
        (Some(j), Some(id)) => req.ctx.router.session(j).filter(|x| x.id == id),
        _ => None,
    };
    let Some(session) = session else {
        return html::see_other("/sessions?msg=sessions.gone");
    };
    session.close(confab_proto::error::StreamError::with_text(
        confab_proto::error::StreamErrorCondition::PolicyViolation,
        "disconnected by an administrator",
    ));
    audit::record(
        &req.ctx.stores,
        &s.jid,
        "session-disconnect",
        session.jid.as_str(),
    )
    .await;
    html::see_other("/sessions?msg=sessions.disconnected")
}

/// GET /rooms: the group chat rooms (the MUC module's admin view), each with a destroy
/// button.
pub async fn rooms(req: Http) -> Response {
    let s = admin!(req);
    let l = req.lang();
    let Some(view) = req.ctx.registry.admin_view_named("rooms").cloned() else {
        return crate::auth::refusal(&req, StatusCode::NOT_FOUND, "rooms.none_service");
    };
    let rows = view.rows(&req.ctx).await;
    let mut body = flash(&req, l);
    if rows.is_empty() {
        let _ = write!(body, "<p>{}</p>", esc(l.t("rooms.none")));
    } else {
        body.push_str("<table id=\"rooms\"><thead><tr>");
        for c in view.columns() {
            let _ = write!(body, "<th>{}</th>", esc(column(l, c)));
        }
        body.push_str("<th></th></tr></thead><tbody>");
        for r in rows {
            let _ = write!(body, "<tr data-room=\"{}\">", esc(&r.id));
            for c in &r.cells {
                let shown = match c.as_str() {
                    "true" => l.t("yes"),
                    "false" => l.t("no"),
                    other => other,
                };
                let _ = write!(body, "<td>{}</td>", esc(shown));
            }
            body.push_str("<td>");
            for a in view.actions() {
                let _ = write!(
                    body,
                    "<form method=\"post\" action=\"/rooms/act\" class=\"inline\">{}<input type=\"hidden\" name=\"id\" value=\"{}\"><input type=\"hidden\" name=\"action\" value=\"{a}\"><button class=\"danger\">{}</button></form>",
                    csrf_field(&s.csrf),
                    esc(&r.id),
                    esc(column(l, a))
                );
            }
            body.push_str("</td></tr>");
        }
        body.push_str("</tbody></table>");
    }
    html::respond(
        StatusCode::OK,
        html::page(&frame(&req, &s), l.t("nav.rooms"), &body),
    )
}

/// A view's column or action word in the console's language (the word itself if unknown).
fn column(l: Lang, key: &'static str) -> &'static str {
    match key {
        "room" => l.t("rooms.room"),
        "name" => l.t("users.name"),
        "occupants" => l.t("rooms.occupants"),
        "persistent" => l.t("rooms.persistent"),
        "public" => l.t("rooms.public"),
        "destroy" => l.t("rooms.destroy"),
        other => other,
    }
}

/// POST /rooms/act: an action of the rooms view (destroy).
pub async fn room_action(req: Http) -> Response {
    let s = admin_post!(req);
    let Some(view) = req.ctx.registry.admin_view_named("rooms").cloned() else {
        return crate::auth::refusal(&req, StatusCode::NOT_FOUND, "rooms.none_service");
    };
    let id = req.field("id").unwrap_or_default();
    let action = req.field("action").unwrap_or_default();
    let Ok(actor) = BareJid::new(&s.jid) else {
        return crate::auth::refusal(&req, StatusCode::FORBIDDEN, "error.forbidden");
    };
    match view.act(&req.ctx, id, action, &actor).await {
        Ok(()) => {
            audit::record(&req.ctx.stores, &s.jid, &format!("room-{action}"), id).await;
            html::see_other("/rooms?msg=rooms.destroyed")
        }
        Err(e) => {
            tracing::info!(room = id, action, error = %e, "admin console: room action refused");
            html::see_other("/rooms?msg=rooms.gone")
        }
    }
}

/// GET /settings: what the server runs with (read-only; changes need a restart).
pub async fn settings(req: Http) -> Response {
    let s = admin!(req);
    let l = req.lang();
    let c = &req.ctx.config;
    let mut rows: Vec<(String, String)> = vec![
        (l.t("settings.domains").into(), c.server.domains.join(", ")),
        (
            l.t("dash.storage").into(),
            c.storage_backend()
                .map(|b| format!("{} ({})", b.name(), b.display_url()))
                .unwrap_or_default(),
        ),
        (
            l.t("settings.listeners").into(),
            format!(
                "c2s {} ({}/{}), http {} ({}/{}), admin {}",
                c.c2s.interfaces.join(" "),
                c.c2s.port,
                c.c2s.tls_port,
                c.http.interfaces.join(" "),
                c.http.port,
                c.http.tls_port,
                req.console.config.listen
            ),
        ),
        (l.t("settings.admins").into(), req.console.config.admins.join(", ")),
        (
            l.t("settings.registration").into(),
            c.sections
                .get("registration")
                .map(|v| v.to_string())
                .unwrap_or_else(|| "(defaults)".into()),
        ),
        (
            l.t("settings.limits").into(),
            format!(
                "max_stanza_size {}, max_connections {}, per_ip {}, outbound_queue {}, read_rate {} B/s",
                c.limits.max_stanza_size,
                c.limits.max_connections,
                c.limits.max_connections_per_ip,
                c.limits.outbound_queue,
                c.limits.read_rate
            ),
        ),
        (l.t("settings.modules").into(), req.ctx.registry.modules().join(", ")),
        (l.t("settings.disabled").into(), c.modules.disabled.join(", ")),
        (
            l.t("settings.certificate").into(),
            format!(
                "{} ({})",
                certificate_summary(&req.ctx.tls.leaf_der, l),
                req.ctx.tls.cert_path.display()
            ),
        ),
        (
            l.t("settings.file").into(),
            c.console_file().display().to_string(),
        ),
    ];
    rows.retain(|(_, v)| !v.is_empty());
    let mut body = html::notice("info", l.t("settings.readonly"));
    body.push_str("<table id=\"settings\"><tbody>");
    for (k, v) in rows {
        let _ = write!(body, "<tr><th>{}</th><td>{}</td></tr>", esc(&k), esc(&v));
    }
    body.push_str("</tbody></table>");
    html::respond(
        StatusCode::OK,
        html::page(&frame(&req, &s), l.t("nav.settings"), &body),
    )
}

/// The certificate's subject, names and validity, or why they cannot be shown.
fn certificate_summary(der: &[u8], l: Lang) -> String {
    use x509_parser::prelude::*;
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return "?".into();
    };
    let names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let validity = cert.validity();
    let not_after = validity.not_after.timestamp();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let days = (not_after - now).div_euclid(86400);
    format!(
        "{}; {}: {}; {}: {} … {} ({} {days}){}",
        cert.subject(),
        l.t("settings.names"),
        names.join(", "),
        l.t("settings.valid"),
        confab_proto::datetime::format_datetime(validity.not_before.timestamp()),
        confab_proto::datetime::format_datetime(not_after),
        l.t("settings.days_left"),
        if days < 0 {
            format!(" — {}", l.t("settings.expired"))
        } else {
            String::new()
        }
    )
}

/// GET /audit: the newest 200 entries.
pub async fn audit(req: Http) -> Response {
    let s = admin!(req);
    let l = req.lang();
    let entries = match audit::recent(&req.ctx.stores, 200).await {
        Ok(e) => e,
        Err(e) => return storage_error(&req, e),
    };
    let mut body = String::new();
    if entries.is_empty() {
        let _ = write!(body, "<p>{}</p>", esc(l.t("audit.none")));
    } else {
        let _ = write!(
            body,
            "<table id=\"audit\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
            esc(l.t("audit.when")),
            esc(l.t("audit.who")),
            esc(l.t("audit.what")),
            esc(l.t("audit.detail"))
        );
        for e in entries {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&confab_proto::datetime::format_datetime(e.at)),
                esc(&e.actor),
                esc(&e.action),
                esc(&e.detail)
            );
        }
        body.push_str("</tbody></table>");
    }
    html::respond(
        StatusCode::OK,
        html::page(&frame(&req, &s), l.t("nav.audit"), &body),
    )
}
