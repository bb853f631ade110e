//! XEP-0156 discovery: `/.well-known/host-meta` (XRD) and `host-meta.json` list the web
//! endpoints of the enabled transports (WebSocket, BOSH), each from its own section. Asked
//! over HTTPS (or through a trusted proxy that says its client used HTTPS), it lists the
//! `wss://`/`https://` URLs on the request's host; asked over plain HTTP, the `ws://`/`http://`
//! ones and then, when `[http] tls_port` listens, the TLS ones on that port.

use crate::bosh::BoshConfig;
use crate::websocket::WebSocketConfig;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use confab_server::http::HttpConnection;
use confab_server::module::{Module, Registry};
use confab_server::ServerCtx;
use std::sync::Arc;

/// One advertised endpoint: its link relation, and its public URL or the schemes (plain,
/// TLS) and path to build one from the request's `Host`.
#[derive(Clone, Debug)]
struct Endpoint {
    rel: &'static str,
    public_url: Option<String>,
    schemes: (&'static str, &'static str),
    path: String,
}

/// The `host_meta` module.
pub struct HostMeta;

impl Module for HostMeta {
    fn name(&self) -> &'static str {
        "host_meta"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        let disabled = reg.config().modules.disabled.clone();
        let on = |m: &str| !disabled.iter().any(|d| d == m);
        let mut links = Vec::new();
        if on("websocket") {
            let ws = reg.section::<WebSocketConfig>("websocket");
            links.push(Endpoint {
                rel: crate::websocket::LINK_REL,
                public_url: ws.public_url,
                schemes: ("ws", "wss"),
                path: ws.path,
            });
        }
        if on("bosh") {
            let b = reg.section::<BoshConfig>("bosh");
            links.push(Endpoint {
                rel: crate::bosh::LINK_REL,
                public_url: b.public_url,
                schemes: ("http", "https"),
                path: b.path,
            });
        }
        if links.is_empty() {
            return;
        }
        let links = Arc::new(links);
        for (path, json) in [
            ("/.well-known/host-meta", false),
            ("/.well-known/host-meta.json", true),
        ] {
            let l = links.clone();
            reg.http_route(
                path,
                get(
                    move |State(ctx): State<ServerCtx>,
                          conn: HttpConnection,
                          headers: HeaderMap| {
                        let links = l.clone();
                        async move {
                            let tls_port = ctx
                                .listener_addrs
                                .iter()
                                .find(|(n, _)| *n == "https")
                                .map(|(_, a)| a.port());
                            host_meta(&links, &headers, &conn, tls_port, json)
                        }
                    },
                ),
            );
        }
    }
}

/// A `Host` header fit to put in a URL: a name or address and an optional port.
fn plausible_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

/// The host part of a `Host` header (without its port).
fn host_name(host: &str) -> &str {
    match host.strip_prefix('[') {
        Some(rest) => rest.find(']').map(|i| &host[..i + 2]).unwrap_or(host),
        None => host.split(':').next().unwrap_or(host),
    }
}

/// The URLs to list for a request on `conn` to `host` (see the module's doc).
fn urls(
    links: &[Endpoint],
    host: &str,
    conn: &HttpConnection,
    tls_port: Option<u16>,
) -> Option<Vec<(&'static str, String)>> {
    let mut plain = Vec::with_capacity(links.len());
    let mut secure = Vec::new();
    for l in links {
        let (p, s) = l.schemes;
        match &l.public_url {
            Some(u) => plain.push((l.rel, u.clone())),
            None if !plausible_host(host) => return None,
            None if conn.is_encrypted() => plain.push((l.rel, format!("{s}://{host}{}", l.path))),
            None => {
                plain.push((l.rel, format!("{p}://{host}{}", l.path)));
                // Behind a proxy the TLS port is the proxy's business.
                if let (Some(port), false) = (tls_port, conn.via_proxy) {
                    secure.push((l.rel, format!("{s}://{}:{port}{}", host_name(host), l.path)));
                }
            }
        }
    }
    plain.extend(secure);
    Some(plain)
}

/// The document, as XRD or JSON. Browsers fetch it from other origins, hence the CORS
/// header.
fn host_meta(
    links: &[Endpoint],
    headers: &HeaderMap,
    conn: &HttpConnection,
    tls_port: Option<u16>,
    json: bool,
) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let Some(urls) = urls(links, host, conn, tls_port) else {
        return (StatusCode::BAD_REQUEST, "missing or invalid Host header").into_response();
    };
    let (content_type, body) = if json {
        let items: Vec<String> = urls
            .iter()
            .map(|(rel, url)| format!("{{\"rel\":\"{rel}\",\"href\":\"{}\"}}", json_escape(url)))
            .collect();
        (
            "application/json",
            format!("{{\"links\":[{}]}}", items.join(",")),
        )
    } else {
        let mut xrd = String::from(
            "<?xml version='1.0' encoding='utf-8'?>\n\
             <XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n",
        );
        for (rel, url) in &urls {
            xrd.push_str(&format!(
                "  <Link rel='{rel}' href='{}'/>\n",
                confab_proto::xml::escape(url)
            ));
        }
        xrd.push_str("</XRD>\n");
        ("application/xrd+xml", xrd)
    };
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_that_could_break_the_url_are_refused() {
        assert!(plausible_host("chat.example.org:5280"));
        assert!(plausible_host("[::1]:5280"));
        assert!(!plausible_host("a'b"));
        assert!(!plausible_host("a/b"));
        assert!(!plausible_host(""));
        assert_eq!(json_escape("a\"b\\"), "a\\\"b\\\\");
        assert_eq!(host_name("chat.example.org:5280"), "chat.example.org");
        assert_eq!(host_name("[::1]:5280"), "[::1]");
        assert_eq!(host_name("localhost"), "localhost");
    }

    #[test]
    fn urls_follow_the_requests_scheme() {
        let links = [
            Endpoint {
                rel: "ws",
                public_url: None,
                schemes: ("ws", "wss"),
                path: "/w".into(),
            },
            Endpoint {
                rel: "bosh",
                public_url: None,
                schemes: ("http", "https"),
                path: "/b".into(),
            },
        ];
        let peer = "127.0.0.1:1".parse().expect("addr");
        let mut conn = HttpConnection {
            peer,
            client: peer,
            tls: false,
            forwarded_https: false,
            via_proxy: false,
        };
        let got = |conn: &HttpConnection, port| -> Vec<String> {
            urls(&links, "h.example:5280", conn, port)
                .expect("urls")
                .into_iter()
                .map(|(_, u)| u)
                .collect()
        };
        assert_eq!(
            got(&conn, Some(5443)),
            [
                "ws://h.example:5280/w",
                "http://h.example:5280/b",
                "wss://h.example:5443/w",
                "https://h.example:5443/b"
            ]
        );
        assert_eq!(
            got(&conn, None),
            ["ws://h.example:5280/w", "http://h.example:5280/b"]
        );
        conn.via_proxy = true;
        assert_eq!(
            got(&conn, Some(5443)),
            ["ws://h.example:5280/w", "http://h.example:5280/b"]
        );
        conn.forwarded_https = true;
        assert_eq!(
            got(&conn, Some(5443)),
            ["wss://h.example:5280/w", "https://h.example:5280/b"]
        );
        conn.forwarded_https = false;
        conn.via_proxy = false;
        conn.tls = true;
        assert_eq!(
            got(&conn, Some(5443)),
            ["wss://h.example:5280/w", "https://h.example:5280/b"]
        );
        assert!(urls(&links, "bad/host", &conn, None).is_none());
    }
}
