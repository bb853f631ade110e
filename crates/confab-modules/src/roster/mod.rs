//! Roster management, RFC 6121 §2: get (with XEP-0237 versioning), set, remove, pushes.
//! Subscription state changes are the presence module's; both use the roster service
//! (`service.rs`).

use self::service as roster;
use confab_server::module::{
    FeatureStage, IqHandler, IqReply, IqTarget, LifecycleListener, Module, ModuleConfig, Registry,
};

pub mod service;
use async_trait::async_trait;
use confab_proto::error::{StanzaError, StanzaErrorCondition};
use confab_proto::jid::{BareJid, Jid};
use confab_proto::payloads::roster::RosterQuery;
use confab_proto::stanza::{IqType, Stanza};
use confab_proto::xml::Element;
use confab_server::ServerCtx;
use confab_store::RosterItem;
use serde::{Deserialize, Serialize};
pub use service::{
    cancel_notices, item, item_element, lock, may_see_presence, parts, push, remove_and_push,
    route_presence, save_and_push, send_unavailable, NS,
};
use std::sync::{Arc, OnceLock};

/// `[roster]`: limits on what one roster may hold (also read by the presence module,
/// which adds contacts on subscription requests).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RosterConfig {
    /// Contacts per roster; adding more gets `<not-allowed/>`.
    pub max_items: usize,
    /// Longest contact name and group name, in bytes (`<not-acceptable/>` beyond).
    pub max_name_length: usize,
    pub max_group_length: usize,
    pub max_groups_per_item: usize,
}

impl Default for RosterConfig {
    fn default() -> Self {
        RosterConfig {
            max_items: 5000,
            max_name_length: 1024,
            max_group_length: 1024,
            max_groups_per_item: 64,
        }
    }
}

impl ModuleConfig for RosterConfig {
    fn validate(&self) -> Result<(), String> {
        if self.max_items > 1_000_000 {
            return Err("max_items must be at most 1000000".into());
        }
        Ok(())
    }
}

#[derive(Default)]
pub struct Roster {
    config: OnceLock<RosterConfig>,
}

impl Module for Roster {
    fn name(&self) -> &'static str {
        "roster"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        let _ = self.config.set(reg.section("roster"));
        reg.iq(IqType::Get, IqTarget::Account, NS, self.clone());
        reg.iq(IqType::Set, IqTarget::Account, NS, self.clone());
        reg.lifecycle(self);
        // XEP-0237 roster versioning.
        reg.stream_feature(
            FeatureStage::Authenticated,
            Element::new("ver", "urn:xmpp:features:rosterver"),
        );
    }
}

fn err(c: StanzaErrorCondition, text: &str) -> IqReply {
    IqReply::Error(StanzaError::with_text(c, text))
}

#[async_trait]
impl IqHandler for Roster {
    async fn handle_iq(&self, ctx: &ServerCtx, iq: &Stanza, _: IqTarget) -> IqReply {
        let Some(from) = iq.from.as_ref().and_then(|f| f.try_as_full().ok()).cloned() else {
            return err(
                StanzaErrorCondition::Forbidden,
                "roster requests come from a client",
            );
        };
        let account = from.to_bare();
        // RFC 6121 §2.1.5: only the account itself may read or change its roster.
        if let Some(to) = &iq.to {
            if to.to_bare() != account {
                return err(StanzaErrorCondition::Forbidden, "not your roster");
            }
        }
        let Some(query) = iq.iq_payload() else {
            return err(StanzaErrorCondition::BadRequest, "missing query");
        };
        match iq.iq_type() {
            Some(IqType::Get) => get(ctx, &from, &account, query).await,
            Some(IqType::Set) => {
                set(
                    ctx,
                    self.config.get_or_init(Default::default),
                    &account,
                    query,
                )
                .await
            }
            _ => IqReply::Handled,
        }
    }
}

async fn get(
    ctx: &ServerCtx,
    from: &confab_proto::FullJid,
    account: &BareJid,
    query: &Element,
) -> IqReply {
    if let Some(s) = ctx.router.session(from) {
        s.set_roster_requested();
    }
    let (d, u) = parts(account);
    let (version, items) = match ctx.stores.roster.roster(d, u).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "roster load failed");
            return IqReply::Error(confab_server::module::storage_failed());
        }
    };
    let ver = version.to_string();
    // XEP-0237: an up-to-date client gets an empty result; changes arrive as pushes.
    if query.get_attr("ver") == Some(ver.as_str()) {
        return IqReply::Result(None);
    }
    let mut q = Element::new("query", NS).attr("ver", ver);
    for i in items.iter().filter(|i| i.in_roster) {
        q.push_child(item_element(i, false));
    }
    IqReply::Result(Some(q))
}

async fn set(
    ctx: &ServerCtx,
    limits: &RosterConfig,
    account: &BareJid,
    query: &Element,
) -> IqReply {
    // RFC 6121 §2.3.3: exactly one item, with a valid JID and non-empty, distinct groups.
    let item = match RosterQuery::parse_set(query) {
        Ok(item) => item,
        Err(e) => return IqReply::Error(e.to_stanza_error()),
    };
    // Roster items are bare JIDs (a full JID is kept as given by some servers; we normalise).
    let contact = item.jid.to_bare();
    let guard = roster::lock(account).await;
    let existing = match roster::item(ctx, account, &contact).await {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(error = %e, "roster load failed");
            return IqReply::Error(confab_server::module::storage_failed());
        }
    };
    if item.is_remove() {
        return remove(ctx, account, existing, guard).await;
    }
    let name = item.name.filter(|n| !n.is_empty());
    if name
        .as_ref()
        .is_some_and(|n| n.len() > limits.max_name_length)
    {
        return err(StanzaErrorCondition::NotAcceptable, "name too long");
    }
    let groups = item.groups;
    if groups.iter().any(|g| g.len() > limits.max_group_length) {
        return err(StanzaErrorCondition::NotAcceptable, "group name too long");
    }
    if groups.len() > limits.max_groups_per_item {
        return err(StanzaErrorCondition::NotAcceptable, "too many groups");
    }
    let mut new = match existing {
        Some(i) => i,
        None => {
            let (d, u) = parts(account);
            match ctx.stores.roster.roster(d, u).await {
                Ok((_, all)) if all.iter().filter(|i| i.in_roster).count() >= limits.max_items => {
                    return err(StanzaErrorCondition::NotAllowed, "roster is full");
                }
                Ok(_) => {}
                Err(_) => return IqReply::Error(confab_server::module::storage_failed()),
            }
            RosterItem::new(contact.as_str())
        }
    };
    // Clients may only change name and groups; subscription state is the server's.
    new.name = name;
    new.groups = groups;
    new.in_roster = true;
    match roster::save_and_push(ctx, account, &new).await {
        Ok(()) => IqReply::Result(None),
        Err(e) => {
            tracing::error!(error = %e, "roster save failed");
            IqReply::Error(confab_server::module::storage_failed())
        }
    }
}

#[async_trait]
impl LifecycleListener for Roster {
    /// A deleted account cancels its subscriptions, so contacts' rosters stay truthful
    /// (the data itself goes with the account's rows).
    async fn account_deleted(&self, ctx: &ServerCtx, account: &BareJid) {
        let (d, u) = parts(account);
        let Ok((_, items)) = ctx.stores.roster.roster(d, u).await else {
            return;
        };
        let from = Jid::from(account.clone());
        for item in items {
            let Ok(contact) = Jid::new(&item.jid) else {
                continue;
            };
            for t in roster::cancel_notices(&item) {
                roster::route_presence(ctx, t, &from, &contact).await;
            }
        }
    }
}

/// RFC 6121 §2.5.2: removing a contact also cancels the subscriptions both ways.
async fn remove(
    ctx: &ServerCtx,
    account: &BareJid,
    existing: Option<RosterItem>,
    guard: tokio::sync::MutexGuard<'static, ()>,
) -> IqReply {
    let Some(item) =
        existing.filter(|i| i.in_roster || i.subscription != confab_store::Subscription::None)
    else {
        return err(StanzaErrorCondition::ItemNotFound, "no such contact");
    };
    let from = Jid::from(account.clone());
    let contact = match Jid::new(&item.jid) {
        Ok(j) => j,
        Err(_) => return err(StanzaErrorCondition::InternalServerError, "stored jid"),
    };
    let notices = roster::cancel_notices(&item);
    let stop_presence = item.subscription.has_from();
    if let Err(e) = roster::remove_and_push(ctx, account, &item).await {
        tracing::error!(error = %e, "roster remove failed");
        return IqReply::Error(confab_server::module::storage_failed());
    }
    // The contact's side changes its own roster when these arrive.
    drop(guard);
    if stop_presence {
        // The contact no longer sees the user: it learns the user went away.
        roster::send_unavailable(ctx, account, &contact).await;
    }
    for t in notices {
        roster::route_presence(ctx, t, &from, &contact).await;
    }
    IqReply::Result(None)
}
