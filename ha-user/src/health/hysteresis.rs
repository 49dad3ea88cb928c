//! Rise/fall hysteresis: how consecutive probe results become a host's health.

use crate::model::Health;

/// Rise/fall hysteresis over probe results; no I/O, no clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hysteresis {
    rise: u32,
    fall: u32,
    state: Health,
    successes: u32,
    failures: u32,
}

impl Hysteresis {
    /// Starts unknown. A `rise` or `fall` of 0 counts as 1 (the config rejects 0).
    pub fn new(rise: u32, fall: u32) -> Self {
        Self {
            rise: rise.max(1),
            fall: fall.max(1),
            state: Health::Unknown,
            successes: 0,
            failures: 0,
        }
    }

    /// Records one probe result; returns the new state if this result changed it.
    pub fn record(&mut self, ok: bool) -> Option<Health> {
        let (streak, threshold, next) = if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            (self.successes, self.rise, Health::Up)
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            (self.failures, self.fall, Health::Down)
        };
        if streak >= threshold && self.state != next {
            self.state = next;
            return Some(next);
        }
        None
    }

    pub fn state(&self) -> Health {
        self.state
    }

    pub fn successes(&self) -> u32 {
        self.successes
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_result_decides_nothing() {
        for ok in [true, false] {
            let mut h = Hysteresis::new(2, 3);
            assert_eq!(h.record(ok), None);
            assert_eq!(h.state(), Health::Unknown);
        }
    }

    #[test]
    fn rise_and_fall_count_consecutive_results() {
        let mut h = Hysteresis::new(2, 3);
        assert_eq!(h.record(true), None);
        assert_eq!(h.record(true), Some(Health::Up));
        assert_eq!(h.record(true), None, "already up");
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(false), None);
        assert_eq!((h.failures(), h.state()), (2, Health::Up));
        assert_eq!(h.record(false), Some(Health::Down));
        assert_eq!(h.record(false), None, "already down");
        assert_eq!(h.record(true), None);
        assert_eq!(h.record(true), Some(Health::Up));

        let mut from_unknown = Hysteresis::new(5, 3);
        assert_eq!(from_unknown.record(false), None);
        assert_eq!(from_unknown.record(false), None);
        assert_eq!(from_unknown.record(false), Some(Health::Down));
    }

    #[test]
    fn flapping_never_crosses_a_threshold() {
        for start in [None, Some(true), Some(false)] {
            let mut h = Hysteresis::new(2, 2);
            if let Some(ok) = start {
                h.record(ok);
                h.record(ok);
            }
            let before = h.state();
            for i in 0..100 {
                assert_eq!(h.record(i % 2 == 0), None, "flap {i} from {before:?}");
            }
            assert_eq!(h.state(), before);
        }
    }

    #[test]
    fn rise_and_fall_of_one_decide_at_once() {
        let mut h = Hysteresis::new(1, 1);
        assert_eq!(h.record(false), Some(Health::Down));
        assert_eq!(h.record(true), Some(Health::Up));
    }
}
