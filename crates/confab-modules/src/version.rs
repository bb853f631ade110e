//! XEP-0092 Software Version of the server. The operating system is not disclosed.

use async_trait::async_trait;
use confab_proto::payloads::version::SoftwareVersion;
use confab_proto::stanza::{IqType, Stanza};
use confab_server::module::{IqHandler, IqReply, IqTarget, Module, Registry};
use confab_server::ServerCtx;
use std::sync::Arc;

pub const NS: &str = confab_proto::payloads::version::NS;

pub struct Version;

impl Module for Version {
    fn name(&self) -> &'static str {
        "version"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        reg.iq(IqType::Get, IqTarget::Host, NS, self);
        reg.host_feature(NS);
    }
}

#[async_trait]
impl IqHandler for Version {
    async fn handle_iq(&self, _: &ServerCtx, _: &Stanza, _: IqTarget) -> IqReply {
        IqReply::Result(Some(
            SoftwareVersion::answer("Confab", env!("CARGO_PKG_VERSION")).into(),
        ))
    }
}
