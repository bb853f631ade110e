//! XEP-0030 Service Discovery for the server: identities and features gathered from every
//! enabled module's registration, so disabling a module removes its features here too.

use crate::module::{IqHandler, IqReply, IqTarget, Module, Registry};
use crate::ServerCtx;
use async_trait::async_trait;
use confab_proto::error::{StanzaError, StanzaErrorCondition};
use confab_proto::ns::{DISCO_INFO, DISCO_ITEMS};
use confab_proto::stanza::{IqType, Stanza};
use confab_proto::xml::Element;
use std::sync::Arc;

pub struct Disco;

impl Module for Disco {
    fn name(&self) -> &'static str {
        "disco"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        reg.iq(IqType::Get, IqTarget::Host, DISCO_INFO, self.clone());
        reg.iq(IqType::Get, IqTarget::Host, DISCO_ITEMS, self);
        reg.identity("server", "im", Some("Confab"));
        reg.host_feature(DISCO_INFO);
        reg.host_feature(DISCO_ITEMS);
    }
}

#[async_trait]
impl IqHandler for Disco {
    async fn handle_iq(&self, ctx: &ServerCtx, iq: &Stanza, _: IqTarget) -> IqReply {
        let Some(q) = iq.iq_payload() else {
            return IqReply::Error(StanzaError::new(StanzaErrorCondition::BadRequest));
        };
        if q.get_attr("node").is_some() {
            return IqReply::Error(StanzaError::new(StanzaErrorCondition::ItemNotFound));
        }
        if q.ns == DISCO_ITEMS {
            return IqReply::Result(Some(Element::new("query", DISCO_ITEMS)));
        }
        let mut out = Element::new("query", DISCO_INFO);
        for i in ctx.registry.identities() {
            let mut e = Element::new("identity", DISCO_INFO)
                .attr("category", i.category.clone())
                .attr("type", i.type_.clone());
            if let Some(n) = &i.name {
                e.set_attr("name", n.clone());
            }
            out.push_child(e);
        }
        let mut features: Vec<&String> = ctx.registry.host_features().iter().collect();
        features.sort();
        for f in features {
            out.push_child(Element::new("feature", DISCO_INFO).attr("var", f.clone()));
        }
        IqReply::Result(Some(out))
    }
}
