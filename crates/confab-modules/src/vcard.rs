//! XEP-0054 vcard-temp: each account stores one vCard, readable by anyone who can address
//! the account, writable only by the account itself. When a vCard with a photo is set, the
//! SHA-1 of the image is kept for XEP-0153 avatar hashes (`avatar_hash`); the
//! `vcard-temp:x:update` element in presence is not touched by this module.

use async_trait::async_trait;
use confab_proto::error::{StanzaError, StanzaErrorCondition};
use confab_proto::jid::BareJid;
use confab_proto::parser::parse_fragment;
use confab_proto::payloads::vcard::{VCard, VCardUpdate, UPDATE_NS};
use confab_proto::payloads::PayloadError;
use confab_proto::stanza::{IqType, Stanza, StanzaKind};
use confab_proto::xml::Element;
use confab_server::module::ModuleConfig;
use confab_server::module::{
    HookArgs, HookPoint, HookResult, IqHandler, IqReply, IqTarget, LifecycleListener, Module,
    Registry, StanzaHook,
};
use confab_server::ServerCtx;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, OnceLock};

pub const NS: &str = confab_proto::payloads::vcard::NS;
/// The data kind vCards are stored under, keyed by `KEY_VCARD` and `KEY_AVATAR` (import/export).
pub const KIND: &str = "vcard";
/// The key of the vCard as sent.
pub const KEY_VCARD: &str = "vcard";
/// The key of its photo's XEP-0153 hash (empty without a photo), derived from the vCard.
pub const KEY_AVATAR: &str = "avatar-hash";

/// `[vcard]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct VcardConfig {
    /// Largest vCard (XEP-0054) accepted, in bytes of XML; larger gets `<not-acceptable/>`.
    pub max_size: usize,
}

impl Default for VcardConfig {
    fn default() -> Self {
        // Below the default stanza limit so a stored vCard always fits in a reply.
        VcardConfig {
            max_size: 192 * 1024,
        }
    }
}

impl ModuleConfig for VcardConfig {
    fn validate(&self) -> Result<(), String> {
        if self.max_size < 1024 {
            return Err("max_size must be at least 1024".into());
        }
        Ok(())
    }
}

#[derive(Default)]
pub struct Vcard {
    max_size: OnceLock<usize>,
}

impl Module for Vcard {
    fn name(&self) -> &'static str {
        "vcard"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        let config: VcardConfig = reg.section("vcard");
        // A stored vCard must fit in the reply that carries it.
        if config.max_size > reg.config().limits.max_stanza_size {
            reg.error("[vcard] max_size must be at most limits.max_stanza_size");
        }
        let _ = self.max_size.set(config.max_size);
        reg.iq(IqType::Get, IqTarget::Account, NS, self.clone());
        reg.iq(IqType::Set, IqTarget::Account, NS, self.clone());
        // Before the presence module broadcasts it.
        reg.hook(HookPoint::FromClient, 10, self.clone());
        reg.lifecycle(self);
        reg.host_feature(NS);
        reg.account_feature(NS);
    }
}

/// The account an IQ is for: its `to`, or the sender's own account without one.
pub(crate) fn target_account(iq: &Stanza) -> Option<BareJid> {
    iq.to
        .as_ref()
        .or(iq.from.as_ref())
        .map(|j| j.to_bare())
        .filter(|b| b.node().is_some())
}

fn internal(e: impl std::fmt::Display) -> IqReply {
    tracing::error!(error = %e, "vcard storage failed");
    IqReply::Error(confab_server::module::storage_failed())
}

/// The XEP-0153 hash of a vCard's photo: hex SHA-1 of the decoded BINVAL. `Ok(None)` without
/// a photo; `Err` (bad-request) if the BINVAL is not base64.
pub fn photo_hash(vcard: &Element) -> Result<Option<String>, PayloadError> {
    VCard::try_from(vcard).map(|v| v.photo_hash())
}

/// The stored avatar hash of an account (for XEP-0153 presence annotations): `Some("")` if
/// the account's vCard has no photo, `None` if it has no vCard or storage failed.
pub async fn avatar_hash(ctx: &ServerCtx, account: &BareJid) -> Option<String> {
    let node = account.node()?;
    ctx.stores
        .data
        .get_account_data(account.domain().as_str(), node.as_str(), KIND, KEY_AVATAR)
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "vcard storage failed");
            None
        })
}

/// XEP-0153 §4.1: available presence from a client that does not annotate it itself gets
/// the stored avatar hash, so contacts learn about avatar changes (as ejabberd does).
#[async_trait]
impl StanzaHook for Vcard {
    async fn on_stanza(&self, ctx: &ServerCtx, _: &HookArgs, stanza: &mut Stanza) -> HookResult {
        if stanza.kind != StanzaKind::Presence
            || stanza.type_attr().is_some()
            || stanza.el.get_child("x", UPDATE_NS).is_some()
        {
            return HookResult::Continue;
        }
        let Some(account) = stanza.from.as_ref().map(|f| f.to_bare()) else {
            return HookResult::Continue;
        };
        if let Some(hash) = avatar_hash(ctx, &account).await {
            stanza.el.push_child(VCardUpdate::from_hash(&hash).into());
        }
        HookResult::Continue
    }
}

#[async_trait]
impl IqHandler for Vcard {
    async fn handle_iq(&self, ctx: &ServerCtx, iq: &Stanza, _: IqTarget) -> IqReply {
        let (Some(account), Some(payload)) = (target_account(iq), iq.iq_payload()) else {
            return IqReply::Error(StanzaError::new(StanzaErrorCondition::BadRequest));
        };
        if payload.name != "vCard" {
            return IqReply::Error(StanzaError::new(StanzaErrorCondition::BadRequest));
        }
        let Some(node) = account.node() else {
            return IqReply::Error(StanzaError::new(StanzaErrorCondition::BadRequest));
        };
        let (domain, user) = (account.domain().as_str(), node.as_str());
        let data = &ctx.stores.data;
        if iq.iq_type() == Some(IqType::Get) {
            // XEP-0054 §3.1 allows an empty vCard when none exists; clients handle it best.
            return match data.get_account_data(domain, user, KIND, KEY_VCARD).await {
                Ok(Some(text)) => {
                    match parse_fragment(
                        &text,
                        confab_proto::ns::CLIENT,
                        &ctx.config.limits.parser_limits(),
                    ) {
                        Some(v) => IqReply::Result(Some(v)),
                        None => IqReply::Error(StanzaError::new(
                            StanzaErrorCondition::InternalServerError,
                        )),
                    }
                }
                Ok(None) => IqReply::Result(Some(VCard::default().into())),
                Err(e) => internal(e),
            };
        }
        // XEP-0054 §3.2: only the owner may set a vCard.
        let own = iq.from.as_ref().map(|f| f.to_bare()) == Some(account.clone());
        if !own {
            return IqReply::Error(StanzaError::new(StanzaErrorCondition::Forbidden));
        }
        let text = payload.to_xml(confab_proto::ns::CLIENT);
        let max_size = *self
            .max_size
            .get_or_init(|| VcardConfig::default().max_size);
        if text.len() > max_size {
            return IqReply::Error(StanzaError::with_text(
                StanzaErrorCondition::NotAcceptable,
                format!("vCard larger than {max_size} bytes"),
            ));
        }
        // Stored as sent (unknown fields included); parsed only for the photo's hash.
        let hash = match photo_hash(payload) {
            Ok(h) => h.unwrap_or_default(),
            // PHOTO/BINVAL is not base64.
            Err(e) => return IqReply::Error(e.to_stanza_error()),
        };
        if let Err(e) = data
            .set_account_data(domain, user, KIND, KEY_VCARD, &text)
            .await
        {
            return internal(e);
        }
        if let Err(e) = data
            .set_account_data(domain, user, KIND, KEY_AVATAR, &hash)
            .await
        {
            return internal(e);
        }
        IqReply::Result(None)
    }
}

#[async_trait]
impl LifecycleListener for Vcard {
    async fn account_deleted(&self, ctx: &ServerCtx, account: &BareJid) {
        let Some(node) = account.node() else { return };
        for key in [KEY_VCARD, KEY_AVATAR] {
            if let Err(e) = ctx
                .stores
                .data
                .delete_account_data(account.domain().as_str(), node.as_str(), KIND, key)
                .await
            {
                tracing::error!(error = %e, "deleting vcard failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn photo_hash_of_wrapped_base64() {
        // SHA-1 of "abc" (FIPS 180 test vector).
        let v = Element::new("vCard", NS).child(
            Element::new("PHOTO", NS)
                .child(Element::new("TYPE", NS).text("image/png"))
                .child(Element::new("BINVAL", NS).text("YW\n Jj")),
        );
        assert_eq!(
            photo_hash(&v).ok().flatten().as_deref(),
            Some("a9993e364706816aba3e25717850c26c9cd0d89d")
        );
        assert_eq!(photo_hash(&Element::new("vCard", NS)).ok(), Some(None));
        let bad = Element::new("vCard", NS)
            .child(Element::new("PHOTO", NS).child(Element::new("BINVAL", NS).text("!!")));
        assert!(photo_hash(&bad).is_err());
    }
}
