//! `presence`: N accounts, each with K mutual contacts (a ring: i's contacts are
//! i±1 .. i±K/2 mod N), log in and change their status.
//!
//! 1. Setup (unless `--setup assume`): all N log in, each asks its contacts for a
//!    subscription and accepts theirs (RFC 6121 §3), until each has K approvals; then all
//!    log out. Repeating it on existing rosters is harmless (servers answer a request for a
//!    subscription that exists with an approval).
//! 2. Login: all N log in with initial presence; each must see every contact available
//!    (the server's broadcast and probe answers). Measures presence deliveries per second.
//! 3. Status changes: the fan-out engine (closed loop, W per user in flight, done once all
//!    K contacts have it; or open loop at a rate), checking every contact got every change.

use super::fanout::{self, connect_all, Kind, Spec};
use crate::conn::{reply_to_request, write_raw, ROSTER};
use crate::opts::Target;
use crate::report::{Errors, Progress, Report};
use crate::stats::{rate, Histogram};
use crate::{options_json, BenchError};
use confab_proto::xml::{escape, Element};
use confab_stream::client::ClientSession;
use serde::Serialize;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How the rosters come to exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RosterSetup {
    /// Subscription handshakes between every pair of contacts before the measurement.
    Handshake,
    /// The rosters exist already (an earlier run with the same --users and --contacts).
    Assume,
}

/// Options of the presence scenario.
#[derive(Clone, Debug, clap::Args, Serialize)]
pub struct PresenceOpts {
    /// Contacts per account (even, below --users): a ring of mutual subscriptions.
    #[arg(long, default_value_t = 4)]
    pub contacts: usize,
    /// How the rosters come to exist.
    #[arg(long, value_enum, default_value = "handshake")]
    pub setup: RosterSetup,
    /// Closed loop: status changes in flight per account.
    #[arg(long, default_value_t = 1)]
    pub window: usize,
    /// Open loop: status changes per second over all accounts.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Seconds to wait after the last change for broadcasts still on their way.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// Bytes of padding added to every status text.
    #[arg(long, default_value_t = 0)]
    pub body_padding: usize,
}

impl Default for PresenceOpts {
    fn default() -> Self {
        PresenceOpts {
            contacts: 4,
            setup: RosterSetup::Handshake,
            window: 1,
            rate: None,
            drain: 5.0,
            body_padding: 0,
        }
    }
}

/// The contacts of account `i` among `n`: `i±1 .. i±k/2` (mod n). Symmetric, and `k`
/// distinct accounts when `k` is even and below `n`.
pub fn contacts(i: usize, n: usize, k: usize) -> Vec<usize> {
    let mut v = Vec::with_capacity(k);
    for d in 1..=k / 2 {
        v.push((i + d) % n);
        v.push((i + n - d) % n);
    }
    v
}

/// The account index of a bare or full JID `<prefix><i>@domain`, if it is one of ours.
fn account_of(t: &Target, jid: &str) -> Option<usize> {
    let bare = jid.split('/').next()?;
    let (local, domain) = bare.split_once('@')?;
    if !domain.eq_ignore_ascii_case(&t.opts.domain) {
        return None;
    }
    local.strip_prefix(&t.opts.user_prefix)?.parse().ok()
}

fn presence_to(kind: &str, to: &str) -> String {
    format!("<presence type='{kind}' to='{}'/>", escape(to))
}

/// Setup for one account: asks each contact for a subscription, approves every request,
/// until `stop`. Returns how many contacts approved.
async fn handshake(
    i: usize,
    mut s: ClientSession,
    t: Arc<Target>,
    k: usize,
    done: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
) -> usize {
    let n = t.opts.users;
    let mine: HashSet<usize> = contacts(i, n, k).into_iter().collect();
    let mut approved = HashSet::new();
    // Approvals go to the resources that asked for the roster (RFC 6121 §3.1.6).
    let roster = format!("<iq type='get' id='bench-roster'><query xmlns='{ROSTER}'/></iq>");
    if write_raw(&mut s, &roster, t.timeout).await.is_err() {
        return 0;
    }
    for c in &mine {
        let to = format!("{}@{}", t.username(*c), t.opts.domain);
        if write_raw(&mut s, &presence_to("subscribe", &to), t.timeout)
            .await
            .is_err()
        {
            return 0;
        }
    }
    let mut finished = false;
    loop {
        let e: Element = tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = s.recv() => match r {
                Ok(e) => e,
                Err(_) => return approved.len(),
            },
        };
        let reply = if e.name == "presence" {
            let from = e.get_attr("from").unwrap_or_default();
            let bare = from.split('/').next().unwrap_or_default().to_string();
            match e.get_attr("type") {
                Some("subscribe") => Some(presence_to("subscribed", &bare)),
                Some("subscribed") => {
                    if let Some(c) = account_of(&t, &bare).filter(|c| mine.contains(c)) {
                        approved.insert(c);
                    }
                    None
                }
                _ => None,
            }
        } else {
            // A roster push showing our subscription to a contact is an approval too.
            if let Some(q) = e.get_child("query", ROSTER).filter(|_| e.name == "iq") {
                for item in q.elements().filter(|i| i.name == "item") {
                    let to = matches!(item.get_attr("subscription"), Some("to" | "both"));
                    let c = item.get_attr("jid").and_then(|j| account_of(&t, j));
                    if let Some(c) = c.filter(|c| to && mine.contains(c)) {
                        approved.insert(c);
                    }
                }
            }
            reply_to_request(&e)
        };
        if let Some(r) = reply {
            if write_raw(&mut s, &r, t.timeout).await.is_err() {
                return approved.len();
            }
        }
        if !finished && approved.len() >= mine.len() {
            finished = true;
            done.fetch_add(1, Ordering::AcqRel);
        }
    }
    let _ = crate::conn::close(s, t.timeout).await;
    approved.len()
}

/// Login phase for one account: reads until every contact was seen available (or the
/// deadline). Returns the session (if it lasted), the contacts seen and the presences
/// from contacts received.
async fn await_contacts(
    i: usize,
    mut s: ClientSession,
    t: Arc<Target>,
    k: usize,
    deadline: Instant,
) -> (Option<ClientSession>, usize, u64) {
    let mine: HashSet<usize> = contacts(i, t.opts.users, k).into_iter().collect();
    let mut seen = HashSet::new();
    let mut received = 0u64;
    while seen.len() < mine.len() {
        let e = match tokio::time::timeout_at(deadline.into(), s.recv()).await {
            Ok(Ok(e)) => e,
            Ok(Err(_)) => return (None, seen.len(), received),
            Err(_) => break,
        };
        if e.name == "presence" && e.get_attr("type").is_none() {
            let from = e.get_attr("from").unwrap_or_default();
            if let Some(c) = account_of(&t, from).filter(|c| mine.contains(c)) {
                received += 1;
                seen.insert(c);
            }
        } else if let Some(r) = reply_to_request(&e) {
            if write_raw(&mut s, &r, t.timeout).await.is_err() {
                return (None, seen.len(), received);
            }
        }
    }
    (Some(s), seen.len(), received)
}

/// Runs the presence scenario.
pub async fn run(t: &Target, o: &PresenceOpts) -> Result<Report, BenchError> {
    let n = t.opts.users;
    let k = o.contacts;
    if k == 0 || !k.is_multiple_of(2) || k >= n {
        return Err(BenchError::Usage(
            "--contacts must be even, at least 2 and below --users".into(),
        ));
    }
    fanout::check(o.window, o.rate, o.drain, o.body_padding)?;
    t.check_sockets(n)?;
    let tt = Arc::new(t.clone());
    let errors = Arc::new(Errors::default());
    let mut rep = Report::new("presence", options_json(&t.opts, o));

    if o.setup == RosterSetup::Handshake {
        let start = Instant::now();
        let sessions = connect_all(t, n, "presence: roster setup", "s", |i| i, &errors).await;
        let done = Arc::new(AtomicUsize::new(0));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        let online = sessions.iter().filter(|s| s.is_some()).count();
        for (i, s) in sessions.into_iter().enumerate() {
            if let Some(s) = s {
                tasks.spawn(handshake(
                    i,
                    s,
                    tt.clone(),
                    k,
                    done.clone(),
                    stop_rx.clone(),
                ));
            }
        }
        let progress = {
            let d = done.clone();
            Progress::start(t.opts.quiet, "presence: subscriptions", move || {
                format!("{} of {n} rosters complete", d.load(Ordering::Relaxed))
            })
        };
        let deadline = Instant::now() + t.timeout;
        super::chat::wait_for(deadline, || done.load(Ordering::Acquire) >= online).await;
        // A moment for the last approvals to reach the other side's roster.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = stop_tx.send(true);
        let mut approved = 0u64;
        while let Some(r) = tasks.join_next().await {
            approved += r.unwrap_or(0) as u64;
        }
        drop(progress);
        rep.set_count("subscriptions_approved", approved);
        rep.set_count("subscriptions_expected", (n * k) as u64);
        rep.set_count(
            "setup_ms",
            u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
        );
    }

    // Login: everyone in, each waits to see its contacts.
    let start = Instant::now();
    let sessions = connect_all(t, n, "presence: login", "p", |i| i, &errors).await;
    let logged_in = sessions.iter().filter(|s| s.is_some()).count() as u64;
    let deadline = Instant::now() + t.timeout;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, s) in sessions.into_iter().enumerate() {
        if let Some(s) = s {
            let tt = tt.clone();
            tasks.spawn(async move { (i, await_contacts(i, s, tt, k, deadline).await) });
        }
    }
    let mut members: Vec<Option<ClientSession>> = (0..n).map(|_| None).collect();
    let (mut seen, mut received) = (0u64, 0u64);
    let login_done = Arc::new(Mutex::new(Histogram::new()));
    while let Some(r) = tasks.join_next().await {
        if let Ok((i, (s, sn, rc))) = r {
            seen += sn as u64;
            received += rc;
            members[i] = s;
            if let Ok(mut h) = login_done.lock() {
                h.record_duration(start.elapsed());
            }
        }
    }
    let login_elapsed = start.elapsed();
    rep.set_count("logged_in", logged_in);
    rep.set_count("contacts_seen_at_login", seen);
    rep.set_count("contacts_expected_at_login", logged_in * k as u64);
    rep.set_count("presences_at_login", received);
    rep.set_rate("presences_at_login_per_s", rate(received, login_elapsed));
    rep.set_rate("logins_per_s", rate(logged_in, login_elapsed));
    if let Ok(h) = login_done.lock() {
        rep.set_latency("login_until_contacts_seen", h.summary());
    }

    // Status changes: every account sends, to its contacts.
    let spec = Spec {
        kind: Kind::Presence,
        recipients: (0..n).map(|i| contacts(i, n, k)).collect(),
        window: o.window,
        rate: o.rate,
        drain: o.drain,
        padding: o.body_padding,
    };
    fanout::run(t, spec, members, &mut rep, "presence").await;
    for (k, v) in errors.take() {
        *rep.errors.entry(k).or_default() += v;
    }
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contacts_form_a_symmetric_ring() {
        for (n, k) in [(3, 2), (5, 4), (6, 4), (10, 2), (20, 8), (7, 6)] {
            for i in 0..n {
                let c = contacts(i, n, k);
                let set: HashSet<usize> = c.iter().copied().collect();
                assert_eq!(set.len(), k, "n={n} k={k} i={i}: {c:?}");
                assert!(!set.contains(&i));
                for j in c {
                    assert!(contacts(j, n, k).contains(&i), "n={n} k={k}: {i}~{j}");
                }
            }
        }
        assert_eq!(contacts(0, 10, 4), vec![1, 9, 2, 8]);
    }

    #[test]
    fn accounts_are_read_from_jids() {
        let t = Target::new(&crate::opts::CommonOpts::default()).expect("target");
        assert_eq!(account_of(&t, "bench12@localhost/r"), Some(12));
        assert_eq!(account_of(&t, "bench3@LOCALHOST"), Some(3));
        assert_eq!(account_of(&t, "bench3@elsewhere"), None);
        assert_eq!(account_of(&t, "other3@localhost"), None);
        assert_eq!(account_of(&t, "localhost"), None);
    }
}
