//! XEP-0092 Software Version of the server. The operating system is not disclosed.

use crate::module::{IqHandler, IqReply, IqTarget, Module, Registry};
use crate::ServerCtx;
use async_trait::async_trait;
use confab_proto::stanza::{IqType, Stanza};
use confab_proto::xml::Element;
use std::sync::Arc;

pub const NS: &str = "jabber:iq:version";

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
            Element::new("query", NS)
                .child(Element::new("name", NS).text("Confab"))
                .child(Element::new("version", NS).text(env!("CARGO_PKG_VERSION"))),
        ))
    }
}
