//! `login`: N logins — connect, negotiate TLS, authenticate, bind, initial presence, close.

use crate::conn::{close, login_available};
use crate::opts::{Target, MAX_OPERATIONS};
use crate::report::{Errors, Progress, Report};
use crate::stats::{rate, Histogram};
use crate::{for_each_index, options_json, BenchError};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Options of the login scenario.
#[derive(Clone, Debug, Default, clap::Args, Serialize)]
pub struct LoginOpts {
    /// Number of logins (account i mod --users each); default: --users.
    #[arg(long)]
    pub count: Option<u64>,
}

/// Logs in `count` times, `--concurrency` at a time, within `--duration`.
pub async fn run(t: &Target, o: &LoginOpts) -> Result<Report, BenchError> {
    let n = o.count.unwrap_or(t.opts.users as u64);
    if n == 0 || n > MAX_OPERATIONS {
        return Err(BenchError::Usage(format!(
            "--count must be in 1..={MAX_OPERATIONS}"
        )));
    }
    t.check_sockets(t.opts.concurrency)?;
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let close_failed = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Errors::default());
    // Login: connect until bound and initial presence written; total: with the close.
    let hists = Arc::new(Mutex::new((Histogram::new(), Histogram::new())));
    let progress = {
        let (k, f) = (ok.clone(), failed.clone());
        Progress::start(t.opts.quiet, "login", move || {
            format!(
                "ok {}  failed {}  of {n}",
                k.load(Ordering::Relaxed),
                f.load(Ordering::Relaxed)
            )
        })
    };
    let cpu = crate::report::CpuProbe::start(t.opts.cpu_pid);
    let start = Instant::now();
    let started = {
        let t = Arc::new(t.clone());
        let (k, f, cf, errors, hists) = (
            ok.clone(),
            failed.clone(),
            close_failed.clone(),
            errors.clone(),
            hists.clone(),
        );
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        for_each_index(n, t.opts.concurrency, start + t.duration, move |i| {
            let (t, k, f, cf, errors, hists) = (
                t.clone(),
                k.clone(),
                f.clone(),
                cf.clone(),
                errors.clone(),
                hists.clone(),
            );
            async move {
                let t0 = Instant::now();
                match login_available(&t, i, format!("l{i}")).await {
                    Ok(s) => {
                        let login = t0.elapsed();
                        k.fetch_add(1, Ordering::Relaxed);
                        if let Err(e) = close(s, t.timeout).await {
                            cf.fetch_add(1, Ordering::Relaxed);
                            errors.record(&e);
                        }
                        let mut h = hists.lock().unwrap_or_else(|p| p.into_inner());
                        h.0.record_duration(login);
                        h.1.record_duration(t0.elapsed());
                    }
                    Err(e) => {
                        f.fetch_add(1, Ordering::Relaxed);
                        errors.record(&e);
                    }
                }
            }
        })
        .await
    };
    let elapsed = start.elapsed();
    drop(progress);
    let mut rep = Report::new("login", options_json(&t.opts, o));
    rep.elapsed_s = elapsed.as_secs_f64();
    let (k, f) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    rep.set_count("requested", n);
    rep.set_count("attempted", started as u64);
    rep.set_count("ok", k);
    rep.set_count("failed", f);
    rep.set_count("close_failed", close_failed.load(Ordering::Relaxed));
    rep.set_rate("logins_per_s", rate(k, elapsed));
    let h = hists.lock().unwrap_or_else(|p| p.into_inner());
    rep.set_latency("login", h.0.summary());
    rep.set_latency("login_and_close", h.1.summary());
    if let Some(c) = cpu {
        c.finish(&mut rep, "login", k);
    }
    rep.errors = errors.take();
    Ok(rep)
}
