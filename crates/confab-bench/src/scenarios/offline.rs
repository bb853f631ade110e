//! `offline`: M messages stored for each of R offline accounts, then those accounts log in
//! and the server delivers what it stored (XEP-0160).
//!
//! Senders are accounts `0 .. S`, recipients `S .. S+R` (so `--users` ≥ S+R), and nobody
//! may be logged in as a recipient meanwhile. Recipient r gets its messages in order from
//! sender r mod S. Each body carries this run's tag in place of the sender number, so
//! messages left from an earlier run are counted apart (`stale`), not as this run's.
//! Each sender ends with a ping, whose answer comes after the server handled its messages.

use super::fanout::connect_all;
use crate::conn::{login, ping_request, reply_to_request, since, write_raw, Body, PRESENCE};
use crate::opts::Target;
use crate::report::{Errors, Progress, Report};
use crate::stats::{rate, Histogram};
use crate::{for_each_index, options_json, setup_deadline, BenchError};
use confab_proto::ns;
use confab_proto::xml::escape;
use confab_stream::client::ClientSession;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Options of the offline scenario.
#[derive(Clone, Debug, clap::Args, Serialize)]
pub struct OfflineOpts {
    /// Accounts that get messages while offline (accounts S .. S+R).
    #[arg(long, default_value_t = 10)]
    pub recipients: usize,
    /// Messages stored for each recipient (mind the server's offline quota).
    #[arg(long, default_value_t = 20)]
    pub messages: usize,
    /// Sessions that send (accounts 0 .. S).
    #[arg(long, default_value_t = 2)]
    pub senders: usize,
    /// Seconds a recipient waits after its initial presence for messages still missing.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// Seconds between storing and the logins.
    #[arg(long, default_value_t = 0.5)]
    pub settle: f64,
}

impl Default for OfflineOpts {
    fn default() -> Self {
        OfflineOpts {
            recipients: 10,
            messages: 20,
            senders: 2,
            drain: 5.0,
            settle: 0.5,
        }
    }
}

/// Most messages stored for one recipient in a run.
const MAX_PER_RECIPIENT: usize = 100_000;

/// Stores: sender `s` writes the messages of every recipient r with r mod S == s, then
/// pings; returns (messages written, error replies received before the ping's answer).
async fn store(
    s: &mut ClientSession,
    t: &Target,
    o: &OfflineOpts,
    sender: usize,
    tag: u32,
    epoch: Instant,
) -> Result<(u64, u64), BenchError> {
    let mut written = 0u64;
    for r in (sender..o.recipients).step_by(o.senders) {
        let to = format!("{}@{}", t.username(o.senders + r), t.opts.domain);
        for seq in 0..o.messages {
            let b = Body {
                sender: tag,
                seq: seq as u64,
                sent_ns: since(epoch, Instant::now()),
            };
            let m = format!(
                "<message type='chat' to='{}'><body>{}</body></message>",
                escape(&to),
                b.format(0)
            );
            write_raw(s, &m, t.timeout).await?;
            written += 1;
        }
    }
    let id = "bench-stored";
    write_raw(s, &ping_request(&t.opts.domain, id), t.timeout).await?;
    let deadline = tokio::time::Instant::now() + t.timeout;
    let mut bounced = 0u64;
    loop {
        let e = match tokio::time::timeout_at(deadline, s.recv()).await {
            Ok(r) => r.map_err(BenchError::Client)?,
            Err(_) => return Err(BenchError::Timeout("ping after storing")),
        };
        if e.name == "iq" && e.get_attr("id") == Some(id) {
            return Ok((written, bounced));
        }
        if e.name == "message" && e.get_attr("type") == Some("error") {
            bounced += 1;
        } else if let Some(reply) = reply_to_request(&e) {
            write_raw(s, &reply, t.timeout).await?;
        }
    }
}

#[derive(Default)]
struct Delivery {
    delivered: AtomicU64,
    stale: AtomicU64,
    out_of_order: AtomicU64,
    complete: AtomicU64,
    failed: AtomicU64,
    login: Mutex<Histogram>,
    all_messages: Mutex<Histogram>,
}

/// Recipient `r` logs in, sends initial presence and reads until its `m` messages are in
/// (or `drain` passes).
async fn collect(
    t: &Target,
    r: usize,
    o: &OfflineOpts,
    tag: u32,
    d: &Delivery,
) -> Result<(), BenchError> {
    let t0 = Instant::now();
    let mut s = login(t, o.senders + r, format!("o{r}")).await?;
    let logged_in = t0.elapsed();
    write_raw(&mut s, PRESENCE, t.timeout).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(o.drain);
    let (mut got, mut next) = (0usize, 0u64);
    while got < o.messages {
        let e = match tokio::time::timeout_at(deadline, s.recv()).await {
            Ok(r) => r.map_err(BenchError::Client)?,
            Err(_) => break,
        };
        if e.name == "message" {
            let b = e
                .get_child("body", ns::CLIENT)
                .and_then(|b| Body::parse(&b.text_content()));
            match b {
                Some(b) if b.sender == tag => {
                    if b.seq != next {
                        d.out_of_order.fetch_add(1, Ordering::Relaxed);
                    }
                    next = b.seq.saturating_add(1);
                    got += 1;
                    d.delivered.fetch_add(1, Ordering::Relaxed);
                }
                Some(_) => {
                    d.stale.fetch_add(1, Ordering::Relaxed);
                }
                None => {}
            }
        } else if let Some(reply) = reply_to_request(&e) {
            write_raw(&mut s, &reply, t.timeout).await?;
        }
    }
    let all = t0.elapsed();
    if got >= o.messages {
        d.complete.fetch_add(1, Ordering::Relaxed);
        d.all_messages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record_duration(all);
    }
    d.login
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .record_duration(logged_in);
    crate::conn::close(s, t.timeout).await
}

/// Runs the offline scenario.
pub async fn run(t: &Target, o: &OfflineOpts) -> Result<Report, BenchError> {
    if o.recipients == 0
        || o.senders == 0
        || o.messages == 0
        || o.messages > MAX_PER_RECIPIENT
        || o.senders + o.recipients > t.opts.users
    {
        return Err(BenchError::Usage(format!(
            "--senders, --recipients and --messages (at most {MAX_PER_RECIPIENT}) must be at \
             least 1, and --users at least senders + recipients"
        )));
    }
    if !(0.0..=600.0).contains(&o.drain) || !(0.0..=60.0).contains(&o.settle) {
        return Err(BenchError::Usage(
            "--drain must be in [0, 600] and --settle in [0, 60] seconds".into(),
        ));
    }
    t.check_sockets(o.senders.max(t.opts.concurrency))?;
    let errors = Arc::new(Errors::default());
    let tag = crate::run_tag();
    let mut rep = Report::new("offline", options_json(&t.opts, o));

    // Store.
    let senders = connect_all(t, o.senders, "offline: senders", "w", |i| i, &errors).await;
    let epoch = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut missing_senders = 0u64;
    for (i, s) in senders.into_iter().enumerate() {
        let Some(mut s) = s else {
            missing_senders += 1;
            continue;
        };
        let (t, o, errors) = (t.clone(), o.clone(), errors.clone());
        tasks.spawn(async move {
            let r = store(&mut s, &t, &o, i, tag, epoch).await;
            let _ = crate::conn::close(s, t.timeout).await;
            r.unwrap_or_else(|e| {
                errors.record(&e);
                (0, 0)
            })
        });
    }
    let (mut sent, mut bounced) = (0u64, 0u64);
    while let Some(r) = tasks.join_next().await {
        let (w, b) = r.unwrap_or((0, 0));
        sent += w;
        bounced += b;
    }
    let store_elapsed = epoch.elapsed();
    rep.set_count("senders_failed", missing_senders);
    rep.set_count("sent", sent);
    rep.set_count("bounced", bounced);
    rep.set_rate("stored_per_s", rate(sent, store_elapsed));
    tokio::time::sleep(Duration::from_secs_f64(o.settle)).await;

    // Deliver at login.
    let d = Arc::new(Delivery::default());
    let progress = {
        let d = d.clone();
        Progress::start(t.opts.quiet, "offline: logins", move || {
            format!("delivered {}", d.delivered.load(Ordering::Relaxed))
        })
    };
    let cpu = crate::report::CpuProbe::start(t.opts.cpu_pid);
    let start = Instant::now();
    {
        let (tt, oo, d, errors) = (
            Arc::new(t.clone()),
            Arc::new(o.clone()),
            d.clone(),
            errors.clone(),
        );
        let deadline = setup_deadline(o.recipients, t.opts.concurrency, t.timeout);
        for_each_index(o.recipients, t.opts.concurrency, deadline, move |r| {
            let (tt, oo, d, errors) = (tt.clone(), oo.clone(), d.clone(), errors.clone());
            async move {
                if let Err(e) = collect(&tt, r, &oo, tag, &d).await {
                    d.failed.fetch_add(1, Ordering::Relaxed);
                    errors.record(&e);
                }
            }
        })
        .await;
    }
    let elapsed = start.elapsed();
    drop(progress);
    rep.elapsed_s = elapsed.as_secs_f64();
    let delivered = d.delivered.load(Ordering::Relaxed);
    rep.set_count("expected", (o.recipients * o.messages) as u64);
    rep.set_count("delivered", delivered);
    rep.set_count("lost", sent.saturating_sub(delivered + bounced));
    rep.set_count("stale", d.stale.load(Ordering::Relaxed));
    rep.set_count("out_of_order", d.out_of_order.load(Ordering::Relaxed));
    rep.set_count("recipients_complete", d.complete.load(Ordering::Relaxed));
    rep.set_count("recipients_failed", d.failed.load(Ordering::Relaxed));
    rep.set_rate("delivered_per_s", rate(delivered, elapsed));
    rep.set_rate("logins_per_s", rate(o.recipients as u64, elapsed));
    rep.set_latency(
        "login",
        d.login.lock().unwrap_or_else(|p| p.into_inner()).summary(),
    );
    rep.set_latency(
        "login_until_all_messages",
        d.all_messages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .summary(),
    );
    if let Some(c) = cpu {
        c.finish(&mut rep, "message", delivered);
    }
    rep.errors = errors.take();
    Ok(rep)
}
