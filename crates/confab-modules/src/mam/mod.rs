//! XEP-0313 Message Archive Management for accounts, with XEP-0359 stanza ids and XEP-0441
//! preferences.
//!
//! Every chat or normal message with a body (or a correction, retraction, chat marker or
//! reaction, or a store hint) that a local account sends or receives is archived in that
//! account's archive (`ArchiveStore`), unless the account's preferences (`prefs.rs`) say
//! otherwise: the sender's copy at `FromClient`, the recipient's at `ToFullJid`/`ToBareJid`
//! — before offline storage, so a message to an offline account is archived once and kept
//! offline with its stanza id. The delivered message carries `<stanza-id by='account'/>`,
//! the id a client pages from.
//!
//! Queries (`query.rs`) are answered with one `<message><result/></message>` per archived
//! message to the requesting session, then the IQ result with `<fin/>` and an RSM `<set/>`.
//! A session that queries the archive before its initial presence is not sent again the
//! offline messages it received in the results (XEP-0313 §7.1.1): the offline module checks
//! `QueriedArchive`.
//!
//! `[mam] max_messages` caps each archive: accounts that archived something are trimmed to
//! the cap once a minute (`CapTrim`), so a write never waits for a count.

mod prefs;
mod query;
mod writer;

pub use prefs::DefaultPolicy;

use async_trait::async_trait;
use confab_proto::error::{StanzaError, StanzaErrorCondition};
use confab_proto::jid::{BareJid, Jid};
use confab_proto::ns;
use confab_proto::payloads::mam;
use confab_proto::stanza::{IqType, Stanza, StanzaKind};
use confab_proto::xml::Element;
use confab_server::module::{
    HookArgs, HookPoint, HookResult, IqHandler, IqReply, IqTarget, LifecycleListener, Module,
    ModuleConfig, Registry, StanzaHook, Timer,
};
use confab_server::session::SessionInfo;
use confab_server::ServerCtx;
use confab_store::archive::{ArchiveQuery, ArchivedMessage, MAX_PAGE};
use prefs::{Prefs, PrefsCache};
use rand::distributions::{Alphanumeric, DistString};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub const NS: &str = mam::NS;
pub const EXTENDED: &str = mam::EXTENDED;
pub const SID_NS: &str = "urn:xmpp:sid:0";
const HINTS_NS: &str = "urn:xmpp:hints";
/// Payloads that change a conversation without a body of their own: corrections carry
/// one, these may not (XEP-0424 retraction, XEP-0333 markers, XEP-0444 reactions).
const RETRACT_NS: [&str; 2] = ["urn:xmpp:message-retract:1", "urn:xmpp:message-retract:0"];
const MARKERS_NS: &str = "urn:xmpp:chat-markers:0";
const REACTIONS_NS: &str = "urn:xmpp:reactions:0";
/// Rows deleted per statement by the retention and cap timers, and statements per tick:
/// bounded work per tick, the rest waits for the next one.
const EXPIRE_BATCH: usize = 1000;
const EXPIRE_BATCHES_PER_TICK: usize = 100;
/// Accounts remembered for the next cap trim; past this the rest are trimmed when they
/// next archive something.
const TRIM_PENDING_MAX: usize = 100_000;

/// `[mam]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MamConfig {
    /// Most messages in one page of results, and the page size when the client names none.
    pub max_page: usize,
    /// Messages older than this many days are deleted; 0 keeps them forever.
    pub retention_days: u32,
    /// Most messages kept per account (the oldest go first); 0 for no cap.
    pub max_messages: u64,
    /// What is archived for accounts that set no preferences: always, never or roster.
    pub default: DefaultPolicy,
    /// Most JIDs in each list of an account's preferences.
    pub prefs_max_jids: usize,
    /// Count every query's whole range (RSM `<count/>` and `<first index/>`). Off by
    /// default: a count reads the whole range, a page only its own rows. A client can
    /// still ask for the count alone with `<max>0</max>`.
    pub count_results: bool,
}

impl Default for MamConfig {
    fn default() -> Self {
        MamConfig {
            max_page: MAX_PAGE,
            retention_days: 0,
            max_messages: 0,
            default: DefaultPolicy::Always,
            prefs_max_jids: 1000,
            count_results: false,
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
        if self.prefs_max_jids > 100_000 {
            return Err("prefs_max_jids must be at most 100000".into());
        }
        Ok(())
    }
}

/// The archive ids a session was sent before its initial presence: those of its offline
/// messages are not sent to it again (XEP-0313: only what the client received).
#[derive(Default)]
pub struct QueriedArchive {
    ids: Mutex<HashSet<String>>,
}

/// Ids remembered per session at most (a client catching up pages through a few hundred).
const QUERIED_MAX: usize = 10_000;

impl QueriedArchive {
    fn record<'a>(&self, ids: impl Iterator<Item = &'a str>) {
        if let Ok(mut set) = self.ids.lock() {
            for id in ids {
                if set.len() >= QUERIED_MAX {
                    break;
                }
                set.insert(id.to_string());
            }
        }
    }

    /// Whether the session was sent the archived message `id`.
    pub fn sent(&self, id: &str) -> bool {
        self.ids.lock().is_ok_and(|set| set.contains(id))
    }
}

/// The `mam` module.
#[derive(Default)]
pub struct Mam {
    config: OnceLock<MamConfig>,
    prefs: OnceLock<PrefsCache>,
    /// Accounts that archived something since the last cap trim.
    to_trim: Arc<Mutex<HashSet<BareJid>>>,
    /// Writes the archive's rows off the delivery path (`writer.rs`).
    writer: Arc<writer::ArchiveWriter>,
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
        let cap = config.max_messages;
        let _ = self.config.set(config);
        let _ = self.prefs.set(PrefsCache::new(reg.store("mam")));
        reg.iq(IqType::Set, IqTarget::Account, NS, self.clone());
        reg.iq(IqType::Get, IqTarget::Account, NS, self.clone());
        reg.account_feature(NS);
        reg.account_feature(EXTENDED);
        reg.account_feature(SID_NS);
        // After blocking (1000): a refused message is not archived. Before carbons (50):
        // the copies other devices get carry the stanza id too.
        reg.hook(HookPoint::FromClient, 60, self.clone());
        reg.hook(HookPoint::ToFullJid, 60, self.clone());
        reg.hook(HookPoint::ToBareJid, 60, self.clone());
        reg.lifecycle(self.clone());
        if cap > 0 {
            reg.timer(
                Duration::from_secs(60),
                Arc::new(CapTrim {
                    accounts: self.to_trim.clone(),
                    keep: cap,
                    writer: self.writer.clone(),
                }),
            );
        }
        if retention > 0 {
            reg.timer(Duration::from_secs(3600), self);
        }
    }
}

/// Chat and normal messages with a body or another part of a conversation (or a store
/// hint), unless the sender asked for them not to be kept (XEP-0334).
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
        None | Some("chat") | Some("normal") => el.elements().any(|c| {
            c.is("body", ns::CLIENT)
                || c.is("store", HINTS_NS)
                || (c.name == "retract" && RETRACT_NS.contains(&&*c.ns))
                || (*c.ns == *MARKERS_NS
                    && matches!(&*c.name, "received" | "displayed" | "acknowledged"))
                || c.is("reactions", REACTIONS_NS)
        }),
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

impl Mam {
    fn prefs(&self) -> Option<&PrefsCache> {
        self.prefs.get()
    }

    /// Whether `account`'s preferences keep its messages with `other` (XEP-0441). When they
    /// cannot be read, nothing is archived: the account may have asked for that.
    async fn wanted(&self, ctx: &ServerCtx, account: &BareJid, other: &Jid) -> bool {
        let Some(cache) = self.prefs() else {
            return false;
        };
        let prefs = match cache.get(ctx, account, self.config().default).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, account = %account, "reading archiving preferences failed; not archiving");
                return false;
            }
        };
        if let Some(listed) = prefs.listed(other) {
            return listed;
        }
        match prefs.default {
            DefaultPolicy::Always => true,
            DefaultPolicy::Never => false,
            DefaultPolicy::Roster => {
                let (Some(node), contact) = (account.node(), other.to_bare()) else {
                    return false;
                };
                match ctx
                    .stores
                    .roster
                    .roster_item(account.domain().as_str(), node.as_str(), contact.as_str())
                    .await
                {
                    Ok(item) => item.is_some_and(|i| i.in_roster),
                    Err(e) => {
                        tracing::error!(error = %e, account = %account, "reading the roster for archiving failed; not archiving");
                        false
                    }
                }
            }
        }
    }

    /// Appends `stanza` to `account`'s archive with `with` as the other party if the
    /// account's preferences want it; the new id, or `None` if it was not stored (the
    /// message still goes on: the archive is not a reason to lose it).
    async fn archive(
        &self,
        ctx: &ServerCtx,
        account: &BareJid,
        with: &Jid,
        stanza: &Stanza,
    ) -> Option<String> {
        let node = account.node()?;
        // A message to oneself is kept whatever the lists say.
        if with.to_bare() != *account && !self.wanted(ctx, account, with).await {
            return None;
        }
        let msg = ArchivedMessage {
            id: new_id(),
            with: with.to_string(),
            stamp: now_micros(),
            stanza: stanza.el.to_xml(ns::CLIENT),
        };
        let id = msg.id.clone();
        match self
            .writer
            .append(ctx, account.domain().as_str(), node.as_str(), msg)
            .await
        {
            Ok(()) => {
                if self.config().max_messages > 0 {
                    if let Ok(mut pending) = self.to_trim.lock() {
                        if pending.len() < TRIM_PENDING_MAX {
                            pending.insert(account.clone());
                        }
                    }
                }
                Some(id)
            }
            Err(e) => {
                tracing::error!(error = %e, account = %account, "archiving a message failed");
                None
            }
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
                    self.archive(ctx, &sender, &to, stanza).await;
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
                if let Some(id) = self.archive(ctx, &account, &with, stanza).await {
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

/// Deletes in bounded batches while `step` deletes a full batch.
async fn in_batches<F, Fut>(what: &str, mut step: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = confab_store::Result<u64>>,
{
    for _ in 0..EXPIRE_BATCHES_PER_TICK {
        match step().await {
            Ok(n) if (n as usize) < EXPIRE_BATCH => break,
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "{what} failed");
                break;
            }
        }
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
        in_batches("expiring archived messages", || {
            ctx.stores.archive.expire_archive(cutoff, EXPIRE_BATCH)
        })
        .await;
    }
}

/// Trims the archives that grew since the last tick to `[mam] max_messages`.
struct CapTrim {
    accounts: Arc<Mutex<HashSet<BareJid>>>,
    keep: u64,
    writer: Arc<writer::ArchiveWriter>,
}

#[async_trait]
impl Timer for CapTrim {
    async fn tick(&self, ctx: &ServerCtx) {
        // What is queued counts towards the cap.
        self.writer.flush().await;
        let accounts = match self.accounts.lock() {
            Ok(mut pending) => std::mem::take(&mut *pending),
            Err(_) => return,
        };
        for account in accounts {
            let Some(node) = account.node() else {
                continue;
            };
            let domain = account.domain().as_str();
            in_batches("trimming an archive to its cap", || {
                ctx.stores
                    .archive
                    .trim_archive(domain, node.as_str(), self.keep, EXPIRE_BATCH)
            })
            .await;
        }
    }
}

#[async_trait]
impl LifecycleListener for Mam {
    async fn server_started(&self, ctx: &ServerCtx) {
        self.writer.start(ctx);
    }

    async fn server_stopping(&self, _: &ServerCtx) {
        self.writer.flush().await;
    }

    async fn session_closed(&self, ctx: &ServerCtx, session: &SessionInfo) {
        let account = session.jid.to_bare();
        if ctx.router.sessions_of(&account).is_empty() {
            if let Some(p) = self.prefs() {
                p.forget(&account);
            }
        }
    }

    async fn account_deleted(&self, _: &ServerCtx, account: &BareJid) {
        // The archive and the stored preferences go with the account's rows.
        if let Some(p) = self.prefs() {
            p.forget(account);
        }
    }
}

fn storage_failed(e: &dyn std::fmt::Display, account: &BareJid, what: &str) -> IqReply {
    tracing::error!(error = %e, account = %account, "{what} failed");
    IqReply::Error(confab_server::module::storage_failed())
}

impl Mam {
    async fn prefs_iq(
        &self,
        ctx: &ServerCtx,
        iq: &Stanza,
        account: &BareJid,
        el: &Element,
    ) -> IqReply {
        let Some(cache) = self.prefs() else {
            return IqReply::Error(StanzaError::new(StanzaErrorCondition::InternalServerError));
        };
        let config = self.config();
        if iq.iq_type() == Some(IqType::Set) {
            let prefs = match Prefs::from_element(el, config.prefs_max_jids) {
                Ok(p) => p,
                Err(e) => return IqReply::Error(e),
            };
            if let Err(e) = cache.set(ctx, account, prefs.clone()).await {
                return storage_failed(&e, account, "saving archiving preferences");
            }
            return IqReply::Result(Some(prefs.to_element()));
        }
        match cache.get(ctx, account, config.default).await {
            Ok(p) => IqReply::Result(Some(p.to_element())),
            Err(e) => storage_failed(&e, account, "reading archiving preferences"),
        }
    }

    async fn metadata_iq(&self, ctx: &ServerCtx, account: &BareJid, node: &str) -> IqReply {
        self.writer.flush().await;
        let archive = &ctx.stores.archive;
        let domain = account.domain().as_str();
        let one = |before: Option<String>| ArchiveQuery {
            before,
            max: 1,
            ..ArchiveQuery::default()
        };
        let first = archive.query_archive(domain, node, &one(None)).await;
        let last = archive
            .query_archive(domain, node, &one(Some(String::new())))
            .await;
        match (first, last) {
            (Ok(f), Ok(l)) => {
                let first = f.as_ref().and_then(|p| p.items.first());
                let last = l.as_ref().and_then(|p| p.items.last());
                let ends = first
                    .zip(last)
                    .map(|(f, l)| ((f.id.as_str(), f.stamp), (l.id.as_str(), l.stamp)));
                IqReply::Result(Some(mam::metadata(ends)))
            }
            (Err(e), _) | (_, Err(e)) => storage_failed(&e, account, "reading archive metadata"),
        }
    }

    async fn query_iq(
        &self,
        ctx: &ServerCtx,
        iq: &Stanza,
        from: &Jid,
        account: &BareJid,
        node: &str,
        query: &Element,
    ) -> IqReply {
        if iq.iq_type() == Some(IqType::Get) {
            return IqReply::Result(Some(mam::query_form(true)));
        }
        let config = self.config();
        let request = match mam::Query::try_from(query) {
            Ok(q) => q,
            Err(e) => return IqReply::Error(e.into()),
        };
        let with = request.with.as_ref().map(|j| j.to_string());
        let mut q = ArchiveQuery::from_request(&request, with, config.max_page);
        q.count |= config.count_results;
        let session = from.try_as_full().ok().and_then(|f| ctx.router.session(f));
        // A client finds what it was just sent.
        self.writer.flush().await;
        let page = match ctx
            .stores
            .archive
            .query_archive(account.domain().as_str(), node, &q)
            .await
        {
            Ok(Some(p)) => p,
            Ok(None) => {
                return IqReply::Error(StanzaError::new(StanzaErrorCondition::ItemNotFound))
            }
            Err(e) => return storage_failed(&e, account, "archive query"),
        };
        if let Some(session) = &session {
            // Before its initial presence: remember what the session was sent, so the
            // offline messages among it are not sent again.
            if !session.is_available() {
                session
                    .data_or_insert_with(QueriedArchive::default)
                    .record(page.items.iter().map(|m| m.id.as_str()));
            }
            query::send_results(ctx, account, session, &request, &page).await;
        }
        IqReply::Result(Some(query::fin(&page)))
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
        let (Some(payload), Some(node)) = (iq.iq_payload(), account.node()) else {
            return IqReply::Error(StanzaError::new(StanzaErrorCondition::BadRequest));
        };
        let get = iq.iq_type() == Some(IqType::Get);
        match &*payload.name {
            "query" => {
                self.query_iq(ctx, iq, &from, &account, node.as_str(), payload)
                    .await
            }
            "prefs" => self.prefs_iq(ctx, iq, &account, payload).await,
            "metadata" if get => self.metadata_iq(ctx, &account, node.as_str()).await,
            _ => IqReply::Error(StanzaError::new(StanzaErrorCondition::BadRequest)),
        }
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
        for kept in [
            "<message type='chat'><body>x</body></message>",
            "<message><body>x</body></message>",
            "<message type='chat'><body>fixed</body><replace id='m1' xmlns='urn:xmpp:message-correct:0'/></message>",
            "<message type='chat'><retract id='m1' xmlns='urn:xmpp:message-retract:1'/></message>",
            "<message type='chat'><displayed id='m1' xmlns='urn:xmpp:chat-markers:0'/></message>",
            "<message type='chat'><reactions id='m1' xmlns='urn:xmpp:reactions:0'><reaction>x</reaction></reactions></message>",
            "<message type='chat'><store xmlns='urn:xmpp:hints'/></message>",
        ] {
            assert!(eligible(&message(kept)), "{kept}");
        }
        for not in [
            "<message type='chat'/>",
            "<message type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
            "<message type='chat'><markable xmlns='urn:xmpp:chat-markers:0'/></message>",
            "<message type='groupchat'><body>x</body></message>",
            "<message type='headline'><body>x</body></message>",
            "<message type='chat'><body>x</body><no-store xmlns='urn:xmpp:hints'/></message>",
        ] {
            assert!(!eligible(&message(not)), "{not}");
        }
    }
}
