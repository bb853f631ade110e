//! The session table and stanza routing (RFC 6120 §10, RFC 6121 §8).
//!
//! The table is a concurrent map keyed by bare JID: routing takes no global lock and holds
//! no lock across an await. A stanza is serialized once and the same bytes are queued for
//! every recipient.

use crate::config::ResourceConflict;
use crate::module::{HookPoint, HookResult, IqReply, IqTarget};
use crate::ServerCtx;
use bytes::Bytes;
use confab_proto::error::{StanzaError, StanzaErrorCondition, StreamError};
use confab_proto::jid::{BareJid, FullJid, Jid};
use confab_proto::ns;
use confab_proto::stanza::{IqType, Stanza, StanzaKind};
use dashmap::DashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI8, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// What a session's writer receives: serialized stanza bytes, shared between recipients.
pub struct Outbound {
    pub data: Bytes,
    /// Set for a stanza that is still kept in storage (offline delivery): the writer
    /// confirms it once written, and it is not routed again if the session ends first.
    pub written: Option<tokio::sync::oneshot::Sender<()>>,
    /// Caused by the session's own request (see `with_origin`): counted apart from traffic
    /// from others, so it never makes the session a slow reader.
    own: bool,
}

tokio::task_local! {
    /// The session whose input is being handled on this task.
    static ORIGIN: u64;
}

/// Runs `f` as the handling of input from session `session_id`: whatever it delivers to
/// that same session (IQ results, probe answers at initial presence, stored subscription
/// requests) is the session's own doing. That output is always queued and the session's
/// reader pauses while it is large (`SessionInfo::own_backlog`), so a client that asks for
/// much gets it all, slowly, instead of being cut as a slow reader.
pub async fn with_origin<F: Future>(session_id: u64, f: F) -> F::Output {
    ORIGIN.scope(session_id, f).await
}

fn caused_by(session_id: u64) -> bool {
    ORIGIN.try_with(|o| *o == session_id).unwrap_or(false)
}

/// A bound session as the rest of the server sees it.
pub struct SessionInfo {
    pub id: u64,
    pub jid: FullJid,
    tx: mpsc::UnboundedSender<Outbound>,
    /// Asks the session to end with this stream error (conflict, slow reader, ...).
    close_tx: mpsc::Sender<StreamError>,
    available: AtomicBool,
    priority: AtomicI8,
    /// Stanzas and bytes from others queued but not yet written, bounded by `max_queued`
    /// and `max_queued_bytes` (beyond them the client is a slow reader).
    queued: AtomicUsize,
    queued_bytes: AtomicUsize,
    max_queued: usize,
    max_queued_bytes: usize,
    /// Bytes of the session's own output queued but not yet written.
    own_bytes: AtomicUsize,
    /// Whether the client asked for its roster (it then gets roster pushes, RFC 6121 §2.1.6).
    roster_requested: AtomicBool,
    /// When the client last sent anything, in `monotonic_ms()` (for pinging idle clients).
    last_input_ms: AtomicU64,
}

/// Milliseconds since the first call in this process; a cheap clock for atomics.
pub fn monotonic_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(std::time::Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl SessionInfo {
    /// A session and the receiving end of its queue. The queue's memory is bounded by the
    /// accounting here, not by the channel: `max_queued` stanzas and `max_queued_bytes`
    /// bytes from others, and the session's own output by pausing its reader.
    pub fn new(
        id: u64,
        jid: FullJid,
        close_tx: mpsc::Sender<StreamError>,
        max_queued: usize,
        max_queued_bytes: usize,
    ) -> (Self, mpsc::UnboundedReceiver<Outbound>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let info = SessionInfo {
            id,
            jid,
            tx,
            close_tx,
            available: AtomicBool::new(false),
            priority: AtomicI8::new(0),
            queued: AtomicUsize::new(0),
            queued_bytes: AtomicUsize::new(0),
            max_queued,
            max_queued_bytes,
            own_bytes: AtomicUsize::new(0),
            roster_requested: AtomicBool::new(false),
            last_input_ms: AtomicU64::new(monotonic_ms()),
        };
        (info, rx)
    }

    /// The session's connection delivered bytes just now.
    pub fn touch_input(&self) {
        self.last_input_ms.store(monotonic_ms(), Ordering::Relaxed);
    }

    /// How long the client has been silent.
    pub fn idle_for(&self) -> std::time::Duration {
        let last = self.last_input_ms.load(Ordering::Relaxed);
        std::time::Duration::from_millis(monotonic_ms().saturating_sub(last))
    }

    /// Whether the session has sent available presence (RFC 6121 §4.2).
    pub fn is_available(&self) -> bool {
        self.available.load(Ordering::Relaxed)
    }

    pub fn priority(&self) -> i8 {
        self.priority.load(Ordering::Relaxed)
    }

    pub fn wants_roster_pushes(&self) -> bool {
        self.roster_requested.load(Ordering::Relaxed)
    }

    pub fn set_roster_requested(&self) {
        self.roster_requested.store(true, Ordering::Relaxed);
    }

    pub fn set_presence(&self, available: bool, priority: i8) {
        self.priority.store(priority, Ordering::Relaxed);
        self.available.store(available, Ordering::Relaxed);
    }

    /// Queues bytes for the session. Traffic from others beyond the queue limits (by
    /// count or bytes) means the client stopped reading: the session is closed with
    /// `<policy-violation/>` and the caller learns the data was not queued. The session's
    /// own output (see `with_origin`) is always queued.
    pub fn send(&self, data: Bytes) -> bool {
        self.enqueue(data, None)
    }

    /// Queues a stanza that stays in storage until the returned receiver says it was
    /// written to the connection; `None` if it was not queued.
    pub fn send_stored(&self, data: Bytes) -> Option<tokio::sync::oneshot::Receiver<()>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.enqueue(data, Some(tx)).then_some(rx)
    }

    fn enqueue(&self, data: Bytes, written: Option<tokio::sync::oneshot::Sender<()>>) -> bool {
        let len = data.len();
        let own = caused_by(self.id);
        if own {
            self.own_bytes.fetch_add(len, Ordering::Relaxed);
        } else {
            let count = self.queued.fetch_add(1, Ordering::Relaxed);
            let before = self.queued_bytes.fetch_add(len, Ordering::Relaxed);
            if count >= self.max_queued || before + len > self.max_queued_bytes {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
                self.slow_reader();
                return false;
            }
        }
        match self.tx.send(Outbound { data, written, own }) {
            Ok(()) => true,
            Err(_) => {
                self.released(len, own);
                false
            }
        }
    }

    fn released(&self, len: usize, own: bool) {
        if own {
            self.own_bytes.fetch_sub(len, Ordering::Relaxed);
        } else {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
        }
    }

    /// Whether `len` more bytes from others fit in the first half of the queue now, so a
    /// bulk sender (offline delivery) can pace itself and still leave room for live
    /// stanzas, instead of tripping the slow-reader limit.
    pub fn has_room(&self, len: usize) -> bool {
        self.queued.load(Ordering::Relaxed) * 2 < self.max_queued
            && self.queued_bytes.load(Ordering::Relaxed) + len <= self.max_queued_bytes / 2
    }

    /// Bytes of the session's own output still waiting to be written; its reader pauses
    /// while this is large.
    pub fn own_backlog(&self) -> usize {
        self.own_bytes.load(Ordering::Relaxed)
    }

    /// The writer took this item off the queue (written, or kept to be routed again).
    pub fn dequeued(&self, o: &Outbound) {
        self.released(o.data.len(), o.own);
    }

    fn slow_reader(&self) {
        tracing::warn!(jid = %self.jid, "outbound queue full; closing slow session");
        self.close(StreamError::with_text(
            confab_proto::StreamErrorCondition::PolicyViolation,
            "too many unread stanzas",
        ));
    }

    pub fn close(&self, err: StreamError) {
        let _ = self.close_tx.try_send(err);
    }
}

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
    next_id: AtomicU64,
}

impl Router {
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
    let domain = to.domain().as_str();
    if !ctx.config.is_local_domain(domain) {
        // Federation arrives with s2s; until then remote domains are unreachable.
        bounce(ctx, &stanza, StanzaErrorCondition::RemoteServerNotFound).await;
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
            // Normal and chat: the available resources with the highest non-negative
            // priority.
            let best = sessions
                .iter()
                .filter(|s| s.is_available() && s.priority() >= 0)
                .map(|s| s.priority())
                .max();
            let targets: Vec<_> = match best {
                Some(p) => sessions
                    .into_iter()
                    .filter(|s| s.is_available() && s.priority() == p)
                    .collect(),
                None => Vec::new(),
            };
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
    for h in ctx.registry.hooks(point) {
        if let HookResult::Handled = h.on_stanza(ctx, point, stanza).await {
            return true;
        }
    }
    false
}

/// Serializes once and queues for each session; true if at least one accepted it.
pub async fn deliver(ctx: &ServerCtx, stanza: &Stanza, targets: &[Arc<SessionInfo>]) -> bool {
    if targets.is_empty() {
        return false;
    }
    let bytes = Bytes::from(stanza.el.to_xml(ns::CLIENT));
    let mut any = false;
    for s in targets {
        any |= s.send(bytes.clone());
    }
    if !any && stanza.kind == StanzaKind::Iq {
        bounce(ctx, stanza, StanzaErrorCondition::ServiceUnavailable).await;
    }
    any
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
