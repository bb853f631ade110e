//! `confab-bench`: a load generator that measures any XMPP server over c2s (issue 17).
//!
//! Scenarios (`register`, `login`, `chat` closed and open loop, `idle`, `muc`, `presence`,
//! `offline`, `reconnect`) log in through
//! confab-stream's client negotiation, so what they measure is what a real client does.
//! Every loop is bounded in count and time, and only loopback servers are measured unless
//! the caller allows otherwise ([`opts::resolve_server`]).
//!
//! The binary parses [`Cli`] and calls [`run`]; tests call [`run`] or a scenario directly.

#![warn(missing_docs)]

pub mod conn;
pub mod opts;
pub mod report;
pub mod scenarios;
pub mod stats;

use confab_stream::client::ClientError;
use opts::{CommonOpts, Target};
pub use report::Report;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a step (or a whole run) failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Bad options: the run does not start.
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    /// A client-side negotiation or stream failure.
    Client(#[from] ClientError),
    #[error("timed out: {0}")]
    /// A step took longer than `--timeout`.
    Timeout(&'static str),
    /// The server answered, but not as expected.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
    #[error("i/o: {0}")]
    /// A local file (the server's /proc status, the JSON output).
    Io(#[from] std::io::Error),
}

/// The command line.
#[derive(Debug, clap::Parser)]
#[command(
    name = "confab-bench",
    version,
    about = "Load generator for XMPP servers over c2s (loopback only unless --allow-remote)"
)]
pub struct Cli {
    #[command(subcommand)]
    /// The scenario to run.
    pub scenario: Scenario,
}

/// A scenario and its options.
#[derive(Clone, Debug, clap::Subcommand)]
// The fields are the options of the scenario the variant's doc describes.
#[allow(missing_docs)]
pub enum Scenario {
    /// In-band registration (XEP-0077) of <prefix>0 .. <prefix>N-1; existing accounts are
    /// counted apart, not as failures, so runs are repeatable.
    Register {
        #[command(flatten)]
        common: CommonOpts,
    },
    /// N logins: connect, negotiate, authenticate, bind, initial presence, close.
    Login {
        #[command(flatten)]
        common: CommonOpts,
        #[command(flatten)]
        opts: scenarios::login::LoginOpts,
    },
    /// Messages between pairs of sessions: closed loop (W in flight per pair) or, with
    /// --rate, open loop at a fixed rate.
    Chat {
        #[command(flatten)]
        common: CommonOpts,
        #[command(flatten)]
        opts: scenarios::chat::ChatOpts,
    },
    /// N sessions held for the duration, the server's memory per session (--pid), then a
    /// ping of every session.
    Idle {
        #[command(flatten)]
        common: CommonOpts,
        #[command(flatten)]
        opts: scenarios::idle::IdleOpts,
    },
    /// N occupants in one room of the MUC service, S of them sending groupchat messages:
    /// the room's fan-out per second, and every occupant checked to get every message.
    Muc {
        #[command(flatten)]
        common: CommonOpts,
        #[command(flatten)]
        opts: scenarios::muc::MucOpts,
    },
    /// --users accounts with K mutual contacts each (set up by subscription handshakes):
    /// log in, see the contacts, change status; every contact checked to get every change.
    Presence {
        #[command(flatten)]
        common: CommonOpts,
        #[command(flatten)]
        opts: scenarios::presence::PresenceOpts,
    },
    /// M messages stored for each of R offline accounts, then delivered as they log in.
    Offline {
        #[command(flatten)]
        common: CommonOpts,
        #[command(flatten)]
        opts: scenarios::offline::OfflineOpts,
    },
    /// Churn: held sessions close and log in again, as fast as allowed or at a rate.
    Reconnect {
        #[command(flatten)]
        common: CommonOpts,
        #[command(flatten)]
        opts: scenarios::reconnect::ReconnectOpts,
    },
}

impl Scenario {
    /// The options every scenario has.
    pub fn common(&self) -> &CommonOpts {
        match self {
            Scenario::Register { common }
            | Scenario::Login { common, .. }
            | Scenario::Chat { common, .. }
            | Scenario::Idle { common, .. }
            | Scenario::Muc { common, .. }
            | Scenario::Presence { common, .. }
            | Scenario::Offline { common, .. }
            | Scenario::Reconnect { common, .. } => common,
        }
    }
}

/// Runs a scenario to its report. Writes nothing but the progress line (unless quiet);
/// the caller prints the summary and writes the JSON.
pub async fn run(s: &Scenario) -> Result<Report, BenchError> {
    let target = Target::new(s.common())?;
    match s {
        Scenario::Register { .. } => scenarios::register::run(&target).await,
        Scenario::Login { opts, .. } => scenarios::login::run(&target, opts).await,
        Scenario::Chat { opts, .. } => scenarios::chat::run(&target, opts).await,
        Scenario::Idle { opts, .. } => scenarios::idle::run(&target, opts).await,
        Scenario::Muc { opts, .. } => scenarios::muc::run(&target, opts).await,
        Scenario::Presence { opts, .. } => scenarios::presence::run(&target, opts).await,
        Scenario::Offline { opts, .. } => scenarios::offline::run(&target, opts).await,
        Scenario::Reconnect { opts, .. } => scenarios::reconnect::run(&target, opts).await,
    }
}

/// Runs `f(0) .. f(n-1)` with at most `concurrency` at once, starting none after
/// `deadline`: bounded in count and in time. Returns how many were started.
pub async fn for_each_index<F, Fut>(n: usize, concurrency: usize, deadline: Instant, f: F) -> usize
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let f = Arc::new(f);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.clamp(1, n.max(1)) {
        let f = f.clone();
        let next = next.clone();
        workers.spawn(async move {
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                f(i).await;
            }
        });
    }
    while workers.join_next().await.is_some() {}
    next.load(Ordering::Relaxed).min(n)
}

/// A deadline for setting up `n` connections `concurrency` at a time when each may take up
/// to `timeout`: the worst case, capped at the longest run allowed.
pub fn setup_deadline(n: usize, concurrency: usize, timeout: Duration) -> Instant {
    let rounds = n.div_ceil(concurrency.max(1)).max(1) as u32;
    let cap = Duration::from_secs_f64(opts::MAX_DURATION_SECS);
    Instant::now() + timeout.saturating_mul(rounds).min(cap)
}

/// The options of a scenario as JSON for the report (the password is never serialized).
pub fn options_json(common: &CommonOpts, extra: impl serde::Serialize) -> serde_json::Value {
    let mut v = serde_json::to_value(common).unwrap_or_default();
    if let (Some(m), Ok(serde_json::Value::Object(e))) =
        (v.as_object_mut(), serde_json::to_value(extra))
    {
        m.extend(e);
    }
    v
}

/// A tag that tells this run apart from others, also in the same process (offline
/// messages carry it; idle sessions put it in their resources).
pub(crate) fn run_tag() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
        .unwrap_or(0);
    nanos ^ std::process::id().rotate_left(16)
}
