//! The engine `muc` and `presence` share: members that each send stanzas which the server
//! fans out to many others (a room's occupants, a user's contacts).
//!
//! Sender `s` is member `s`; `recipients[s]` lists the members that must receive each of
//! its stanzas. Closed loop: W stanzas in flight per sender, a permit coming back once
//! every recipient has one. Open loop (`rate`): the chat scenario's scheduler releases
//! stanza k to sender k mod S at its intended time, and latency is measured from it.
//! Every member counts what it received per sender, so the check is exact: each recipient
//! got every stanza of each of its senders (`missing`, `incomplete_receivers`), and nothing
//! more (`extra`).

use super::chat::{next_due, next_permit, wait_for, OpenLoop, Samples};
use crate::conn::{login_available, reply_to_request, since, write_raw, Body};
use crate::opts::{Target, MAX_MESSAGES};
use crate::report::{Errors, Progress, Report};
use crate::stats::{rate, Histogram};
use crate::{for_each_index, setup_deadline, BenchError};
use confab_proto::ns;
use confab_proto::xml::{escape, Element};
use confab_stream::client::ClientSession;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Semaphore};

/// What the members send and how a received stanza is recognised.
#[derive(Clone, Debug)]
pub enum Kind {
    /// Groupchat messages to this room's bare JID; counted from the room's copies.
    Muc {
        /// The room's bare JID.
        room: String,
    },
    /// Presence with a status (`away`), broadcast by the server to the sender's contacts.
    Presence,
}

impl Kind {
    fn stanza(&self, body: &Body, padding: usize) -> String {
        match self {
            Kind::Muc { room } => format!(
                "<message type='groupchat' to='{}'><body>{}</body></message>",
                escape(room),
                body.format(padding)
            ),
            Kind::Presence => format!(
                "<presence><show>away</show><status>{}</status></presence>",
                body.format(padding)
            ),
        }
    }

    /// The body of a stanza this run sent, as the server delivered it to `own_bare`.
    /// Room history (delayed) and our own presence do not count.
    pub fn parse(&self, e: &Element, own_bare: &str) -> Option<Body> {
        let text = match self {
            Kind::Muc { .. } => {
                if e.name != "message"
                    || e.get_attr("type") != Some("groupchat")
                    || e.get_child("delay", ns::DELAY).is_some()
                {
                    return None;
                }
                e.get_child("body", ns::CLIENT)?.text_content()
            }
            Kind::Presence => {
                if e.name != "presence" || e.get_attr("type").is_some() {
                    return None;
                }
                let from = e.get_attr("from")?;
                let bare = from.split('/').next().unwrap_or(from);
                if bare.eq_ignore_ascii_case(own_bare) {
                    return None;
                }
                e.get_child("status", ns::CLIENT)?.text_content()
            }
        };
        Body::parse(&text)
    }

    fn is_error(&self, e: &Element) -> bool {
        let name = match self {
            Kind::Muc { .. } => "message",
            Kind::Presence => "presence",
        };
        e.name == name && e.get_attr("type") == Some("error")
    }
}

/// The fan-out to run on members already set up.
pub struct Spec {
    /// What is sent.
    pub kind: Kind,
    /// `recipients[s]`: the members that must receive sender `s`'s stanzas.
    pub recipients: Vec<Vec<usize>>,
    /// Closed loop: stanzas in flight per sender.
    pub window: usize,
    /// Open loop: stanzas per second over all senders.
    pub rate: Option<u64>,
    /// Seconds to wait after the last send.
    pub drain: f64,
    /// Bytes of padding in every body or status.
    pub padding: usize,
}

struct Shared {
    kind: Kind,
    epoch: Instant,
    padding: usize,
    timeout: Duration,
    sent: Vec<AtomicU64>,
    sent_total: AtomicU64,
    delivered: AtomicU64,
    /// Recipients per sender (what completes a stanza in the closed loop).
    fan: Vec<u32>,
    /// Closed loop: per sender, stanzas in flight and how many recipients got each.
    pending: Vec<Mutex<HashMap<u64, u32>>>,
    permits: Vec<Option<Arc<Semaphore>>>,
    bounced: AtomicU64,
    sessions_lost: AtomicU64,
    senders_active: AtomicUsize,
    latency: Mutex<Histogram>,
    send_lag: Mutex<Histogram>,
    errors: Errors,
}

impl Shared {
    fn expected(&self) -> u64 {
        self.sent
            .iter()
            .zip(&self.fan)
            .map(|(s, f)| s.load(Ordering::Acquire) * u64::from(*f))
            .sum()
    }

    /// Closed loop: one more recipient has stanza `seq` of `sender`; the sender gets its
    /// permit back when the last one has.
    fn arrived(&self, sender: usize, seq: u64) {
        let (Some(pending), Some(Some(permits)), Some(&fan)) = (
            self.pending.get(sender),
            self.permits.get(sender),
            self.fan.get(sender),
        ) else {
            return;
        };
        let mut p = pending.lock().unwrap_or_else(|p| p.into_inner());
        let n = p.entry(seq).or_insert(0);
        *n += 1;
        if *n >= fan {
            p.remove(&seq);
            permits.add_permits(1);
        }
    }
}

/// What one member received: per sender, the count, the next expected sequence number and
/// how many arrived out of order.
#[derive(Default)]
struct Got {
    from: HashMap<u32, (u64, u64)>,
    out_of_order: u64,
}

struct Feed {
    permits: Option<Arc<Semaphore>>,
    until: Instant,
    due: Option<mpsc::UnboundedReceiver<Instant>>,
}

async fn member(
    idx: usize,
    mut s: ClientSession,
    sh: Arc<Shared>,
    feed: Option<Feed>,
    mut stop: watch::Receiver<bool>,
) -> Got {
    let own_bare = s.jid.to_bare().to_string();
    let mut got = Got::default();
    let mut lat = Samples::new(&sh.latency);
    let mut lags = Samples::new(&sh.send_lag);
    let mut seq = 0u64;
    let sender = u32::try_from(idx).unwrap_or(u32::MAX);
    let mut active = feed.is_some();
    let closed = feed.as_ref().is_some_and(|f| f.permits.is_some());
    let (mut permits, until, mut due) = match feed {
        Some(f) => (f.permits, f.until, f.due),
        None => (None, Instant::now(), None),
    };
    let mut ok = true;
    loop {
        if active && closed && Instant::now() >= until {
            active = false;
            sh.senders_active.fetch_sub(1, Ordering::AcqRel);
        }
        let (intended, stamp) = tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = s.stream.next_element() => {
                let e = match r {
                    Ok(e) => e,
                    Err(e) => {
                        sh.errors.record_text(&format!("member stream: {e}"));
                        sh.sessions_lost.fetch_add(1, Ordering::Relaxed);
                        ok = false;
                        break;
                    }
                };
                let now = Instant::now();
                if let Some(b) = sh.kind.parse(&e, &own_bare) {
                    lat.record(since(sh.epoch, now).saturating_sub(b.sent_ns));
                    let entry = got.from.entry(b.sender).or_default();
                    if b.seq != entry.1 {
                        got.out_of_order += 1;
                    }
                    entry.0 += 1;
                    entry.1 = b.seq.saturating_add(1);
                    sh.delivered.fetch_add(1, Ordering::AcqRel);
                    sh.arrived(b.sender as usize, b.seq);
                } else if sh.kind.is_error(&e) {
                    sh.bounced.fetch_add(1, Ordering::Relaxed);
                    if let Some(p) = &permits {
                        p.add_permits(1);
                    }
                } else if let Some(reply) = reply_to_request(&e) {
                    if let Err(e) = write_raw(&mut s, &reply, sh.timeout).await {
                        sh.errors.record(&e);
                        sh.sessions_lost.fetch_add(1, Ordering::Relaxed);
                        ok = false;
                        break;
                    }
                }
                continue;
            }
            ok = next_permit(&permits), if active && closed => {
                if !ok {
                    break;
                }
                let now = Instant::now();
                if now >= until {
                    if let Some(p) = &permits {
                        p.add_permits(1);
                    }
                    continue;
                }
                (now, false)
            }
            d = next_due(&mut due), if active && !closed => match d {
                Some(t) => (t, true),
                None => {
                    active = false;
                    sh.senders_active.fetch_sub(1, Ordering::AcqRel);
                    continue;
                }
            },
            _ = tokio::time::sleep_until(until.into()), if active && closed => continue,
        };
        if sh.sent_total.fetch_add(1, Ordering::AcqRel) >= MAX_MESSAGES {
            sh.sent_total.fetch_sub(1, Ordering::AcqRel);
            active = false;
            sh.senders_active.fetch_sub(1, Ordering::AcqRel);
            permits = None;
            continue;
        }
        // Counted before the write, so the drain never sees everything delivered while a
        // stanza is still being written.
        if let Some(c) = sh.sent.get(idx) {
            c.fetch_add(1, Ordering::AcqRel);
        }
        let body = Body {
            sender,
            seq,
            sent_ns: since(sh.epoch, intended),
        };
        seq += 1;
        let stanza = sh.kind.stanza(&body, sh.padding);
        if let Err(e) = write_raw(&mut s, &stanza, sh.timeout).await {
            sh.errors.record(&e);
            sh.sessions_lost.fetch_add(1, Ordering::Relaxed);
            ok = false;
            break;
        }
        if stamp {
            lags.record(since(intended, Instant::now()));
        }
    }
    if active {
        sh.senders_active.fetch_sub(1, Ordering::AcqRel);
    }
    drop(lat);
    drop(lags);
    if ok {
        if let Err(e) = crate::conn::close(s, sh.timeout).await {
            sh.errors.record_text(&format!("close: {e}"));
        }
    }
    got
}

/// Logs in accounts `account(i)` for `i` in `0..n` (resource `<resource>i`, initial
/// presence sent), `--concurrency` at a time; a failed login leaves `None`.
pub async fn connect_all(
    t: &Target,
    n: usize,
    label: &str,
    resource: &str,
    account: impl Fn(usize) -> usize + Send + Sync + 'static,
    errors: &Arc<Errors>,
) -> Vec<Option<ClientSession>> {
    let sessions: Arc<Mutex<Vec<Option<ClientSession>>>> =
        Arc::new(Mutex::new((0..n).map(|_| None).collect()));
    let connected = Arc::new(AtomicU64::new(0));
    let progress = {
        let c = connected.clone();
        Progress::start(t.opts.quiet, label, move || {
            format!("{} of {n} sessions", c.load(Ordering::Relaxed))
        })
    };
    let tt = Arc::new(t.clone());
    let (ss, errs, c) = (sessions.clone(), errors.clone(), connected.clone());
    let resource = resource.to_string();
    let deadline = setup_deadline(n, t.opts.concurrency, t.timeout);
    for_each_index(n, t.opts.concurrency, deadline, move |i| {
        let (tt, ss, errs, c) = (tt.clone(), ss.clone(), errs.clone(), c.clone());
        let (acct, res) = (account(i), format!("{resource}{i}"));
        async move {
            match login_available(&tt, acct, res).await {
                Ok(s) => {
                    c.fetch_add(1, Ordering::Relaxed);
                    if let Some(slot) = ss.lock().unwrap_or_else(|p| p.into_inner()).get_mut(i) {
                        *slot = Some(s);
                    }
                }
                Err(e) => errs.record(&e),
            }
        }
    })
    .await;
    drop(progress);
    let out = std::mem::take(&mut *sessions.lock().unwrap_or_else(|p| p.into_inner()));
    out
}

/// The outcome of a fan-out, checked per recipient.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Deliveries the stanzas sent call for: Σ sent(s) × recipients(s).
    pub expected: u64,
    /// Deliveries that were due and arrived.
    pub delivered_expected: u64,
    /// Due deliveries that never arrived.
    pub missing: u64,
    /// Deliveries beyond what was due (duplicates, or to a member that was not a recipient).
    pub extra: u64,
    /// Recipients that missed at least one stanza.
    pub incomplete_receivers: u64,
}

/// Compares what each member got (`got[r]`: sender → count) with what each sender sent
/// and whom it was for.
pub fn tally(sent: &[u64], recipients: &[Vec<usize>], got: &[HashMap<u32, u64>]) -> Tally {
    let mut sources: Vec<Vec<usize>> = vec![Vec::new(); got.len()];
    for (s, rs) in recipients.iter().enumerate() {
        for &r in rs {
            if let Some(v) = sources.get_mut(r) {
                v.push(s);
            }
        }
    }
    let mut t = Tally::default();
    for (r, g) in got.iter().enumerate() {
        let mut due_got = 0u64;
        let mut incomplete = false;
        for &s in &sources[r] {
            let due = sent.get(s).copied().unwrap_or(0);
            let have = g
                .get(&u32::try_from(s).unwrap_or(u32::MAX))
                .copied()
                .unwrap_or(0);
            t.expected += due;
            due_got += have.min(due);
            if have < due {
                t.missing += due - have;
                incomplete = true;
            }
        }
        t.delivered_expected += due_got;
        t.extra += g.values().sum::<u64>() - due_got;
        t.incomplete_receivers += u64::from(incomplete);
    }
    t
}

/// Runs the fan-out on `members` (index = member number; `None` for one that failed to set
/// up, which then neither sends nor receives) and fills the report's counts, rates and
/// latencies. The first `spec.recipients.len()` members send.
pub async fn run(
    t: &Target,
    spec: Spec,
    members: Vec<Option<ClientSession>>,
    rep: &mut Report,
    label: &str,
) {
    let senders = spec.recipients.len();
    // A member that is missing cannot send; its stanzas are due to nobody.
    let present: Vec<bool> = members.iter().map(Option::is_some).collect();
    let recipients: Vec<Vec<usize>> = spec
        .recipients
        .iter()
        .map(|rs| {
            rs.iter()
                .copied()
                .filter(|&r| present.get(r).copied().unwrap_or(false))
                .collect()
        })
        .collect();
    let active_senders = (0..senders)
        .filter(|&s| present.get(s).copied().unwrap_or(false))
        .count();
    let closed = spec.rate.is_none();
    let cpu = crate::report::CpuProbe::start(t.opts.cpu_pid);
    let sh = Arc::new(Shared {
        kind: spec.kind.clone(),
        epoch: Instant::now(),
        padding: spec.padding,
        timeout: t.timeout,
        sent: (0..senders).map(|_| AtomicU64::new(0)).collect(),
        sent_total: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        fan: recipients
            .iter()
            .map(|r| u32::try_from(r.len()).unwrap_or(u32::MAX))
            .collect(),
        pending: (0..senders).map(|_| Mutex::new(HashMap::new())).collect(),
        permits: (0..senders)
            .map(|_| closed.then(|| Arc::new(Semaphore::new(spec.window))))
            .collect(),
        bounced: AtomicU64::new(0),
        sessions_lost: AtomicU64::new(0),
        senders_active: AtomicUsize::new(active_senders),
        latency: Mutex::new(Histogram::new()),
        send_lag: Mutex::new(Histogram::new()),
        errors: Errors::default(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let start = Instant::now() + Duration::from_millis(if closed { 0 } else { 50 });
    let until = start + t.duration;
    let mut feeds = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, m) in members.into_iter().enumerate() {
        let Some(s) = m else { continue };
        let feed = (i < senders).then(|| {
            let due = (!closed).then(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                feeds.push(tx);
                rx
            });
            Feed {
                permits: sh.permits.get(i).cloned().flatten(),
                until,
                due,
            }
        });
        let sh = sh.clone();
        let stop = stop_rx.clone();
        tasks.spawn(async move { (i, member(i, s, sh, feed, stop).await) });
    }
    let progress = {
        let sh = sh.clone();
        Progress::start(t.opts.quiet, label, move || {
            format!(
                "sent {}  delivered {}",
                sh.sent_total.load(Ordering::Relaxed),
                sh.delivered.load(Ordering::Relaxed)
            )
        })
    };
    let open_loop = OpenLoop::start(
        spec.rate,
        start,
        t.duration,
        until + t.timeout,
        std::mem::take(&mut feeds),
    );
    let senders_done = wait_for(until + t.timeout, || {
        sh.senders_active.load(Ordering::Acquire) == 0
    })
    .await;
    let (sched_lag, released) = open_loop.finish().await;
    let send_end = Instant::now();
    let drained = wait_for(send_end + Duration::from_secs_f64(spec.drain), || {
        sh.delivered.load(Ordering::Acquire) + sh.bounced.load(Ordering::Acquire) >= sh.expected()
    })
    .await;
    let end = Instant::now();
    let _ = stop_tx.send(true);
    let mut got: Vec<HashMap<u32, u64>> = vec![HashMap::new(); present.len()];
    let mut out_of_order = 0;
    while let Some(r) = tasks.join_next().await {
        if let Ok((i, g)) = r {
            out_of_order += g.out_of_order;
            if let Some(slot) = got.get_mut(i) {
                *slot = g.from.into_iter().map(|(s, (n, _))| (s, n)).collect();
            }
        }
    }
    drop(progress);

    let sent: Vec<u64> = sh.sent.iter().map(|s| s.load(Ordering::Acquire)).collect();
    let tl = tally(&sent, &recipients, &got);
    let elapsed = end.saturating_duration_since(start);
    rep.elapsed_s = elapsed.as_secs_f64();
    let delivered = sh.delivered.load(Ordering::Acquire);
    rep.set_count("senders", active_senders as u64);
    rep.set_count("sent", sent.iter().sum());
    rep.set_count("expected", tl.expected);
    rep.set_count("delivered", delivered);
    rep.set_count("lost", tl.missing);
    rep.set_count("extra", tl.extra);
    rep.set_count("incomplete_receivers", tl.incomplete_receivers);
    rep.set_count("out_of_order", out_of_order);
    rep.set_count("bounced", sh.bounced.load(Ordering::Relaxed));
    rep.set_count("sessions_lost", sh.sessions_lost.load(Ordering::Relaxed));
    rep.set_count("senders_finished_in_time", u64::from(senders_done));
    rep.set_count("drained", u64::from(drained));
    rep.set_rate("deliveries_per_s", rate(delivered, elapsed));
    rep.set_rate(
        "sent_per_s",
        rate(sent.iter().sum(), send_end.saturating_duration_since(start)),
    );
    rep.set_latency(
        "delivery",
        sh.latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .summary(),
    );
    if let Some(r) = spec.rate {
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
        c.finish(rep, "delivery", delivered);
    }
    for (k, v) in sh.errors.take() {
        *rep.errors.entry(k).or_default() += v;
    }
}

/// Checks the options the fan-out scenarios share.
pub fn check(
    window: usize,
    rate: Option<u64>,
    drain: f64,
    padding: usize,
) -> Result<(), BenchError> {
    if window == 0 || window > 10_000 {
        return Err(BenchError::Usage("--window must be in 1..=10000".into()));
    }
    if rate.is_some_and(|r| r == 0 || r > 1_000_000) {
        return Err(BenchError::Usage("--rate must be in 1..=1000000".into()));
    }
    if !(0.0..=600.0).contains(&drain) || padding > 64 * 1024 {
        return Err(BenchError::Usage(
            "--drain must be in [0, 600] seconds and --body-padding at most 65536".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn got(pairs: &[(u32, u64)]) -> HashMap<u32, u64> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn tally_counts_every_recipient() {
        // Two senders to three members; sender 1 does not send to member 0.
        let recipients = vec![vec![0, 1, 2], vec![1, 2]];
        let sent = [3, 2];
        let all = [
            got(&[(0, 3)]),
            got(&[(0, 3), (1, 2)]),
            got(&[(0, 3), (1, 2)]),
        ];
        assert_eq!(
            tally(&sent, &recipients, &all),
            Tally {
                expected: 13,
                delivered_expected: 13,
                missing: 0,
                extra: 0,
                incomplete_receivers: 0,
            }
        );
        // Member 2 misses one of sender 0's, member 0 gets sender 1's (not due) and a
        // duplicate.
        let some = [
            got(&[(0, 4), (1, 1)]),
            got(&[(0, 3), (1, 2)]),
            got(&[(0, 2), (1, 2)]),
        ];
        assert_eq!(
            tally(&sent, &recipients, &some),
            Tally {
                expected: 13,
                delivered_expected: 12,
                missing: 1,
                extra: 2,
                incomplete_receivers: 1,
            }
        );
        // Nothing sent, nothing due.
        assert_eq!(
            tally(&[0, 0], &recipients, &[got(&[]), got(&[]), got(&[])]),
            Tally::default()
        );
    }

    #[test]
    fn stanzas_are_recognised() {
        let b = Body {
            sender: 2,
            seq: 5,
            sent_ns: 99,
        };
        let muc = Kind::Muc {
            room: "r@conference.localhost".into(),
        };
        assert!(muc.stanza(&b, 0).contains("type='groupchat'"));
        let m = Element::new("message", ns::CLIENT)
            .attr("type", "groupchat")
            .attr("from", "r@conference.localhost/o2")
            .child(Element::new("body", ns::CLIENT).text(b.format(0)));
        assert_eq!(muc.parse(&m, "bench0@localhost"), Some(b));
        // History is not counted.
        let h = m.clone().child(Element::new("delay", ns::DELAY));
        assert_eq!(muc.parse(&h, "bench0@localhost"), None);
        let p = Element::new("presence", ns::CLIENT)
            .attr("from", "bench2@localhost/r")
            .child(Element::new("status", ns::CLIENT).text(b.format(4)));
        assert_eq!(Kind::Presence.parse(&p, "bench0@localhost"), Some(b));
        // Our own presence, and unavailable presence, are not counted.
        assert_eq!(Kind::Presence.parse(&p, "bench2@localhost"), None);
        let u = p.clone().attr("type", "unavailable");
        assert_eq!(Kind::Presence.parse(&u, "bench0@localhost"), None);
        assert!(Kind::Presence
            .stanza(&b, 0)
            .starts_with("<presence><show>away"));
    }
}
