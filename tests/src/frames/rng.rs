//! A small seeded generator (SplitMix64). Every frame of a run draws from a stream
//! of its own, derived from the run's seed and the frame's index, so one frame can be
//! regenerated alone from the two numbers a failure prints.

use std::time::{SystemTime, UNIX_EPOCH};

/// Environment variable holding the seed of a run (decimal or `0x` hex).
pub const SEED_ENV: &str = "HA_SEED";
/// Environment variable selecting one frame of a run by its index.
pub const FRAME_ENV: &str = "HA_FRAME";

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's output function: a bijective mix of 64 bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A deterministic pseudo-random stream.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The stream of frame `index` of the run seeded with `seed`.
    pub fn for_frame(seed: u64, index: u64) -> Self {
        Self(mix(seed ^ mix(index.wrapping_add(GOLDEN))))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }

    /// Uniform in `0..n` (`n` > 0); the bias of the multiply-shift is below 2^-32.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below(0)");
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: usize, hi: usize) -> usize {
        assert!(lo <= hi, "Rng::between({lo}, {hi})");
        let span = u64::try_from(hi - lo).expect("usize fits in u64") + 1;
        lo + usize::try_from(self.below(span)).expect("below a usize span")
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn u8(&mut self) -> u8 {
        self.next_u64().to_le_bytes()[0]
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        let bytes = self.next_u64().to_le_bytes();
        u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let len = items.len();
        &items[self.between(0, len.checked_sub(1).expect("Rng::pick on an empty slice"))]
    }

    /// One element of a non-empty slice, chosen with probability proportional to its
    /// weight.
    pub fn weighted<'a, T>(&mut self, items: &'a [(u32, T)]) -> &'a T {
        let total: u64 = items.iter().map(|(weight, _)| u64::from(*weight)).sum();
        let mut roll = self.below(total);
        for (weight, item) in items {
            let weight = u64::from(*weight);
            if roll < weight {
                return item;
            }
            roll -= weight;
        }
        unreachable!("the roll is below the total weight")
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.u8()).collect()
    }
}

/// A seed or frame index from the environment, as `HA_SEED` / `HA_FRAME` hold them.
fn parse_number(var: &str, text: &str) -> u64 {
    let text = text.trim();
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.unwrap_or_else(|e| panic!("{var}={text:?} is not a number (decimal or 0x hex): {e}"))
}

/// The run's seed: `$HA_SEED` if set, else a fresh one from the clock and the
/// process id. The caller prints it.
pub fn seed() -> u64 {
    match std::env::var(SEED_ENV) {
        Ok(text) => parse_number(SEED_ENV, &text),
        Err(_) => {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_nanos());
            mix(nanos as u64 ^ (u64::from(std::process::id()) << 32))
        }
    }
}

/// `$HA_FRAME`: the one frame index to run, if set.
pub fn only_frame() -> Option<u64> {
    std::env::var(FRAME_ENV)
        .ok()
        .map(|text| parse_number(FRAME_ENV, &text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4).map(|_| Rng::for_frame(7, 3).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(
            Rng::for_frame(7, 3).next_u64(),
            Rng::for_frame(7, 4).next_u64()
        );
        assert_ne!(
            Rng::for_frame(7, 3).next_u64(),
            Rng::for_frame(8, 3).next_u64()
        );
    }

    #[test]
    fn ranges_and_weights_stay_in_bounds() {
        let mut rng = Rng::new(1);
        let mut seen = [0u32; 3];
        for _ in 0..10_000 {
            let value = rng.between(5, 7);
            assert!((5..=7).contains(&value));
            seen[value - 5] += 1;
            assert_eq!(*rng.weighted(&[(0, 'a'), (1, 'b')]), 'b');
        }
        assert!(seen.iter().all(|&n| n > 3_000), "{seen:?}");
    }

    #[test]
    fn seeds_parse_in_both_bases() {
        assert_eq!(parse_number("X", "0x1f"), 31);
        assert_eq!(parse_number("X", " 42 "), 42);
    }
}
