//! `idle`: N sessions logged in (with initial presence) and held for the duration; with
//! `--pid`, the server's resident memory before and after, per session; then every session
//! pings its server (XEP-0199) to show it is still alive.

use crate::conn::{close, login_available, ping, reply_to_request, write_raw};
use crate::opts::Target;
use crate::report::{Errors, Progress, Report, Rss};
use crate::stats::{rate, Histogram};
use crate::{for_each_index, options_json, setup_deadline, BenchError};
use confab_stream::client::ClientSession;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Options of the idle scenario.
#[derive(Clone, Debug, Default, clap::Args, Serialize)]
pub struct IdleOpts {
    /// Sessions to hold (account i mod --users each); default: --users.
    #[arg(long)]
    pub sessions: Option<usize>,
    /// The server's process id, to read its memory (VmRSS) from /proc/PID/status.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Seconds to wait after connecting before memory is read (the server settles).
    #[arg(long, default_value_t = 1.0)]
    pub settle: f64,
}

/// VmRSS of a process in KiB, from `/proc/PID/status` (Linux).
pub fn read_rss_kib(pid: u32) -> Result<u64, BenchError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_vm_rss(&text)
        .ok_or_else(|| BenchError::Unexpected(format!("no VmRSS in /proc/{pid}/status")))
}

/// The `VmRSS:` line of a `/proc/PID/status` text, in KiB.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut it = line["VmRSS:".len()..].split_whitespace();
    let n: u64 = it.next()?.parse().ok()?;
    match it.next() {
        Some("kB") | None => Some(n),
        _ => None,
    }
}

/// What the phase channel tells the holding tasks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Hold,
    Ping,
}

struct Counters {
    held: AtomicU64,
    dropped: AtomicU64,
    answered: AtomicU64,
    unanswered: AtomicU64,
    ping: Mutex<Histogram>,
    errors: Errors,
}

/// Holds one session: answers the server's requests until the ping phase, then pings the
/// server and closes.
async fn hold(
    mut s: ClientSession,
    domain: String,
    timeout: Duration,
    c: Arc<Counters>,
    mut phase: watch::Receiver<Phase>,
) {
    loop {
        if *phase.borrow() == Phase::Ping {
            break;
        }
        tokio::select! {
            biased;
            r = phase.changed() => {
                if r.is_err() {
                    break;
                }
            }
            r = s.stream.next_element() => match r {
                Ok(e) => {
                    if let Some(reply) = reply_to_request(&e) {
                        if let Err(e) = write_raw(&mut s, &reply, timeout).await {
                            c.errors.record(&e);
                            c.dropped.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                    // An idle client keeps no read buffer around.
                    s.stream.release_buffers();
                }
                Err(e) => {
                    c.errors.record_text(&format!("held session ended: {e}"));
                    c.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            },
        }
    }
    let t0 = Instant::now();
    match ping(&mut s, &domain, timeout).await {
        Ok(true) => {
            c.answered.fetch_add(1, Ordering::Relaxed);
            c.ping
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .record_duration(t0.elapsed());
        }
        Ok(false) => {
            c.unanswered.fetch_add(1, Ordering::Relaxed);
            c.errors.record_text("ping answered with an error");
        }
        Err(e) => {
            c.unanswered.fetch_add(1, Ordering::Relaxed);
            c.errors.record(&e);
        }
    }
    if let Err(e) = close(s, timeout).await {
        c.errors.record_text(&format!("close: {e}"));
    }
}

/// Runs the idle scenario.
pub async fn run(t: &Target, o: &IdleOpts) -> Result<Report, BenchError> {
    let n = o.sessions.unwrap_or(t.opts.users);
    if n == 0 {
        return Err(BenchError::Usage("--sessions must be at least 1".into()));
    }
    if !(0.0..=600.0).contains(&o.settle) {
        return Err(BenchError::Usage(
            "--settle must be in [0, 600] seconds".into(),
        ));
    }
    t.check_sockets(n)?;
    let rss_before = o.pid.map(read_rss_kib).transpose()?;

    let c = Arc::new(Counters {
        held: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        answered: AtomicU64::new(0),
        unanswered: AtomicU64::new(0),
        ping: Mutex::new(Histogram::new()),
        errors: Errors::default(),
    });
    let failed = Arc::new(AtomicU64::new(0));
    let login_hist = Arc::new(Mutex::new(Histogram::new()));
    let (phase_tx, phase_rx) = watch::channel(Phase::Hold);
    let tasks = Arc::new(Mutex::new(tokio::task::JoinSet::new()));
    let connect_start = Instant::now();
    {
        let progress = {
            let (c, f) = (c.clone(), failed.clone());
            Progress::start(t.opts.quiet, "idle: connecting", move || {
                format!(
                    "{} of {n} sessions, {} failed",
                    c.held.load(Ordering::Relaxed),
                    f.load(Ordering::Relaxed)
                )
            })
        };
        let tt = Arc::new(t.clone());
        let (c, f, lh, tasks, rx) = (
            c.clone(),
            failed.clone(),
            login_hist.clone(),
            tasks.clone(),
            phase_rx.clone(),
        );
        // Resources carry the run's tag: two runs on the same accounts (two load
        // processes holding more sessions than one may) must not replace each other's.
        let tag = crate::run_tag();
        let deadline = setup_deadline(n, t.opts.concurrency, t.timeout);
        for_each_index(n, t.opts.concurrency, deadline, move |i| {
            let (tt, c, f, lh, tasks, rx) = (
                tt.clone(),
                c.clone(),
                f.clone(),
                lh.clone(),
                tasks.clone(),
                rx.clone(),
            );
            async move {
                let t0 = Instant::now();
                match login_available(&tt, i, format!("i{i}-{tag:x}")).await {
                    Ok(s) => {
                        lh.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .record_duration(t0.elapsed());
                        c.held.fetch_add(1, Ordering::Relaxed);
                        let domain = tt.opts.domain.clone();
                        tasks.lock().unwrap_or_else(|p| p.into_inner()).spawn(hold(
                            s,
                            domain,
                            tt.timeout,
                            c.clone(),
                            rx,
                        ));
                    }
                    Err(e) => {
                        f.fetch_add(1, Ordering::Relaxed);
                        c.errors.record(&e);
                    }
                }
            }
        })
        .await;
        drop(progress);
    }
    let connect_elapsed = connect_start.elapsed();
    tokio::time::sleep(Duration::from_secs_f64(o.settle)).await;
    let rss_connected = o.pid.map(read_rss_kib).transpose()?;

    let hold_start = Instant::now();
    {
        let progress = {
            let c = c.clone();
            Progress::start(t.opts.quiet, "idle: holding", move || {
                format!(
                    "{} held, {} dropped",
                    c.held.load(Ordering::Relaxed),
                    c.dropped.load(Ordering::Relaxed)
                )
            })
        };
        tokio::time::sleep(t.duration).await;
        drop(progress);
    }
    let rss_after = o.pid.map(read_rss_kib).transpose()?;
    let held_elapsed = hold_start.elapsed();
    let _ = phase_tx.send(Phase::Ping);
    let mut set = std::mem::take(&mut *tasks.lock().unwrap_or_else(|p| p.into_inner()));
    while set.join_next().await.is_some() {}
    drop(phase_tx);

    let mut rep = Report::new("idle", options_json(&t.opts, o));
    rep.elapsed_s = held_elapsed.as_secs_f64();
    let held = c.held.load(Ordering::Relaxed);
    let dropped = c.dropped.load(Ordering::Relaxed);
    rep.set_count("requested", n as u64);
    rep.set_count("connected", held);
    rep.set_count("failed", failed.load(Ordering::Relaxed));
    rep.set_count("dropped", dropped);
    rep.set_count("pinged", held.saturating_sub(dropped));
    rep.set_count("answered", c.answered.load(Ordering::Relaxed));
    rep.set_count("unanswered", c.unanswered.load(Ordering::Relaxed));
    rep.set_rate("logins_per_s", rate(held, connect_elapsed));
    rep.set_latency(
        "login",
        login_hist
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .summary(),
    );
    rep.set_latency(
        "ping",
        c.ping.lock().unwrap_or_else(|p| p.into_inner()).summary(),
    );
    if let (Some(pid), Some(before), Some(connected), Some(after)) =
        (o.pid, rss_before, rss_connected, rss_after)
    {
        let sessions = held.saturating_sub(dropped);
        rep.server_rss = Some(Rss {
            pid,
            before_kib: before,
            connected_kib: connected,
            after_kib: after,
            sessions,
            kib_per_session: if sessions == 0 {
                0.0
            } else {
                (after as f64 - before as f64) / sessions as f64
            },
        });
    }
    rep.errors = c.errors.take();
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_parsed() {
        let status = "Name:\tconfabd\nVmPeak:\t  99999 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(12345));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        assert_eq!(parse_vm_rss("VmRSS: lots kB\n"), None);
        assert_eq!(parse_vm_rss("VmRSS: 5 MB\n"), None);
    }

    #[test]
    fn own_rss_is_readable() {
        let kib = read_rss_kib(std::process::id()).expect("own /proc status");
        assert!(kib > 0);
    }
}
