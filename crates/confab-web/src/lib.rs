//! The web transports of Confab, as modules on the server's HTTP listener (`[http]`):
//! `websocket` (XMPP over WebSocket, RFC 7395), `bosh` (XEP-0124 / XEP-0206) and
//! `host_meta` (XEP-0156 discovery of both). Each transport hands its sessions to the one
//! negotiation and session of the core (`c2s::serve_framing`).

use confab_server::module::Module;
use std::sync::Arc;

pub mod bosh;
pub mod host_meta;
pub mod websocket;

/// Every web module; the configuration decides which are enabled.
pub fn all() -> Vec<Arc<dyn Module>> {
    vec![
        Arc::new(websocket::WebSocket),
        Arc::new(bosh::Bosh::default()),
        Arc::new(host_meta::HostMeta),
    ]
}
