//! XEP-0049 Private XML Storage: an account keeps arbitrary XML fragments, one per
//! (element name, namespace), readable and writable only by the account itself.

use async_trait::async_trait;
use confab_proto::error::{StanzaError, StanzaErrorCondition};
use confab_proto::jid::BareJid;
use confab_proto::ns;
use confab_proto::parser::parse_fragment;
use confab_proto::stanza::{IqType, Stanza};
use confab_proto::xml::Element;
use confab_server::module::{IqHandler, IqReply, IqTarget, LifecycleListener, Module, Registry};
use confab_server::ServerCtx;
use std::sync::Arc;

pub const NS: &str = "jabber:iq:private";
/// The data kind private XML is stored under, one key per element (`key_of`).
pub const KIND: &str = "private";
/// Distinct fragments one account may keep; bounds storage per account (bookmarks, roster
/// delimiter and a few client settings are what clients use).
pub const MAX_FRAGMENTS: usize = 64;
/// Namespaces that cannot key a fragment (XEP-0049 §3): stanza content and this protocol.
const RESERVED: &[&str] = &[ns::CLIENT, ns::SERVER, NS];

pub struct Private;

impl Module for Private {
    fn name(&self) -> &'static str {
        "private"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        reg.iq(IqType::Get, IqTarget::Account, NS, self.clone());
        reg.iq(IqType::Set, IqTarget::Account, NS, self.clone());
        reg.lifecycle(self);
    }
}

/// The key an element is stored under: `{namespace}name`.
pub fn key_of(e: &Element) -> String {
    format!("{{{}}}{}", e.ns, e.name)
}

fn err(c: StanzaErrorCondition) -> IqReply {
    IqReply::Error(StanzaError::new(c))
}

fn internal(e: impl std::fmt::Display) -> IqReply {
    tracing::error!(error = %e, "private storage failed");
    IqReply::Error(confab_server::module::storage_failed())
}

#[async_trait]
impl IqHandler for Private {
    async fn handle_iq(&self, ctx: &ServerCtx, iq: &Stanza, _: IqTarget) -> IqReply {
        let (Some(from), Some(query)) = (iq.from.as_ref(), iq.iq_payload()) else {
            return err(StanzaErrorCondition::BadRequest);
        };
        // XEP-0049 §3: another user's private data is forbidden.
        if iq
            .to
            .as_ref()
            .is_some_and(|to| to.to_bare() != from.to_bare())
        {
            return err(StanzaErrorCondition::Forbidden);
        }
        if query.name != "query" {
            return err(StanzaErrorCondition::BadRequest);
        }
        let account = from.to_bare();
        let Some(node) = account.node() else {
            return err(StanzaErrorCondition::BadRequest);
        };
        let (domain, user) = (account.domain().as_str(), node.as_str());
        let children: Vec<&Element> = query.elements().collect();
        if children.iter().any(|c| RESERVED.contains(&c.ns.as_str())) {
            return err(StanzaErrorCondition::NotAcceptable);
        }
        let data = &ctx.stores.data;
        if iq.iq_type() == Some(IqType::Get) {
            // §3: exactly one fragment per get; none is "Bad Format".
            let [child] = children.as_slice() else {
                return err(StanzaErrorCondition::BadRequest);
            };
            let stored = match data
                .get_account_data(domain, user, KIND, &key_of(child))
                .await
            {
                Ok(s) => s,
                Err(e) => return internal(e),
            };
            let fragment = match stored {
                Some(text) => {
                    match parse_fragment(
                        &text,
                        confab_proto::ns::CLIENT,
                        &ctx.config.limits.parser_limits(),
                    ) {
                        Some(e) => e,
                        None => return err(StanzaErrorCondition::InternalServerError),
                    }
                }
                // Unknown key: the empty element, as XEP-0049 shows.
                None => Element::new(child.name.clone(), child.ns.clone()),
            };
            return IqReply::Result(Some(Element::new("query", NS).child(fragment)));
        }
        if children.is_empty() {
            return err(StanzaErrorCondition::NotAcceptable);
        }
        let stored: Vec<String> = match data.list_account_data(domain, user, KIND).await {
            Ok(all) => all.into_iter().map(|(k, _)| k).collect(),
            Err(e) => return internal(e),
        };
        let mut keys: Vec<String> = children.iter().map(|c| key_of(c)).collect();
        keys.sort();
        keys.dedup();
        let new = keys.iter().filter(|k| !stored.contains(k)).count();
        // Checked before storing anything, so a refused set changes nothing.
        if stored.len() + new > MAX_FRAGMENTS {
            return IqReply::Error(StanzaError::with_text(
                StanzaErrorCondition::ResourceConstraint,
                format!("at most {MAX_FRAGMENTS} private XML fragments"),
            ));
        }
        for child in children {
            let text = child.to_xml(confab_proto::ns::CLIENT);
            if let Err(e) = data
                .set_account_data(domain, user, KIND, &key_of(child), &text)
                .await
            {
                return internal(e);
            }
        }
        IqReply::Result(None)
    }
}

#[async_trait]
impl LifecycleListener for Private {
    async fn account_deleted(&self, ctx: &ServerCtx, account: &BareJid) {
        let Some(node) = account.node() else { return };
        let (domain, user) = (account.domain().as_str(), node.as_str());
        match ctx.stores.data.list_account_data(domain, user, KIND).await {
            Ok(all) => {
                for (key, _) in all {
                    if let Err(e) = ctx
                        .stores
                        .data
                        .delete_account_data(domain, user, KIND, &key)
                        .await
                    {
                        tracing::error!(error = %e, "deleting private XML failed");
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "listing private XML failed"),
        }
    }
}
