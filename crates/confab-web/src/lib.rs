//! The web transports of Confab, as modules on the server's HTTP listener (`[http]`):
//! `websocket` (XMPP over WebSocket, RFC 7395, with XEP-0156 discovery). Each hands its
//! connections to the one negotiation and session of the core (`c2s::serve_framing`).

use confab_server::module::Module;
use std::sync::Arc;

pub mod websocket;

/// Every web module; the configuration decides which are enabled.
pub fn all() -> Vec<Arc<dyn Module>> {
    vec![Arc::new(websocket::WebSocket)]
}
