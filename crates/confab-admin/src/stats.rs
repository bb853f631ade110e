//! The dashboard's figures: sampled every `PERIOD` by a timer (sessions by transport,
//! stanzas received per second from the sessions' own counters — nothing is added to the
//! routing path — resident memory and CPU from `/proc/self`), the last `SAMPLES` kept for the
//! live charts.

use crate::Console;
use confab_server::ServerCtx;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the figures are sampled.
pub const PERIOD: Duration = Duration::from_secs(2);
/// Samples kept (three minutes).
pub const SAMPLES: usize = 90;

/// One sample.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub sessions: usize,
    pub by_transport: BTreeMap<&'static str, usize>,
    /// Stanzas received from clients per second since the previous sample.
    pub stanzas_per_sec: f64,
    /// Resident memory, bytes (Linux).
    pub rss: Option<u64>,
    /// CPU used by the process since the previous sample, percent of one core (Linux).
    pub cpu_percent: Option<f64>,
}

#[derive(Default)]
pub struct Stats {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    samples: VecDeque<Sample>,
    /// Per session id, the last seen count of received stanzas (the counter wraps).
    counts: std::collections::HashMap<u64, u32>,
    last: Option<(Instant, u64)>,
}

impl Stats {
    /// The samples, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        self.inner
            .lock()
            .map(|i| i.samples.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Takes a sample now.
    pub fn sample(&self, ctx: &ServerCtx) {
        let sessions = ctx.router.all_sessions();
        let mut by_transport = BTreeMap::new();
        let mut counts = std::collections::HashMap::with_capacity(sessions.len());
        for s in &sessions {
            let t = s.connection().map_or("tcp", |c| c.transport);
            *by_transport.entry(t).or_insert(0) += 1;
            counts.insert(s.id, s.stanzas_in());
        }
        let cpu_ticks = cpu_ticks();
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        // Stanzas since the last sample, over sessions seen both times.
        let received: u64 = counts
            .iter()
            .filter_map(|(id, now)| {
                inner
                    .counts
                    .get(id)
                    .map(|was| now.wrapping_sub(*was) as u64)
            })
            .sum();
        let now = Instant::now();
        let (stanzas_per_sec, cpu_percent) = match inner.last {
            Some((at, ticks)) => {
                let secs = now.duration_since(at).as_secs_f64().max(0.001);
                (
                    received as f64 / secs,
                    cpu_ticks
                        .map(|t| t.saturating_sub(ticks) as f64 / TICKS_PER_SEC / secs * 100.0),
                )
            }
            None => (0.0, None),
        };
        inner.last = Some((now, cpu_ticks.unwrap_or(0)));
        inner.counts = counts;
        inner.samples.push_back(Sample {
            sessions: sessions.len(),
            by_transport,
            stanzas_per_sec,
            rss: rss_bytes(),
            cpu_percent,
        });
        while inner.samples.len() > SAMPLES {
            inner.samples.pop_front();
        }
    }
}

/// Clock ticks per second of `/proc/self/stat` (USER_HZ, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces, inside parentheses).
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The timer that samples.
pub struct Sampler(pub Arc<Console>);

#[async_trait::async_trait]
impl confab_server::module::Timer for Sampler {
    async fn tick(&self, ctx: &ServerCtx) {
        self.0.stats.sample(ctx);
    }
}
