//! XEP-0199 XMPP Ping: answers pings and sends them.

use crate::client::{iq, Client};
use crate::error::Error;
use crate::module::{Context, Handled, Module};
use confab_proto::payloads::ping::{Ping as PingPayload, NS};
use confab_proto::{Element, IqType, Jid, Stanza};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The ping module: answers every `<ping xmlns='urn:xmpp:ping'/>` get with a result.
#[derive(Debug, Default)]
pub struct Ping;

impl Ping {
    /// A ping module, ready for [`crate::Config::module`].
    pub fn new() -> Arc<Ping> {
        Arc::new(Ping)
    }

    /// Pings `to` (the server, when `None`) and returns the round-trip time. An error
    /// reply is [`Error::Stanza`] (e.g. `service-unavailable` from a client without XEP-0199).
    pub async fn ping(&self, client: &Client, to: Option<&Jid>) -> Result<Duration, Error> {
        let started = Instant::now();
        client
            .request(iq(IqType::Get, to, Element::from(PingPayload)))
            .await?;
        Ok(started.elapsed())
    }
}

impl Module for Ping {
    fn name(&self) -> &'static str {
        "ping"
    }

    fn handle(&self, stanza: &Stanza, ctx: &mut Context<'_>) -> Handled {
        let is_ping = stanza.iq_type() == Some(IqType::Get)
            && stanza.iq_payload().is_some_and(|p| p.is("ping", NS));
        if !is_ping {
            return Handled::Pass;
        }
        ctx.send(stanza.iq_result(None).el);
        Handled::Consumed
    }
}
