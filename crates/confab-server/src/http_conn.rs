//! Serving the HTTP listeners' connections (`[http] port` and `tls_port`, and modules' own
//! listeners such as the admin console) under the `[http]` limits: a cap on the
//! connections one listener holds, a deadline for each request's headers, an idle
//! timeout between requests on a kept-alive connection, and bounds on the request head.
//!
//! `axum::serve` has none of these (it sets no timer for hyper, so hyper's own header
//! timeout never runs), so each connection is driven here with hyper directly. A watchdog
//! beside each connection follows what it is doing:
//! - *head*: from the connection's start, or from the first byte after a finished request,
//!   until the request's headers are complete — bounded by `header_timeout`, however
//!   slowly the bytes trickle in;
//! - *serving*: a request is being answered (a BOSH long-poll, an upload, a slow handler)
//!   — no deadline here; the handlers bound their own time;
//! - *idle*: nothing under way on a kept-alive connection — bounded by `idle_timeout`.
//!
//! In every phase a write to the client that makes no progress for `write_timeout` (a
//! client that asked for a large download and does not read it) cuts the connection; a
//! BOSH long-poll waits on its handler, not on a write, so it is not affected.
//!
//! One client address holds at most `max_connections_per_ip` connections of a listener
//! (the socket's peer address: forwarding headers are not believed here); more are closed
//! at once. At `max_connections` the oldest idle kept-alive connection is closed to make
//! room for a new one; with none idle, new connections wait in the kernel's backlog.
//!
//! A WebSocket leaves the connection after its upgrade and no longer answers to the
//! watchdog; its stream has the c2s timeouts. Its permit of the listener's cap stays with
//! its socket, so the cap counts every open connection.

use crate::config::HttpSection;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tower_service::Service;

/// The `[http]` limits every connection of a listener is served under.
#[derive(Clone, Debug)]
pub struct HttpLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub write_timeout: Duration,
    /// `[http] trusted_proxies`: a reverse proxy carries many clients on its address, so
    /// the per-address cap does not apply to it (the global cap still does).
    pub trusted: Arc<crate::http::TrustedProxies>,
}

/// How often a listener at its cap, holding an accepted connection, looks again for an
/// idle connection to close (one may have become idle since the last look).
const EVICT_RETRY: Duration = Duration::from_millis(500);

/// hyper's default read buffer limit (8 KiB + 100 × 4 KiB); kept as the floor so that
/// request bodies are read in chunks as large as before.
const HYPER_DEFAULT_MAX_BUF: usize = 8192 + 4096 * 100;

impl HttpLimits {
    pub fn from_config(http: &HttpSection) -> HttpLimits {
        HttpLimits {
            header_timeout: Duration::from_secs(http.header_timeout),
            idle_timeout: Duration::from_secs(http.idle_timeout),
            max_header_bytes: http.max_header_bytes,
            max_headers: http.max_headers,
            max_connections: http.max_connections,
            max_connections_per_ip: http.max_connections_per_ip,
            write_timeout: Duration::from_secs(http.write_timeout),
            trusted: Arc::new(crate::http::TrustedProxies::from_config(http)),
        }
    }
}

/// Serves `app` on `listener` until `stop` changes (or its sender is gone). Handlers see
/// the peer as `ConnectInfo<SocketAddr>`, as with `into_make_service_with_connect_info`.
pub fn serve<L>(
    mut listener: L,
    app: axum::Router,
    limits: HttpLimits,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    tokio::spawn(async move {
        let cap = Arc::new(Semaphore::new(limits.max_connections));
        let places = Arc::new(Places::default());
        let mut full_reported = false;
        let mut refused = Refused::default();
        loop {
            // axum's listeners retry failed accepts themselves (with a pause).
            let (io, peer) = tokio::select! {
                c = listener.accept() => c,
                _ = stop.changed() => return,
            };
            let per_ip = if limits.trusted.is_trusted(peer.ip()) {
                limits.max_connections
            } else {
                limits.max_connections_per_ip
            };
            let Some(place) = places.claim(peer.ip(), per_ip) else {
                // Closed at once, so one address cannot take the listener's places.
                drop(io);
                refused.note(peer.ip(), limits.max_connections_per_ip);
                continue;
            };
            let permit = match cap.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(TryAcquireError::Closed) => return,
                Err(TryAcquireError::NoPermits) => {
                    if !full_reported {
                        // Once per time the cap is reached, not once per connection.
                        tracing::warn!(
                            max_connections = limits.max_connections,
                            "http listener at its connection limit; closing idle connections, new ones wait"
                        );
                        full_reported = true;
                    }
                    loop {
                        places.evict_oldest_idle();
                        tokio::select! {
                            p = cap.clone().acquire_owned() => match p {
                                Ok(p) => break p,
                                Err(_) => return,
                            },
                            _ = tokio::time::sleep(EVICT_RETRY) => {}
                            _ = stop.changed() => return,
                        }
                    }
                }
            };
            if cap.available_permits() > 0 {
                full_reported = false;
            }
            tokio::spawn(connection(
                io,
                peer,
                app.clone(),
                limits.clone(),
                Held {
                    _permit: permit,
                    place,
                },
                stop.clone(),
            ));
        }
    })
}

/// Logs connections refused for their address's cap: at most once a second, with how
/// many, so a flood of them does not flood the log.
#[derive(Default)]
struct Refused {
    since_log: u64,
    last_log: Option<Instant>,
}

impl Refused {
    fn note(&mut self, ip: IpAddr, cap: usize) {
        self.since_log += 1;
        let now = Instant::now();
        if self
            .last_log
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            tracing::warn!(
                %ip,
                max_connections_per_ip = cap,
                refused = self.since_log,
                "http: connections over the per-address limit closed"
            );
            self.since_log = 0;
            self.last_log = Some(now);
        }
    }
}

/// The connections of one listener: how many each address holds, and what each is doing
/// (to find an idle one to close at the cap).
#[derive(Default)]
struct Places {
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    conns: Mutex<HashMap<u64, Arc<Activity>>>,
    next_id: AtomicU64,
}

impl Places {
    /// A place for a connection from `ip`, unless that address holds `cap` already.
    fn claim(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Option<Place> {
        // An IPv4 client reaching a dual-stack socket is the same client as over IPv4.
        let ip = ip.to_canonical();
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(Place {
            places: self.clone(),
            ip,
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
        })
    }

    fn register(&self, id: u64, activity: Arc<Activity>) {
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, activity);
    }

    /// Asks the connection idle the longest to close; false if none is idle. A scan of
    /// the listener's connections, done only at the cap when a new connection waits.
    fn evict_oldest_idle(&self) -> bool {
        let conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        let oldest = conns
            .values()
            .filter_map(|a| a.idle_since().map(|t| (t, a)))
            .min_by_key(|(t, _)| *t)
            .map(|(_, a)| a.clone());
        drop(conns);
        oldest.is_some_and(|a| a.evict())
    }
}

/// A connection's count against its address and its entry among the listener's
/// connections, given back when the socket closes.
struct Place {
    places: Arc<Places>,
    ip: IpAddr,
    id: u64,
}

impl Drop for Place {
    fn drop(&mut self) {
        {
            let mut per_ip = self.places.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = per_ip.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    per_ip.remove(&self.ip);
                }
            }
        }
        self.places
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

/// What an open connection holds of its listener, for as long as its socket is open.
struct Held {
    _permit: OwnedSemaphorePermit,
    place: Place,
}

/// One connection: hyper's HTTP/1 with upgrades, beside the watchdog.
async fn connection<I>(
    io: I,
    peer: SocketAddr,
    app: axum::Router,
    limits: HttpLimits,
    held: Held,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    held.place.places.register(held.place.id, activity.clone());
    // However this returns (an upgrade included), the watchdog no longer follows the
    // socket, so it is no longer a candidate for closing at the cap.
    let _detach = Detach(activity.clone());
    let io = Watched {
        io,
        activity: activity.clone(),
        _held: held,
    };
    let service = hyper::service::service_fn({
        let activity = activity.clone();
        move |req: hyper::Request<Incoming>| {
            let request = Request::new(activity.clone());
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(ConnectInfo(peer));
            let mut app = app.clone();
            async move {
                let res = app.call(req).await?;
                // The request is under way until its response body is written (or dropped).
                Ok::<_, Infallible>(res.map(|b| Body::new(Tracked { body: b, request })))
            }
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .max_headers(limits.max_headers)
        .max_header_size(limits.max_header_bytes)
        // hyper also refuses a head that outgrows its read buffer, whose default limit
        // (~400 KiB) would otherwise be the real bound on `max_header_bytes`.
        .max_buf_size(limits.max_header_bytes.max(HYPER_DEFAULT_MAX_BUF))
        // hyper's own header timer (off anyway without a timer) would also cut idle
        // connections at the header deadline; the watchdog keeps the two apart.
        .header_read_timeout(None);
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        let deadline = activity.deadline(&limits);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "http connection ended");
                }
                return;
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = activity.changed.notified() => {
                if activity.evicted() {
                    tracing::debug!(%peer, "http: idle connection closed to make room at the connection limit");
                    return;
                }
            }
            _ = sleep_until(deadline) => {
                match activity.expired(&limits, Instant::now()) {
                    Some(Phase::Write) => {
                        tracing::info!(%peer, timeout = ?limits.write_timeout, "http: the client did not read the response in time; closing");
                        return;
                    }
                    Some(Phase::Head) => {
                        tracing::info!(%peer, timeout = ?limits.header_timeout, "http: request headers not complete in time; closing");
                        return;
                    }
                    Some(Phase::Idle) => {
                        tracing::debug!(%peer, "http: idle connection closed");
                        return;
                    }
                    None => {}
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Head,
    Idle,
    /// A write to the client has been blocked past `write_timeout`.
    Write,
}

/// Marks a connection's activity as no longer watched when its watchdog ends.
struct Detach(Arc<Activity>);

impl Drop for Detach {
    fn drop(&mut self) {
        self.0.lock().detached = true;
    }
}

/// What one connection is doing; changed by its reads and requests, read by its watchdog.
struct Activity {
    state: Mutex<State>,
    /// Wakes the watchdog when the deadline may have moved (permits are stored, so a
    /// change made while the watchdog is not waiting is not lost).
    changed: Notify,
}

struct State {
    /// Requests dispatched whose response is not finished.
    in_flight: usize,
    /// When the head of the next request began (the connection's start counts).
    head_since: Option<Instant>,
    /// When the connection last became idle.
    idle_since: Instant,
    /// Since when a write to the client has been blocked (None: not blocked).
    write_blocked_since: Option<Instant>,
    /// Asked to close (while idle) to make room at the listener's cap.
    evict: bool,
    /// The watchdog has ended (the connection closed or was upgraded).
    detached: bool,
}

impl Activity {
    fn new() -> Activity {
        let now = Instant::now();
        Activity {
            state: Mutex::new(State {
                in_flight: 0,
                head_since: Some(now),
                idle_since: now,
                write_blocked_since: None,
                evict: false,
                detached: false,
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing panics while holding it; a poisoned lock still holds consistent numbers.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes arrived: with nothing under way, they begin the next request's head.
    fn read(&self) {
        let mut s = self.lock();
        if s.in_flight == 0 && s.head_since.is_none() {
            s.head_since = Some(Instant::now());
            // No longer idle: not to be closed for room any more.
            s.evict = false;
            drop(s);
            self.changed.notify_one();
        }
    }

    /// A write to the client could not proceed (the socket's buffer is full).
    fn write_blocked(&self) {
        let mut s = self.lock();
        if s.write_blocked_since.is_none() {
            s.write_blocked_since = Some(Instant::now());
            drop(s);
            self.changed.notify_one();
        }
    }

    /// A write to the client went through.
    fn write_progressed(&self) {
        let mut s = self.lock();
        if s.write_blocked_since.is_some() {
            s.write_blocked_since = None;
            drop(s);
            self.changed.notify_one();
        }
    }

    fn deadline(&self, limits: &HttpLimits) -> Option<Instant> {
        let s = self.lock();
        let write = s.write_blocked_since.map(|t| t + limits.write_timeout);
        let phase = if s.in_flight > 0 {
            None
        } else {
            Some(match s.head_since {
                Some(t) => t + limits.header_timeout,
                None => s.idle_since + limits.idle_timeout,
            })
        };
        match (write, phase) {
            (Some(w), Some(p)) => Some(w.min(p)),
            (w, p) => w.or(p),
        }
    }

    /// The phase whose deadline has passed at `now`, if any.
    fn expired(&self, limits: &HttpLimits, now: Instant) -> Option<Phase> {
        let s = self.lock();
        if s.write_blocked_since
            .is_some_and(|t| now >= t + limits.write_timeout)
        {
            return Some(Phase::Write);
        }
        if s.in_flight > 0 {
            return None;
        }
        match s.head_since {
            Some(t) => (now >= t + limits.header_timeout).then_some(Phase::Head),
            None => (now >= s.idle_since + limits.idle_timeout).then_some(Phase::Idle),
        }
    }

    /// Since when the connection has been idle between requests, if it is and its
    /// watchdog could close it.
    fn idle_since(&self) -> Option<Instant> {
        let s = self.lock();
        (s.in_flight == 0 && s.head_since.is_none() && !s.evict && !s.detached)
            .then_some(s.idle_since)
    }

    /// Asks the watchdog to close the connection if it is still idle; false if not.
    fn evict(&self) -> bool {
        let mut s = self.lock();
        if s.in_flight > 0 || s.head_since.is_some() || s.detached {
            return false;
        }
        s.evict = true;
        drop(s);
        self.changed.notify_one();
        true
    }

    /// Whether the connection is to close now to make room (still idle since asked).
    fn evicted(&self) -> bool {
        let s = self.lock();
        s.evict && s.in_flight == 0 && s.head_since.is_none()
    }
}

/// One dispatched request, from its complete head to the end of its response.
struct Request {
    activity: Arc<Activity>,
}

impl Request {
    fn new(activity: Arc<Activity>) -> Request {
        {
            let mut s = activity.lock();
            s.in_flight += 1;
            s.head_since = None;
        }
        activity.changed.notify_one();
        Request { activity }
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        {
            let mut s = self.activity.lock();
            s.in_flight = s.in_flight.saturating_sub(1);
            if s.in_flight == 0 {
                s.idle_since = Instant::now();
            }
        }
        self.activity.changed.notify_one();
    }
}

/// A response body that holds its request open until it is written or dropped.
struct Tracked {
    body: Body,
    #[allow(dead_code)] // held for its Drop
    request: Request,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The connection's socket, reporting reads and blocked writes to the watchdog and
/// holding the connection's place in the listener's caps for as long as it is open
/// (through an upgrade too).
struct Watched<I> {
    io: I,
    activity: Arc<Activity>,
    _held: Held,
}

impl<I> Watched<I> {
    /// Notes whether a write (or flush) went through or is blocked.
    fn wrote<T>(&self, r: Poll<T>) -> Poll<T> {
        match r {
            Poll::Pending => self.activity.write_blocked(),
            Poll::Ready(_) => self.activity.write_progressed(),
        }
        r
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        r
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.wrote(r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        self.wrote(r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.wrote(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> HttpLimits {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            max_connections: 10,
            max_connections_per_ip: 4,
            write_timeout: Duration::from_secs(30),
            trusted: Default::default(),
        }
    }

    #[test]
    fn the_phases_have_their_deadlines() {
        let l = limits();
        let start = Instant::now();
        let a = Arc::new(Activity::new());
        // A new connection is in its first request's head.
        let d = a.deadline(&l).expect("a head deadline");
        assert!(d >= start + l.header_timeout && d <= Instant::now() + l.header_timeout);
        assert_eq!(a.expired(&l, d), Some(Phase::Head));
        assert_eq!(a.expired(&l, d - Duration::from_millis(1)), None);
        // Serving: no deadline at all; bytes meanwhile do not start a head.
        let r = Request::new(a.clone());
        a.read();
        assert_eq!(a.deadline(&l), None);
        assert_eq!(a.expired(&l, start + Duration::from_secs(3600)), None);
        // Done: idle, with the idle deadline; the header one does not apply.
        let before = Instant::now();
        drop(r);
        let d = a.deadline(&l).expect("an idle deadline");
        assert!(d >= before + l.idle_timeout && d <= Instant::now() + l.idle_timeout);
        assert_eq!(a.expired(&l, before + l.header_timeout), None);
        assert_eq!(a.expired(&l, d), Some(Phase::Idle));
        // The next request's first byte starts its head deadline; more bytes do not move it.
        a.read();
        let head = a.deadline(&l).expect("a head deadline");
        assert!(head < d);
        std::thread::sleep(Duration::from_millis(5));
        a.read();
        assert_eq!(a.deadline(&l), Some(head));
    }

    #[test]
    fn a_blocked_write_has_its_deadline_in_every_phase() {
        let l = limits();
        let a = Arc::new(Activity::new());
        let r = Request::new(a.clone());
        assert_eq!(a.deadline(&l), None);
        let before = Instant::now();
        a.write_blocked();
        let d = a.deadline(&l).expect("a write deadline while serving");
        assert!(d >= before + l.write_timeout && d <= Instant::now() + l.write_timeout);
        assert_eq!(a.expired(&l, d - Duration::from_millis(1)), None);
        assert_eq!(a.expired(&l, d), Some(Phase::Write));
        // More blocked attempts do not move it; progress clears it.
        a.write_blocked();
        assert_eq!(a.deadline(&l), Some(d));
        a.write_progressed();
        assert_eq!(a.deadline(&l), None);
        assert_eq!(a.expired(&l, d), None);
        drop(r);
    }

    #[test]
    fn only_idle_connections_are_closed_for_room() {
        let places = Arc::new(Places::default());
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let mut held = Vec::new();
        let mut acts = Vec::new();
        for _ in 0..3 {
            let p = places.claim(ip, 3).expect("a place");
            let a = Arc::new(Activity::new());
            places.register(p.id, a.clone());
            acts.push(a);
            held.push(p);
        }
        // The per-address cap; the mapped form of the address is the same client.
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("ip");
        assert!(places.claim(mapped, 3).is_none());
        assert!(places.claim("192.0.2.2".parse().expect("ip"), 3).is_some());
        // All in their first head: none is idle.
        assert!(!places.evict_oldest_idle());
        // 1 becomes idle first, then 2; 0 is serving.
        let _serving = Request::new(acts[0].clone());
        drop(Request::new(acts[1].clone()));
        std::thread::sleep(Duration::from_millis(2));
        drop(Request::new(acts[2].clone()));
        assert!(places.evict_oldest_idle());
        assert!(acts[1].evicted() && !acts[2].evicted() && !acts[0].evicted());
        // Next the other idle one; then none is left.
        assert!(places.evict_oldest_idle());
        assert!(acts[2].evicted());
        assert!(!places.evict_oldest_idle());
        // A place given back frees its address's count.
        held.pop();
        assert!(places.claim(ip, 3).is_some());
    }
}
