//! The HTTP side of XEP-0363 on the `[http]` listener: `PUT` stores a slot's file (once,
//! authorised, exactly the announced size and type, streamed to disk), `GET`/`HEAD` serve
//! it with headers that keep a browser from running it, `OPTIONS` answers CORS preflights.
//!
//! Refusals say nothing about who owns what: an unknown, expired or foreign id is a plain
//! 404 on GET and 403 on PUT.

use crate::{now_unix, FileMeta, Shared, PATH_PREFIX};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use confab_server::module::Registry;
use confab_server::ServerCtx;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bytes read from disk per chunk of a GET.
const CHUNK: usize = 64 * 1024;
/// What a served file may not do in a browser: run scripts, load anything, be framed.
const CSP: &str = "default-src 'none'; frame-ancestors 'none'; sandbox";

pub(crate) fn register_routes(reg: &mut Registry, shared: Arc<Shared>) {
    let (for_get, for_put) = (shared.clone(), shared);
    reg.http_route(
        &format!("{PATH_PREFIX}/{{id}}/{{name}}"),
        get(
            move |State(ctx): State<ServerCtx>, Path((id, name)): Path<(String, String)>| {
                let shared = for_get.clone();
                async move { with_cors(serve(&shared, &ctx, &id, &name).await) }
            },
        )
        .put(
            move |State(ctx): State<ServerCtx>,
                  Path((id, name)): Path<(String, String)>,
                  headers: HeaderMap,
                  body: Body| {
                let shared = for_put.clone();
                async move { with_cors(store(&shared, &ctx, &id, &name, &headers, body).await) }
            },
        )
        .options(|| async { with_cors(StatusCode::NO_CONTENT.into_response()) }),
    );
}

/// XEP-0363 §8's loose CORS headers, so web clients on other origins can upload and fetch.
fn with_cors(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("OPTIONS, HEAD, GET, PUT"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization, Content-Type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("7200"),
    );
    r
}

fn status(s: StatusCode, why: &'static str) -> Response {
    (s, why).into_response()
}

/// A PUT: the slot's file, checked against what was requested.
async fn store(
    shared: &Shared,
    ctx: &ServerCtx,
    id: &str,
    name: &str,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    shared.ensure_loaded(ctx).await;
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        tracing::info!(id, "upload PUT without authorisation");
        return status(StatusCode::UNAUTHORIZED, "authorisation required\n");
    };
    // The slot is taken only by a PUT that proves it was handed out: a guesser cannot
    // use up someone's slot.
    let slot = {
        let mut st = shared.state();
        let authorised = st
            .pending
            .get(id)
            .is_some_and(|s| s.name == name && shared.verify(id, s, token.trim()));
        if !authorised {
            drop(st);
            tracing::info!(
                id,
                "upload PUT refused: unknown slot, used slot or wrong token"
            );
            return status(StatusCode::FORBIDDEN, "no such upload slot\n");
        }
        match st.pending.remove(id) {
            Some(s) => s,
            None => return status(StatusCode::FORBIDDEN, "no such upload slot\n"),
        }
    };
    // From here the slot is used, whatever happens: its reservation ends with this call.
    let release = |shared: &Shared| shared.state().unreserve(&slot.owner, slot.size);
    if slot.expires <= Instant::now() {
        release(shared);
        tracing::info!(id, "upload PUT refused: slot expired");
        return status(StatusCode::FORBIDDEN, "upload slot expired\n");
    }
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().parse::<u64>());
    match length {
        None => {
            release(shared);
            return status(StatusCode::LENGTH_REQUIRED, "Content-Length required\n");
        }
        Some(Ok(n)) if n == slot.size => {}
        Some(Ok(n)) if n > slot.size => {
            release(shared);
            tracing::info!(id, n, size = slot.size, "upload PUT larger than its slot");
            return status(StatusCode::PAYLOAD_TOO_LARGE, "larger than the slot\n");
        }
        Some(_) => {
            release(shared);
            tracing::info!(
                id,
                size = slot.size,
                "upload PUT length does not match its slot"
            );
            return status(
                StatusCode::BAD_REQUEST,
                "Content-Length does not match the slot\n",
            );
        }
    }
    if let Some(want) = &slot.content_type {
        let given = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase());
        if given.as_deref().is_some_and(|g| g != want) {
            release(shared);
            tracing::info!(
                id,
                want,
                given,
                "upload PUT content type does not match its slot"
            );
            return status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type does not match the slot\n",
            );
        }
    }
    let part = shared.dir.join(format!("{id}.part"));
    let idle = std::time::Duration::from_secs(shared.cfg.idle_timeout);
    let result = write_body(&part, body, slot.size, idle).await;
    if let Err((code, why)) = result {
        let _ = tokio::fs::remove_file(&part).await;
        release(shared);
        tracing::info!(id, why, "upload PUT failed");
        return status(code, why);
    }
    let meta = FileMeta {
        owner: slot.owner.clone(),
        name: slot.name.clone(),
        size: slot.size,
        content_type: slot
            .content_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".into()),
        expires: now_unix().saturating_add(shared.cfg.file_lifetime as i64),
        domain: slot.domain.clone(),
    };
    let stored = async {
        tokio::fs::rename(&part, shared.file_path(id))
            .await
            .map_err(|e| e.to_string())?;
        let json = serde_json::to_string(&meta).map_err(|e| e.to_string())?;
        shared
            .store
            .set_host(ctx, &slot.domain, id, &json)
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    if let Err(e) = stored {
        tracing::error!(error = e, id, "storing an upload failed");
        let _ = tokio::fs::remove_file(&part).await;
        let _ = tokio::fs::remove_file(shared.file_path(id)).await;
        release(shared);
        return status(StatusCode::INTERNAL_SERVER_ERROR, "storage failed\n");
    }
    {
        let mut st = shared.state();
        st.unreserve(&slot.owner, slot.size);
        *st.usage.entry(slot.owner.clone()).or_default() += slot.size;
        st.files.insert(id.to_string(), meta);
    }
    tracing::info!(id, owner = slot.owner, size = slot.size, "file uploaded");
    status(StatusCode::CREATED, "")
}

/// Streams the body into `path`, refusing more or fewer than `size` bytes and a sender
/// silent for longer than `idle`.
async fn write_body(
    path: &std::path::Path,
    body: Body,
    size: u64,
    idle: std::time::Duration,
) -> Result<(), (StatusCode, &'static str)> {
    let internal = |e: std::io::Error| {
        tracing::error!(error = %e, path = %path.display(), "writing an upload");
        (StatusCode::INTERNAL_SERVER_ERROR, "storage failed\n")
    };
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .await
        .map_err(internal)?;
    let mut written: u64 = 0;
    let mut stream = body.into_data_stream();
    loop {
        let chunk = match tokio::time::timeout(idle, stream.next()).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(_) => return Err((StatusCode::REQUEST_TIMEOUT, "upload too slow\n")),
        };
        let chunk = chunk.map_err(|_| (StatusCode::BAD_REQUEST, "upload interrupted\n"))?;
        written = written.saturating_add(chunk.len() as u64);
        if written > size {
            return Err((StatusCode::PAYLOAD_TOO_LARGE, "larger than the slot\n"));
        }
        file.write_all(&chunk).await.map_err(internal)?;
    }
    if written != size {
        return Err((StatusCode::BAD_REQUEST, "shorter than the slot\n"));
    }
    // Acknowledged with 201 only once it is on disk.
    file.sync_all().await.map_err(internal)?;
    Ok(())
}

/// A GET or HEAD of a stored file.
async fn serve(shared: &Shared, ctx: &ServerCtx, id: &str, name: &str) -> Response {
    shared.ensure_loaded(ctx).await;
    let not_found = || status(StatusCode::NOT_FOUND, "not found\n");
    let meta = shared
        .state()
        .files
        .get(id)
        .filter(|m| m.name == name && m.expires > now_unix())
        .cloned();
    let Some(meta) = meta else {
        return not_found();
    };
    let file = match tokio::fs::File::open(shared.file_path(id)).await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(error = %e, id, "an indexed upload is missing on disk");
            return not_found();
        }
    };
    let body = Body::from_stream(file_chunks(file, meta.size));
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&meta.content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.size));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if let Ok(v) = HeaderValue::from_str(&content_disposition(&meta)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// Media a browser shows itself are `inline`; everything else is a download.
fn content_disposition(meta: &FileMeta) -> String {
    let ct = meta.content_type.as_str();
    let inline = ["image/", "audio/", "video/"]
        .iter()
        .any(|p| ct.starts_with(p))
        || ct == "text/plain"
        || ct.starts_with("text/plain;");
    format!(
        "{}; filename*=UTF-8''{}",
        if inline { "inline" } else { "attachment" },
        crate::percent_encode(&meta.name)
    )
}

/// The file as a stream of chunks, ending after `size` bytes or at the first error.
fn file_chunks(
    file: tokio::fs::File,
    size: u64,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures_util::stream::unfold(Some((file, size)), |state| async move {
        let (mut file, left) = state?;
        if left == 0 {
            return None;
        }
        let mut buf = vec![0u8; CHUNK.min(left as usize)];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some((file, left - n as u64))))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}
