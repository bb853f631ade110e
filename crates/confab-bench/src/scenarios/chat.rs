//! `chat`: pairs of sessions; the first of each pair sends chat messages to the second's
//! full JID.
//!
//! - Closed loop (default): W messages in flight per pair; the receiver hands a permit back
//!   to its sender for every message it gets, so the server's speed sets the pace.
//! - Open loop (`--rate R`): a scheduler thread releases message k at the fixed intended
//!   time `start + k/R`, whatever happened to earlier messages, and latency is measured
//!   from that intended time, so a slow server cannot hide its delay by slowing the sender
//!   (no coordinated omission). The scheduler's own lag is reported too.
//!
//! Bodies carry the sender, a sequence number and the (intended) send time, so delivery,
//! loss and order are counted exactly: lost = sent − delivered after a drain wait.

use crate::conn::{login_available, reply_to_request, since, write_raw, Body};
use crate::opts::{Target, MAX_MESSAGES};
use crate::report::{Errors, Progress, Report};
use crate::stats::{rate, Histogram, Schedule};
use crate::{for_each_index, options_json, setup_deadline, BenchError};
use confab_proto::ns;
use confab_proto::xml::Element;
use confab_stream::client::ClientSession;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Semaphore};

/// Options of the chat scenario.
#[derive(Clone, Debug, clap::Args, Serialize)]
pub struct ChatOpts {
    /// Pairs of sessions (2 sockets each).
    #[arg(long, default_value_t = 10)]
    pub pairs: usize,
    /// Closed loop: messages in flight per pair.
    #[arg(long, default_value_t = 10)]
    pub window: usize,
    /// Open loop: messages per second over all pairs, sent at fixed intended times.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Seconds to wait after the last send for messages still on their way.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// Bytes of padding added to every body.
    #[arg(long, default_value_t = 0)]
    pub body_padding: usize,
}

impl Default for ChatOpts {
    fn default() -> Self {
        ChatOpts {
            pairs: 10,
            window: 10,
            rate: None,
            drain: 5.0,
            body_padding: 0,
        }
    }
}

/// Largest body padding accepted (servers limit stanza sizes anyway).
const MAX_PADDING: usize = 64 * 1024;
/// Most messages in flight per pair.
const MAX_WINDOW: usize = 10_000;
/// Highest open-loop rate accepted, messages per second.
const MAX_RATE: u64 = 1_000_000;

/// Samples kept by a task before they go into the shared histogram (one lock per batch).
const FLUSH_EVERY: usize = 256;

/// The scheduler sleeps while more than this is left before a due time...
const SLEEP_ABOVE: Duration = Duration::from_millis(2);
/// ...waking this much early, since a sleep overshoots by up to tens of microseconds and
/// by more on a busy machine...
const SLEEP_MARGIN: Duration = Duration::from_millis(1);
/// ...then yields the CPU, and spins for the last stretch (below this).
const SPIN_BELOW: Duration = Duration::from_micros(100);

/// Waits on this thread until `t`: sleep, then yield, then spin, so the wake-up is precise
/// to a few microseconds without burning a core for the whole wait (tokio's timer has
/// millisecond granularity, too coarse for the open loop).
pub fn wait_until(t: Instant) {
    loop {
        let now = Instant::now();
        if now >= t {
            return;
        }
        let left = t - now;
        if left > SLEEP_ABOVE {
            std::thread::sleep(left - SLEEP_MARGIN);
        } else if left > SPIN_BELOW {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Latency samples buffered by one task.
pub(crate) struct Samples<'a> {
    buf: Vec<u64>,
    into: &'a Mutex<Histogram>,
}

impl<'a> Samples<'a> {
    pub(crate) fn new(into: &'a Mutex<Histogram>) -> Self {
        Samples {
            buf: Vec::new(),
            into,
        }
    }

    pub(crate) fn record(&mut self, v: u64) {
        self.buf.push(v);
        if self.buf.len() >= FLUSH_EVERY {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let mut h = self.into.lock().unwrap_or_else(|p| p.into_inner());
        for v in self.buf.drain(..) {
            h.record(v);
        }
    }
}

impl Drop for Samples<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

struct Shared {
    epoch: Instant,
    padding: usize,
    timeout: Duration,
    sent: AtomicU64,
    delivered: AtomicU64,
    /// Delivered with a sequence number other than the next expected one.
    out_of_order: AtomicU64,
    /// Error replies to our messages.
    bounced: AtomicU64,
    /// Messages whose body this tool did not write.
    foreign: AtomicU64,
    /// Sessions that ended before the run did.
    sessions_lost: AtomicU64,
    /// Senders still sending; the drain starts when none is.
    senders_active: AtomicUsize,
    latency: Mutex<Histogram>,
    send_lag: Mutex<Histogram>,
    errors: Errors,
}

fn body_of(e: &Element) -> Option<Body> {
    e.get_child("body", ns::CLIENT)
        .and_then(|b| Body::parse(&b.text_content()))
}

/// Closed loop: the next permit (never resolves without a semaphore).
pub(crate) async fn next_permit(p: &Option<Arc<Semaphore>>) -> bool {
    match p {
        Some(s) => match s.acquire().await {
            Ok(permit) => {
                // Given back by the receiver when the message arrives.
                permit.forget();
                true
            }
            Err(_) => false,
        },
        None => std::future::pending().await,
    }
}

/// Open loop: the next intended send time (never resolves without a feed).
pub(crate) async fn next_due(rx: &mut Option<mpsc::UnboundedReceiver<Instant>>) -> Option<Instant> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// How a sender gets its messages: permits (closed loop) or intended times (open loop).
struct Feed {
    permits: Option<Arc<Semaphore>>,
    until: Instant,
    due: Option<mpsc::UnboundedReceiver<Instant>>,
}

async fn sender(
    pair: u32,
    mut s: ClientSession,
    to: String,
    sh: Arc<Shared>,
    mut feed: Feed,
    mut stop: watch::Receiver<bool>,
) {
    let mut seq = 0u64;
    let mut active = true;
    let mut lags = Samples::new(&sh.send_lag);
    let closed = feed.permits.is_some();
    loop {
        if active && closed && Instant::now() >= feed.until {
            active = false;
            sh.senders_active.fetch_sub(1, Ordering::AcqRel);
        }
        let (intended, stamp) = tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = s.stream.next_element() => {
                match r {
                    Ok(e) => {
                        if e.name == "message" && e.get_attr("type") == Some("error") {
                            sh.bounced.fetch_add(1, Ordering::Relaxed);
                            if let Some(p) = &feed.permits {
                                p.add_permits(1);
                            }
                        } else if let Some(reply) = reply_to_request(&e) {
                            if let Err(e) = write_raw(&mut s, &reply, sh.timeout).await {
                                sh.errors.record(&e);
                                sh.sessions_lost.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                    Err(e) => {
                        sh.errors.record_text(&format!("sender stream: {e}"));
                        sh.sessions_lost.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
                continue;
            }
            ok = next_permit(&feed.permits), if active && closed => {
                if !ok {
                    break;
                }
                let now = Instant::now();
                if now >= feed.until {
                    if let Some(p) = &feed.permits {
                        p.add_permits(1);
                    }
                    continue;
                }
                (now, false)
            }
            due = next_due(&mut feed.due), if active && !closed => match due {
                Some(t) => (t, true),
                None => {
                    // The scheduler is done and everything it released was sent.
                    active = false;
                    sh.senders_active.fetch_sub(1, Ordering::AcqRel);
                    continue;
                }
            },
            _ = tokio::time::sleep_until(feed.until.into()), if active && closed => continue,
        };
        // Counted before the write, so the drain never sees delivered == sent while a
        // message is being written.
        if sh.sent.fetch_add(1, Ordering::AcqRel) >= MAX_MESSAGES {
            sh.sent.fetch_sub(1, Ordering::AcqRel);
            if active {
                active = false;
                sh.senders_active.fetch_sub(1, Ordering::AcqRel);
            }
            continue;
        }
        let body = Body {
            sender: pair,
            seq,
            sent_ns: since(sh.epoch, intended),
        };
        seq += 1;
        let msg = crate::conn::message(&to, &body, sh.padding);
        if let Err(e) = write_raw(&mut s, &msg, sh.timeout).await {
            sh.errors.record(&e);
            sh.sessions_lost.fetch_add(1, Ordering::Relaxed);
            break;
        }
        if stamp {
            lags.record(since(intended, Instant::now()));
        }
    }
    if active {
        sh.senders_active.fetch_sub(1, Ordering::AcqRel);
    }
    drop(lags);
    if !*stop.borrow() {
        return; // the stream failed; nothing to close politely
    }
    if let Err(e) = crate::conn::close(s, sh.timeout).await {
        sh.errors.record_text(&format!("close: {e}"));
    }
}

async fn receiver(
    mut s: ClientSession,
    sh: Arc<Shared>,
    permits: Option<Arc<Semaphore>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut expected = 0u64;
    let mut lat = Samples::new(&sh.latency);
    loop {
        let e = tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = s.stream.next_element() => match r {
                Ok(e) => e,
                Err(e) => {
                    sh.errors.record_text(&format!("receiver stream: {e}"));
                    sh.sessions_lost.fetch_add(1, Ordering::Relaxed);
                    drop(lat);
                    return;
                }
            },
        };
        let now = Instant::now();
        if e.name == "message" {
            if e.get_attr("type") == Some("error") {
                sh.bounced.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let Some(b) = body_of(&e) else {
                sh.foreign.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            lat.record(since(sh.epoch, now).saturating_sub(b.sent_ns));
            if b.seq != expected {
                sh.out_of_order.fetch_add(1, Ordering::Relaxed);
            }
            expected = b.seq.saturating_add(1);
            sh.delivered.fetch_add(1, Ordering::AcqRel);
            if let Some(p) = &permits {
                p.add_permits(1);
            }
        } else if let Some(reply) = reply_to_request(&e) {
            if let Err(e) = write_raw(&mut s, &reply, sh.timeout).await {
                sh.errors.record(&e);
                sh.sessions_lost.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
    drop(lat);
    if let Err(e) = crate::conn::close(s, sh.timeout).await {
        sh.errors.record_text(&format!("close: {e}"));
    }
}

/// A run's open-loop scheduler thread (none in closed loop) and how to end it.
pub(crate) struct OpenLoop {
    thread: Option<std::thread::JoinHandle<(Histogram, u64)>>,
    stop: Arc<AtomicBool>,
}

impl OpenLoop {
    /// With a rate, starts releasing messages to `feeds` from `start` for `duration` (at
    /// most `MAX_MESSAGES`), never past `hard_end`.
    pub(crate) fn start(
        rate: Option<u64>,
        start: Instant,
        duration: Duration,
        hard_end: Instant,
        feeds: Vec<mpsc::UnboundedSender<Instant>>,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = rate.map(|r| {
            let sched = Schedule::new(start, r);
            let total = sched.count_within(duration).min(MAX_MESSAGES);
            let stop = stop.clone();
            std::thread::spawn(move || schedule_loop(sched, total, feeds, stop, hard_end))
        });
        OpenLoop { thread, stop }
    }

    /// Stops the scheduler; its lag (release − intended) and how many it released.
    pub(crate) async fn finish(self) -> (Histogram, u64) {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread {
            Some(h) => tokio::task::spawn_blocking(move || h.join())
                .await
                .ok()
                .and_then(|r| r.ok())
                .unwrap_or_default(),
            None => (Histogram::new(), 0),
        }
    }
}

/// The open-loop scheduler, on its own thread: releases message k to pair k mod P at its
/// intended time; returns the scheduler's lag (release − intended) and how many it
/// released. Stops early when `stop` is set or when it is past `hard_end`.
pub(crate) fn schedule_loop(
    sched: Schedule,
    total: u64,
    feeds: Vec<mpsc::UnboundedSender<Instant>>,
    stop: Arc<AtomicBool>,
    hard_end: Instant,
) -> (Histogram, u64) {
    let mut lag = Histogram::new();
    let mut released = 0u64;
    if feeds.is_empty() {
        return (lag, 0);
    }
    for k in 0..total {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let due = sched.at(k);
        wait_until(due);
        let now = Instant::now();
        if now > hard_end {
            break;
        }
        lag.record_duration(now - due);
        let i = usize::try_from(k % feeds.len() as u64).unwrap_or(0);
        if feeds[i].send(due).is_ok() {
            released += 1;
        }
    }
    (lag, released)
}

/// Polls `cond` every few milliseconds until it holds or `deadline` passes.
pub(crate) async fn wait_for(deadline: Instant, cond: impl Fn() -> bool) -> bool {
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs the chat scenario.
pub async fn run(t: &Target, o: &ChatOpts) -> Result<Report, BenchError> {
    if o.pairs == 0 {
        return Err(BenchError::Usage("--pairs must be at least 1".into()));
    }
    if o.window == 0 || o.window > MAX_WINDOW {
        return Err(BenchError::Usage(format!(
            "--window must be in 1..={MAX_WINDOW}"
        )));
    }
    if o.rate.is_some_and(|r| r == 0 || r > MAX_RATE) {
        return Err(BenchError::Usage(format!(
            "--rate must be in 1..={MAX_RATE}"
        )));
    }
    if !(0.0..=600.0).contains(&o.drain) || o.body_padding > MAX_PADDING {
        return Err(BenchError::Usage(format!(
            "--drain must be in [0, 600] seconds and --body-padding at most {MAX_PADDING}"
        )));
    }
    let n = o.pairs.saturating_mul(2);
    t.check_sockets(n)?;

    // Connect every session: session 2p sends to session 2p+1.
    let sessions: Arc<Mutex<Vec<Option<ClientSession>>>> =
        Arc::new(Mutex::new((0..n).map(|_| None).collect()));
    let errors = Arc::new(Errors::default());
    let connected = Arc::new(AtomicU64::new(0));
    {
        let progress = {
            let c = connected.clone();
            Progress::start(t.opts.quiet, "chat: connecting", move || {
                format!("{} of {n} sessions", c.load(Ordering::Relaxed))
            })
        };
        let tt = Arc::new(t.clone());
        let (ss, errs, c) = (sessions.clone(), errors.clone(), connected.clone());
        let deadline = setup_deadline(n, t.opts.concurrency, t.timeout);
        for_each_index(n, t.opts.concurrency, deadline, move |i| {
            let (tt, ss, errs, c) = (tt.clone(), ss.clone(), errs.clone(), c.clone());
            async move {
                match login_available(&tt, i, format!("c{i}")).await {
                    Ok(s) => {
                        c.fetch_add(1, Ordering::Relaxed);
                        if let Some(slot) = ss.lock().unwrap_or_else(|p| p.into_inner()).get_mut(i)
                        {
                            *slot = Some(s);
                        }
                    }
                    Err(e) => errs.record(&e),
                }
            }
        })
        .await;
        drop(progress);
    }
    let mut slots = std::mem::take(&mut *sessions.lock().unwrap_or_else(|p| p.into_inner()));
    let mut pairs = Vec::new();
    for p in 0..o.pairs {
        if let (Some(a), Some(b)) = (slots[2 * p].take(), slots[2 * p + 1].take()) {
            pairs.push((a, b));
        }
    }
    // Sessions of incomplete pairs are closed.
    for s in slots.into_iter().flatten() {
        let _ = crate::conn::close(s, t.timeout).await;
    }
    let pairs_failed = (o.pairs - pairs.len()) as u64;
    if pairs.is_empty() {
        let mut rep = Report::new("chat", options_json(&t.opts, o));
        rep.set_count("pairs_failed", pairs_failed);
        rep.errors = errors.take();
        return Ok(rep);
    }

    let cpu = crate::report::CpuProbe::start(t.opts.cpu_pid);
    let epoch = Instant::now();
    let sh = Arc::new(Shared {
        epoch,
        padding: o.body_padding,
        timeout: t.timeout,
        sent: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        out_of_order: AtomicU64::new(0),
        bounced: AtomicU64::new(0),
        foreign: AtomicU64::new(0),
        sessions_lost: AtomicU64::new(0),
        senders_active: AtomicUsize::new(pairs.len()),
        latency: Mutex::new(Histogram::new()),
        send_lag: Mutex::new(Histogram::new()),
        errors: Errors::default(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let mut feeds = Vec::new();
    // Open loop: everything is connected; the schedule starts a moment later so the
    // tasks are waiting when the first message is due.
    let start = Instant::now() + Duration::from_millis(if o.rate.is_some() { 50 } else { 0 });
    let until = start + t.duration;
    for (p, (a, b)) in pairs.into_iter().enumerate() {
        let to = b.jid.to_string();
        let permits = o.rate.is_none().then(|| Arc::new(Semaphore::new(o.window)));
        let due = if o.rate.is_some() {
            let (tx, rx) = mpsc::unbounded_channel();
            feeds.push(tx);
            Some(rx)
        } else {
            None
        };
        let feed = Feed {
            permits: permits.clone(),
            until,
            due,
        };
        let pair = u32::try_from(p).unwrap_or(u32::MAX);
        tasks.spawn(sender(pair, a, to, sh.clone(), feed, stop_rx.clone()));
        tasks.spawn(receiver(b, sh.clone(), permits, stop_rx.clone()));
    }
    let progress = {
        let sh = sh.clone();
        let label = if o.rate.is_some() {
            "chat open loop"
        } else {
            "chat"
        };
        Progress::start(t.opts.quiet, label, move || {
            format!(
                "sent {}  delivered {}",
                sh.sent.load(Ordering::Relaxed),
                sh.delivered.load(Ordering::Relaxed)
            )
        })
    };
    let open_loop = OpenLoop::start(
        o.rate,
        start,
        t.duration,
        until + t.timeout,
        std::mem::take(&mut feeds),
    );

    // Sending ends at `until` (closed loop) or when the schedule is done; then the drain.
    let senders_done = wait_for(until + t.timeout, || {
        sh.senders_active.load(Ordering::Acquire) == 0
    })
    .await;
    let (sched_lag, released) = open_loop.finish().await;
    let send_end = Instant::now();
    let drained = wait_for(send_end + Duration::from_secs_f64(o.drain), || {
        let sent = sh.sent.load(Ordering::Acquire);
        sh.delivered.load(Ordering::Acquire) + sh.bounced.load(Ordering::Acquire) >= sent
    })
    .await;
    let end = Instant::now();
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    drop(progress);

    let scenario = if o.rate.is_some() {
        "chat-open-loop"
    } else {
        "chat"
    };
    let mut rep = Report::new(scenario, options_json(&t.opts, o));
    let elapsed = end.saturating_duration_since(start);
    rep.elapsed_s = elapsed.as_secs_f64();
    let sent = sh.sent.load(Ordering::Acquire);
    let delivered = sh.delivered.load(Ordering::Acquire);
    rep.set_count("pairs", (o.pairs as u64) - pairs_failed);
    rep.set_count("pairs_failed", pairs_failed);
    rep.set_count("sent", sent);
    rep.set_count("delivered", delivered);
    rep.set_count("lost", sent.saturating_sub(delivered));
    rep.set_count("out_of_order", sh.out_of_order.load(Ordering::Relaxed));
    rep.set_count("bounced", sh.bounced.load(Ordering::Relaxed));
    rep.set_count("foreign", sh.foreign.load(Ordering::Relaxed));
    rep.set_count("sessions_lost", sh.sessions_lost.load(Ordering::Relaxed));
    rep.set_count("senders_finished_in_time", u64::from(senders_done));
    rep.set_count("drained", u64::from(drained));
    rep.set_rate("delivered_per_s", rate(delivered, elapsed));
    rep.set_rate(
        "sent_per_s",
        rate(sent, send_end.saturating_duration_since(start)),
    );
    rep.set_latency(
        "delivery",
        sh.latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .summary(),
    );
    if let Some(r) = o.rate {
        rep.set_count("scheduled", released);
        rep.set_rate("intended_per_s", r as f64);
        rep.set_latency("scheduler_lag", sched_lag.summary());
        rep.set_latency(
            "send_lag",
            sh.send_lag
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .summary(),
        );
    }
    if let Some(c) = cpu {
        c.finish(&mut rep, "message", delivered);
    }
    let mut errs = errors.take();
    for (k, v) in sh.errors.take() {
        *errs.entry(k).or_default() += v;
    }
    rep.errors = errs;
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_until_is_never_early() {
        for us in [0u64, 50, 500, 3_000] {
            let due = Instant::now() + Duration::from_micros(us);
            wait_until(due);
            assert!(Instant::now() >= due);
        }
    }

    #[test]
    fn scheduler_releases_every_message_in_order_at_its_time() {
        let (tx1, mut rx1) = mpsc::unbounded_channel();
        let (tx2, mut rx2) = mpsc::unbounded_channel();
        let sched = Schedule::new(Instant::now() + Duration::from_millis(5), 1000);
        let far = Instant::now() + Duration::from_secs(60);
        let (lag, released) = schedule_loop(
            sched,
            20,
            vec![tx1, tx2],
            Arc::new(AtomicBool::new(false)),
            far,
        );
        assert_eq!(released, 20);
        assert_eq!(lag.count(), 20);
        // Pair k mod 2 gets message k, with its intended time.
        let mut k = 0u64;
        while let Ok(due) = rx1.try_recv() {
            assert_eq!(due, sched.at(k));
            k += 2;
        }
        assert_eq!(k, 20);
        let mut k = 1u64;
        while let Ok(due) = rx2.try_recv() {
            assert_eq!(due, sched.at(k));
            k += 2;
        }
        assert_eq!(k, 21);
    }

    #[test]
    fn scheduler_stops_when_asked() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let sched = Schedule::new(Instant::now(), 1000);
        let (_, released) = schedule_loop(
            sched,
            1_000_000,
            vec![tx],
            Arc::new(AtomicBool::new(true)),
            Instant::now() + Duration::from_secs(60),
        );
        assert_eq!(released, 0);
        // Past the hard end, nothing more is released either.
        let (tx, _rx) = mpsc::unbounded_channel();
        let (_, released) = schedule_loop(
            Schedule::new(Instant::now(), 1000),
            1_000_000,
            vec![tx],
            Arc::new(AtomicBool::new(false)),
            Instant::now() + Duration::from_millis(20),
        );
        assert!(released < 100, "{released}");
    }
}
