//! BOSH (XEP-0124, with XEP-0206 for XMPP) on the HTTP listener: one more framing of the
//! same session. A BOSH session is a `BoshFraming` handed to `c2s::serve_framing` like a
//! WebSocket, so negotiation, limits, routing and stream management are those of TCP
//! clients; the requests that carry it only move `<body/>` contents in and out
//! (`session.rs`). Each session counts against the connection limits
//! (`ServerState::admission`) for as long as it lives.

mod body;
mod session;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use body::Terminate;
use confab_proto::ns;
use confab_proto::parser::StreamHeader;
use confab_server::http::HttpConnection;
use confab_server::module::{Module, ModuleConfig, Registry};
use confab_server::ServerCtx;
use rand::Rng;
use serde::{Deserialize, Serialize};
use session::{BoshFraming, Params, Request, Session};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use body::{NS, XBOSH_NS};

/// XEP-0156: the link relation of a BOSH endpoint.
pub const LINK_REL: &str = "urn:xmpp:alt-connections:xbosh";

/// `[bosh]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BoshConfig {
    /// Path of the endpoint on the HTTP listener.
    pub path: String,
    /// Requests from a loopback address count as encrypted (a TLS-terminating proxy on the
    /// same machine, or a local client); see `[websocket] trust_loopback`.
    pub trust_loopback: bool,
    /// The URL announced in `host-meta` (e.g. `https://chat.example.org/http-bind`). By
    /// default built from the request: `https://` over HTTPS, `http://` (and `https://` on
    /// `[http] tls_port`) over HTTP.
    pub public_url: Option<String>,
    /// Longest time a request is held, in seconds (a client's `wait` is lowered to it).
    pub max_wait: u64,
    /// Most requests held at once per session (a client's `hold` is lowered to it).
    pub max_hold: u64,
    /// Seconds without any request before a session ends.
    pub inactivity: u64,
    /// Longest pause a client may ask for, in seconds; 0 refuses pauses.
    pub max_pause: u64,
    /// Largest request body in bytes; by default the stanza limit plus 4 KiB.
    pub max_body_size: Option<usize>,
    /// Origins allowed to call the endpoint from a browser (CORS); `*` allows any. BOSH
    /// carries no cookies, so any origin is harmless unless a proxy adds credentials.
    pub cors_origins: Vec<String>,
}

impl Default for BoshConfig {
    fn default() -> Self {
        BoshConfig {
            path: "/http-bind".into(),
            trust_loopback: true,
            public_url: None,
            max_wait: 60,
            max_hold: 1,
            inactivity: 60,
            max_pause: 120,
            max_body_size: None,
            cors_origins: vec!["*".into()],
        }
    }
}

impl ModuleConfig for BoshConfig {
    fn validate(&self) -> Result<(), String> {
        if !self.path.starts_with('/') || self.path.starts_with("/.well-known/") {
            return Err("path must start with '/' and not be under /.well-known/".into());
        }
        if let Some(u) = &self.public_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err("public_url must be an http:// or https:// URL".into());
            }
        }
        if !(1..=3600).contains(&self.max_wait) {
            return Err("max_wait must be between 1 and 3600 seconds".into());
        }
        // At least one held request, so there is always a connection to push on.
        if !(1..=16).contains(&self.max_hold) {
            return Err("max_hold must be between 1 and 16".into());
        }
        if self.inactivity < 5 || self.inactivity > 3600 {
            return Err("inactivity must be between 5 and 3600 seconds".into());
        }
        if self.max_pause > 3600 {
            return Err("max_pause must be at most 3600 seconds".into());
        }
        if self.max_body_size.is_some_and(|n| n < 1024) {
            return Err("max_body_size must be at least 1024 bytes".into());
        }
        if self
            .cors_origins
            .iter()
            .any(|o| HeaderValue::from_str(o).is_err() || o.is_empty())
        {
            return Err("cors_origins must be origins such as https://example.org, or *".into());
        }
        Ok(())
    }
}

/// The `bosh` module: its sessions, by sid.
#[derive(Default)]
pub struct Bosh {
    sessions: Mutex<HashMap<String, Arc<Session>>>,
}

impl Module for Bosh {
    fn name(&self) -> &'static str {
        "bosh"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        let config = Arc::new(reg.section::<BoshConfig>("bosh"));
        let (c, b) = (config.clone(), self.clone());
        let c2 = config.clone();
        reg.http_route(
            &config.path,
            post(
                move |State(ctx): State<ServerCtx>,
                      conn: HttpConnection,
                      headers: HeaderMap,
                      body: Body| {
                    let (config, bosh) = (c.clone(), b.clone());
                    async move {
                        let cors = cors_headers(&config, &headers, false);
                        let mut r = bosh.request(ctx, &config, conn, body).await;
                        r.headers_mut().extend(cors);
                        r
                    }
                },
            )
            .options(move |headers: HeaderMap| {
                let config = c2.clone();
                async move {
                    let mut r = StatusCode::NO_CONTENT.into_response();
                    r.headers_mut()
                        .extend(cors_headers(&config, &headers, true));
                    r
                }
            }),
        );
    }
}

/// CORS headers for a request from `Origin` (none if the origin is not allowed).
fn cors_headers(config: &BoshConfig, headers: &HeaderMap, preflight: bool) -> HeaderMap {
    let mut out = HeaderMap::new();
    let origin = headers.get(header::ORIGIN);
    let allow = if config.cors_origins.iter().any(|o| o == "*") {
        Some(HeaderValue::from_static("*"))
    } else {
        origin
            .filter(|o| {
                let o = o.to_str().unwrap_or_default();
                config.cors_origins.iter().any(|a| a == o)
            })
            .cloned()
    };
    if !config.cors_origins.iter().any(|o| o == "*") {
        out.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    let Some(allow) = allow else { return out };
    out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
    if preflight {
        out.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST, OPTIONS"),
        );
        out.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Content-Type"),
        );
        out.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
    }
    out
}

/// An answer body. Legacy clients (no `ver`) get XEP-0124 §17.6's HTTP status codes for
/// some conditions; others always get 200.
fn reply(body: bytes::Bytes, status: StatusCode) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml; charset=utf-8"),
    );
    r
}

fn terminate_reply(condition: &'static str, legacy: bool) -> Response {
    let status = match (legacy, condition) {
        (true, "bad-request") => StatusCode::BAD_REQUEST,
        (true, "item-not-found") => StatusCode::NOT_FOUND,
        (true, "policy-violation") => StatusCode::FORBIDDEN,
        _ => StatusCode::OK,
    };
    reply(body::terminate(&Terminate::new(condition)), status)
}

/// What came of reading a request body: all of it, or what arrived before it was refused
/// (at most `max` bytes either way).
enum BodyRead {
    Whole(bytes::Bytes),
    Late(Vec<u8>),
    TooLarge(Vec<u8>),
    Broken(Vec<u8>),
}

async fn read_body(mut body: Body, max: usize, within: Duration) -> BodyRead {
    use axum::body::HttpBody;
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx));
        match tokio::time::timeout_at(deadline, frame).await {
            Err(_) => return BodyRead::Late(got),
            Ok(None) => return BodyRead::Whole(got.into()),
            Ok(Some(Err(_))) => return BodyRead::Broken(got),
            Ok(Some(Ok(frame))) => {
                // Trailers carry nothing for us.
                let Ok(chunk) = frame.into_data() else {
                    continue;
                };
                if got.len() + chunk.len() > max {
                    let room = max - got.len();
                    got.extend_from_slice(&chunk[..room]);
                    return BodyRead::TooLarge(got);
                }
                got.extend_from_slice(&chunk);
            }
        }
    }
}

/// The `<body>` start tag at the beginning of a body that was not read whole, as an
/// element without children, if it arrived complete.
fn start_tag(
    start: &[u8],
    limits: &confab_proto::parser::Limits,
) -> Option<confab_proto::xml::Element> {
    let from = start.windows(5).position(|w| w == b"<body")?;
    let end = from + start[from..].iter().position(|&b| b == b'>')?;
    let tag = std::str::from_utf8(&start[from..=end]).ok()?;
    if tag.ends_with("/>") {
        body::parse(tag, limits).ok()
    } else {
        body::parse(&format!("{tag}</body>"), limits).ok()
    }
}

impl Bosh {
    /// Answers a request whose body was refused (late, too large, cut short) with
    /// `policy-violation`, a terminal condition (XEP-0124 §17): the session it names, if
    /// its start tag arrived, ends, and the answer is the one its client understands
    /// (HTTP 200 with the condition if it sent `ver`, 403 if not). Without a start tag
    /// neither the session nor the client's version can be known; that answer is 403 with
    /// the condition, which both kinds of client take as the end.
    fn refuse(&self, start: &[u8], limits: &confab_proto::parser::Limits, why: &str) -> Response {
        let el = start_tag(start, limits);
        let session = el
            .as_ref()
            .and_then(|e| e.get_attr("sid"))
            .and_then(|sid| self.session(sid));
        let legacy = match (&session, &el) {
            (Some(s), _) => s.legacy,
            (None, Some(e)) => e.get_attr("ver").is_none(),
            (None, None) => true,
        };
        if let Some(s) = session {
            s.kill("policy-violation", why);
        }
        terminate_reply("policy-violation", legacy)
    }

    fn session(&self, sid: &str) -> Option<Arc<Session>> {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(sid)
            .cloned()
    }

    fn remove(&self, sid: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(sid);
    }

    async fn request(
        self: Arc<Self>,
        ctx: ServerCtx,
        config: &BoshConfig,
        conn: HttpConnection,
        body: Body,
    ) -> Response {
        // The client's address (behind a trusted proxy, the one it forwarded).
        let peer = conn.client;
        let limits = ctx.config.limits.parser_limits();
        let max = config
            .max_body_size
            .unwrap_or(limits.max_stanza_size + 4096);
        // A request being served has no connection deadline (long-polls must outlast
        // it), so the body's own read is bounded here: a trickled body cannot hold a
        // connection and its buffer forever.
        let read = Duration::from_secs(ctx.config.http.header_timeout);
        let bytes = match read_body(body, max, read).await {
            BodyRead::Whole(b) => b,
            BodyRead::Late(start) => {
                tracing::info!(%peer, secs = read.as_secs(), "BOSH request body not sent in time; refused");
                return self.refuse(&start, &limits, "request body not sent in time");
            }
            BodyRead::TooLarge(start) => {
                tracing::info!(%peer, max, "BOSH request body too large; refused");
                return self.refuse(&start, &limits, "request body too large");
            }
            BodyRead::Broken(start) => {
                tracing::info!(%peer, "BOSH request body cut short; refused");
                return self.refuse(&start, &limits, "request body cut short");
            }
        };
        let size = bytes.len();
        let el = match std::str::from_utf8(&bytes)
            .map_err(|_| "not UTF-8")
            .and_then(|t| body::parse(t, &limits))
        {
            Ok(el) => el,
            Err(why) => {
                tracing::info!(%peer, why, "bad BOSH request");
                return terminate_reply("bad-request", true);
            }
        };
        // Only the creation request carries `ver`; later ones go by their session's.
        let session = el.get_attr("sid").map(|sid| self.session(sid));
        let legacy = match &session {
            Some(Some(s)) => s.legacy,
            _ => el.get_attr("ver").is_none(),
        };
        let Some(rid) = body::rid(&el) else {
            tracing::info!(%peer, "BOSH request without a valid rid");
            if let Some(Some(s)) = &session {
                // A terminal error for its session (XEP-0124 §17.2).
                s.kill("bad-request", "request without a valid rid");
            }
            return terminate_reply("bad-request", legacy);
        };
        let creation = session.is_none();
        let session = match session {
            Some(Some(s)) => s,
            Some(None) => {
                // 404 as well as the terminate body: what legacy clients understand, and
                // what a client of a session we no longer know cannot have told us.
                tracing::info!(%peer, "BOSH request for an unknown sid");
                return terminate_reply("item-not-found", true);
            }
            None => match self.create(&ctx, config, conn, &el, rid) {
                Ok(s) => s,
                Err(condition) => return terminate_reply(condition, legacy),
            },
        };
        let header = if creation {
            Some(stream_header(&el, body::xmpp_attr(&el, "version")))
        } else if body::xmpp_attr(&el, "restart") == Some("true") {
            // XEP-0206 §6: a restart is a new stream header; the version is that of the
            // session.
            Some(stream_header(&el, Some("1.0")))
        } else {
            None
        };
        let terminate = el.get_attr("type") == Some("terminate");
        let pause = el.get_attr("pause").and_then(|p| p.parse::<u64>().ok());
        let payloads = el.elements().cloned().collect();
        let ack = el.get_attr("ack").and_then(|a| a.parse::<u64>().ok());
        let req = Request {
            rid,
            header,
            payloads,
            terminate,
            pause,
            size,
            ack,
        };
        let sid = session.sid.clone();
        let answer = session.handle(req, creation).await;
        if session.is_ended() && session.end_delivered() {
            self.remove(&sid);
        }
        match answer {
            Ok(b) => reply(b, StatusCode::OK),
            Err(session::Fatal(t)) => terminate_reply(t.condition, legacy),
        }
    }

    /// A new session (XEP-0124 §7.1): admitted like a connection, its c2s task started.
    fn create(
        self: &Arc<Self>,
        ctx: &ServerCtx,
        config: &BoshConfig,
        conn: HttpConnection,
        el: &confab_proto::xml::Element,
        rid: u64,
    ) -> Result<Arc<Session>, &'static str> {
        let peer = conn.client;
        let admitted = ctx.admission.admit(peer.ip()).map_err(|why| {
            tracing::warn!(%peer, ?why, "connection limit reached; BOSH session refused");
            "policy-violation"
        })?;
        let num = |name: &str| el.get_attr(name).and_then(|v| v.parse::<u64>().ok());
        let wait = num("wait")
            .unwrap_or(config.max_wait)
            .clamp(1, config.max_wait);
        let hold = num("hold").unwrap_or(1).min(config.max_hold) as usize;
        let limits = &ctx.config.limits;
        let max_body = config
            .max_body_size
            .unwrap_or(limits.max_stanza_size + 4096);
        let params = Params {
            wait,
            hold,
            requests: hold + 1,
            inactivity: config.inactivity,
            max_pause: config.max_pause,
            max_buffered: max_body,
            max_input: max_body * (hold + 2),
        };
        let sid: String = {
            let mut rng = rand::thread_rng();
            (0..24)
                .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.gen_range(0..36)]))
                .collect()
        };
        // Decided by the creation request: the session's later requests may come on other
        // connections, but a client does not leave HTTPS half way.
        let secure = crate::websocket::is_secure(&conn, config.trust_loopback);
        let legacy = el.get_attr("ver").is_none();
        // XEP-0124 §9: a client that will acknowledge answers says so with `ack='1'`.
        let acks = el.get_attr("ack") == Some("1");
        let session = Session::new(sid.clone(), rid, params, secure, legacy, acks);
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sid.clone(), session.clone());
        tracing::debug!(%peer, %sid, wait, hold, "BOSH session created");
        let (bosh, s, ctx) = (self.clone(), session.clone(), ctx.clone());
        tokio::spawn(async move {
            let shutdown = ctx.shutdown_signal();
            let framing = BoshFraming(s.clone());
            confab_server::c2s::serve_framing(ctx, Box::new(framing), peer, shutdown).await;
            drop(admitted);
            s.finished();
            // A terminate body nobody has fetched yet stays for the next request a little.
            if !s.end_delivered() {
                tokio::time::sleep(Duration::from_secs(s.params.wait.min(10))).await;
            }
            bosh.remove(&s.sid);
        });
        Ok(session)
    }
}

/// The stream header a creation or restart request stands for.
fn stream_header(el: &confab_proto::xml::Element, version: Option<&str>) -> StreamHeader {
    StreamHeader {
        name: "stream".into(),
        ns: ns::STREAM.into(),
        to: el.get_attr("to").map(str::to_string),
        from: el.get_attr("from").map(str::to_string),
        id: None,
        version: version.map(str::to_string),
        lang: el.get_attr_ns(ns::XML, "lang").map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_checked() {
        assert!(BoshConfig::default().validate().is_ok());
        for bad in [
            BoshConfig {
                path: "bind".into(),
                ..Default::default()
            },
            BoshConfig {
                max_hold: 0,
                ..Default::default()
            },
            BoshConfig {
                public_url: Some("ws://x/".into()),
                ..Default::default()
            },
            BoshConfig {
                cors_origins: vec!["bad\norigin".into()],
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cors_allows_the_configured_origins() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://a.example"),
        );
        let any = BoshConfig::default();
        let out = cors_headers(&any, &h, true);
        assert_eq!(
            out.get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .map(|v| v.as_bytes()),
            Some(&b"*"[..])
        );
        assert!(out.get(header::ACCESS_CONTROL_ALLOW_METHODS).is_some());
        let some = BoshConfig {
            cors_origins: vec!["https://a.example".into()],
            ..Default::default()
        };
        let out = cors_headers(&some, &h, false);
        assert_eq!(
            out.get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .map(|v| v.as_bytes()),
            Some(&b"https://a.example"[..])
        );
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(cors_headers(&some, &h, false)
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none());
    }
}
