//! XEP-0160 offline messages (RFC 6121 §8.5.2.1.1): a chat or normal message for an account
//! with no available resource is stored, and handed with an XEP-0203 delay stamp to the next
//! session that sends initial presence with a non-negative priority.
//!
//! A message is deleted from the store only after it was queued to a session, so a crash or
//! a dropped connection never loses one (at worst it is delivered twice).
//!
//! A session that read its message archive before its initial presence already has the
//! archived ones: those are deleted without being sent again (XEP-0313 §7.1.1).

use async_trait::async_trait;
use confab_proto::datetime::format_datetime;
use confab_proto::jid::{BareJid, FullJid};
use confab_proto::ns;
use confab_proto::parser::parse_fragment;
use confab_proto::stanza::{Stanza, StanzaKind};
use confab_proto::xml::Element;
use confab_server::module::ModuleConfig;
use confab_server::module::{
    HookArgs, HookPoint, HookResult, LifecycleListener, Module, Registry, StanzaHook,
};
use confab_server::session::SessionInfo;
use confab_server::ServerCtx;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub const FEATURE: &str = "msgoffline";
const CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
const HINTS: &str = "urn:xmpp:hints";
/// Deleting after every message would cost one write each; a crash in between only
/// redelivers up to this many.
const DELETE_BATCH: usize = 64;

/// `[offline]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OfflineConfig {
    /// Messages kept per account while it is offline; past this, senders get
    /// `<service-unavailable/>`.
    pub quota: usize,
}

impl Default for OfflineConfig {
    fn default() -> Self {
        OfflineConfig { quota: 1000 }
    }
}

impl ModuleConfig for OfflineConfig {
    fn validate(&self) -> Result<(), String> {
        if self.quota > 100_000 {
            return Err("quota must be at most 100000".into());
        }
        Ok(())
    }
}

pub struct Offline {
    inner: Arc<Inner>,
    quota: OnceLock<usize>,
}

#[derive(Default)]
struct Inner {
    /// Sessions (full JID -> session id) whose initial presence already triggered delivery.
    delivered: DashMap<FullJid, u64>,
    /// One delivery at a time per account, so two sessions never get the same message and
    /// a message stored during a delivery is not skipped.
    flushing: DashMap<BareJid, Arc<tokio::sync::Mutex<()>>>,
}

impl Offline {
    pub fn new() -> Self {
        Offline {
            inner: Arc::default(),
            quota: OnceLock::new(),
        }
    }
}

impl Default for Offline {
    fn default() -> Self {
        Self::new()
    }
}

impl Module for Offline {
    fn name(&self) -> &'static str {
        "offline"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        let config: OfflineConfig = reg.section("offline");
        let _ = self.quota.set(config.quota);
        reg.hook(HookPoint::Undeliverable, 0, self.clone());
        // Low priority: blocking and other filters see the presence first; delivery does
        // not stop it.
        reg.hook(HookPoint::FromClient, -100, self.clone());
        reg.lifecycle(self);
        reg.host_feature(FEATURE);
    }
}

/// What to do with an undeliverable message.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Store,
    /// Nothing worth keeping (standalone chat state, `<no-store/>`): dropped silently.
    Drop,
    /// Not ours to store (groupchat, headline, error): the router applies RFC 6121.
    Pass,
}

fn classify(el: &Element) -> Decision {
    // RFC 6121 §5.2.2: no or an unknown type means normal.
    let type_ = el.get_attr("type").unwrap_or("normal");
    if type_ == "error" || type_ == "groupchat" {
        return Decision::Pass;
    }
    // XEP-0334: no-store wins over store, keeping the sender's privacy wish; the router then
    // bounces it (RFC 6121 §8.5.2.1.1), so the sender learns it was not delivered.
    if el.get_child("no-store", HINTS).is_some() {
        return Decision::Pass;
    }
    if el.get_child("store", HINTS).is_some() {
        return Decision::Store;
    }
    if type_ == "headline" {
        return Decision::Pass;
    }
    // XEP-0085 §5.6: a standalone chat state is not stored. Receipts, markers, bodies and
    // unknown payloads are content for the recipient.
    let has_content = el
        .elements()
        .any(|c| c.ns != CHATSTATES && c.ns != HINTS && !c.is("thread", &el.ns));
    if has_content {
        Decision::Store
    } else {
        Decision::Drop
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Whether the session is still the one bound under its JID.
fn still_bound(ctx: &ServerCtx, s: &SessionInfo) -> bool {
    ctx.router.session(&s.jid).is_some_and(|b| b.id == s.id)
}

/// Waits until `len` bytes fit in the session's queue; false if the session went away or
/// did not make room within the write timeout (it then gives up its turn).
async fn wait_for_room(ctx: &ServerCtx, s: &SessionInfo, len: usize) -> bool {
    let until =
        tokio::time::Instant::now() + Duration::from_secs(ctx.config.c2s.write_timeout.max(1));
    loop {
        if !still_bound(ctx, s) || tokio::time::Instant::now() >= until {
            return false;
        }
        if s.has_room(len) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Inner {
    /// Sends every stored message to `session`, oldest first, deleting what was queued.
    async fn flush(self: Arc<Self>, ctx: ServerCtx, session: Arc<SessionInfo>) {
        let account = session.jid.to_bare();
        let Some(node) = account.node() else {
            return;
        };
        let domain = account.domain().as_str();
        let read_archive = session.data::<crate::mam::QueriedArchive>().is_some();
        let lock = self.flushing.entry(account.clone()).or_default().clone();
        {
            let _guard = lock.lock().await;
            // One page at a time: a full quota of large messages never sits in memory. A
            // row is deleted only once the session's writer confirms it went out, so a
            // connection (or the server) dying meanwhile leaves it stored: at worst a
            // duplicate at the next login, never a loss.
            let mut after = i64::MIN;
            loop {
                let msgs = match ctx
                    .stores
                    .offline
                    .offline_page(domain, node.as_str(), after, DELETE_BATCH)
                    .await
                {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::error!(error = %e, account = %account, "reading offline messages failed");
                        Vec::new()
                    }
                };
                if msgs.is_empty() {
                    break;
                }
                let mut sent = Vec::with_capacity(msgs.len());
                let mut stopped = false;
                for m in msgs {
                    after = m.id;
                    let Some(mut el) =
                        parse_fragment(&m.stanza, ns::CLIENT, &ctx.config.limits.parser_limits())
                    else {
                        // Unreadable rows can never be delivered; keeping them would block
                        // the queue for good.
                        tracing::error!(id = m.id, account = %account, "dropping unparsable offline message");
                        sent.push((m.id, None));
                        continue;
                    };
                    // The session read the archive before coming online: what is in it
                    // (it carries the archive's stanza id) it has, so it is not sent twice.
                    if read_archive && in_archive(&el, &account) {
                        sent.push((m.id, None));
                        continue;
                    }
                    el.push_child(
                        Element::new("delay", ns::DELAY)
                            .attr("from", domain)
                            .attr("stamp", format_datetime(m.stamp)),
                    );
                    // Sized as serialized, for pacing; delivered through the router's path.
                    let len = m.stanza.len() + 128;
                    use confab_server::router::StoredDelivery;
                    let outcome = match Stanza::from_element(el) {
                        Ok(stanza) if wait_for_room(&ctx, &session, len).await => {
                            confab_server::router::deliver_stored(&ctx, stanza, &session).await
                        }
                        _ => StoredDelivery::NotQueued,
                    };
                    match outcome {
                        StoredDelivery::Queued(ack) => sent.push((m.id, Some(ack))),
                        // A module took it (held back, filtered): done with it here.
                        StoredDelivery::Taken => sent.push((m.id, None)),
                        StoredDelivery::NotQueued => {
                            stopped = true;
                            break;
                        }
                    }
                }
                // Waiting on the account's lock is bounded: a session that does not take its
                // messages (blocked, parked) gives up its turn; what it did not confirm stays
                // stored (at worst delivered twice, never lost).
                let patience = Duration::from_secs(ctx.config.c2s.write_timeout.max(1));
                let mut confirmed = None;
                for (id, ack) in sent {
                    match ack {
                        None => confirmed = Some(id),
                        Some(ack) => match tokio::time::timeout(patience, ack).await {
                            Ok(Ok(())) => confirmed = Some(id),
                            _ => {
                                stopped = true;
                                break;
                            }
                        },
                    }
                }
                delete_up_to(&ctx, domain, node.as_str(), confirmed).await;
                if stopped {
                    break;
                }
            }
        }
        // Forget the lock unless someone else is waiting on it (map + this clone = 2).
        self.flushing
            .remove_if(&account, |_, l| Arc::strong_count(l) <= 2);
    }

    /// After a message was stored: if a session of the account already had its delivery
    /// (it became available while the router was deciding), deliver now.
    fn deliver_if_online(self: &Arc<Self>, ctx: &ServerCtx, account: &BareJid) {
        for s in ctx.router.sessions_of(account) {
            let got_delivery = self.delivered.get(&s.jid).is_some_and(|id| *id == s.id);
            if got_delivery && s.is_available() && s.priority() >= 0 {
                tokio::spawn(self.clone().flush(ctx.clone(), s));
                return;
            }
        }
    }
}

/// Whether a stored message was archived in `account`'s archive (the archive added its
/// stanza id before the message was stored).
fn in_archive(el: &Element, account: &BareJid) -> bool {
    el.elements().any(|c| {
        c.is("stanza-id", crate::mam::SID_NS) && c.get_attr("by") == Some(account.as_str())
    })
}

async fn delete_up_to(ctx: &ServerCtx, domain: &str, node: &str, id: Option<i64>) {
    let Some(id) = id else {
        return;
    };
    if let Err(e) = ctx.stores.offline.delete_offline(domain, node, id).await {
        // They stay stored and are delivered again next time: a duplicate, never a loss.
        tracing::error!(error = %e, "deleting delivered offline messages failed");
    }
}

impl Offline {
    async fn store(&self, ctx: &ServerCtx, stanza: &Stanza) -> HookResult {
        match classify(&stanza.el) {
            Decision::Store => {}
            Decision::Drop => return HookResult::Handled,
            Decision::Pass => return HookResult::Continue,
        }
        // No `to` means the sender's own account (RFC 6120 §10.3).
        let Some(account) = stanza
            .to
            .as_ref()
            .or(stanza.from.as_ref())
            .map(|j| j.to_bare())
        else {
            return HookResult::Continue;
        };
        let Some(node) = account.node() else {
            return HookResult::Continue;
        };
        let xml = stanza.el.to_xml(ns::CLIENT);
        let quota = *self.quota.get_or_init(|| OfflineConfig::default().quota);
        match ctx
            .stores
            .offline
            .push_offline(
                account.domain().as_str(),
                node.as_str(),
                &xml,
                now_secs(),
                quota,
            )
            .await
        {
            Ok(true) => {
                self.inner.deliver_if_online(ctx, &account);
                HookResult::Handled
            }
            Ok(false) => {
                tracing::info!(account = %account, quota, "offline quota reached; bouncing");
                HookResult::Continue
            }
            Err(e) => {
                // Bounced rather than silently lost.
                tracing::error!(error = %e, account = %account, "storing offline message failed");
                HookResult::Continue
            }
        }
    }

    fn on_presence(&self, ctx: &ServerCtx, stanza: &Stanza) {
        if stanza.to.is_some() {
            return;
        }
        let Some(full) = stanza.from.as_ref().and_then(|f| f.try_as_full().ok()) else {
            return;
        };
        match stanza.type_attr() {
            None => {}
            // The next available presence is initial again (RFC 6121 §4.2) and delivers
            // what was stored meanwhile.
            Some("unavailable") => {
                self.inner.delivered.remove(full);
                return;
            }
            Some(_) => return,
        }
        let Some(session) = ctx.router.session(full) else {
            return;
        };
        // RFC 6121 §8.5.2.1.1 / XEP-0160: only a resource with non-negative priority.
        if session.priority() < 0 {
            return;
        }
        if self
            .inner
            .delivered
            .insert(full.clone(), session.id)
            .is_some_and(|id| id == session.id)
        {
            return;
        }
        // A separate task: waiting for queue room must not block this session's own loop,
        // which is what drains the queue.
        tokio::spawn(self.inner.clone().flush(ctx.clone(), session));
    }
}

#[async_trait]
impl StanzaHook for Offline {
    async fn on_stanza(&self, ctx: &ServerCtx, args: &HookArgs, stanza: &mut Stanza) -> HookResult {
        let point = args.point;
        if stanza.kind == StanzaKind::Message && point == HookPoint::Undeliverable {
            return self.store(ctx, stanza).await;
        }
        if stanza.kind == StanzaKind::Presence && point == HookPoint::FromClient {
            self.on_presence(ctx, stanza);
        }
        HookResult::Continue
    }
}

#[async_trait]
impl LifecycleListener for Offline {
    async fn session_closed(&self, _: &ServerCtx, session: &SessionInfo) {
        // With kick-old conflicts a new session may already hold this JID: keep its entry.
        self.inner
            .delivered
            .remove_if(&session.jid, |_, id| *id == session.id);
    }

    async fn account_deleted(&self, ctx: &ServerCtx, account: &BareJid) {
        let Some(node) = account.node() else {
            return;
        };
        if let Err(e) = ctx
            .stores
            .offline
            .delete_offline(account.domain().as_str(), node.as_str(), i64::MAX)
            .await
        {
            tracing::error!(error = %e, account = %account, "deleting offline messages failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(xml_children: Vec<Element>, type_: Option<&str>) -> Element {
        let mut m = Element::new("message", ns::CLIENT);
        if let Some(t) = type_ {
            m.set_attr("type", t);
        }
        for c in xml_children {
            m.push_child(c);
        }
        m
    }

    #[test]
    fn classification() {
        let body = Element::new("body", ns::CLIENT).text("hi");
        let active = Element::new("active", CHATSTATES);
        let receipt = Element::new("received", "urn:xmpp:receipts");
        let no_store = Element::new("no-store", HINTS);
        let store = Element::new("store", HINTS);
        assert_eq!(classify(&msg(vec![body.clone()], None)), Decision::Store);
        assert_eq!(
            classify(&msg(vec![body.clone()], Some("chat"))),
            Decision::Store
        );
        assert_eq!(
            classify(&msg(vec![body.clone()], Some("bogus"))),
            Decision::Store
        );
        assert_eq!(
            classify(&msg(vec![body.clone()], Some("headline"))),
            Decision::Pass
        );
        assert_eq!(
            classify(&msg(vec![body.clone()], Some("groupchat"))),
            Decision::Pass
        );
        assert_eq!(
            classify(&msg(vec![body.clone()], Some("error"))),
            Decision::Pass
        );
        assert_eq!(
            classify(&msg(vec![active.clone()], Some("chat"))),
            Decision::Drop
        );
        assert_eq!(classify(&msg(vec![], Some("chat"))), Decision::Drop);
        assert_eq!(
            classify(&msg(vec![body.clone(), active], Some("chat"))),
            Decision::Store
        );
        assert_eq!(classify(&msg(vec![receipt.clone()], None)), Decision::Store);
        assert_eq!(
            classify(&msg(vec![body.clone(), no_store.clone()], None)),
            Decision::Pass
        );
        assert_eq!(
            classify(&msg(vec![receipt, store.clone()], Some("headline"))),
            Decision::Store
        );
        assert_eq!(
            classify(&msg(vec![body, store, no_store], None)),
            Decision::Pass
        );
    }
}
