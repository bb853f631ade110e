//! What a scenario reports: counts, rates, latency percentiles and the server's memory, as
//! JSON for machines and as a short summary for people; the progress line; errors grouped
//! by kind.

use crate::stats::Percentiles;
use crate::BenchError;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The server's resident memory, read from `/proc/PID/status` (VmRSS).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Rss {
    /// The measured process.
    pub pid: u32,
    /// Before any session was opened.
    pub before_kib: u64,
    /// Once every session was connected (and the settle time passed).
    pub connected_kib: u64,
    /// At the end of the hold, sessions still open.
    pub after_kib: u64,
    /// Sessions open at the end of the hold.
    pub sessions: u64,
    /// `(after - before) / sessions`.
    pub kib_per_session: f64,
}

/// The result of one scenario run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `register`, `login`, `chat`, `chat-open-loop` or `idle`.
    pub scenario: String,
    /// The options the run used (the password left out).
    pub options: serde_json::Value,
    /// Seconds of the measured phase.
    pub elapsed_s: f64,
    /// What was counted (sent, delivered, lost, ok, failed, ...).
    pub counts: BTreeMap<String, u64>,
    /// Per-second rates.
    pub rates: BTreeMap<String, f64>,
    /// Latency percentiles in microseconds, by what was measured.
    pub latency: BTreeMap<String, Percentiles>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The server's memory, when `--pid` was given.
    pub server_rss: Option<Rss>,
    /// Failures grouped by their message.
    pub errors: BTreeMap<String, u64>,
    /// The server's CPU time per operation, when `--cpu-pid` was given: `server_cpu_s`
    /// over the measured phase and `server_cpu_us_per_<operation>`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub server_cpu: BTreeMap<String, f64>,
}

impl Report {
    /// An empty report of this scenario.
    pub fn new(scenario: &str, options: serde_json::Value) -> Self {
        Report {
            scenario: scenario.to_string(),
            options,
            elapsed_s: 0.0,
            counts: BTreeMap::new(),
            rates: BTreeMap::new(),
            latency: BTreeMap::new(),
            server_rss: None,
            errors: BTreeMap::new(),
            server_cpu: BTreeMap::new(),
        }
    }

    /// A count by name, 0 if absent (so tests read a missing count as zero).
    pub fn count(&self, name: &str) -> u64 {
        self.counts.get(name).copied().unwrap_or(0)
    }

    /// Sets a count.
    pub fn set_count(&mut self, name: &str, v: u64) {
        self.counts.insert(name.to_string(), v);
    }

    /// Sets a rate.
    pub fn set_rate(&mut self, name: &str, v: f64) {
        self.rates.insert(name.to_string(), v);
    }

    /// Sets a latency summary.
    pub fn set_latency(&mut self, name: &str, p: Percentiles) {
        self.latency.insert(name.to_string(), p);
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        // Serializing plain maps and numbers cannot fail; a fallback keeps this infallible.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The human summary printed on stdout.
    pub fn summary(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(out, "{}: {:.2} s", self.scenario, self.elapsed_s);
        if !self.counts.is_empty() {
            let c: Vec<String> = self
                .counts
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(out, "  counts: {}", c.join(", "));
        }
        for (k, v) in &self.rates {
            let _ = writeln!(out, "  {k}: {v:.1}");
        }
        if !self.latency.is_empty() {
            let _ = writeln!(
                out,
                "  {:<26} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10}  (µs)",
                "latency", "count", "p50", "p90", "p99", "p99.9", "max"
            );
            for (k, p) in &self.latency {
                let _ = writeln!(
                    out,
                    "  {:<26} {:>9} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
                    k, p.count, p.p50_us, p.p90_us, p.p99_us, p.p999_us, p.max_us
                );
            }
        }
        if let Some(r) = &self.server_rss {
            let _ = writeln!(
                out,
                "  server RSS (pid {}): {} KiB before, {} KiB connected, {} KiB after; \
                 {:.1} KiB per session over {} sessions",
                r.pid, r.before_kib, r.connected_kib, r.after_kib, r.kib_per_session, r.sessions
            );
        }
        for (k, v) in &self.server_cpu {
            let _ = writeln!(out, "  {k}: {v:.2}");
        }
        for (k, v) in &self.errors {
            let _ = writeln!(out, "  error ×{v}: {k}");
        }
        out
    }
}

/// Linux's USER_HZ: the unit of the CPU times in /proc/PID/stat (100 on every Linux
/// architecture that matters here).
const TICKS_PER_S: u64 = 100;

/// utime + stime (all threads, in clock ticks) from a /proc/PID/stat line. The command
/// name may hold spaces and parentheses, so fields are counted after its last `)`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    // After `)`: field 3 (state) onwards; utime is field 14, stime 15.
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The server's CPU time over a phase: taken at its start, read at its end.
pub struct CpuProbe {
    pid: u32,
    start: u64,
}

impl CpuProbe {
    /// Starts measuring `pid` (`None` when no pid was given or it cannot be read).
    pub fn start(pid: Option<u32>) -> Option<CpuProbe> {
        let pid = pid?;
        Some(CpuProbe {
            pid,
            start: Self::ticks(pid)?,
        })
    }

    fn ticks(pid: u32) -> Option<u64> {
        parse_stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    /// Records the CPU seconds used since the start, and per operation (`ops` of `what`),
    /// in the report.
    pub fn finish(self, rep: &mut Report, what: &str, ops: u64) {
        let Some(now) = Self::ticks(self.pid) else {
            return;
        };
        let us = now.saturating_sub(self.start) * (1_000_000 / TICKS_PER_S);
        rep.server_cpu
            .insert("server_cpu_s".into(), us as f64 / 1_000_000.0);
        if ops > 0 {
            rep.server_cpu
                .insert(format!("server_cpu_us_per_{what}"), us as f64 / ops as f64);
        }
    }
}

/// Failures grouped by message, with a bound on how many kinds are kept (a server that
/// answers every request differently cannot grow the report).
#[derive(Default)]
pub struct Errors(Mutex<BTreeMap<String, u64>>);

const MAX_ERROR_KINDS: usize = 32;

impl Errors {
    /// Counts one failure under its message.
    pub fn record(&self, e: &BenchError) {
        self.record_text(&e.to_string());
    }

    /// Counts one failure under this text (the first 160 characters).
    pub fn record_text(&self, text: &str) {
        let mut key: String = text.chars().take(160).collect();
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !m.contains_key(&key) && m.len() >= MAX_ERROR_KINDS {
            key = "(other errors)".into();
        }
        *m.entry(key).or_default() += 1;
    }

    /// The failures counted so far, leaving none.
    pub fn take(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// A progress line on stderr, redrawn in place on a terminal and printed every few
/// seconds otherwise, until dropped.
pub struct Progress {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    /// Starts printing `line()` (unless `quiet`). A thread, not a task, so a busy runtime
    /// does not freeze the progress line.
    pub fn start(
        quiet: bool,
        scenario: &str,
        line: impl Fn() -> String + Send + 'static,
    ) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        if quiet {
            return Progress { stop, handle: None };
        }
        let tty = std::io::stderr().is_terminal();
        let every = if tty {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(5)
        };
        let scenario = scenario.to_string();
        let flag = stop.clone();
        let start = Instant::now();
        let handle = std::thread::spawn(move || {
            let mut next = Instant::now() + every;
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                if Instant::now() < next {
                    continue;
                }
                next += every;
                let text = format!(
                    "[{scenario}] {:>6.1} s  {}",
                    start.elapsed().as_secs_f64(),
                    line()
                );
                let mut err = std::io::stderr().lock();
                let _ = if tty {
                    write!(err, "\r\x1b[K{text}")
                } else {
                    writeln!(err, "{text}")
                };
                let _ = err.flush();
            }
            if tty {
                let _ = writeln!(std::io::stderr());
            }
        });
        Progress {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_sections() {
        let mut r = Report::new("login", serde_json::json!({"users": 3}));
        r.set_count("ok", 3);
        r.set_rate("logins_per_s", 12.5);
        r.set_latency("login", Percentiles::default());
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).expect("valid JSON");
        assert_eq!(v["scenario"], "login");
        assert_eq!(v["counts"]["ok"], 3);
        assert_eq!(v["rates"]["logins_per_s"], 12.5);
        assert_eq!(v["options"]["users"], 3);
        assert!(v["latency"]["login"]["p99_us"].is_number());
        assert!(v.get("server_rss").is_none());
        assert_eq!(r.count("missing"), 0);
        assert!(r.summary().contains("ok 3"));
    }

    #[test]
    fn cpu_ticks_are_read_from_stat() {
        let stat = "1234 (a (b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 \
                    250 75 0 0 20 0 4 0 500 1000 200";
        assert_eq!(parse_stat_ticks(stat), Some(325));
        assert_eq!(parse_stat_ticks("1234 (x) S 1 2"), None);
        assert_eq!(parse_stat_ticks("garbage"), None);
        // Our own process: readable, and CPU per operation lands in the report.
        let probe = CpuProbe::start(Some(std::process::id())).expect("own stat readable");
        let mut r = Report::new("x", serde_json::json!({}));
        probe.finish(&mut r, "op", 10);
        assert!(r.server_cpu.contains_key("server_cpu_s"));
        assert!(r.server_cpu.contains_key("server_cpu_us_per_op"));
        assert!(CpuProbe::start(None).is_none());
    }

    #[test]
    fn error_kinds_are_bounded() {
        let e = Errors::default();
        for i in 0..100 {
            e.record_text(&format!("kind {i}"));
        }
        e.record_text("kind 0");
        let m = e.take();
        assert_eq!(m.len(), MAX_ERROR_KINDS + 1);
        assert_eq!(m["kind 0"], 2);
        assert_eq!(m["(other errors)"], 100 - MAX_ERROR_KINDS as u64);
    }
}
