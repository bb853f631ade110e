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
//! A WebSocket leaves the connection after its upgrade and no longer answers to the
//! watchdog; its stream has the c2s timeouts. Its permit of the listener's cap stays with
//! its socket, so the cap counts every open connection.

use crate::config::HttpSection;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tower_service::Service;

/// The `[http]` limits every connection of a listener is served under.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_connections: usize,
}

impl HttpLimits {
    pub fn from_config(http: &HttpSection) -> HttpLimits {
        HttpLimits {
            header_timeout: Duration::from_secs(http.header_timeout),
            idle_timeout: Duration::from_secs(http.idle_timeout),
            max_header_bytes: http.max_header_bytes,
            max_headers: http.max_headers,
            max_connections: http.max_connections,
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
        let mut full_reported = false;
        loop {
            if cap.available_permits() == 0 && !full_reported {
                // Once per time the cap is reached, not once per waiting connection.
                tracing::warn!(
                    max_connections = limits.max_connections,
                    "http listener at its connection limit; new connections wait"
                );
                full_reported = true;
            }
            let permit = tokio::select! {
                p = cap.clone().acquire_owned() => p,
                _ = stop.changed() => return,
            };
            let Ok(permit) = permit else { return };
            if cap.available_permits() > 0 {
                full_reported = false;
            }
            // axum's listeners retry failed accepts themselves (with a pause).
            let (io, peer) = tokio::select! {
                c = listener.accept() => c,
                _ = stop.changed() => return,
            };
            tokio::spawn(connection(
                io,
                peer,
                app.clone(),
                limits,
                permit,
                stop.clone(),
            ));
        }
    })
}

/// One connection: hyper's HTTP/1 with upgrades, beside the watchdog.
async fn connection<I>(
    io: I,
    peer: SocketAddr,
    app: axum::Router,
    limits: HttpLimits,
    permit: OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = Watched {
        io,
        activity: activity.clone(),
        _permit: permit,
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
            _ = activity.changed.notified() => {}
            _ = sleep_until(deadline) => {
                match activity.expired(&limits, Instant::now()) {
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
}

impl Activity {
    fn new() -> Activity {
        let now = Instant::now();
        Activity {
            state: Mutex::new(State {
                in_flight: 0,
                head_since: Some(now),
                idle_since: now,
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
            drop(s);
            self.changed.notify_one();
        }
    }

    fn deadline(&self, limits: &HttpLimits) -> Option<Instant> {
        let s = self.lock();
        if s.in_flight > 0 {
            return None;
        }
        Some(match s.head_since {
            Some(t) => t + limits.header_timeout,
            None => s.idle_since + limits.idle_timeout,
        })
    }

    /// The phase whose deadline has passed at `now`, if any.
    fn expired(&self, limits: &HttpLimits, now: Instant) -> Option<Phase> {
        let s = self.lock();
        if s.in_flight > 0 {
            return None;
        }
        match s.head_since {
            Some(t) => (now >= t + limits.header_timeout).then_some(Phase::Head),
            None => (now >= s.idle_since + limits.idle_timeout).then_some(Phase::Idle),
        }
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

/// The connection's socket, reporting reads to the watchdog and holding the connection's
/// permit of the listener's cap for as long as it is open (through an upgrade too).
struct Watched<I> {
    io: I,
    activity: Arc<Activity>,
    _permit: OwnedSemaphorePermit,
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
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
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
}
