//! Latency percentiles from every recorded sample (sorted, exact: a run records at most a few
//! million samples, so no histogram approximation is needed).

use std::time::Duration;

/// Latency summary of one kind of operation, in microseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub(crate) struct Latency {
    pub(crate) ops: u64,
    pub(crate) mean_us: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) p999_us: f64,
    pub(crate) max_us: f64,
}

impl Latency {
    /// Summarizes `samples` (nanoseconds); sorts them.
    pub(crate) fn of(samples: &mut [u64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let n = samples.len();
        let at = |q: f64| {
            // Nearest rank: the smallest sample with at least q of all samples at or below it.
            let rank = (q * n as f64).ceil() as usize;
            us(samples[rank.clamp(1, n) - 1])
        };
        let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
        Self {
            ops: n as u64,
            mean_us: sum as f64 / n as f64 / 1e3,
            p50_us: at(0.50),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us: us(samples[n - 1]),
        }
    }

    pub(crate) fn line(&self) -> String {
        format!(
            "p50 {}  p99 {}  p99.9 {}  max {}  mean {}",
            ms(self.p50_us),
            ms(self.p99_us),
            ms(self.p999_us),
            ms(self.max_us),
            ms(self.mean_us)
        )
    }
}

/// Nanoseconds of a duration, saturating.
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn us(nanos: u64) -> f64 {
    nanos as f64 / 1e3
}

fn ms(us: f64) -> String {
    format!("{:.3} ms", us / 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut samples: Vec<u64> = (1..=1000).rev().map(|i| i * 1000).collect();
        let l = Latency::of(&mut samples);
        assert_eq!(l.ops, 1000);
        assert_eq!(l.p50_us, 500.0);
        assert_eq!(l.p99_us, 990.0);
        assert_eq!(l.p999_us, 999.0);
        assert_eq!(l.max_us, 1000.0);
        assert_eq!(Latency::of(&mut [7000]).p999_us, 7.0);
        assert_eq!(Latency::of(&mut []).ops, 0);
    }
}
