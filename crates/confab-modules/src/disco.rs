//! XEP-0030 Service Discovery for the server and for accounts, and the server's XEP-0115
//! entity capabilities. Identities and features are gathered from every enabled module's
//! registration, so disabling a module removes its features here too.

use async_trait::async_trait;
use confab_proto::error::{StanzaError, StanzaErrorCondition};
use confab_proto::ns::{CAPS, DISCO_INFO, DISCO_ITEMS};
use confab_proto::payloads::disco::{self as payload, DiscoInfo, DiscoItems};
use confab_proto::stanza::{IqType, Stanza};
use confab_proto::xml::Element;
use confab_server::module::{
    FeatureStage, Identity, IqHandler, IqReply, IqTarget, Module, Registry,
};
use confab_server::ServerCtx;
use std::sync::{Arc, OnceLock};

/// The XEP-0115 node naming this software.
pub const CAPS_NODE: &str = "https://confab.invalid";

#[derive(Default)]
pub struct Disco {
    /// The server's XEP-0115 verification string, computed once every module registered.
    ver: OnceLock<String>,
}

impl Module for Disco {
    fn name(&self) -> &'static str {
        "disco"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        reg.iq(IqType::Get, IqTarget::Host, DISCO_INFO, self.clone());
        reg.iq(IqType::Get, IqTarget::Host, DISCO_ITEMS, self.clone());
        reg.iq(IqType::Get, IqTarget::Account, DISCO_INFO, self.clone());
        reg.iq(IqType::Get, IqTarget::Account, DISCO_ITEMS, self);
        reg.identity("server", "im", Some("Confab"));
        reg.host_feature(DISCO_INFO);
        reg.host_feature(DISCO_ITEMS);
        reg.host_feature(CAPS);
        reg.account_feature(DISCO_INFO);
        reg.account_feature(DISCO_ITEMS);
    }

    fn finish(self: Arc<Self>, reg: &mut Registry) {
        let ver = caps_ver(reg.identities(), reg.host_features());
        // XEP-0115 §6.3: the server's caps as a stream feature.
        reg.stream_feature(
            FeatureStage::Authenticated,
            Element::new("c", CAPS)
                .attr("hash", "sha-1")
                .attr("node", CAPS_NODE)
                .attr("ver", ver.clone()),
        );
        let _ = self.ver.set(ver);
    }
}

/// The XEP-0115 §5.1 verification string (SHA-1) of identities and features, without
/// extended information forms.
pub fn caps_ver(identities: &[Identity], features: &[String]) -> String {
    let ids: Vec<payload::Identity> = identities
        .iter()
        .map(|i| payload::Identity::new(&i.category, &i.type_, i.name.as_deref()))
        .collect();
    confab_proto::payloads::caps::ver(&ids, features)
}

/// The `disco#info` result: the identities, and the features sorted without repeats.
fn info(identities: &[Identity], features: &[String], node: Option<&str>) -> Element {
    let mut features = features.to_vec();
    features.sort();
    features.dedup();
    DiscoInfo {
        node: node.map(str::to_string),
        identities: identities
            .iter()
            .map(|i| payload::Identity::new(&i.category, &i.type_, i.name.as_deref()))
            .collect(),
        features,
        extensions: Vec::new(),
    }
    .into()
}

/// The empty `disco#items` result.
fn no_items() -> IqReply {
    IqReply::Result(Some(DiscoItems::default().into()))
}

fn err(c: StanzaErrorCondition) -> IqReply {
    IqReply::Error(StanzaError::new(c))
}

impl Disco {
    fn host(&self, ctx: &ServerCtx, q: &Element) -> IqReply {
        if q.ns == DISCO_ITEMS {
            if q.get_attr("node").is_some() {
                return err(StanzaErrorCondition::ItemNotFound);
            }
            // The services hosted here (group chat, publish-subscribe, upload, …).
            let items = ctx
                .registry
                .services()
                .into_iter()
                .filter_map(|s| {
                    Some(payload::DiscoItem {
                        jid: confab_proto::Jid::new(&s.domain).ok()?,
                        node: None,
                        name: s.name.clone(),
                    })
                })
                .collect();
            return IqReply::Result(Some(DiscoItems { node: None, items }.into()));
        }
        let node = q.get_attr("node");
        if let Some(node) = node {
            // XEP-0115 §6.2: the caps node answers like the server itself.
            let caps_node = self.ver.get().map(|v| format!("{CAPS_NODE}#{v}"));
            if caps_node.as_deref() != Some(node) {
                return err(StanzaErrorCondition::ItemNotFound);
            }
        }
        let reg = &ctx.registry;
        IqReply::Result(Some(info(reg.identities(), reg.host_features(), node)))
    }

    async fn account(&self, ctx: &ServerCtx, iq: &Stanza, q: &Element) -> IqReply {
        let Some(requester) = iq.from.as_ref().map(|f| f.to_bare()) else {
            return err(StanzaErrorCondition::BadRequest);
        };
        let target = iq
            .to
            .as_ref()
            .map(|t| t.to_bare())
            .unwrap_or(requester.clone());
        let allowed = match crate::roster::may_see_presence(ctx, &requester, &target).await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "roster lookup failed");
                return IqReply::Error(confab_server::module::storage_failed());
            }
        };
        // XEP-0030 §8: no presence subscription means service-unavailable, for info and
        // items alike: the answer a missing account gets (RFC 6121 §8.5.1), so it does not
        // reveal whether the account exists.
        if !allowed {
            return err(StanzaErrorCondition::ServiceUnavailable);
        }
        if q.ns == DISCO_ITEMS {
            // No items to show yet (PEP nodes come later).
            if q.get_attr("node").is_some() {
                return err(StanzaErrorCondition::ItemNotFound);
            }
            return no_items();
        }
        if q.get_attr("node").is_some() {
            return err(StanzaErrorCondition::ItemNotFound);
        }
        let identity = Identity {
            category: "account".into(),
            type_: "registered".into(),
            name: None,
        };
        IqReply::Result(Some(info(
            &[identity],
            ctx.registry.account_features(),
            None,
        )))
    }
}

#[async_trait]
impl IqHandler for Disco {
    async fn handle_iq(&self, ctx: &ServerCtx, iq: &Stanza, target: IqTarget) -> IqReply {
        let Some(q) = iq.iq_payload().filter(|q| q.name == "query") else {
            return err(StanzaErrorCondition::BadRequest);
        };
        match target {
            IqTarget::Host => self.host(ctx, q),
            IqTarget::Account => self.account(ctx, iq, q).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xep_0115_simple_example() {
        // XEP-0115 §5.2.
        let ids = [Identity {
            category: "client".into(),
            type_: "pc".into(),
            name: Some("Exodus 0.9.1".into()),
        }];
        let features: Vec<String> = [
            "http://jabber.org/protocol/disco#info",
            "http://jabber.org/protocol/disco#items",
            "http://jabber.org/protocol/muc",
            "http://jabber.org/protocol/caps",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(caps_ver(&ids, &features), "QgayPKawpkPSDYmwT/WM94uAlu0=");
    }
}
