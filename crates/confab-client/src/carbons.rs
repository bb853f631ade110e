//! XEP-0280 Message Carbons: copies of the account's one-to-one messages sent and received
//! by its other clients. Enabled when the server offers it; copies are surfaced as
//! [`CarbonEvent`]s (and consumed: the wrapper is no message for the application).

use crate::client::{iq, Client};
use crate::error::Error;
use crate::module::{Context, Handled, Module};
use confab_proto::ns::DISCO_INFO;
use confab_proto::{ns, Element, IqType, Jid, Stanza, StanzaKind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::broadcast;

/// The carbons namespace (XEP-0280 v2).
pub const CARBONS_NS: &str = "urn:xmpp:carbons:2";
const FORWARD_NS: &str = "urn:xmpp:forward:0";

/// A copy of a message of another of the account's clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CarbonEvent {
    /// Another client of this account sent this message.
    Sent(Element),
    /// Another client of this account received this message.
    Received(Element),
}

/// The carbons module. Keep an `Arc<Carbons>` to enable it and receive copies.
pub struct Carbons {
    enabled: AtomicBool,
    events: broadcast::Sender<CarbonEvent>,
}

impl std::fmt::Debug for Carbons {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Carbons")
            .field("enabled", &self.is_enabled())
            .finish()
    }
}

impl Carbons {
    /// A carbons module, ready for [`crate::Config::module`].
    pub fn new() -> Arc<Carbons> {
        let (events, _) = broadcast::channel(256);
        Arc::new(Carbons {
            enabled: AtomicBool::new(false),
            events,
        })
    }

    /// Copies from now on.
    pub fn events(&self) -> broadcast::Receiver<CarbonEvent> {
        self.events.subscribe()
    }

    /// Whether carbons are on for the current session.
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// Whether the server offers carbons (its disco#info lists the feature).
    pub async fn offered(&self, client: &Client) -> Result<bool, Error> {
        let domain = Jid::from(client.jid().to_bare().domain().to_owned());
        let reply = client
            .request(iq(
                IqType::Get,
                Some(&domain),
                Element::new("query", DISCO_INFO),
            ))
            .await?;
        Ok(reply.get_child("query", DISCO_INFO).is_some_and(|q| {
            q.elements()
                .any(|f| f.is("feature", DISCO_INFO) && f.get_attr("var") == Some(CARBONS_NS))
        }))
    }

    /// Enables carbons when the server offers them; returns whether they are on. Enabled
    /// again by itself after a new session (a reconnection that could not resume).
    pub async fn enable(&self, client: &Client) -> Result<bool, Error> {
        if !self.offered(client).await? {
            return Ok(false);
        }
        self.set(client, true).await?;
        Ok(true)
    }

    /// Turns carbons off for this session.
    pub async fn disable(&self, client: &Client) -> Result<(), Error> {
        self.set(client, false).await
    }

    async fn set(&self, client: &Client, on: bool) -> Result<(), Error> {
        let name = if on { "enable" } else { "disable" };
        client
            .request(iq(IqType::Set, None, Element::new(name, CARBONS_NS)))
            .await?;
        self.enabled.store(on, Ordering::Release);
        Ok(())
    }

    /// The forwarded message of a carbon, if `stanza` is one.
    fn unwrap_carbon(stanza: &Stanza) -> Option<(bool, Element)> {
        let (sent, wrapper) = match stanza.el.get_child("sent", CARBONS_NS) {
            Some(w) => (true, w),
            None => (false, stanza.el.get_child("received", CARBONS_NS)?),
        };
        let m = wrapper
            .get_child("forwarded", FORWARD_NS)?
            .get_child("message", ns::CLIENT)?;
        Some((sent, m.clone()))
    }
}

#[async_trait::async_trait]
impl Module for Carbons {
    fn name(&self) -> &'static str {
        "carbons"
    }

    fn handle(&self, stanza: &Stanza, ctx: &mut Context<'_>) -> Handled {
        if stanza.kind != StanzaKind::Message {
            return Handled::Pass;
        }
        let Some((sent, message)) = Self::unwrap_carbon(stanza) else {
            return Handled::Pass;
        };
        // XEP-0280 §11: only the account itself may send carbons; from anyone else this
        // is a forgery (someone making us believe we sent or got a message).
        let own = ctx.jid().to_bare();
        if stanza.from.as_ref().map(|f| f.as_str()) != Some(own.as_str()) {
            tracing::info!(from = ?stanza.from, "dropping a carbon not from the own account");
            return Handled::Consumed;
        }
        let ev = if sent {
            CarbonEvent::Sent(message)
        } else {
            CarbonEvent::Received(message)
        };
        let _ = self.events.send(ev);
        Handled::Consumed
    }

    async fn new_session(&self, client: &Client) {
        // The server forgot the old session's setting.
        if self.is_enabled() {
            if let Err(e) = self.set(client, true).await {
                tracing::info!(error = %e, "re-enabling carbons after a new session failed");
            }
        }
    }
}
