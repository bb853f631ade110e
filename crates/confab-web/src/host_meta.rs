//! XEP-0156 discovery: `/.well-known/host-meta` (XRD) and `host-meta.json` list the web
//! endpoints of the enabled transports (WebSocket, BOSH), each from its own section.

use crate::bosh::BoshConfig;
use crate::websocket::WebSocketConfig;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use confab_server::module::{Module, Registry};
use std::sync::Arc;

/// One advertised endpoint: its link relation, and its public URL or the scheme and path
/// to build one from the request's `Host`.
#[derive(Clone, Debug)]
struct Endpoint {
    rel: &'static str,
    public_url: Option<String>,
    scheme: &'static str,
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
                scheme: "ws",
                path: ws.path,
            });
        }
        if on("bosh") {
            let b = reg.section::<BoshConfig>("bosh");
            links.push(Endpoint {
                rel: crate::bosh::LINK_REL,
                public_url: b.public_url,
                scheme: "http",
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
                get(move |headers: HeaderMap| {
                    let links = l.clone();
                    async move { host_meta(&links, &headers, json) }
                }),
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

/// The document, as XRD or JSON. Browsers fetch it from other origins, hence the CORS
/// header.
fn host_meta(links: &[Endpoint], headers: &HeaderMap, json: bool) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let mut urls = Vec::with_capacity(links.len());
    for l in links {
        let url = match &l.public_url {
            Some(u) => u.clone(),
            None if plausible_host(host) => format!("{}://{host}{}", l.scheme, l.path),
            None => {
                return (StatusCode::BAD_REQUEST, "missing or invalid Host header").into_response()
            }
        };
        urls.push((l.rel, url));
    }
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
    }
}
