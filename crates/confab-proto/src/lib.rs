//! The XMPP protocol core of Confab: everything that can be decided from bytes alone.
//!
//! **Architecture invariant:** this crate does no I/O and knows nothing of tokio, sockets or
//! storage. Servers, clients and tools all build on the same types here.

pub mod datetime;
pub mod error;
pub mod jid;
pub mod ns;
pub mod parser;
pub mod payloads;
pub mod sasl;
pub mod stanza;
pub mod xml;

pub use error::{
    StanzaError, StanzaErrorCondition, StanzaErrorType, StreamError, StreamErrorCondition,
};
pub use jid::{BareJid, FullJid, Jid};
pub use parser::{Limits, StreamEvent, StreamHeader, StreamParser};
pub use stanza::{IqType, Stanza, StanzaKind};
pub use xml::{Element, Node};
