//! Summaries of repeated measurements.

/// Min, median and max of repeated measurements of one figure.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Summary {
    /// The summary of `samples`; `None` if there are none (or one is NaN).
    pub fn of(samples: &[f64]) -> Option<Self> {
        if samples.is_empty() || samples.iter().any(|x| x.is_nan()) {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Self {
            min: sorted[0],
            median,
            max: sorted[n - 1],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Summary;

    #[test]
    fn odd_even_and_empty() {
        let odd = Summary::of(&[3.0, 1.0, 2.0]).expect("three samples");
        assert_eq!((odd.min, odd.median, odd.max), (1.0, 2.0, 3.0));
        let even = Summary::of(&[4.0, 1.0, 2.0, 3.0]).expect("four samples");
        assert_eq!((even.min, even.median, even.max), (1.0, 2.5, 4.0));
        assert_eq!(Summary::of(&[]), None);
    }
}
