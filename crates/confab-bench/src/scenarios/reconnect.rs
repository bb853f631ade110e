//! `reconnect`: churn. N sessions are held; for the duration, sessions are closed and log
//! in again (same account and resource, initial presence), `--concurrency` at a time, as
//! fast as the server allows or at `--rate` reconnections per second (reconnection k is
//! due at `start + k/rate`; its start lag is reported). Measures logins per second and
//! their latency; every held session that is left answers a ping at the end.

use super::fanout::connect_all;
use crate::conn::{close, login_available, ping};
use crate::opts::{Target, MAX_OPERATIONS};
use crate::report::{Errors, Progress, Report};
use crate::stats::{rate, Histogram, Schedule};
use crate::{options_json, BenchError};
use confab_stream::client::ClientSession;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Options of the reconnect scenario.
#[derive(Clone, Debug, Default, clap::Args, Serialize)]
pub struct ReconnectOpts {
    /// Sessions held (account i mod --users each); default: --users.
    #[arg(long)]
    pub sessions: Option<usize>,
    /// Reconnections per second over all sessions; default: as fast as --concurrency
    /// allows.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Most reconnections in the run; default: no limit but --duration.
    #[arg(long)]
    pub count: Option<u64>,
}

struct Churn {
    /// Sessions waiting for their turn, oldest first (`None`: its last login failed).
    idle: Mutex<VecDeque<(usize, Option<ClientSession>)>>,
    next: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    close_failed: AtomicU64,
    login: Mutex<Histogram>,
    reconnect: Mutex<Histogram>,
    lag: Mutex<Histogram>,
    errors: Errors,
}

async fn worker(t: Arc<Target>, c: Arc<Churn>, sched: Option<Schedule>, until: Instant, max: u64) {
    loop {
        let k = c.next.fetch_add(1, Ordering::AcqRel);
        if k >= max || Instant::now() >= until {
            return;
        }
        if let Some(s) = sched {
            let due = s.at(k);
            if due >= until {
                return;
            }
            tokio::time::sleep_until(due.into()).await;
            c.lag
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .record_duration(Instant::now().saturating_duration_since(due));
        }
        let Some((i, old)) = c.idle.lock().unwrap_or_else(|p| p.into_inner()).pop_front() else {
            return;
        };
        let t0 = Instant::now();
        if let Some(s) = old {
            if let Err(e) = close(s, t.timeout).await {
                c.close_failed.fetch_add(1, Ordering::Relaxed);
                c.errors.record(&e);
            }
        }
        let t1 = Instant::now();
        let new = match login_available(&t, i, format!("r{i}")).await {
            Ok(s) => {
                c.ok.fetch_add(1, Ordering::Relaxed);
                c.login
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .record_duration(t1.elapsed());
                c.reconnect
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .record_duration(t0.elapsed());
                Some(s)
            }
            Err(e) => {
                c.failed.fetch_add(1, Ordering::Relaxed);
                c.errors.record(&e);
                None
            }
        };
        c.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back((i, new));
    }
}

/// Runs the reconnect scenario.
pub async fn run(t: &Target, o: &ReconnectOpts) -> Result<Report, BenchError> {
    let n = o.sessions.unwrap_or(t.opts.users);
    if n == 0 || t.opts.concurrency > n {
        return Err(BenchError::Usage(
            "--sessions must be at least 1 and at least --concurrency".into(),
        ));
    }
    if o.rate.is_some_and(|r| r == 0 || r > 100_000) {
        return Err(BenchError::Usage("--rate must be in 1..=100000".into()));
    }
    let max = o.count.unwrap_or(MAX_OPERATIONS).min(MAX_OPERATIONS);
    if max == 0 {
        return Err(BenchError::Usage("--count must be at least 1".into()));
    }
    // Each session in flight may hold its old and its new socket for a moment.
    t.check_sockets(n + t.opts.concurrency)?;
    let errors = Arc::new(Errors::default());
    let sessions = connect_all(t, n, "reconnect: connecting", "r", |i| i, &errors).await;
    let held = sessions.iter().filter(|s| s.is_some()).count() as u64;
    let c = Arc::new(Churn {
        idle: Mutex::new(sessions.into_iter().enumerate().collect()),
        next: AtomicU64::new(0),
        ok: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        close_failed: AtomicU64::new(0),
        login: Mutex::new(Histogram::new()),
        reconnect: Mutex::new(Histogram::new()),
        lag: Mutex::new(Histogram::new()),
        errors: Errors::default(),
    });
    let progress = {
        let c = c.clone();
        Progress::start(t.opts.quiet, "reconnect", move || {
            format!(
                "ok {}  failed {}",
                c.ok.load(Ordering::Relaxed),
                c.failed.load(Ordering::Relaxed)
            )
        })
    };
    let cpu = crate::report::CpuProbe::start(t.opts.cpu_pid);
    let start = Instant::now();
    let until = start + t.duration;
    let sched = o.rate.map(|r| Schedule::new(start, r));
    let tt = Arc::new(t.clone());
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..t.opts.concurrency {
        workers.spawn(worker(tt.clone(), c.clone(), sched, until, max));
    }
    while workers.join_next().await.is_some() {}
    let elapsed = start.elapsed();
    let mut rep = Report::new("reconnect", options_json(&t.opts, o));
    if let Some(probe) = cpu {
        probe.finish(&mut rep, "login", c.ok.load(Ordering::Relaxed));
    }
    drop(progress);

    // What is held at the end answers a ping, then closes.
    let left: VecDeque<_> = std::mem::take(&mut *c.idle.lock().unwrap_or_else(|p| p.into_inner()));
    let answered = Arc::new(AtomicU64::new(0));
    let mut closing = tokio::task::JoinSet::new();
    let limit = Arc::new(tokio::sync::Semaphore::new(t.opts.concurrency.max(1)));
    for (_, s) in left {
        let Some(mut s) = s else { continue };
        let (tt, answered, limit) = (tt.clone(), answered.clone(), limit.clone());
        closing.spawn(async move {
            let _permit = limit.acquire().await;
            if let Ok(true) = ping(&mut s, &tt.opts.domain, tt.timeout).await {
                answered.fetch_add(1, Ordering::Relaxed);
            }
            let _ = close(s, tt.timeout).await;
        });
    }
    while closing.join_next().await.is_some() {}

    rep.elapsed_s = elapsed.as_secs_f64();
    let ok = c.ok.load(Ordering::Relaxed);
    rep.set_count("held", held);
    rep.set_count("reconnected", ok);
    rep.set_count("failed", c.failed.load(Ordering::Relaxed));
    rep.set_count("close_failed", c.close_failed.load(Ordering::Relaxed));
    rep.set_count("answered_at_end", answered.load(Ordering::Relaxed));
    rep.set_rate("logins_per_s", rate(ok, elapsed));
    if let Some(r) = o.rate {
        rep.set_rate("intended_per_s", r as f64);
        rep.set_latency(
            "start_lag",
            c.lag.lock().unwrap_or_else(|p| p.into_inner()).summary(),
        );
    }
    rep.set_latency(
        "login",
        c.login.lock().unwrap_or_else(|p| p.into_inner()).summary(),
    );
    rep.set_latency(
        "close_and_login",
        c.reconnect
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .summary(),
    );
    let mut errs = errors.take();
    for (k, v) in c.errors.take() {
        *errs.entry(k).or_default() += v;
    }
    rep.errors = errs;
    Ok(rep)
}
