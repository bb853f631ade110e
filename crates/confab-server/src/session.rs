//! A bound session as the rest of the server sees it: its address, presence state and
//! outbound queue with the accounting that keeps it bounded. The connection that carries it
//! (c2s today) owns the receiving end of the queue.

use confab_proto::error::StreamError;
use confab_proto::jid::FullJid;
use confab_stream::WireStanza;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What a session's writer receives: a stanza serialized once, shared between recipients.
pub struct Outbound {
    pub data: WireStanza,
    /// Set for a stanza that is still kept in storage (offline delivery): the writer
    /// confirms it once written, and it is not routed again if the session ends first.
    pub written: Option<tokio::sync::oneshot::Sender<()>>,
    /// Caused by the session's own request (see `with_origin`): counted apart from traffic
    /// from others, so it never makes the session a slow reader.
    own: bool,
    /// Already taken off the queue's accounting once (an unsent stanza written again on a
    /// later connection).
    replay: bool,
}

tokio::task_local! {
    /// The session whose input is being handled on this task.
    static ORIGIN: Arc<SessionInfo>;
}

/// Runs `f` as the handling of input from session `session_id`: whatever it delivers to
/// that same session (IQ results, probe answers at initial presence, stored subscription
/// requests) is the session's own doing. That output is always queued and the session's
/// reader pauses while it is large (`SessionInfo::own_backlog`), so a client that asks for
/// much gets it all, slowly, instead of being cut as a slow reader.
pub async fn with_origin<F: Future>(session: Arc<SessionInfo>, f: F) -> F::Output {
    ORIGIN.scope(session, f).await
}

/// The session whose input this task is handling (see `with_origin`), if any: the origin
/// hooks see.
pub fn origin() -> Option<Arc<SessionInfo>> {
    ORIGIN.try_with(Arc::clone).ok()
}

fn caused_by(session_id: u64) -> bool {
    ORIGIN.try_with(|o| o.id == session_id).unwrap_or(false)
}

/// Sees the stanzas written to a session's client, in order (XEP-0198 counts them and keeps
/// them until acknowledged). Called on the session's own task: keep it quick.
pub trait WriteObserver: Send + Sync {
    fn written(&self, session: &SessionInfo, stanzas: &[WireStanza]);
}

/// What a delivery filter decides for one stanza.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Queue it for the session now.
    Send,
    /// The filter keeps it (to send later, or to drop as superseded).
    Held,
}

/// Sees each stanza about to be queued for one session by the router's delivery path and
/// may hold it back (XEP-0352 client state indication holds presence and chat states while
/// the client is inactive). Unlike `Deliver` hooks it works on the serialized stanza shared
/// by every recipient, so it costs other sessions nothing. Keep it quick: it runs on the
/// sender's task.
pub trait DeliveryFilter: Send + Sync {
    fn filter(
        &self,
        session: &SessionInfo,
        stanza: &confab_proto::stanza::Stanza,
        wire: &WireStanza,
    ) -> Delivery;
}

/// The connection that bound a session, for administrators (the admin console's
/// session list).
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    pub peer: std::net::SocketAddr,
    /// `tcp`, `websocket` or `bosh`.
    pub transport: &'static str,
    /// Encrypted (TLS, or a secure WebSocket / BOSH connection).
    pub secure: bool,
    /// When the session was bound.
    pub since: std::time::SystemTime,
}

/// A bound session as the rest of the server sees it.
pub struct SessionInfo {
    pub id: u64,
    pub jid: FullJid,
    /// The connection that bound it (set once at bind).
    connection: std::sync::OnceLock<ConnectionInfo>,
    /// The outbound queue, read by the session's `Outbox`. A plain deque rather than a
    /// channel: it takes no memory while empty, and an idle session is the common case.
    queue: Mutex<Queue>,
    /// Wakes the `Outbox` (its only reader) when something is queued or the queue closes.
    queue_ready: tokio::sync::Notify,
    /// A request to end the session with this stream error (conflict, slow reader, ...);
    /// the first request wins until whoever carries the session takes it.
    close_request: Mutex<Option<StreamError>>,
    close_ready: tokio::sync::Notify,
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
    /// How long the session waits, parked, for a new connection after its connection
    /// drops (`0`: it ends with the connection). Set by stream management.
    resume_ms: AtomicU64,
    /// Stanzas received from the client (valid or not), wrapping: what XEP-0198 acks count.
    stanzas_in: std::sync::atomic::AtomicU32,
    /// Sees every batch written to the client (stream management); set once.
    write_observer: std::sync::OnceLock<Arc<dyn WriteObserver>>,
    delivery_filter: std::sync::OnceLock<Arc<dyn DeliveryFilter>>,
    /// Modules' own per-session state, one value per type (see `data`).
    extensions: std::sync::Mutex<DataSlots>,
    /// Asks the connection to let go of the session (XEP-0198 resumption on a new
    /// connection while the old one is not yet known dead); `parked` tells it has.
    detach: tokio::sync::Notify,
    /// Detach requests under way: resumptions waiting for the connection holding the
    /// session to let go. Each is withdrawn when its resumption stops waiting, answered or
    /// refused, so a refused one cannot detach the session later.
    detach_pending: AtomicU64,
    /// Counts detach requests ever made: a connection acts only on one made after it took
    /// the session (`detach_epoch`), not on one still pending from a resumption that
    /// raced the one that gave it the session.
    detach_made: AtomicU64,
    parked: tokio::sync::Notify,
}

/// Milliseconds since the first call in this process; a cheap clock for atomics.
pub fn monotonic_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(std::time::Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl SessionInfo {
    /// A session with an empty queue. The queue's memory is bounded by the accounting
    /// here: `max_queued` stanzas and `max_queued_bytes` bytes from others, and the
    /// session's own output by pausing its reader.
    pub fn new(id: u64, jid: FullJid, max_queued: usize, max_queued_bytes: usize) -> Self {
        SessionInfo {
            id,
            jid,
            connection: std::sync::OnceLock::new(),
            queue: Mutex::new(Queue::default()),
            queue_ready: tokio::sync::Notify::new(),
            close_request: Mutex::new(None),
            close_ready: tokio::sync::Notify::new(),
            available: AtomicBool::new(false),
            priority: AtomicI8::new(0),
            queued: AtomicUsize::new(0),
            queued_bytes: AtomicUsize::new(0),
            max_queued,
            max_queued_bytes,
            own_bytes: AtomicUsize::new(0),
            roster_requested: AtomicBool::new(false),
            last_input_ms: AtomicU64::new(monotonic_ms()),
            resume_ms: AtomicU64::new(0),
            stanzas_in: std::sync::atomic::AtomicU32::new(0),
            write_observer: std::sync::OnceLock::new(),
            delivery_filter: std::sync::OnceLock::new(),
            extensions: std::sync::Mutex::new(Vec::new()),
            detach: tokio::sync::Notify::new(),
            detach_pending: AtomicU64::new(0),
            detach_made: AtomicU64::new(0),
            parked: tokio::sync::Notify::new(),
        }
    }

    /// Records the connection that bound the session (once; later calls are ignored).
    pub fn set_connection(&self, info: ConnectionInfo) {
        let _ = self.connection.set(info);
    }

    /// The connection that bound the session, if recorded.
    pub fn connection(&self) -> Option<&ConnectionInfo> {
        self.connection.get()
    }

    /// Lets `observer` see every stanza written to this session's client from now on;
    /// false if the session already has one.
    pub fn set_write_observer(&self, observer: Arc<dyn WriteObserver>) -> bool {
        self.write_observer.set(observer).is_ok()
    }

    fn write_observer(&self) -> Option<&Arc<dyn WriteObserver>> {
        self.write_observer.get()
    }

    /// Lets `filter` decide about every stanza the router delivers to this session from
    /// now on; false if the session already has one.
    pub fn set_delivery_filter(&self, filter: Arc<dyn DeliveryFilter>) -> bool {
        self.delivery_filter.set(filter).is_ok()
    }

    /// Whether the session's delivery filter (if any) holds this stanza back.
    pub fn holds(&self, stanza: &confab_proto::stanza::Stanza, wire: &WireStanza) -> bool {
        self.delivery_filter
            .get()
            .is_some_and(|f| f.filter(self, stanza, wire) == Delivery::Held)
    }

    /// Asks the connection holding the session to drop and park it (see `detach`), for as
    /// long as the returned request is held.
    pub(crate) fn request_detach(&self) -> DetachRequest<'_> {
        self.detach_made.fetch_add(1, Ordering::SeqCst);
        self.detach_pending.fetch_add(1, Ordering::SeqCst);
        // A stored permit: the connection sees it even if it is busy right now.
        self.detach.notify_one();
        DetachRequest { info: self }
    }

    /// Where detach requests stand now: what a connection taking the session notes, to pass
    /// to `detach_requested`.
    pub(crate) fn detach_epoch(&self) -> u64 {
        self.detach_made.load(Ordering::SeqCst)
    }

    /// Completes while a detach request is under way that was made after `since` (the
    /// connection's `detach_epoch` when it took the session).
    pub(crate) async fn detach_requested(&self, since: u64) {
        loop {
            if self.detach_pending.load(Ordering::SeqCst) > 0
                && self.detach_made.load(Ordering::SeqCst) > since
            {
                return;
            }
            // A permit left by a withdrawn request only makes this look again.
            self.detach.notified().await;
        }
    }

    /// The session is parked (tells whoever waits in `parked_now`).
    pub(crate) fn notify_parked(&self) {
        self.parked.notify_waiters();
    }

    pub(crate) fn parked_signal(&self) -> tokio::sync::futures::Notified<'_> {
        self.parked.notified()
    }

    /// Keep the session, parked, for `timeout` after its connection drops, so a new
    /// connection can resume it (XEP-0198); `None` ends it with its connection.
    pub fn set_resume_timeout(&self, timeout: Option<std::time::Duration>) {
        let ms = timeout.map_or(0, |t| {
            u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1)
        });
        self.resume_ms.store(ms, Ordering::Relaxed);
    }

    pub fn resume_timeout(&self) -> Option<std::time::Duration> {
        match self.resume_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(std::time::Duration::from_millis(ms)),
        }
    }

    /// A module's per-session value of type `T` (a type private to the module), if set.
    /// Values live as long as the session; nothing here is shared between sessions.
    pub fn data<T: std::any::Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let slots = self.extensions.lock().unwrap_or_else(|p| p.into_inner());
        find_data(&slots)
    }

    /// The module's per-session value of type `T`, made with `init` the first time.
    pub fn data_or_insert_with<T: std::any::Any + Send + Sync>(
        &self,
        init: impl FnOnce() -> T,
    ) -> Arc<T> {
        let mut slots = self.extensions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = find_data(&slots) {
            return v;
        }
        let v = Arc::new(init());
        slots.push((std::any::TypeId::of::<T>(), v.clone()));
        v
    }

    /// Removes the module's per-session value of type `T`.
    pub fn remove_data<T: std::any::Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let id = std::any::TypeId::of::<T>();
        let mut slots = self.extensions.lock().unwrap_or_else(|p| p.into_inner());
        let i = slots.iter().position(|(t, _)| *t == id)?;
        slots.swap_remove(i).1.downcast::<T>().ok()
    }

    /// The client sent one more stanza (counted by the connection, whatever becomes of it).
    pub fn count_stanza_in(&self) {
        self.stanzas_in.fetch_add(1, Ordering::Relaxed);
    }

    /// Stanzas received from the client so far, modulo 2^32 (XEP-0198's `h`).
    pub fn stanzas_in(&self) -> u32 {
        self.stanzas_in.load(Ordering::Relaxed)
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
    pub fn send(&self, data: WireStanza) -> bool {
        self.enqueue(data, None)
    }

    /// Queues a stanza that stays in storage until the returned receiver says it was
    /// written to the connection; `None` if it was not queued.
    pub fn send_stored(&self, data: WireStanza) -> Option<tokio::sync::oneshot::Receiver<()>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.enqueue(data, Some(tx)).then_some(rx)
    }

    fn enqueue(&self, data: WireStanza, written: Option<tokio::sync::oneshot::Sender<()>>) -> bool {
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
        let out = Outbound {
            data,
            written,
            own,
            replay: false,
        };
        let queued = {
            let mut q = lock(&self.queue);
            if q.closed {
                false
            } else {
                q.items.push_back(out);
                true
            }
        };
        if queued {
            // A stored permit if the reader is busy: it finds the item when it looks next.
            self.queue_ready.notify_one();
        } else {
            self.released(len, own);
        }
        queued
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
        if o.replay {
            return;
        }
        self.released(o.data.len(), o.own);
    }

    fn slow_reader(&self) {
        tracing::warn!(jid = %self.jid, "outbound queue full; closing slow session");
        self.close(StreamError::with_text(
            confab_proto::StreamErrorCondition::PolicyViolation,
            "too many unread stanzas",
        ));
    }

    /// Asks whoever carries the session to end it with `err`; ignored while an earlier
    /// request is pending.
    pub fn close(&self, err: StreamError) {
        {
            let mut request = lock(&self.close_request);
            if request.is_some() {
                return;
            }
            *request = Some(err);
        }
        self.close_ready.notify_one();
    }

    /// Completes with the next close request, taking it. Cancel-safe.
    pub async fn close_requested(&self) -> StreamError {
        loop {
            if let Some(err) = lock(&self.close_request).take() {
                return err;
            }
            self.close_ready.notified().await;
        }
    }
}

/// A session's queued output and whether its reader is gone.
#[derive(Default)]
struct Queue {
    items: VecDeque<Outbound>,
    closed: bool,
}

/// The lock's data even if a holder panicked: every update above leaves it consistent.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A module's per-session slots (see `SessionInfo::data`).
type DataSlots = Vec<(std::any::TypeId, Arc<dyn std::any::Any + Send + Sync>)>;

fn find_data<T: std::any::Any + Send + Sync>(slots: &DataSlots) -> Option<Arc<T>> {
    let id = std::any::TypeId::of::<T>();
    slots
        .iter()
        .find(|(t, _)| *t == id)
        .and_then(|(_, v)| v.clone().downcast::<T>().ok())
}

/// Largest batch the writer takes off the queue for one write.
const BATCH_BYTES: usize = 64 * 1024;

/// The write path of a session: its queue, taken off in batches, with what was taken but
/// not written kept for the next connection. Stream management attaches at `written` (what
/// the client may acknowledge) and `keep_unsent` (what to resend); client state indication
/// at `next_batch` (what to hold back).
pub struct Outbox {
    info: Arc<SessionInfo>,
    /// Taken from the queue but not written when a connection ended.
    unsent: Vec<WireStanza>,
}

impl Outbox {
    /// The next batch to write: what a previous connection left unsent first, then up to
    /// `BATCH_BYTES` of the queue. Cancel-safe. `None` once the queue is closed.
    pub async fn next_batch(&mut self) -> Option<Vec<Outbound>> {
        if !self.unsent.is_empty() {
            return Some(self.unsent.drain(..).map(Outbound::replayed).collect());
        }
        loop {
            {
                let mut q = lock(&self.info.queue);
                if let Some(first) = q.items.pop_front() {
                    let mut size = first.data.len();
                    let mut batch = vec![first];
                    while size < BATCH_BYTES {
                        let Some(more) = q.items.pop_front() else {
                            break;
                        };
                        size += more.data.len();
                        batch.push(more);
                    }
                    if q.items.is_empty() {
                        // Most sessions are idle most of the time: hold no queue memory then.
                        q.items = VecDeque::new();
                    }
                    return Some(batch);
                }
                if q.closed {
                    return None;
                }
            }
            self.info.queue_ready.notified().await;
        }
    }

    /// Everything queued right now, without waiting.
    pub fn drain_now(&mut self) -> Vec<Outbound> {
        let mut batch: Vec<Outbound> = self.unsent.drain(..).map(Outbound::replayed).collect();
        batch.extend(std::mem::take(&mut lock(&self.info.queue).items));
        batch
    }

    /// The batch reached the connection: stored stanzas are confirmed to their senders, and
    /// the session's write observer (stream management counting what the client may
    /// acknowledge) sees what was written.
    pub fn written(&mut self, batch: Vec<Outbound>) {
        if let Some(observer) = self.info.write_observer() {
            let stanzas: Vec<WireStanza> = batch.iter().map(|o| o.data.clone()).collect();
            observer.written(&self.info, &stanzas);
        }
        for o in batch {
            self.info.dequeued(&o);
            if let Some(ack) = o.written {
                let _ = ack.send(());
            }
        }
    }

    /// The batch did not reach the connection: kept, to be written first on the next one or
    /// routed again when the session ends. Stored stanzas are not kept: they stay in
    /// storage (their senders learn they were not written).
    pub fn keep_unsent(&mut self, batch: Vec<Outbound>) {
        for o in batch {
            self.info.dequeued(&o);
            if o.written.is_none() {
                self.unsent.push(o.data);
            }
        }
    }

    /// Puts stanzas in front of the queue, to be written first on this connection (stream
    /// management resending what the client had not acknowledged when it resumed).
    pub fn resend(&mut self, stanzas: Vec<WireStanza>) {
        let later = std::mem::replace(&mut self.unsent, stanzas);
        self.unsent.extend(later);
    }

    /// Closes the queue and returns everything that was never written.
    pub fn close(mut self) -> Vec<WireStanza> {
        let mut out = std::mem::take(&mut self.unsent);
        let queued = {
            let mut q = lock(&self.info.queue);
            q.closed = true;
            std::mem::take(&mut q.items)
        };
        for o in queued {
            self.info.dequeued(&o);
            if o.written.is_none() {
                out.push(o.data);
            }
        }
        out
    }
}

impl Drop for Outbox {
    /// Nothing is queued for a session nobody will write: senders learn it (`send` is
    /// false) and route elsewhere, as with a closed channel.
    fn drop(&mut self) {
        let dropped = {
            let mut q = lock(&self.info.queue);
            q.closed = true;
            std::mem::take(&mut q.items)
        };
        drop(dropped);
    }
}

impl Outbound {
    fn replayed(data: WireStanza) -> Outbound {
        Outbound {
            data,
            written: None,
            own: false,
            replay: true,
        }
    }
}

/// A detach request under way (`SessionInfo::request_detach`); withdrawn when dropped.
pub(crate) struct DetachRequest<'a> {
    info: &'a SessionInfo,
}

impl Drop for DetachRequest<'_> {
    fn drop(&mut self) {
        self.info.detach_pending.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A bound session apart from any connection: its shared state, its write path and the
/// requests to end it. A connection carries it while attached; when the connection drops it
/// can be parked (XEP-0198 resumption) and picked up by another (see `crate::detach`).
pub struct Session {
    pub info: Arc<SessionInfo>,
    pub outbox: Outbox,
}

impl Session {
    /// The session's write path; requests to end it arrive through
    /// `SessionInfo::close_requested`.
    pub fn new(info: Arc<SessionInfo>) -> Session {
        Session {
            outbox: Outbox {
                info: info.clone(),
                unsent: Vec::new(),
            },
            info,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_proto::StreamErrorCondition;

    fn session() -> Session {
        let jid = FullJid::new("a@localhost/r").expect("jid");
        Session::new(Arc::new(SessionInfo::new(1, jid, 100, 1 << 20)))
    }

    fn stanza(i: usize) -> WireStanza {
        WireStanza::new(bytes::Bytes::from(format!("<message id='{i}'/>")))
    }

    #[tokio::test]
    async fn queue_keeps_order_and_holds_no_memory_once_drained() {
        let mut s = session();
        for i in 0..40 {
            assert!(s.info.send(stanza(i)));
        }
        let batch = s.outbox.next_batch().await.expect("batch");
        assert_eq!(batch.len(), 40);
        for (i, o) in batch.iter().enumerate() {
            assert_eq!(o.data.len(), format!("<message id='{i}'/>").len());
        }
        s.outbox.written(batch);
        assert_eq!(lock(&s.info.queue).items.capacity(), 0);
        // The reader waits, and wakes for what is queued later.
        let info = s.info.clone();
        let later = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            info.send(stanza(99))
        });
        let batch = tokio::time::timeout(std::time::Duration::from_secs(5), s.outbox.next_batch())
            .await
            .expect("woken")
            .expect("batch");
        assert!(later.await.expect("task"));
        assert_eq!(batch.len(), 1);
    }

    #[tokio::test]
    async fn nothing_is_queued_once_the_outbox_is_gone() {
        let s = session();
        let info = s.info.clone();
        assert!(info.send(stanza(1)));
        let unsent = s.outbox.close();
        assert_eq!(unsent.len(), 1);
        assert!(!info.send(stanza(2)), "queued for a session nobody writes");
        assert_eq!(info.queued.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn the_first_close_request_wins() {
        let s = session();
        s.info.close(StreamError::with_text(
            StreamErrorCondition::Conflict,
            "one",
        ));
        s.info.close(StreamError::with_text(
            StreamErrorCondition::PolicyViolation,
            "two",
        ));
        let first = s.info.close_requested().await;
        assert_eq!(first.condition, StreamErrorCondition::Conflict);
        let none = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            s.info.close_requested(),
        )
        .await;
        assert!(none.is_err(), "a request was taken twice");
    }

    /// A detach request made before a connection took the session (a resumption that lost
    /// the race for it, still winding down) is not for that connection; one made after is.
    #[tokio::test]
    async fn a_detach_request_older_than_the_taking_is_ignored() {
        let s = session();
        let older = s.info.request_detach();
        let since = s.info.detach_epoch();
        let waits = |since| {
            let info = s.info.clone();
            async move {
                tokio::time::timeout(
                    std::time::Duration::from_millis(100),
                    info.detach_requested(since),
                )
                .await
                .is_ok()
            }
        };
        assert!(!waits(since).await, "an older request detached the session");
        let newer = s.info.request_detach();
        assert!(waits(since).await, "a newer request is ignored");
        drop(newer);
        drop(older);
        assert!(!waits(since).await, "a withdrawn request still detaches");
    }
}
