//! Summaries of samples: nearest-rank percentiles, so every figure reported is a
//! value that was actually measured (with 30 samples, p99 is the maximum); and the
//! classic median (the mean of the two middle samples of an even count), which
//! `ha-bench` reports for its rounds and per-round ratios.

use serde::Serialize;

/// A summary of `n` samples.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Dist {
    pub n: usize,
    pub min: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
    /// The middle sample, or the mean of the two middle ones. Not in `ha-bench-lab`'s
    /// documents, which give the nearest-rank p50.
    #[serde(skip)]
    pub median: f64,
}

/// Which statistic a target applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stat {
    P50,
    P99,
    Max,
}

impl Dist {
    /// `None` for no samples. NaNs are ignored.
    pub fn of(samples: &[f64]) -> Option<Dist> {
        let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| !v.is_nan()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Dist {
            n,
            min: sorted[0],
            p50: nearest_rank(&sorted, 50.0),
            p99: nearest_rank(&sorted, 99.0),
            max: sorted[n - 1],
            mean: sorted.iter().sum::<f64>() / n as f64,
            median,
        })
    }

    pub fn get(&self, stat: Stat) -> f64 {
        match stat {
            Stat::P50 => self.p50,
            Stat::P99 => self.p99,
            Stat::Max => self.max,
        }
    }
}

/// The smallest sample with at least `pct` % of the samples at or below it.
fn nearest_rank(sorted: &[f64], pct: f64) -> f64 {
    let rank = (pct / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=30).map(f64::from).collect();
        let dist = Dist::of(&samples).expect("samples");
        assert_eq!(
            (dist.min, dist.p50, dist.p99, dist.max),
            (1.0, 15.0, 30.0, 30.0)
        );
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        let dist = Dist::of(&hundred).expect("samples");
        assert_eq!((dist.p50, dist.p99), (50.0, 99.0));
        assert_eq!(Dist::of(&[]), None);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        let odd = Dist::of(&[3.0, 1.0, 2.0]).expect("three samples");
        assert_eq!((odd.min, odd.median, odd.max), (1.0, 2.0, 3.0));
        let even = Dist::of(&[4.0, 1.0, 2.0, 3.0]).expect("four samples");
        assert_eq!(
            (even.min, even.median, even.p50, even.max),
            (1.0, 2.5, 2.0, 4.0)
        );
        let serialised = serde_json::to_value(even).expect("serialisable");
        assert!(serialised.get("median").is_none(), "{serialised}");
    }
}
