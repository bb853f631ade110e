//! The SDK's error type.

use confab_proto::{Element, StanzaError};
use confab_stream::client::ClientError;

/// Everything a client operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Connecting, TLS, authentication or binding failed (see confab-stream).
    #[error("connect: {0}")]
    Connect(#[from] ClientError),
    /// Looking the server up in DNS failed, or found nothing to connect to.
    #[error("dns: {0}")]
    Dns(String),
    /// No reply to a request arrived within its timeout (or a connection attempt took
    /// longer than `Config::connect_timeout`).
    #[error("request timed out")]
    Timeout,
    /// The peer answered a request with `type='error'`; `stanza` is the whole reply.
    #[error("error reply: {error}")]
    Stanza {
        /// The stanza error carried in the reply.
        error: StanzaError,
        /// The reply as received.
        stanza: Box<Element>,
    },
    /// The stream is closed (or the connection lost) so the operation cannot complete; a
    /// stanza passed to `send` that fails with this was not written.
    #[error("disconnected")]
    Disconnected,
    /// Writing to the connection failed; the stanza may not have been sent.
    #[error("write failed: {0}")]
    Write(String),
    /// The caller passed something that cannot be sent as asked (e.g. `request` with an iq
    /// that is not get/set).
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// The peer's answer was not what the protocol allows.
    #[error("protocol: {0}")]
    Protocol(String),
    /// An iq request was already answered (by the application or automatically).
    #[error("already answered")]
    AlreadyAnswered,
}
