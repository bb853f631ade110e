//! XEP-0199 XMPP Ping: answers pings to the server and to a client's own account.
//! The smallest complete module: read this one first.

use crate::module::{IqHandler, IqReply, IqTarget, Module, Registry};
use crate::ServerCtx;
use async_trait::async_trait;
use confab_proto::stanza::{IqType, Stanza};
use std::sync::Arc;

pub const NS: &str = "urn:xmpp:ping";

pub struct Ping;

impl Module for Ping {
    fn name(&self) -> &'static str {
        "ping"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        reg.iq(IqType::Get, IqTarget::Host, NS, self.clone());
        reg.iq(IqType::Get, IqTarget::Account, NS, self);
        reg.host_feature(NS);
    }
}

#[async_trait]
impl IqHandler for Ping {
    async fn handle_iq(&self, _: &ServerCtx, _: &Stanza, _: IqTarget) -> IqReply {
        IqReply::Result(None)
    }
}
