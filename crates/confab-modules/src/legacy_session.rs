//! RFC 3921 session establishment, which RFC 6120 dropped but older clients still send.
//! Advertised as optional (draft-cridland-xmpp-session-01) and answered with a result.

use async_trait::async_trait;
use confab_proto::ns::SESSION;
use confab_proto::stanza::{IqType, Stanza};
use confab_proto::xml::Element;
use confab_server::module::{FeatureStage, IqHandler, IqReply, IqTarget, Module, Registry};
use confab_server::ServerCtx;
use std::sync::Arc;

pub struct LegacySession;

impl Module for LegacySession {
    fn name(&self) -> &'static str {
        "legacy_session"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        reg.iq(IqType::Set, IqTarget::Account, SESSION, self.clone());
        reg.iq(IqType::Set, IqTarget::Host, SESSION, self);
        reg.stream_feature(
            FeatureStage::Authenticated,
            Element::new("session", SESSION).child(Element::new("optional", SESSION)),
        );
    }
}

#[async_trait]
impl IqHandler for LegacySession {
    async fn handle_iq(&self, _: &ServerCtx, _: &Stanza, _: IqTarget) -> IqReply {
        IqReply::Result(None)
    }
}
