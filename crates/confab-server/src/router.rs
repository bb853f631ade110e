//! The session table and stanza routing (RFC 6120 §10, RFC 6121 §8).
//!
//! The table is a concurrent map keyed by bare JID: routing takes no global lock and holds
//! no lock across an await. A stanza is serialized once and the same bytes are queued for
//! every recipient.

use crate::config::ResourceConflict;
use crate::module::{HookArgs, HookPoint, HookResult, IqReply, IqTarget};
use crate::session::SessionInfo;
use crate::ServerCtx;
use bytes::Bytes;
use confab_proto::error::{StanzaError, StanzaErrorCondition};
use confab_proto::jid::{BareJid, FullJid, Jid};
use confab_proto::ns;
use confab_proto::stanza::{IqType, Stanza, StanzaKind};
use confab_stream::WireStanza;
use dashmap::DashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug, PartialEq, Eq)]
pub enum BindError {
    Conflict,
}

#[derive(Default)]
pub struct Router {
    sessions: DashMap<BareJid, Vec<Arc<SessionInfo>>>,
    /// Streams that authenticated but have not bound a resource yet (by connection id), so
    /// that deleting the account ends them too.
    unbound: DashMap<BareJid, Vec<(u64, Arc<tokio::sync::Notify>)>>,
    /// Sessions parked between connections (see `crate::detach`), by session id.
    parked: DashMap<u64, (BareJid, crate::detach::Claim)>,
    /// Parked sessions not yet resumed or ended.
    parked_live: AtomicU64,
    next_id: AtomicU64,
}

impl Router {
    pub(crate) fn park(&self, id: u64, account: BareJid, claim: crate::detach::Claim) {
        self.parked_live.fetch_add(1, Ordering::Relaxed);
        self.parked.insert(id, (account, claim));
    }

    pub(crate) fn is_parked(&self, id: u64) -> bool {
        self.parked.contains_key(&id)
    }

    pub(crate) fn unpark(&self, id: u64) {
        self.parked.remove(&id);
    }

    pub(crate) fn parked_done(&self) {
        self.parked_live.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn claim_parked(&self, id: u64, account: &BareJid) -> Option<crate::detach::Claim> {
        self.parked
            .remove_if(&id, |_, (owner, _)| owner == account)
            .map(|(_, (_, claim))| claim)
    }

    /// Parked sessions waiting for a new connection, or still ending.
    pub fn parked_count(&self) -> u64 {
        self.parked_live.load(Ordering::Relaxed)
    }

    /// Ends every parked session (at shutdown).
    pub(crate) fn end_parked(&self) {
        // Dropping a claim wakes its session, which then ends.
        self.parked.clear();
    }

    /// Records a stream that authenticated as `account`; the returned notify fires if the
    /// account is deleted before the stream binds.
    pub fn authenticated(&self, account: &BareJid, conn: u64) -> Arc<tokio::sync::Notify> {
        let n = Arc::new(tokio::sync::Notify::new());
        self.unbound
            .entry(account.clone())
            .or_default()
            .push((conn, n.clone()));
        n
    }

    /// The stream bound or ended: it is no longer an unbound authenticated stream.
    pub fn forget_authenticated(&self, account: &BareJid, conn: u64) {
        self.unbound.remove_if_mut(account, |_, v| {
            v.retain(|(c, _)| *c != conn);
            v.is_empty()
        });
    }

    /// Ends every authenticated stream of the account that has not bound yet.
    pub fn end_unbound(&self, account: &BareJid) {
        if let Some(v) = self.unbound.get(account) {
            for (_, n) in v.iter() {
                // A stored permit: the stream sees it even if it is not waiting right now.
                n.notify_one();
            }
        }
    }

    pub fn next_session_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds a bound session, applying the resource-conflict policy. Returns the session
    /// that was replaced, if any (the caller closes it with `<conflict/>`).
    pub fn bind(
        &self,
        s: Arc<SessionInfo>,
        policy: ResourceConflict,
    ) -> Result<Option<Arc<SessionInfo>>, BindError> {
        let mut entry = self.sessions.entry(s.jid.to_bare()).or_default();
        let existing = entry.iter().position(|o| o.jid == s.jid);
        match (existing, policy) {
            (Some(_), ResourceConflict::Refuse | ResourceConflict::Random) => {
                Err(BindError::Conflict)
            }
            (Some(i), ResourceConflict::KickOld) => {
                let old = std::mem::replace(&mut entry[i], s);
                Ok(Some(old))
            }
            (None, _) => {
                entry.push(s);
                Ok(None)
            }
        }
    }

    pub fn unbind(&self, s: &SessionInfo) {
        let bare = s.jid.to_bare();
        self.sessions.remove_if_mut(&bare, |_, v| {
            v.retain(|o| o.id != s.id);
            v.is_empty()
        });
    }

    pub fn resource_bound(&self, jid: &FullJid) -> bool {
        self.session(jid).is_some()
    }

    pub fn session(&self, jid: &FullJid) -> Option<Arc<SessionInfo>> {
        self.sessions
            .get(&jid.to_bare())
            .and_then(|v| v.iter().find(|s| &s.jid == jid).cloned())
    }

    pub fn sessions_of(&self, bare: &BareJid) -> Vec<Arc<SessionInfo>> {
        self.sessions
            .get(bare)
            .map(|v| v.clone())
            .unwrap_or_default()
    }

    pub fn session_count(&self) -> usize {
        self.sessions.iter().map(|e| e.value().len()).sum()
    }

    /// Every session (for shutdown and administration).
    pub fn all_sessions(&self) -> Vec<Arc<SessionInfo>> {
        self.sessions
            .iter()
            .flat_map(|e| e.value().clone())
            .collect()
    }
}

type BoxFut<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Routes a stanza whose `from` is trusted (stamped by a session or made by the server).
pub fn route(ctx: &ServerCtx, stanza: Stanza) -> BoxFut<'_> {
    Box::pin(route_inner(ctx, stanza))
}

async fn route_inner(ctx: &ServerCtx, mut stanza: Stanza) {
    let to = match stanza.to.clone() {
        Some(t) => t,
        None => {
            // RFC 6120 §10.3: no `to` means the sender's own account.
            match stanza.from.clone() {
                Some(from) => Jid::from(from.to_bare()),
                None => return,
            }
        }
    };
    // What serves the domain: a local host (accounts), a hosted service, or the remote
    // route (s2s); nothing else decides where a stanza goes.
    let domain = to.domain().as_str();
    if !ctx.config.is_local_domain(domain) {
        if let Some(s) = ctx.registry.service_for(domain) {
            let service = s.service.clone();
            service.handle(ctx, stanza).await;
        } else if let Some(remote) = ctx.registry.remote() {
            remote.clone().route(ctx, stanza).await;
        } else {
            bounce(ctx, &stanza, StanzaErrorCondition::RemoteServerNotFound).await;
        }
        return;
    }
    if to.node().is_none() {
        to_host(ctx, stanza).await;
        return;
    }
    let bare = to.to_bare();
    match to.try_as_full() {
        Ok(full) => {
            if let Some(session) = ctx.router.session(full) {
                if run_hooks(ctx, HookPoint::ToFullJid, &mut stanza).await {
                    return;
                }
                if !deliver(ctx, &stanza, &[session]).await && stanza.kind == StanzaKind::Message {
                    undeliverable(ctx, stanza).await;
                }
                return;
            }
            match stanza.kind {
                // RFC 6121 §8.5.3.2: a message to an unavailable resource is treated as if
                // sent to the bare JID, except groupchat and headline.
                StanzaKind::Message => match stanza.type_attr() {
                    Some("groupchat") => {
                        bounce(ctx, &stanza, StanzaErrorCondition::ServiceUnavailable).await
                    }
                    // §8.5.3.2.1: errors to a resource that is gone are silently ignored.
                    Some("headline") | Some("error") => {}
                    _ => to_bare(ctx, stanza, bare).await,
                },
                StanzaKind::Iq => {
                    bounce(ctx, &stanza, StanzaErrorCondition::ServiceUnavailable).await
                }
                StanzaKind::Presence => {
                    if account_exists(ctx, &bare).await {
                        let _ = run_hooks(ctx, HookPoint::ToFullJid, &mut stanza).await;
                    }
                }
            }
        }
        Err(_) => to_bare(ctx, stanza, bare).await,
    }
}

async fn account_exists(ctx: &ServerCtx, bare: &BareJid) -> bool {
    let Some(node) = bare.node() else {
        return false;
    };
    if !ctx.router.sessions_of(bare).is_empty() {
        return true;
    }
    match ctx
        .stores
        .accounts
        .account_exists(bare.domain().as_str(), node.as_str())
        .await
    {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "account lookup failed");
            false
        }
    }
}

async fn to_bare(ctx: &ServerCtx, mut stanza: Stanza, bare: BareJid) {
    if !account_exists(ctx, &bare).await {
        // RFC 6121 §8.5.1: no such user. Presence is dropped silently (no leak of
        // whether the account exists beyond what RFC 6121 requires).
        if stanza.kind != StanzaKind::Presence {
            bounce(ctx, &stanza, StanzaErrorCondition::ServiceUnavailable).await;
        }
        return;
    }
    if stanza.kind == StanzaKind::Iq {
        handle_iq(ctx, stanza, IqTarget::Account).await;
        return;
    }
    if run_hooks(ctx, HookPoint::ToBareJid, &mut stanza).await {
        return;
    }
    let sessions = ctx.router.sessions_of(&bare);
    match stanza.kind {
        StanzaKind::Message => {
            // RFC 6121 §8.5.2.1.1 and §8.5.2.2.1, by message type.
            match stanza.type_attr() {
                // A bare JID is not a room: no resource gets it.
                Some("groupchat") => {
                    bounce(ctx, &stanza, StanzaErrorCondition::ServiceUnavailable).await;
                    return;
                }
                Some("error") => return,
                Some("headline") => {
                    // Every available resource with a non-negative priority, else nobody.
                    let targets: Vec<_> = sessions
                        .into_iter()
                        .filter(|s| s.is_available() && s.priority() >= 0)
                        .collect();
                    if !deliver(ctx, &stanza, &targets).await {
                        // Dropped there, unless a hook keeps it (an XEP-0334 store hint).
                        undeliverable(ctx, stanza).await;
                    }
                    return;
                }
                _ => {}
            }
            let targets = bare_message_targets(sessions);
            if targets.is_empty() || !deliver(ctx, &stanza, &targets).await {
                undeliverable(ctx, stanza).await;
            }
        }
        StanzaKind::Presence => {
            let targets: Vec<_> = sessions.into_iter().filter(|s| s.is_available()).collect();
            deliver(ctx, &stanza, &targets).await;
        }
        StanzaKind::Iq => {}
    }
}

/// Which of an account's sessions get a normal or chat message sent to its bare JID
/// (RFC 6121 §8.5.2.1.1): the available resources with the highest non-negative priority.
/// Public so that modules (carbons) can tell who gets a message and who does not.
pub fn bare_message_targets(sessions: Vec<Arc<SessionInfo>>) -> Vec<Arc<SessionInfo>> {
    let best = sessions
        .iter()
        .filter(|s| s.is_available() && s.priority() >= 0)
        .map(|s| s.priority())
        .max();
    match best {
        Some(p) => sessions
            .into_iter()
            .filter(|s| s.is_available() && s.priority() == p)
            .collect(),
        None => Vec::new(),
    }
}

/// A message nobody can take now: offer it to the Undeliverable hooks (offline storage),
/// else bounce it per RFC 6121 §8.5.2.1.1.
async fn undeliverable(ctx: &ServerCtx, mut stanza: Stanza) {
    if run_hooks(ctx, HookPoint::Undeliverable, &mut stanza).await {
        return;
    }
    match stanza.type_attr() {
        Some("headline") | Some("error") => {}
        _ => bounce(ctx, &stanza, StanzaErrorCondition::ServiceUnavailable).await,
    }
}

async fn to_host(ctx: &ServerCtx, stanza: Stanza) {
    match stanza.kind {
        StanzaKind::Iq => handle_iq(ctx, stanza, IqTarget::Host).await,
        // No module takes messages to the server itself yet: the sender learns it was not
        // delivered (headlines and errors are never answered).
        StanzaKind::Message => match stanza.type_attr() {
            Some("headline") | Some("error") => {}
            _ => bounce(ctx, &stanza, StanzaErrorCondition::ServiceUnavailable).await,
        },
        // Presence to the server is for modules (e.g. MUC components later); none is
        // interested, so it is dropped as Prosody does.
        StanzaKind::Presence => {}
    }
}

/// Dispatches an IQ to the module registered for its payload namespace; unhandled get/set
/// gets `<service-unavailable/>`, results and errors are never answered.
pub async fn handle_iq(ctx: &ServerCtx, stanza: Stanza, target: IqTarget) {
    let Some(t) = stanza.iq_type() else {
        return;
    };
    if matches!(t, IqType::Result | IqType::Error) {
        // A response to an IQ the server sent: modules that wait for replies hook
        // FromClient; here there is nothing to answer.
        return;
    }
    let handler = stanza
        .iq_payload()
        .and_then(|p| ctx.registry.iq_handler(t, target, &p.ns));
    let reply = match handler {
        Some(h) => h.handle_iq(ctx, &stanza, target).await,
        None => IqReply::Error(StanzaError::new(StanzaErrorCondition::ServiceUnavailable)),
    };
    match reply {
        IqReply::Result(payload) => {
            let mut r = stanza.iq_result(payload);
            if r.from.is_none() {
                r.set_from(stanza.to.clone());
            }
            route(ctx, r).await;
        }
        IqReply::Error(e) => send_error(ctx, &stanza, e).await,
        IqReply::Handled => {}
    }
}

/// Returns true if a hook handled the stanza.
async fn run_hooks(ctx: &ServerCtx, point: HookPoint, stanza: &mut Stanza) -> bool {
    run_hooks_for(ctx, point, None, stanza).await
}

async fn run_hooks_for(
    ctx: &ServerCtx,
    point: HookPoint,
    target: Option<&Arc<SessionInfo>>,
    stanza: &mut Stanza,
) -> bool {
    if !ctx.registry.has_hooks(point) {
        return false;
    }
    let args = HookArgs {
        point,
        origin: crate::session::origin(),
        target: target.cloned(),
    };
    for h in ctx.registry.hooks(point) {
        if let HookResult::Handled = h.on_stanza(ctx, &args, stanza).await {
            return true;
        }
    }
    false
}

/// A stanza a session's client sent (its `from` stamped): the `FromClient` hooks, then
/// routing. Call it inside `session::with_origin` for that session.
pub async fn from_client(ctx: &ServerCtx, mut stanza: Stanza) {
    if run_hooks(ctx, HookPoint::FromClient, &mut stanza).await {
        return;
    }
    route(ctx, stanza).await;
}

/// The one way anything reaches a session's queue, routed stanzas and module-made ones
/// (pushes, presence, offline messages) alike: the `Deliver` hooks see each, then it is
/// serialized once for every target that still takes it. True if at least one queued it;
/// an IQ nobody queued is answered with an error.
pub async fn deliver(ctx: &ServerCtx, stanza: &Stanza, targets: &[Arc<SessionInfo>]) -> bool {
    if targets.is_empty() {
        return false;
    }
    let mut any = false;
    if !ctx.registry.has_hooks(HookPoint::Deliver) {
        let wire = WireStanza::new(Bytes::from(stanza.el.to_xml(ns::CLIENT)));
        for s in targets {
            if s.holds(stanza, &wire) {
                any = true;
                continue;
            }
            any |= s.send(wire.clone());
        }
    } else {
        // Hooks may hold back or change a stanza per session: each gets its own copy.
        for s in targets {
            let mut copy = stanza.clone();
            if run_hooks_for(ctx, HookPoint::Deliver, Some(s), &mut copy).await {
                any = true;
                continue;
            }
            let wire = WireStanza::new(Bytes::from(copy.el.to_xml(ns::CLIENT)));
            if s.holds(&copy, &wire) {
                any = true;
                continue;
            }
            any |= s.send(wire);
        }
    }
    if !any && stanza.kind == StanzaKind::Iq {
        bounce(ctx, stanza, StanzaErrorCondition::ServiceUnavailable).await;
    }
    any
}

/// Delivers one stanza to many sessions with each copy addressed to its session (`to` set
/// to the session's full JID, as RFC 6120 §8.1.1.1 wants of a stanza with one recipient):
/// a room's message to its occupants. It is serialized once, without `to`, and the address
/// spliced into each copy's start tag, so a large fan-out does not serialize per recipient.
/// With `Deliver` hooks registered each session gets its own copy through `deliver`.
/// Returns how many sessions took it.
pub async fn deliver_addressed(
    ctx: &ServerCtx,
    stanza: &Stanza,
    targets: &[Arc<SessionInfo>],
) -> usize {
    let mut taken = 0;
    if ctx.registry.has_hooks(HookPoint::Deliver) {
        for s in targets {
            let mut copy = stanza.clone();
            copy.set_to(Some(Jid::from(s.jid.clone())));
            if deliver(ctx, &copy, std::slice::from_ref(s)).await {
                taken += 1;
            }
        }
        return taken;
    }
    let mut unaddressed = std::borrow::Cow::Borrowed(stanza);
    if stanza.to.is_some() || stanza.el.get_attr("to").is_some() {
        unaddressed.to_mut().set_to(None);
    }
    let xml = unaddressed.el.to_xml(ns::CLIENT);
    // The stream form starts with `<name` (no prefix, no xmlns): the address goes after it.
    let cut = 1 + unaddressed.el.name.len();
    let (head, tail) = xml.as_bytes().split_at(cut.min(xml.len()));
    for s in targets {
        let to = confab_proto::xml::escape(s.jid.as_str());
        let mut b = Vec::with_capacity(xml.len() + to.len() + 6);
        b.extend_from_slice(head);
        b.extend_from_slice(b" to='");
        b.extend_from_slice(to.as_bytes());
        b.push(b'\'');
        b.extend_from_slice(tail);
        let wire = WireStanza::new(Bytes::from(b));
        if s.holds(&unaddressed, &wire) || s.send(wire) {
            taken += 1;
        }
    }
    taken
}

/// What became of a stored stanza offered to a session (`deliver_stored`).
pub enum StoredDelivery {
    /// Queued: the receiver says when it was written.
    Queued(tokio::sync::oneshot::Receiver<()>),
    /// A `Deliver` hook took it: it is no longer the store's to keep.
    Taken,
    /// Not queued (the session is gone): it stays stored.
    NotQueued,
}

/// Like `deliver` to one session, for a stanza that stays in storage until written (see
/// `SessionInfo::send_stored`).
pub async fn deliver_stored(
    ctx: &ServerCtx,
    stanza: Stanza,
    target: &Arc<SessionInfo>,
) -> StoredDelivery {
    let mut stanza = stanza;
    if run_hooks_for(ctx, HookPoint::Deliver, Some(target), &mut stanza).await {
        return StoredDelivery::Taken;
    }
    match target.send_stored(WireStanza::new(Bytes::from(stanza.el.to_xml(ns::CLIENT)))) {
        Some(rx) => StoredDelivery::Queued(rx),
        None => StoredDelivery::NotQueued,
    }
}

/// Answers a stanza with an error, unless it is itself an error or an iq result.
pub async fn send_error(ctx: &ServerCtx, stanza: &Stanza, err: StanzaError) {
    if let Some(mut reply) = stanza.error_reply(&err) {
        if reply.from.is_none() {
            // Errors generated by the server for a stanza without `to` come from the
            // sender's own account or the server.
            let own = stanza.from.as_ref().map(|f| Jid::from(f.to_bare()));
            reply.set_from(own);
        }
        route(ctx, reply).await;
    }
}

pub async fn bounce(ctx: &ServerCtx, stanza: &Stanza, cond: StanzaErrorCondition) {
    send_error(ctx, stanza, StanzaError::new(cond)).await;
}
