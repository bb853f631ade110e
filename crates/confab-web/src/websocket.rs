//! XMPP over WebSocket (RFC 7395) on the HTTP listener, announced by `host_meta`. A
//! WebSocket is one more framing of the same session: `FramedXml` over the socket, handed to `c2s::serve_framing`, so negotiation, limits, routing and stream
//! management are those of TCP clients. Connections count against the same connection
//! limits (`ServerState::admission`).

use async_trait::async_trait;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket as Socket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use confab_server::http::HttpConnection;
use confab_server::module::{Module, ModuleConfig, Registry};
use confab_server::ServerCtx;
use confab_stream::framing::{FramedXml, MessageTransport};
use serde::{Deserialize, Serialize};
use std::io;
use std::sync::Arc;

/// The WebSocket subprotocol name (RFC 7395 §3.1).
pub const SUBPROTOCOL: &str = "xmpp";
/// XEP-0156: the link relation of a WebSocket endpoint.
pub const LINK_REL: &str = "urn:xmpp:alt-connections:websocket";

/// `[websocket]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketConfig {
    /// Path of the endpoint on the HTTP listener.
    pub path: String,
    /// Connections from a loopback address count as encrypted: a TLS-terminating reverse
    /// proxy on the same machine, or a local client. Other connections to the plain HTTP
    /// listener are not (unless a trusted proxy says its client used HTTPS), and `[c2s]
    /// require_tls` then refuses to authenticate them; those on `[http] tls_port` are.
    pub trust_loopback: bool,
    /// The URL clients reach the endpoint at, announced in `host-meta` (e.g.
    /// `wss://chat.example.org/xmpp-websocket` behind a proxy). By default built from the
    /// request: `wss://` over HTTPS, `ws://` (and `wss://` on `[http] tls_port`) over HTTP.
    pub public_url: Option<String>,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        WebSocketConfig {
            path: "/xmpp-websocket".into(),
            trust_loopback: true,
            public_url: None,
        }
    }
}

impl ModuleConfig for WebSocketConfig {
    fn validate(&self) -> Result<(), String> {
        if !self.path.starts_with('/') || self.path.starts_with("/.well-known/") {
            return Err("path must start with '/' and not be under /.well-known/".into());
        }
        if let Some(u) = &self.public_url {
            if !(u.starts_with("ws://") || u.starts_with("wss://")) {
                return Err("public_url must be a ws:// or wss:// URL".into());
            }
        }
        Ok(())
    }
}

/// The `websocket` module.
pub struct WebSocket;

impl Module for WebSocket {
    fn name(&self) -> &'static str {
        "websocket"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        let config = Arc::new(reg.section::<WebSocketConfig>("websocket"));
        let c = config.clone();
        reg.http_route(
            &config.path,
            get(
                move |State(ctx): State<ServerCtx>,
                      conn: HttpConnection,
                      headers: HeaderMap,
                      ws: WebSocketUpgrade| {
                    let config = c.clone();
                    async move { upgrade(ctx, config, conn, headers, ws) }
                },
            ),
        );
    }
}

/// Whether the handshake asks for the `xmpp` subprotocol (RFC 7395 §3.1: without it no
/// XMPP session is established).
fn offers_xmpp(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL)
}

fn upgrade(
    ctx: ServerCtx,
    config: Arc<WebSocketConfig>,
    conn: HttpConnection,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    // The client's address (behind a trusted proxy, the one it forwarded): what is
    // admitted, logged and shown as the session's address.
    let peer = conn.client;
    if !offers_xmpp(&headers) {
        tracing::info!(%peer, "WebSocket handshake without the xmpp subprotocol; refused");
        return (
            StatusCode::BAD_REQUEST,
            "this endpoint speaks the xmpp WebSocket subprotocol (RFC 7395)",
        )
            .into_response();
    }
    let admitted = match ctx.admission.admit(peer.ip()) {
        Ok(a) => a,
        Err(why) => {
            tracing::warn!(%peer, ?why, "connection limit reached; WebSocket refused");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    let limits = ctx.config.limits.parser_limits();
    // A message is one stanza: larger than the stanza limit is refused by the WebSocket
    // layer before it is buffered whole.
    let max = ctx.config.limits.max_stanza_size;
    let secure = is_secure(&conn, config.trust_loopback);
    ws.protocols([SUBPROTOCOL])
        .max_message_size(max)
        .max_frame_size(max)
        .on_failed_upgrade(move |e| tracing::info!(%peer, error = %e, "WebSocket upgrade failed"))
        .on_upgrade(move |socket| async move {
            let framing = FramedXml::new(
                WsTransport {
                    socket: std::sync::Mutex::new(socket),
                    secure,
                },
                limits,
            );
            let shutdown = ctx.shutdown_signal();
            confab_server::c2s::serve_framing(ctx, Box::new(framing), peer, shutdown).await;
            drop(admitted);
        })
}

/// Whether a client on `conn` counts as encrypted: TLS to this server or to a trusted proxy,
/// or (with `trust_loopback`) a connection from this machine.
pub(crate) fn is_secure(conn: &HttpConnection, trust_loopback: bool) -> bool {
    conn.is_encrypted() || (trust_loopback && conn.peer.ip().to_canonical().is_loopback())
}

/// One WebSocket as a message transport: each text message one XML document.
struct WsTransport {
    /// Framings are shared between threads (`Sync`); the socket is not. Only `&mut self`
    /// reaches it, through `get_mut`, so the mutex is never locked.
    socket: std::sync::Mutex<Socket>,
    secure: bool,
}

impl WsTransport {
    fn socket(&mut self) -> &mut Socket {
        self.socket.get_mut().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl MessageTransport for WsTransport {
    async fn recv(&mut self) -> io::Result<Option<String>> {
        loop {
            // `WebSocket::recv` takes one message off a stream: cancel-safe.
            match self.socket().recv().await {
                None | Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Err(e)) => return Err(io::Error::other(e)),
                Some(Ok(Message::Text(t))) => return Ok(Some(t.as_str().to_owned())),
                // RFC 7395 §3.2: XMPP messages are text frames.
                Some(Ok(Message::Binary(_))) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "binary WebSocket message",
                    ))
                }
                // Pongs are sent by the WebSocket layer itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            }
        }
    }

    async fn send(&mut self, text: Bytes) -> io::Result<()> {
        let text =
            Utf8Bytes::try_from(text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.socket()
            .send(Message::Text(text))
            .await
            .map_err(io::Error::other)
    }

    async fn close(&mut self) -> io::Result<()> {
        self.socket()
            .send(Message::Close(None))
            .await
            .map_err(io::Error::other)
    }

    async fn ping(&mut self) -> io::Result<()> {
        self.socket()
            .send(Message::Ping(Bytes::new()))
            .await
            .map_err(io::Error::other)
    }

    fn is_secure(&self) -> bool {
        self.secure
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_subprotocol_is_found_in_any_offered_list() {
        let mut h = HeaderMap::new();
        assert!(!offers_xmpp(&h));
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("chat, xmpp"),
        );
        assert!(offers_xmpp(&h));
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("xmpp-ish"),
        );
        assert!(!offers_xmpp(&h));
    }

    #[test]
    fn config_is_checked() {
        assert!(WebSocketConfig::default().validate().is_ok());
        let bad = WebSocketConfig {
            path: "ws".into(),
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        let bad = WebSocketConfig {
            public_url: Some("http://x/".into()),
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }
}
