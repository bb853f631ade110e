//! The admin REST API (`/api/v1`, described by `/api/v1/openapi.json`): the console's user
//! and session operations as JSON for scripts. Callers authenticate with a bearer token an
//! administrator created on the console's "API tokens" page; only the token's SHA-256
//! digest is stored (`DataStore`, kind `admin-api-tokens`), so the stored list gives no
//! usable token. Failed token checks count toward the per-address login limit. Every change
//! is in the audit log under `api:<token name>`.

use crate::auth::{check_csrf, require_admin};
use crate::html::{self, csrf_field, esc};
use crate::pages::{flash, format_time, frame};
use crate::{audit, Http};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use confab_proto::jid::{BareJid, FullJid};
use serde::Deserialize;
use serde_json::json;
use std::fmt::Write;

const KIND: &str = "admin-api-tokens";
/// Most tokens kept.
const MAX_TOKENS: usize = 100;

fn digest(token: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// GET /api-tokens
pub async fn tokens_page(req: Http) -> Response {
    let s = match require_admin(&req) {
        Ok(s) => s,
        Err(r) => return r,
    };
    page(&req, &s, None).await
}

async fn page(req: &Http, s: &crate::auth::AdminSession, new_token: Option<&str>) -> Response {
    let l = req.lang();
    let tokens = match req.ctx.stores.data.list_host_data("", KIND).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "admin console: storage failed");
            return crate::auth::refusal(req, StatusCode::SERVICE_UNAVAILABLE, "error.storage");
        }
    };
    let mut body = flash(req, l);
    let _ = write!(body, "<p class=\"help\">{}</p>", esc(l.t("api.intro")));
    if let Some(t) = new_token {
        let _ = write!(
            body,
            "<p class=\"notice ok\">{} <code id=\"new-token\">{}</code></p>",
            esc(l.t("api.created")),
            esc(t)
        );
    }
    if tokens.is_empty() {
        let _ = write!(body, "<p>{}</p>", esc(l.t("api.none")));
    } else {
        let _ = write!(
            body,
            "<table id=\"tokens\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th></th></tr></thead><tbody>",
            esc(l.t("api.name")),
            esc(l.t("api.by")),
            esc(l.t("audit.when"))
        );
        for (id, v) in &tokens {
            let mut it = v.splitn(3, '\t');
            let (name, by, at) = (
                it.next().unwrap_or_default(),
                it.next().unwrap_or_default(),
                it.next().and_then(|a| a.parse::<i64>().ok()).unwrap_or(0),
            );
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td><form method=\"post\" action=\"/api-tokens/revoke\" class=\"inline\">{}<input type=\"hidden\" name=\"id\" value=\"{}\"><button class=\"danger\">{}</button></form></td></tr>",
                esc(name),
                esc(by),
                esc(&confab_proto::datetime::format_datetime(at)),
                csrf_field(&s.csrf),
                esc(id),
                esc(l.t("api.revoke"))
            );
        }
        body.push_str("</tbody></table>");
    }
    let _ = write!(
        body,
        "<h2>{}</h2><form method=\"post\" action=\"/api-tokens/create\" class=\"card\">{}<label>{}<input name=\"name\" id=\"token-name\" required maxlength=\"64\"></label><button id=\"create-token\">{}</button></form>",
        esc(l.t("api.create")),
        csrf_field(&s.csrf),
        esc(l.t("api.name")),
        esc(l.t("api.create"))
    );
    html::respond(
        StatusCode::OK,
        html::page(&frame(req, s), l.t("nav.api"), &body),
    )
}

/// POST /api-tokens/create: the token is shown on this answer only.
pub async fn create_token(req: Http) -> Response {
    let s = match require_admin(&req) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Err(r) = check_csrf(&req, &s.csrf) {
        return r;
    }
    let name: String = req
        .field("name")
        .unwrap_or_default()
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    if name.is_empty() {
        return crate::auth::refusal(&req, StatusCode::UNPROCESSABLE_ENTITY, "api.name");
    }
    let stores = &req.ctx.stores;
    match stores.data.list_host_data("", KIND).await {
        Ok(t) if t.len() >= MAX_TOKENS => {
            return crate::auth::refusal(&req, StatusCode::CONFLICT, "api.none");
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "admin console: storage failed");
            return crate::auth::refusal(&req, StatusCode::SERVICE_UNAVAILABLE, "error.storage");
        }
    }
    let token = crate::random_token();
    let value = format!("{name}\t{}\t{}", s.jid, now());
    if let Err(e) = stores
        .data
        .set_host_data("", KIND, &digest(&token), &value)
        .await
    {
        tracing::warn!(error = %e, "admin console: storage failed");
        return crate::auth::refusal(&req, StatusCode::SERVICE_UNAVAILABLE, "error.storage");
    }
    audit::record(stores, &s.jid, "api-token-create", &name).await;
    page(&req, &s, Some(&token)).await
}

/// POST /api-tokens/revoke
pub async fn revoke_token(req: Http) -> Response {
    let s = match require_admin(&req) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Err(r) = check_csrf(&req, &s.csrf) {
        return r;
    }
    let id = req.field("id").unwrap_or_default();
    if let Ok(true) = req.ctx.stores.data.delete_host_data("", KIND, id).await {
        audit::record(&req.ctx.stores, &s.jid, "api-token-revoke", id).await;
    }
    html::see_other("/api-tokens?msg=api.revoked")
}

/// A JSON answer.
fn reply(status: StatusCode, v: serde_json::Value) -> Response {
    let mut r = (status, v.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, message: &str) -> Response {
    reply(status, json!({ "error": message }))
}

/// The caller's token name (`api:<name>`), or the refusal: 401 without a valid token, 429
/// once the address used up its failures.
async fn caller(req: &Http) -> Result<String, Response> {
    let peer = req.peer;
    if req.console.limiter.blocked(peer) {
        tracing::warn!(%peer, "admin API: refused, too many failures from this address");
        return Err(error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed attempts",
        ));
    }
    let token = req
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default();
    if !token.is_empty() {
        match req
            .ctx
            .stores
            .data
            .get_host_data("", KIND, &digest(token))
            .await
        {
            Ok(Some(v)) => {
                req.console.limiter.succeeded(peer);
                let name = v.split('\t').next().unwrap_or_default();
                return Ok(format!("api:{name}"));
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "admin API: storage failed");
                return Err(error(StatusCode::SERVICE_UNAVAILABLE, "storage failed"));
            }
        }
    }
    req.console.limiter.failed(peer);
    tracing::warn!(%peer, path = %req.uri.path(), "admin API: request without a valid token refused");
    let mut r = error(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"confab-admin\""),
    );
    Err(r)
}

macro_rules! caller {
    ($req:expr) => {
        match caller(&$req).await {
            Ok(c) => c,
            Err(r) => return r,
        }
    };
}

fn json_body<T: serde::de::DeserializeOwned>(req: &Http) -> Result<T, Response> {
    serde_json::from_slice(&req.body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, &format!("invalid JSON body: {e}")))
}

/// Largest page `GET /api/v1/users` returns.
const MAX_USERS_PAGE: u32 = 1000;

/// GET /api/v1/users?q=&offset=&limit=: one page of the accounts of the served domains
/// (optionally searched, as on the users page), with how many there are in all.
pub async fn list_users(req: Http) -> Response {
    let _ = caller!(req);
    let q = req.query("q").unwrap_or_default();
    let number = |name: &str, default: u64| -> Result<u64, Response> {
        match req.query(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| {
                error(
                    StatusCode::BAD_REQUEST,
                    &format!("{name} must be a non-negative integer"),
                )
            }),
        }
    };
    let (offset, limit) = match (number("offset", 0), number("limit", 100)) {
        (Ok(o), Ok(l)) if (1..=u64::from(MAX_USERS_PAGE)).contains(&l) => (o, l as u32),
        (Err(r), _) | (_, Err(r)) => return r,
        _ => return error(StatusCode::BAD_REQUEST, "limit must be 1 to 1000"),
    };
    let searches = crate::pages::account_searches(&req.ctx.config.server.domains, &q);
    let (total, jids) =
        match crate::pages::account_listing(&req.ctx, &searches, offset, limit).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "admin API: storage failed");
                return error(StatusCode::SERVICE_UNAVAILABLE, "storage failed");
            }
        };
    let users: Vec<_> = jids
        .iter()
        .map(|j| {
            let online = BareJid::new(j)
                .map(|b| req.ctx.router.sessions_of(&b).len())
                .unwrap_or(0);
            json!({ "jid": j, "sessions": online })
        })
        .collect();
    reply(
        StatusCode::OK,
        json!({ "users": users, "total": total, "offset": offset, "limit": limit }),
    )
}

#[derive(Deserialize)]
struct Credentials {
    jid: String,
    password: String,
}

/// POST /api/v1/users {"jid", "password"}: 201, 409 if it exists, 422 if invalid.
pub async fn create_user(req: Http) -> Response {
    use confab_server::accounts::{self, AccountError};
    let who = caller!(req);
    let body: Credentials = match json_body(&req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Ok(jid) = accounts::parse_account(&body.jid, &req.ctx.config.server.domains) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid address or a domain not served here",
        );
    };
    match accounts::create(
        &req.ctx.stores,
        &jid,
        &body.password,
        req.ctx.config.auth.scram_iterations,
    )
    .await
    {
        Ok(()) => {
            audit::record(&req.ctx.stores, &who, "user-create", jid.as_str()).await;
            reply(StatusCode::CREATED, json!({ "jid": jid.as_str() }))
        }
        Err(AccountError::Exists) => error(StatusCode::CONFLICT, "the account already exists"),
        Err(AccountError::BadPassword) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the password is not acceptable",
        ),
        Err(e) => {
            tracing::warn!(error = %e, "admin API: creating an account failed");
            error(StatusCode::SERVICE_UNAVAILABLE, "storage failed")
        }
    }
}

/// POST /api/v1/users/password {"jid", "password"}
pub async fn set_password(req: Http) -> Response {
    use confab_server::accounts::{self, AccountError};
    let who = caller!(req);
    let body: Credentials = match json_body(&req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Ok(jid) = accounts::parse_account(&body.jid, &req.ctx.config.server.domains) else {
        return error(StatusCode::NOT_FOUND, "no such account");
    };
    match accounts::set_password(
        &req.ctx.stores,
        &jid,
        &body.password,
        req.ctx.config.auth.scram_iterations,
    )
    .await
    {
        Ok(()) => {
            audit::record(&req.ctx.stores, &who, "user-password", jid.as_str()).await;
            reply(StatusCode::OK, json!({ "jid": jid.as_str() }))
        }
        Err(AccountError::NotFound) => error(StatusCode::NOT_FOUND, "no such account"),
        Err(AccountError::BadPassword) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the password is not acceptable",
        ),
        Err(e) => {
            tracing::warn!(error = %e, "admin API: setting a password failed");
            error(StatusCode::SERVICE_UNAVAILABLE, "storage failed")
        }
    }
}

/// DELETE /api/v1/users?jid=: the account, its data and its sessions.
pub async fn delete_user(req: Http) -> Response {
    use confab_server::accounts::{self, AccountError};
    let who = caller!(req);
    let text = req.query("jid").unwrap_or_default();
    let Ok(jid) = accounts::parse_account(&text, &req.ctx.config.server.domains) else {
        return error(StatusCode::NOT_FOUND, "no such account");
    };
    match accounts::delete_account_live(&req.ctx, &jid).await {
        Ok(()) => {
            req.console.sessions.remove_jid(jid.as_str());
            audit::record(&req.ctx.stores, &who, "user-delete", jid.as_str()).await;
            reply(StatusCode::OK, json!({ "jid": jid.as_str() }))
        }
        Err(AccountError::NotFound) => error(StatusCode::NOT_FOUND, "no such account"),
        Err(e) => {
            tracing::warn!(error = %e, "admin API: deleting an account failed");
            error(StatusCode::SERVICE_UNAVAILABLE, "storage failed")
        }
    }
}

/// GET /api/v1/sessions
pub async fn list_sessions(req: Http) -> Response {
    let _ = caller!(req);
    let mut all = req.ctx.router.all_sessions();
    all.sort_by(|a, b| a.jid.as_str().cmp(b.jid.as_str()));
    let sessions: Vec<_> = all
        .iter()
        .map(|s| {
            let c = s.connection();
            json!({
                "jid": s.jid.as_str(),
                "id": s.id,
                "peer": c.map(|c| c.peer.ip().to_string()),
                "transport": c.map(|c| c.transport),
                "secure": c.map(|c| c.secure),
                "since": c.map(|c| format_time(c.since)),
            })
        })
        .collect();
    reply(StatusCode::OK, json!({ "sessions": sessions }))
}

#[derive(Deserialize)]
struct SessionRef {
    jid: String,
    id: u64,
}

/// POST /api/v1/sessions/disconnect {"jid": full JID, "id"}: 404 if that session is gone.
pub async fn disconnect(req: Http) -> Response {
    let who = caller!(req);
    let body: SessionRef = match json_body(&req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let session = FullJid::new(&body.jid)
        .ok()
        .and_then(|j| req.ctx.router.session(&j))
        .filter(|s| s.id == body.id);
    let Some(session) = session else {
        return error(StatusCode::NOT_FOUND, "no such session");
    };
    session.close(confab_proto::error::StreamError::with_text(
        confab_proto::error::StreamErrorCondition::PolicyViolation,
        "disconnected by an administrator",
    ));
    audit::record(
        &req.ctx.stores,
        &who,
        "session-disconnect",
        session.jid.as_str(),
    )
    .await;
    reply(StatusCode::OK, json!({ "jid": session.jid.as_str() }))
}

/// GET /api/v1/rooms: the rooms the group chat service offers the console (its columns as
/// keys); 404 when no module offers a rooms view.
pub async fn list_rooms(req: Http) -> Response {
    let _ = caller!(req);
    let Some(view) = req.ctx.registry.admin_view_named("rooms").cloned() else {
        return error(StatusCode::NOT_FOUND, "no group chat service");
    };
    let columns = view.columns();
    let rooms: Vec<serde_json::Value> = view
        .rows(&req.ctx)
        .await
        .into_iter()
        .map(|r| {
            let mut o = serde_json::Map::new();
            o.insert("id".into(), json!(r.id));
            for (c, v) in columns.iter().zip(r.cells) {
                o.insert((*c).to_string(), json!(v));
            }
            serde_json::Value::Object(o)
        })
        .collect();
    reply(StatusCode::OK, json!({ "rooms": rooms }))
}

#[derive(Deserialize)]
struct RoomRef {
    id: String,
}

/// POST /api/v1/rooms/destroy {"id": room JID}: the occupants get the XEP-0045 destroy
/// notice; 404 if there is no such room.
pub async fn destroy_room(req: Http) -> Response {
    let who = caller!(req);
    let body: RoomRef = match json_body(&req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(view) = req.ctx.registry.admin_view_named("rooms").cloned() else {
        return error(StatusCode::NOT_FOUND, "no group chat service");
    };
    // A token names no account: the server itself acts (the audit log names the token).
    let Some(actor) = req
        .ctx
        .config
        .server
        .domains
        .first()
        .and_then(|d| BareJid::new(d).ok())
    else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "no served domain");
    };
    match view.act(&req.ctx, &body.id, "destroy", &actor).await {
        Ok(()) => {
            audit::record(&req.ctx.stores, &who, "room-destroy", &body.id).await;
            reply(StatusCode::OK, json!({ "id": body.id }))
        }
        Err(e) => {
            tracing::info!(room = %body.id, error = %e, "admin API: room destroy refused");
            error(StatusCode::NOT_FOUND, "no such room")
        }
    }
}

/// GET /api/v1/openapi.json (no token needed: it describes, it does nothing).
pub async fn openapi() -> Response {
    let mut r = include_str!("../static/openapi.json").into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
