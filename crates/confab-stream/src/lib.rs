//! Async XMPP stream framing for both sides of a connection: the transport (TCP or TLS),
//! reading parsed events from it, channel-binding data for SASL, and the client-side
//! negotiation used by Confab's tests, tools and client SDK.
//!
//! **Architecture invariant:** only this crate (and the server's listeners) touch sockets
//! and TLS; everything above it sees elements and events.

pub mod client;
pub mod framing;
pub mod tls;
pub mod traffic;
pub mod transport;
pub mod xmlstream;

pub use framing::{FramedXml, MessageTransport, ServerFraming, WireForm, WireStanza};
pub use transport::Transport;
pub use xmlstream::{ReadError, XmlStream};
