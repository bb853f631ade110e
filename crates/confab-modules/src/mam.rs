//! XEP-0313 Message Archive Management for accounts, with XEP-0359 stanza ids.
//!
//! Every chat or normal message with a body that a local account sends or receives is
//! archived in that account's archive (`ArchiveStore`): the sender's copy at `FromClient`,
//! the recipient's at `ToFullJid`/`ToBareJid` — before offline storage, so a message to an
//! offline account is archived once and kept offline with its stanza id. The delivered
//! message carries `<stanza-id by='account'/>`, the id a client pages from.
//!
//! Queries are answered with one `<message><result/></message>` per archived message to
//! the requesting session, then the IQ result with `<fin/>` and an RSM `<set/>`. Pages are
//! capped at `[mam] max_page` (at most `confab_store::archive::MAX_PAGE`).
//!
//! Not done yet: preferences (`<prefs/>`: everything eligible is archived), the
//! `before-id`/`after-id`/`ids` fields, RSM `<index/>` and `<count/>`, per-user caps.

use async_trait::async_trait;
use confab_proto::error::{StanzaError, StanzaErrorCondition};
use confab_proto::jid::{BareJid, Jid};
use confab_proto::ns;
use confab_proto::payloads::mam;
use confab_proto::stanza::{IqType, Stanza, StanzaKind};
use confab_proto::xml::Element;
use confab_server::module::{
    HookArgs, HookPoint, HookResult, IqHandler, IqReply, IqTarget, Module, ModuleConfig, Registry,
    StanzaHook, Timer,
};
use confab_server::router;
use confab_server::ServerCtx;
use confab_store::archive::{ArchiveQuery, ArchivedMessage, MAX_PAGE};
use rand::distributions::{Alphanumeric, DistString};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub const NS: &str = mam::NS;
pub const SID_NS: &str = "urn:xmpp:sid:0";
const HINTS_NS: &str = "urn:xmpp:hints";
/// Rows deleted per statement by the retention timer, and statements per tick: bounded
/// work per tick, the rest waits for the next one.
const EXPIRE_BATCH: usize = 1000;
const EXPIRE_BATCHES_PER_TICK: usize = 100;

/// `[mam]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MamConfig {
    /// Most messages in one page of results, and the page size when the client names none.
    pub max_page: usize,
    /// Messages older than this many days are deleted; 0 keeps them forever.
    pub retention_days: u32,
}

impl Default for MamConfig {
    fn default() -> Self {
        MamConfig {
            max_page: MAX_PAGE,
            retention_days: 0,
        }
    }
}

impl ModuleConfig for MamConfig {
    fn validate(&self) -> Result<(), String> {
        if self.max_page == 0 || self.max_page > MAX_PAGE {
            return Err(format!("max_page must be between 1 and {MAX_PAGE}"));
        }
        if self.retention_days > 100 * 366 {
            return Err("retention_days must be at most 36600".into());
        }
        Ok(())
    }
}

/// The `mam` module.
#[derive(Default)]
pub struct Mam {
    config: OnceLock<MamConfig>,
}

impl Mam {
    fn config(&self) -> MamConfig {
        self.config.get().cloned().unwrap_or_default()
    }
}

impl Module for Mam {
    fn name(&self) -> &'static str {
        "mam"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        let config: MamConfig = reg.section("mam");
        let retention = config.retention_days;
        let _ = self.config.set(config);
        reg.iq(IqType::Set, IqTarget::Account, NS, self.clone());
        reg.iq(IqType::Get, IqTarget::Account, NS, self.clone());
        reg.account_feature(NS);
        reg.account_feature(SID_NS);
        // After blocking (1000): a refused message is not archived. Before carbons (50):
        // the copies other devices get carry the stanza id too.
        reg.hook(HookPoint::FromClient, 60, self.clone());
        reg.hook(HookPoint::ToFullJid, 60, self.clone());
        reg.hook(HookPoint::ToBareJid, 60, self.clone());
        if retention > 0 {
            reg.timer(Duration::from_secs(3600), self);
        }
    }
}

/// Chat and normal messages with a body (or a store hint), unless the sender asked for
/// them not to be kept (XEP-0334).
fn eligible(m: &Stanza) -> bool {
    if m.kind != StanzaKind::Message {
        return false;
    }
    let el = &m.el;
    if el.get_child("no-store", HINTS_NS).is_some()
        || el.get_child("no-permanent-store", HINTS_NS).is_some()
    {
        return false;
    }
    // Carbons are copies of messages archived already.
    if el
        .elements()
        .any(|c| *c.ns == *crate::carbons::NS && (c.name == "sent" || c.name == "received"))
    {
        return false;
    }
    match m.type_attr() {
        None | Some("chat") | Some("normal") => {
            el.get_child("body", ns::CLIENT).is_some() || el.get_child("store", HINTS_NS).is_some()
        }
        _ => false,
    }
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A new archive id: random, so ids say nothing about the archive's size and cannot be
/// guessed.
fn new_id() -> String {
    Alphanumeric.sample_string(&mut rand::thread_rng(), 16)
}

/// Appends `stanza` to `account`'s archive with `with` as the other party; the new id, or
/// `None` if it could not be stored (the message still goes on: the archive is not a
/// reason to lose it).
async fn archive(
    ctx: &ServerCtx,
    account: &BareJid,
    with: &Jid,
    stanza: &Stanza,
) -> Option<String> {
    let node = account.node()?;
    let msg = ArchivedMessage {
        id: new_id(),
        with: with.to_string(),
        stamp: now_micros(),
        stanza: stanza.el.to_xml(ns::CLIENT),
    };
    match ctx
        .stores
        .archive
        .append_archive(account.domain().as_str(), node.as_str(), &msg)
        .await
    {
        Ok(()) => Some(msg.id),
        Err(e) => {
            tracing::error!(error = %e, account = %account, "archiving a message failed");
            None
        }
    }
}

#[async_trait]
impl StanzaHook for Mam {
    async fn on_stanza(&self, ctx: &ServerCtx, args: &HookArgs, stanza: &mut Stanza) -> HookResult {
        if stanza.kind != StanzaKind::Message {
            return HookResult::Continue;
        }
        match args.point {
            HookPoint::FromClient => {
                let Some(from) = stanza.from.clone() else {
                    return HookResult::Continue;
                };
                let sender = from.to_bare();
                // A message to the own account is archived once, when it arrives.
                let Some(to) = stanza.to.clone().filter(|t| t.to_bare() != sender) else {
                    return HookResult::Continue;
                };
                if eligible(stanza) {
                    archive(ctx, &sender, &to, stanza).await;
                }
            }
            HookPoint::ToFullJid | HookPoint::ToBareJid => {
                let Some(to) = stanza.to.clone() else {
                    return HookResult::Continue;
                };
                let account = to.to_bare();
                let by = account.to_string();
                // XEP-0359 §5: an id claiming to be this archive's that the server did not
                // add is the sender's invention; it goes, eligible message or not.
                stanza.el.children.retain(|n| {
                    !matches!(n, confab_proto::xml::Node::Element(e)
                        if e.is("stanza-id", SID_NS) && e.get_attr("by") == Some(by.as_str()))
                });
                if !eligible(stanza) {
                    return HookResult::Continue;
                }
                let with = stanza
                    .from
                    .clone()
                    .unwrap_or_else(|| Jid::from(account.clone()));
                if let Some(id) = archive(ctx, &account, &with, stanza).await {
                    stanza.el.push_child(
                        Element::new("stanza-id", SID_NS)
                            .attr("id", id)
                            .attr("by", by),
                    );
                }
            }
            _ => {}
        }
        HookResult::Continue
    }
}

#[async_trait]
impl Timer for Mam {
    async fn tick(&self, ctx: &ServerCtx) {
        let days = i64::from(self.config().retention_days);
        if days == 0 {
            return;
        }
        let cutoff = now_micros().saturating_sub(days * 86_400 * 1_000_000);
        for _ in 0..EXPIRE_BATCHES_PER_TICK {
            match ctx
                .stores
                .archive
                .expire_archive(cutoff, EXPIRE_BATCH)
                .await
            {
                Ok(n) if (n as usize) < EXPIRE_BATCH => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "expiring archived messages failed");
                    break;
                }
            }
        }
    }
}

#[async_trait]
impl IqHandler for Mam {
    async fn handle_iq(&self, ctx: &ServerCtx, iq: &Stanza, _: IqTarget) -> IqReply {
        let Some(from) = iq.from.clone() else {
            return IqReply::Error(StanzaError::new(StanzaErrorCondition::BadRequest));
        };
        let account = from.to_bare();
        // Only the account reads its archive: another user's bare JID is not theirs.
        if iq
            .to
            .as_ref()
            .is_some_and(|to| to.to_bare() != account || !to.is_bare())
        {
            return IqReply::Error(StanzaError::new(StanzaErrorCondition::Forbidden));
        }
        let Some(query) = iq.iq_payload().filter(|p| p.is("query", NS)) else {
            return IqReply::Error(StanzaError::new(StanzaErrorCondition::BadRequest));
        };
        if iq.iq_type() == Some(IqType::Get) {
            return IqReply::Result(Some(mam::query_form()));
        }
        let request = match mam::Query::try_from(query) {
            Ok(q) => q,
            Err(e) => return IqReply::Error(e.into()),
        };
        let with = request.with.as_ref().map(|j| j.to_string());
        let q = ArchiveQuery::from_request(&request, with, self.config().max_page);
        let Some(node) = account.node() else {
            return IqReply::Error(StanzaError::new(StanzaErrorCondition::BadRequest));
        };
        let page = match ctx
            .stores
            .archive
            .query_archive(account.domain().as_str(), node.as_str(), &q)
            .await
        {
            Ok(Some(p)) => p,
            Ok(None) => {
                return IqReply::Error(StanzaError::new(StanzaErrorCondition::ItemNotFound))
            }
            Err(e) => {
                tracing::error!(error = %e, account = %account, "archive query failed");
                return IqReply::Error(confab_server::module::storage_failed());
            }
        };
        // The results go to the session that asked, before the IQ result (XEP-0313 §4.2).
        let session = from.try_as_full().ok().and_then(|f| ctx.router.session(f));
        let limits = ctx.config.limits.parser_limits();
        if let Some(session) = &session {
            for item in &page.items {
                let Some(wrapper) = mam::stored_result(
                    account.as_str(),
                    session.jid.as_str(),
                    request.queryid.as_deref(),
                    &item.id,
                    item.stamp,
                    &item.stanza,
                    &limits,
                    |_| {},
                ) else {
                    tracing::error!(id = %item.id, account = %account, "unparsable archived message");
                    continue;
                };
                if let Ok(m) = Stanza::from_element(wrapper) {
                    router::deliver(ctx, &m, std::slice::from_ref(session)).await;
                }
            }
        }
        let (first, last) = (page.items.first(), page.items.last());
        IqReply::Result(Some(mam::fin(
            page.complete,
            first.map(|m| m.id.as_str()),
            last.map(|m| m.id.as_str()),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_proto::parser::{parse_fragment, Limits};

    fn message(xml: &str) -> Stanza {
        let el = parse_fragment(xml, ns::CLIENT, &Limits::default()).expect("xml");
        Stanza::from_element(el).expect("stanza")
    }

    #[test]
    fn what_is_archived() {
        assert!(eligible(&message(
            "<message type='chat'><body>x</body></message>"
        )));
        assert!(eligible(&message("<message><body>x</body></message>")));
        assert!(!eligible(&message("<message type='chat'/>")));
        assert!(!eligible(&message(
            "<message type='groupchat'><body>x</body></message>"
        )));
        assert!(!eligible(&message(
            "<message type='headline'><body>x</body></message>"
        )));
        assert!(!eligible(&message(
            "<message type='chat'><body>x</body><no-store xmlns='urn:xmpp:hints'/></message>"
        )));
    }
}
