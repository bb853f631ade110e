//! Confab's async XMPP client SDK.
//!
//! [`Client::connect`] logs in through confab-stream's negotiation (TLS, SASL, bind) and
//! starts one task that owns the stream; the [`Client`] handle sends stanzas
//! ([`Client::send`]), makes iq requests with reply matching and a timeout
//! ([`Client::request`]) and hands out [`Event`]s. [`Module`]s (like XMPPFramework's
//! `XMPPModule`) see incoming stanzas first; built in are [`Roster`], [`Presence`] (with
//! XEP-0172 nicknames in subscription requests), [`Ping`] and [`Chat`] (one-to-one messages
//! with XEP-0085 chat states, XEP-0184 receipts and XEP-0308 corrections). In-band
//! registration (XEP-0077) is in [`register`]: [`register_account`] before logging in,
//! [`change_password`] and [`cancel_account`] after, with typed [`RegistrationError`]s.
//! [`Muc`] is XEP-0045 multi-user chat: join, leave, group messages, subject, nicknames,
//! occupants, invitations, moderation and room configuration, as [`MucEvent`]s. [`Mam`]
//! queries the account's or a room's archive (XEP-0313) page by page; [`Carbons`]
//! (XEP-0280) surfaces the copies of messages the account's other clients sent and got.
//! [`VCards`] fetches and publishes vCards (XEP-0054) and follows avatar hashes (XEP-0153).
//! [`Upload`] sends files through the server's HTTP upload service (XEP-0363) and downloads
//! received ones (their URL is [`ChatMessage::oob_url`]).
//! [`PubSub`] is XEP-0060 publish-subscribe and XEP-0163 PEP, with user nicknames
//! (XEP-0172) and avatars (XEP-0084) in [`pep`]; [`Disco`] answers disco#info for this
//! client and builds its XEP-0115 caps (where PEP `+notify` interests are advertised).
//!
//! The server is an address ([`ClientOptions::addr`]) or found in DNS ([`Config::for_domain`],
//! [`Endpoint::Dns`]). With [`Config::reconnect`] a lost connection is replaced, with
//! backoff and jitter ([`Reconnect`]); when the server offers XEP-0198 the session is
//! resumed and nothing sent is lost ([`StreamManagement`]), and [`Event::Disconnected`] /
//! [`Event::Reconnected`] tell the application what happened.
//!
//! ```no_run
//! # async fn demo() -> Result<(), confab_client::Error> {
//! use confab_client::{Client, ClientOptions, Config, Ping, Roster};
//! let addr = "127.0.0.1:5222".parse().expect("address");
//! let roster = Roster::new();
//! let config = Config::new(ClientOptions::new(addr, "localhost", "alice", "secret"))
//!     .module(roster.clone())
//!     .module(Ping::new());
//! let client = Client::connect(config).await?;
//! roster.fetch(&client).await?;
//! client.close().await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod carbons;
mod chat;
mod client;
mod disco;
pub mod dns;
mod error;
mod mam;
mod module;
pub mod muc;
pub mod pep;
mod ping;
mod presence;
pub mod pubsub;
mod reconnect;
pub mod register;
mod roster;
mod sm;
#[cfg(feature = "storage")]
pub mod store;
pub mod upload;
mod vcard;

pub use carbons::{CarbonEvent, Carbons, CARBONS_NS};
pub use chat::{Chat, ChatConfig, ChatEvent, ChatMessage, CORRECT_NS};
pub use client::{iq, Client, Config, DisconnectReason, Event, IntoElement, IqRequest};
pub use disco::{Disco, CAPS_NODE};
pub use dns::{DnsConfig, Endpoint};
pub use error::Error;
pub use mam::{ArchivedMessage, Mam, MamPage, MamQuery, MAM_NS, MAX_RESULTS_PER_QUERY};
pub use module::{Context, Handled, Module};
pub use muc::{
    AffiliatedUser, Affiliation, GroupMessage, History, JoinOptions, Joined, LeaveReason, Muc,
    MucError, MucEvent, Occupant, Role,
};
pub use pep::{AvatarInfo, PepEvent};
pub use ping::Ping;
pub use presence::{Presence, PresenceEvent, Show, Status};
pub use pubsub::{
    Item, ItemsQuery, PubSub, PubSubError, PubSubEvent, Subscription, SubscriptionState,
};
pub use reconnect::Reconnect;
pub use register::{
    cancel_account, change_password, register_account, registration_fields, RegistrationError,
    RegistrationFields,
};
pub use roster::{Roster, ROSTERVER};
pub use sm::StreamManagement;
#[cfg(feature = "storage")]
pub use store::{LocalStore, StoreError, StoredMessage};
pub use upload::{Slot, Upload, UploadError, UploadService, OOB_NS, UPLOAD_NS};
pub use vcard::{Photo, VCard, VCardEvent, VCards};

/// Protocol types the API uses, re-exported so applications need no direct dependency.
pub use confab_proto::payloads::chatstates::ChatState;
pub use confab_proto::{
    ns, payloads, BareJid, Element, FullJid, IqType, Jid, Stanza, StanzaError,
    StanzaErrorCondition, StanzaKind,
};
/// Connection options and TLS choices of the underlying negotiation.
pub use confab_stream::client::{ClientOptions, TlsMode};
/// Certificate verification choices.
pub use confab_stream::tls::CertVerification;
/// Opt-in XML traffic logging (`ClientOptions::log_traffic`): its `tracing` target and
/// the redaction of secrets.
pub use confab_stream::traffic;
