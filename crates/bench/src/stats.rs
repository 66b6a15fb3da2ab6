//! Latency summaries: nearest-rank percentiles over a sorted sample, in
//! milliseconds, as the JSON results report them.

use std::time::Duration;

use serde::Serialize;

/// Percentiles of a latency sample, all in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Number of samples.
    pub count: usize,
    /// Smallest sample.
    pub min_ms: f64,
    /// Arithmetic mean.
    pub mean_ms: f64,
    /// Median (nearest rank).
    pub p50_ms: f64,
    /// 90th percentile (nearest rank).
    pub p90_ms: f64,
    /// 99th percentile (nearest rank).
    pub p99_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
}

impl Summary {
    /// Summarises `samples`; `None` when there are none (a run where every
    /// request failed has no latency to report, and saying 0 would lie).
    pub fn of(samples: &[Duration]) -> Option<Summary> {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        Summary::of_ms(&mut ms)
    }

    /// Summarises samples already in milliseconds (sorts them in place).
    pub fn of_ms(ms: &mut [f64]) -> Option<Summary> {
        if ms.is_empty() {
            return None;
        }
        ms.sort_by(f64::total_cmp);
        let mean = ms.iter().sum::<f64>() / ms.len() as f64;
        Some(Summary {
            count: ms.len(),
            min_ms: round3(ms[0]),
            mean_ms: round3(mean),
            p50_ms: round3(percentile(ms, 50.0)),
            p90_ms: round3(percentile(ms, 90.0)),
            p99_ms: round3(percentile(ms, 99.0)),
            max_ms: round3(ms[ms.len() - 1]),
        })
    }

    /// `p50 x / p99 y / max z ms`, for the human line.
    pub fn short(&self) -> String {
        format!(
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (n={})",
            self.p50_ms, self.p99_ms, self.max_ms, self.count
        )
    }
}

/// Nearest-rank percentile of an ascending, non-empty slice: the smallest
/// sample such that at least `p`% of the samples are <= it. Unlike
/// interpolation it always reports a latency that was actually observed.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    debug_assert!(!sorted.is_empty());
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

/// Rounds to microsecond resolution so the JSON stays readable.
fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

/// `count / elapsed`, 0 when no time passed.
pub fn rate(count: usize, elapsed: Duration) -> f64 {
    let s = elapsed.as_secs_f64();
    if s > 0.0 {
        (count as f64 / s * 10.0).round() / 10.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_of_one_to_hundred() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
    }

    #[test]
    fn p99_of_a_small_sample_is_its_maximum() {
        let v = [1.0, 2.0, 3.0];
        assert_eq!(percentile(&v, 99.0), 3.0);
        assert_eq!(percentile(&v, 50.0), 2.0);
    }

    #[test]
    fn summary_sorts_and_reports_milliseconds() {
        let samples: Vec<Duration> = [5u64, 1, 3, 2, 4]
            .iter()
            .map(|&ms| Duration::from_millis(ms))
            .collect();
        let s = Summary::of(&samples).expect("non-empty sample");
        assert_eq!(s.count, 5);
        assert_eq!(s.min_ms, 1.0);
        assert_eq!(s.p50_ms, 3.0);
        assert_eq!(s.p99_ms, 5.0);
        assert_eq!(s.max_ms, 5.0);
        assert_eq!(s.mean_ms, 3.0);
    }

    #[test]
    fn no_samples_no_summary() {
        assert_eq!(Summary::of(&[]), None);
    }

    #[test]
    fn rate_is_per_second() {
        assert_eq!(rate(500, Duration::from_millis(250)), 2000.0);
        assert_eq!(rate(5, Duration::ZERO), 0.0);
    }
}
