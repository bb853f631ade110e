//! Statistics for the scenarios: a log-linear latency histogram with percentiles, rates,
//! and the open-loop schedule of intended send times.
//!
//! Everything here is plain arithmetic on integers (nanoseconds), so it is unit-tested
//! without sockets or clocks.

use serde::Serialize;
use std::time::{Duration, Instant};

/// Sub-buckets per power of two, as a power of two: 2^7 = 128, so a recorded value is
/// reported within 1/128 (< 0.8 %) of what was recorded, at any magnitude.
const SUB_BITS: u32 = 7;
const SUB_COUNT: u64 = 1 << SUB_BITS;
/// Values below this are their own bucket (exact).
const LINEAR: u64 = 2 * SUB_COUNT;
/// Enough buckets for any `u64`.
const BUCKETS: usize = (LINEAR + (64 - SUB_BITS as u64 - 1) * SUB_COUNT) as usize;

/// Bucket of a value: exact below `LINEAR`, then `SUB_COUNT` equal-width buckets per power
/// of two. Fixed memory (about 60 KiB) whatever is recorded, and merging is addition.
fn bucket(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let bits = 64 - v.leading_zeros(); // > SUB_BITS + 1
    let shift = bits - SUB_BITS - 1;
    let sub = (v >> shift) - SUB_COUNT; // in 0..SUB_COUNT
    (LINEAR + u64::from(shift - 1) * SUB_COUNT + sub) as usize
}

/// The highest value that falls in bucket `i` (what a percentile reports: never less than
/// the samples it stands for).
fn bucket_high(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let shift = (i - LINEAR) / SUB_COUNT + 1;
    let sub = (i - LINEAR) % SUB_COUNT;
    let low = (SUB_COUNT + sub) << shift;
    low.saturating_add((1u64 << shift) - 1)
}

/// A histogram of non-negative integer samples (nanoseconds, in this crate).
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    min: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.total)
            .field("min", &self.min())
            .field("max", &self.max())
            .finish()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one sample.
    pub fn record(&mut self, v: u64) {
        self.counts[bucket(v)] += 1;
        self.total += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += u128::from(v);
    }

    /// Records a duration in nanoseconds (saturating at `u64::MAX`, some 584 years).
    pub fn record_duration(&mut self, d: Duration) {
        self.record(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Adds another histogram's samples to this one.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The smallest sample (exact).
    pub fn min(&self) -> Option<u64> {
        (self.total > 0).then_some(self.min)
    }

    /// The largest sample (exact).
    pub fn max(&self) -> Option<u64> {
        (self.total > 0).then_some(self.max)
    }

    /// The mean of the samples (exact).
    pub fn mean(&self) -> Option<f64> {
        (self.total > 0).then(|| self.sum as f64 / self.total as f64)
    }

    /// The nearest-rank percentile: the smallest recorded value (to the bucket's precision)
    /// such that at least `q` of the samples are at or below it. `q` in `[0, 1]`; `None`
    /// when nothing was recorded. Never above the true maximum.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = nearest_rank(self.total, q);
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(bucket_high(i).min(self.max).max(self.min));
            }
        }
        Some(self.max)
    }

    /// p50/p90/p99/p99.9/max and friends, in microseconds.
    pub fn summary(&self) -> Percentiles {
        let us = |v: Option<u64>| v.map(|n| n as f64 / 1000.0).unwrap_or(0.0);
        Percentiles {
            count: self.total,
            min_us: us(self.min()),
            mean_us: self.mean().map(|m| m / 1000.0).unwrap_or(0.0),
            p50_us: us(self.quantile(0.50)),
            p90_us: us(self.quantile(0.90)),
            p99_us: us(self.quantile(0.99)),
            p999_us: us(self.quantile(0.999)),
            max_us: us(self.max()),
        }
    }
}

/// 1-based rank of the `q` quantile among `n` samples (nearest-rank method).
fn nearest_rank(n: u64, q: f64) -> u64 {
    let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
    ((q * n as f64).ceil() as u64).clamp(1, n)
}

/// The nearest-rank percentile of already sorted samples (exact, for small sample sets and
/// to check the histogram against).
pub fn quantile_sorted(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = nearest_rank(sorted.len() as u64, q);
    sorted.get(rank as usize - 1).copied()
}

/// Latency percentiles of one measurement, in microseconds (0 when nothing was recorded;
/// `count` tells).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Smallest sample.
    pub min_us: f64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest sample.
    pub max_us: f64,
}

/// Events per second over `elapsed`; 0 for an empty interval rather than infinity.
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    let s = elapsed.as_secs_f64();
    if s <= 0.0 {
        0.0
    } else {
        count as f64 / s
    }
}

/// The open-loop schedule: message `k` is due at `start + k / rate` seconds, computed from
/// `k` each time in integer nanoseconds, so the schedule never drifts (no accumulated
/// period rounding, no dependence on when earlier messages actually went out).
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    start: Instant,
    rate_per_s: u64,
}

impl Schedule {
    /// `rate_per_s` must be at least 1 (0 is taken as 1).
    pub fn new(start: Instant, rate_per_s: u64) -> Self {
        Schedule {
            start,
            rate_per_s: rate_per_s.max(1),
        }
    }

    /// Offset of message `k` from the start.
    pub fn offset(&self, k: u64) -> Duration {
        let ns = u128::from(k) * 1_000_000_000 / u128::from(self.rate_per_s);
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// The intended send time of message `k`.
    pub fn at(&self, k: u64) -> Instant {
        self.start + self.offset(k)
    }

    /// When message 0 is due.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// How many messages are due strictly within `d` of the start.
    pub fn count_within(&self, d: Duration) -> u64 {
        // Smallest k with k * 1e9 / rate >= d_ns (integer division), i.e. the count of
        // k whose offset is below d.
        let d_ns = d.as_nanos();
        let rate = u128::from(self.rate_per_s);
        // offset(k) < d  <=>  floor(k*1e9/rate) < d_ns  <=>  k*1e9 < d_ns*rate
        // <=>  k < d_ns*rate/1e9 (rounded up).
        let n = (d_ns * rate).div_ceil(1_000_000_000);
        u64::try_from(n).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_bounded() {
        let mut last = 0usize;
        // Every boundary region: each bucket index is reached in order, without gaps.
        for v in 0..100_000u64 {
            let b = bucket(v);
            assert!(b == last || b == last + 1, "gap at {v}: {last} -> {b}");
            assert!(bucket_high(b) >= v, "high of bucket {b} below {v}");
            last = b;
        }
        assert!(bucket(u64::MAX) < BUCKETS);
        assert_eq!(bucket_high(bucket(u64::MAX)), u64::MAX);
    }

    #[test]
    fn relative_error_is_small() {
        for v in [
            1u64,
            255,
            256,
            257,
            1000,
            12_345,
            999_999,
            123_456_789,
            1 << 40,
        ] {
            let hi = bucket_high(bucket(v));
            let err = (hi - v) as f64 / v as f64;
            assert!(err < 1.0 / SUB_COUNT as f64, "{v}: {hi} ({err})");
        }
    }

    #[test]
    fn exact_percentiles_of_small_values() {
        let mut h = Histogram::new();
        for v in 1..=100u64 {
            h.record(v);
        }
        assert_eq!(h.count(), 100);
        assert_eq!(h.quantile(0.5), Some(50));
        assert_eq!(h.quantile(0.9), Some(90));
        assert_eq!(h.quantile(0.99), Some(99));
        assert_eq!(h.quantile(0.999), Some(100));
        assert_eq!(h.quantile(1.0), Some(100));
        assert_eq!(h.quantile(0.0), Some(1));
        assert_eq!(h.min(), Some(1));
        assert_eq!(h.max(), Some(100));
        assert_eq!(h.mean(), Some(50.5));
    }

    #[test]
    fn histogram_agrees_with_sorted_samples() {
        // A skewed distribution over several magnitudes (a deterministic LCG).
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut samples = Vec::new();
        let mut h = Histogram::new();
        for _ in 0..50_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = 1_000
                + (x >> 33) % 1_000
                + if (x >> 20).is_multiple_of(100) {
                    5_000_000
                } else {
                    0
                };
            samples.push(v);
            h.record(v);
        }
        samples.sort_unstable();
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            let exact = quantile_sorted(&samples, q).expect("samples");
            let approx = h.quantile(q).expect("recorded");
            assert!(approx >= exact, "q{q}: {approx} < {exact}");
            let err = (approx - exact) as f64 / exact as f64;
            assert!(err < 0.01, "q{q}: {approx} vs exact {exact}");
        }
        // 1 % of the samples are slow: p90 is fast, p99.9 is slow.
        assert!(h.quantile(0.9).expect("p90") < 3_000);
        assert!(h.quantile(0.999).expect("p999") > 5_000_000);
    }

    #[test]
    fn quantiles_never_exceed_max_or_fall_below_min() {
        let mut h = Histogram::new();
        h.record(1_000_003);
        assert_eq!(h.quantile(0.5), Some(1_000_003));
        assert_eq!(h.quantile(0.999), Some(1_000_003));
    }

    #[test]
    fn merge_adds_up() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        for v in 0..10 {
            a.record(v);
            b.record(1000 + v);
        }
        a.merge(&b);
        assert_eq!(a.count(), 20);
        assert_eq!(a.min(), Some(0));
        assert_eq!(a.max(), Some(1009));
        assert_eq!(a.quantile(0.5), Some(9));
        // Merging an empty histogram changes nothing.
        a.merge(&Histogram::new());
        assert_eq!(a.count(), 20);
        assert_eq!(a.min(), Some(0));
    }

    #[test]
    fn empty_histogram_reports_nothing() {
        let h = Histogram::new();
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(h.summary(), Percentiles::default());
        assert_eq!(quantile_sorted(&[], 0.5), None);
    }

    #[test]
    fn summary_is_in_microseconds() {
        let mut h = Histogram::new();
        h.record_duration(Duration::from_micros(250));
        let s = h.summary();
        assert_eq!(s.count, 1);
        assert!((s.p50_us - 250.0).abs() < 250.0 / 128.0, "{s:?}");
        assert_eq!(s.max_us, 250.0);
    }

    #[test]
    fn sorted_quantiles_use_nearest_rank() {
        let s = [10, 20, 30, 40];
        assert_eq!(quantile_sorted(&s, 0.25), Some(10));
        assert_eq!(quantile_sorted(&s, 0.26), Some(20));
        assert_eq!(quantile_sorted(&s, 0.5), Some(20));
        assert_eq!(quantile_sorted(&s, 0.99), Some(40));
    }

    #[test]
    fn rates() {
        assert_eq!(rate(500, Duration::from_millis(250)), 2000.0);
        assert_eq!(rate(5, Duration::ZERO), 0.0);
    }

    #[test]
    fn schedule_is_exact_and_does_not_drift() {
        let start = Instant::now();
        let s = Schedule::new(start, 3);
        // 1/3 s does not divide into nanoseconds: summing periods would drift by
        // 1/3 ns per message; the schedule is computed from k instead.
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.offset(1), Duration::from_nanos(333_333_333));
        assert_eq!(s.offset(2), Duration::from_nanos(666_666_666));
        assert_eq!(s.offset(3), Duration::from_secs(1));
        assert_eq!(s.offset(3_000_000), Duration::from_secs(1_000_000));
        assert_eq!(s.at(30), start + Duration::from_secs(10));
        let s = Schedule::new(start, 200);
        assert_eq!(s.offset(1), Duration::from_millis(5));
        assert_eq!(s.offset(200 * 3600), Duration::from_secs(3600));
        // Monotonic, with steps that differ by at most a nanosecond.
        let s = Schedule::new(start, 7);
        let mut prev = s.offset(0);
        for k in 1..10_000 {
            let o = s.offset(k);
            let step = o - prev;
            assert!(
                step >= Duration::from_nanos(142_857_142)
                    && step <= Duration::from_nanos(142_857_143),
                "{k}: {step:?}"
            );
            prev = o;
        }
    }

    #[test]
    fn schedule_counts_messages_in_a_window() {
        let s = Schedule::new(Instant::now(), 200);
        assert_eq!(s.count_within(Duration::from_secs(1)), 200);
        assert_eq!(s.count_within(Duration::from_millis(1001)), 201);
        assert_eq!(s.count_within(Duration::ZERO), 0);
        let s = Schedule::new(Instant::now(), 3);
        assert_eq!(s.count_within(Duration::from_secs(1)), 3);
        // Every counted message is due within the window, the next one is not.
        for ms in [1u64, 333, 334, 999, 1000, 1001, 2500] {
            let d = Duration::from_millis(ms);
            let n = s.count_within(d);
            assert!(n == 0 || s.offset(n - 1) < d, "{ms}");
            assert!(s.offset(n) >= d, "{ms}");
        }
        assert_eq!(
            Schedule::new(Instant::now(), 0).offset(1),
            Duration::from_secs(1)
        );
    }
}
