//! What the VIP checks know, pair by pair: one [`Pair`] per watched candidate of
//! each prefix (aligned with the plan's `watched` slots), the pairs found not serving
//! that are no longer watched, the reason of every pair with a failure, and the
//! outcomes per host.
//!
//! Memory: 8 bytes per slot, [`WATCHED`] slots per prefix (2 MiB at 65,536
//! prefixes), plus an entry per pair with a failure streak or not serving.

use std::collections::{BTreeMap, HashMap};

use super::PlanPrefix;
use crate::model::{HostId, PrefixId, ProbeOutcome, VipVerdict, vip::WATCHED};

/// One host and one prefix: the verdict and its streaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Pair {
    pub verdict: VipVerdict,
    pub successes: u8,
    pub failures: u8,
    /// A probe of it is in flight (it is not queued again meanwhile).
    pub busy: bool,
}

impl Pair {
    /// Records one counted probe; the new verdict if it changed. From unknown, one
    /// answer makes it serving (nothing was doubted); `fall` failures in a row make
    /// it not serving, and `rise` answers in a row serving again.
    pub fn record(&mut self, ok: bool, rise: u32, fall: u32) -> Option<VipVerdict> {
        let saturate = |n: u8| n.saturating_add(1);
        let next = if ok {
            self.failures = 0;
            self.successes = saturate(self.successes);
            match self.verdict {
                VipVerdict::Unknown => Some(VipVerdict::Serving),
                VipVerdict::NotServing if u32::from(self.successes) >= rise.max(1) => {
                    Some(VipVerdict::Serving)
                }
                _ => None,
            }
        } else {
            self.successes = 0;
            self.failures = saturate(self.failures);
            (self.verdict != VipVerdict::NotServing && u32::from(self.failures) >= fall.max(1))
                .then_some(VipVerdict::NotServing)
        };
        if let Some(verdict) = next {
            self.verdict = verdict;
        }
        next
    }

    /// A streak towards another verdict is under way.
    pub fn settling(&self) -> bool {
        match self.verdict {
            VipVerdict::NotServing => self.successes > 0,
            VipVerdict::Unknown | VipVerdict::Serving => self.failures > 0,
        }
    }

    /// Asked at the holder's pace: not decided yet, settling, or not serving.
    pub fn hot(&self) -> bool {
        self.verdict != VipVerdict::Serving || self.settling()
    }
}

/// Every pair the checks know.
#[derive(Debug, Default)]
pub(super) struct Book {
    /// Per prefix, the pair of each watched slot of the plan.
    pub slots: Vec<[Pair; WATCHED]>,
    /// The watched hosts the slots belong to (the plan's, as last adopted).
    pub watched: Vec<[Option<HostId>; WATCHED]>,
    /// Pairs not serving that are no longer watched: still asked at the sweep's pace,
    /// so that they can recover.
    pub unwatched: BTreeMap<(PrefixId, HostId), Pair>,
    /// Why a pair failed last (kept while it has failures or is not serving).
    pub why: HashMap<(PrefixId, HostId), String>,
    /// VIP probes per host, by outcome.
    pub outcomes: Vec<[u64; ProbeOutcome::ALL.len()]>,
}

impl Book {
    /// Forgets everything (a reload: ids may have moved).
    pub fn reset(&mut self, prefixes: usize, hosts: usize) {
        *self = Book {
            slots: vec![[Pair::default(); WATCHED]; prefixes],
            watched: vec![[None; WATCHED]; prefixes],
            unwatched: BTreeMap::new(),
            why: HashMap::new(),
            outcomes: vec![[0; ProbeOutcome::ALL.len()]; hosts],
        };
    }

    /// Aligns prefix `id`'s slots with its new watched hosts: a host keeps its pair,
    /// a newly watched one starts unknown (or from its unwatched pair), a host no
    /// longer watched keeps its pair only if it is not serving.
    pub fn rewatch(&mut self, id: PrefixId, prefix: &PlanPrefix) {
        let (Some(slots), Some(watched)) = (
            self.slots.get_mut(id.index()),
            self.watched.get_mut(id.index()),
        ) else {
            return;
        };
        if *watched == prefix.watched {
            return;
        }
        let old: Vec<(HostId, Pair)> = watched
            .iter()
            .zip(slots.iter())
            .filter_map(|(host, pair)| Some(((*host)?, *pair)))
            .collect();
        for ((slot, host), new_host) in slots.iter_mut().zip(watched.iter_mut()).zip(prefix.watched)
        {
            *host = new_host;
            *slot = match new_host {
                Some(h) => old
                    .iter()
                    .find(|(o, _)| *o == h)
                    .map(|(_, pair)| *pair)
                    .or_else(|| self.unwatched.remove(&(id, h)))
                    .unwrap_or_default(),
                None => Pair::default(),
            };
        }
        for (host, pair) in old {
            if !prefix.watched.contains(&Some(host)) {
                if pair.verdict == VipVerdict::NotServing {
                    self.unwatched.insert(
                        (id, host),
                        Pair {
                            busy: false,
                            ..pair
                        },
                    );
                } else {
                    self.why.remove(&(id, host));
                }
            }
        }
    }

    /// The pair of `host` for prefix `id`, watched or not.
    pub fn pair_mut(&mut self, id: PrefixId, host: HostId) -> Option<&mut Pair> {
        let at = self
            .watched
            .get(id.index())?
            .iter()
            .position(|h| *h == Some(host));
        match at {
            Some(at) => self.slots.get_mut(id.index())?.get_mut(at),
            None => self.unwatched.get_mut(&(id, host)),
        }
    }

    /// Counts one probe of `host`.
    pub fn count(&mut self, host: HostId, outcome: ProbeOutcome) {
        if let Some(counts) = self.outcomes.get_mut(host.index()) {
            counts[outcome.index()] += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn a_pair_needs_fall_failures_to_stop_serving_and_rise_answers_to_serve_again() {
        let mut pair = Pair::default();
        assert_eq!(
            pair.record(true, 3, 2),
            Some(VipVerdict::Serving),
            "first answer"
        );
        assert_eq!(pair.record(false, 3, 2), None);
        assert!(pair.settling());
        assert_eq!(pair.record(false, 3, 2), Some(VipVerdict::NotServing));
        assert_eq!(pair.record(false, 3, 2), None, "already not serving");
        assert!(!pair.settling());
        assert!(pair.hot(), "not serving: asked at the holder's pace");
        assert_eq!(pair.record(true, 3, 2), None);
        assert_eq!(pair.record(true, 3, 2), None);
        assert!(pair.settling());
        assert_eq!(pair.record(true, 3, 2), Some(VipVerdict::Serving));
        assert!(!pair.hot());
        // From unknown, failures alone decide too.
        let mut fresh = Pair::default();
        assert_eq!(fresh.record(false, 3, 2), None);
        assert_eq!(fresh.record(false, 3, 2), Some(VipVerdict::NotServing));
    }

    fn plan(watched: [Option<u32>; WATCHED]) -> PlanPrefix {
        PlanPrefix {
            vip: Ipv4Addr::new(10, 0, 0, 1),
            watched: watched.map(|h| h.map(HostId::from_raw)),
            via: HostId::new(0),
        }
    }

    #[test]
    fn rewatching_keeps_pairs_by_host_and_remembers_the_not_serving() {
        let p = PrefixId::new(0);
        let (h0, h1, h2) = (HostId::new(0), HostId::new(1), HostId::new(2));
        let mut book = Book::default();
        book.reset(1, 3);
        book.rewatch(p, &plan([Some(0), Some(1), Some(2), None]));
        book.pair_mut(p, h1).expect("watched").verdict = VipVerdict::NotServing;
        book.pair_mut(p, h2).expect("watched").verdict = VipVerdict::Serving;
        // h1 leaves the watched slots, h0 moves to the second one.
        book.rewatch(p, &plan([Some(2), Some(0), None, None]));
        assert_eq!(book.watched[0], [Some(h2), Some(h0), None, None]);
        assert_eq!(book.slots[0][0].verdict, VipVerdict::Serving, "h2 kept");
        assert_eq!(
            book.unwatched.get(&(p, h1)).map(|pair| pair.verdict),
            Some(VipVerdict::NotServing)
        );
        assert_eq!(
            book.pair_mut(p, h1).map(|pair| pair.verdict),
            Some(VipVerdict::NotServing),
            "still found"
        );
        // Watched again: its pair comes back.
        book.rewatch(p, &plan([Some(1), Some(2), Some(0), None]));
        assert!(book.unwatched.is_empty());
        assert_eq!(book.slots[0][0].verdict, VipVerdict::NotServing);
    }
}
