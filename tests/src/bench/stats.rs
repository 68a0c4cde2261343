//! Latency statistics: nearest-rank percentiles over a set of samples, and how durations
//! and ratios are written in the report.

use std::time::Duration;

/// p50, p90, p99 and max of a set of latencies (nearest-rank percentiles: the smallest
/// sample such that at least `q` of all samples are at or below it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Number of samples.
    pub count: usize,
    /// Smallest sample.
    pub min: Duration,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest sample.
    pub max: Duration,
}

impl Summary {
    /// The summary of `samples`; `None` when there are none.
    pub fn of(samples: &[Duration]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        Some(Self {
            count: sorted.len(),
            min: sorted[0],
            p50: percentile(&sorted, 0.50),
            p90: percentile(&sorted, 0.90),
            p99: percentile(&sorted, 0.99),
            max: sorted[sorted.len() - 1],
        })
    }
}

/// Nearest-rank percentile `q` (0 < q ≤ 1) of samples sorted ascending (not empty).
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    assert!(!sorted.is_empty(), "percentile of no samples");
    let n = sorted.len();
    // The rank is an integer in 1..=n; the float product only rounds up.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    sorted[rank - 1]
}

/// A latency for the report: `0.84 ms`, `12.3 ms`, `1.53 s`, `29.9 s`.
pub fn fmt_latency(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else if ms < 10_000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

/// A poll interval for the report: `1 s`, `30 s`, `500 ms`.
pub fn fmt_interval(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// How many times slower `baseline` is than `ours`: `×1`, `×4.2`, `×1480`.
pub fn fmt_ratio(baseline: Duration, ours: Duration) -> String {
    if ours.is_zero() {
        return "n/a".into();
    }
    let r = baseline.as_secs_f64() / ours.as_secs_f64();
    if r < 10.0 {
        format!("×{r:.1}")
    } else {
        format!("×{r:.0}")
    }
}

/// A per-handoff count: `1`, `1.02`.
pub fn fmt_count(x: f64) -> String {
    if (x - x.round()).abs() < 0.005 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&x| Duration::from_millis(x)).collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=200).map(Duration::from_millis).collect();
        let s = Summary::of(&samples).unwrap();
        assert_eq!(s.count, 200);
        assert_eq!(s.min, Duration::from_millis(1));
        assert_eq!(s.p50, Duration::from_millis(100));
        assert_eq!(s.p90, Duration::from_millis(180));
        assert_eq!(s.p99, Duration::from_millis(198));
        assert_eq!(s.max, Duration::from_millis(200));
    }

    #[test]
    fn order_of_samples_does_not_matter_and_small_sets_work() {
        let s = Summary::of(&ms(&[30, 10, 20])).unwrap();
        assert_eq!(s.p50, Duration::from_millis(20));
        assert_eq!(s.p90, Duration::from_millis(30));
        assert_eq!(s.p99, Duration::from_millis(30));
        let one = Summary::of(&ms(&[7])).unwrap();
        assert_eq!(
            (one.p50, one.p99, one.max),
            (ms(&[7])[0], ms(&[7])[0], ms(&[7])[0])
        );
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_latency(Duration::from_micros(840)), "0.84 ms");
        assert_eq!(fmt_latency(Duration::from_micros(12_340)), "12.3 ms");
        assert_eq!(fmt_latency(Duration::from_millis(1530)), "1.53 s");
        assert_eq!(fmt_latency(Duration::from_millis(29_940)), "29.9 s");
        assert_eq!(fmt_interval(Duration::from_secs(30)), "30 s");
        assert_eq!(fmt_interval(Duration::from_millis(500)), "500 ms");
        assert_eq!(
            fmt_ratio(Duration::from_secs(15), Duration::from_millis(10)),
            "×1500"
        );
        assert_eq!(
            fmt_ratio(Duration::from_millis(42), Duration::from_millis(10)),
            "×4.2"
        );
        assert_eq!(fmt_count(1.0), "1");
        assert_eq!(fmt_count(1.015), "1.01");
    }
}
