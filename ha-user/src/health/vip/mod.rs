//! VIP checks: whether each watched candidate of each prefix answers on the prefix's
//! VIP, asked through that host.
//!
//! # What is asked, and how often
//!
//! The controller hands over a [`VipPlan`]: per prefix its VIP, its *watched*
//! candidates — slot 0 the holder, slot 1 the host it would fail over to, then the
//! next candidates in failover order, [`WATCHED`] in all — and the host its kernel
//! route goes through; per host whether its MAC is known and whether it is down.
//! Each pair (prefix, host) is asked with the host's own check (kind, port, path,
//! expected status) aimed at the VIP, its packets marked `PROBE_MARK_TAG | host id`
//! so that the data path delivers them to that host whatever the route says.
//!
//! - **Hot pairs** (slots 0 and 1, any pair not decided yet — so that start-up
//!   learns every verdict in the first interval —, any pair whose streak is under
//!   way, and any pair not serving, so that a VIP put back counts within `rise`
//!   intervals) are asked once per `interval_ms`: a round over every prefix, spread
//!   evenly over the interval.
//! - **The other watched pairs** (serving), and pairs found not serving that are no
//!   longer watched, once per `sweep_ms`, the same way.
//! - **At most `max_rate` probes per second** in all (a token bucket refilled every
//!   [`TICK`]), and at most [`IN_FLIGHT`] at once. When the rounds need more than the
//!   rate allows, they stretch: a round goes on only as fast as its probes leave.
//! - Not asked: a host whose MAC is unknown (its probes would reach the route's next
//!   hop instead, and prove nothing about it), a host that is down (its own check
//!   says so already), and every pair of a prefix whose route goes through a host
//!   that is down (the path itself may be gone: the neighbour of a dead host does
//!   not resolve).
//!
//! # Verdicts
//!
//! Only host outcomes count (answered, refused, silent; see
//! [`ProbeOutcome`](crate::model::ProbeOutcome)), with the host's own `rise` and
//! `fall`: unknown → serving on the first answer (no event: nothing was in doubt),
//! `fall` failures in a row → not serving, `rise` answers in a row → serving again.
//! A change to or from not serving is sent as a [`VipEvent`]. Unknown counts as
//! serving in the policy, so nothing waits for a VIP check at start-up.
//!
//! # Cost, bounded
//!
//! Probes per second ≤ `max_rate` (default 1,000); sockets ≤ [`IN_FLIGHT`] (64) plus
//! one ICMP socket; memory 8 bytes × [`WATCHED`] per prefix plus the failing pairs.
//! The time to ask every hot pair once is max(`interval_ms`, hot pairs ÷ `max_rate`):
//! at 65,536 prefixes with one backup each, 131,072 hot pairs take 131 s at the
//! default rate; the other watched pairs (with 4 candidates or more, 2 per prefix)
//! as long again.

mod book;

use std::{net::Ipv4Addr, sync::Arc, time::Duration};

use book::Book;
use tokio::{
    sync::{mpsc, watch},
    task::JoinSet,
    time::{Instant, MissedTickBehavior},
};
use tracing::debug;

use super::{
    CheckEvent,
    outcome::Probe,
    probe::{Prober, Shared},
};
use crate::model::{
    Host, HostId, PrefixId, ProbeOutcome, VipCheck, VipVerdict,
    vip::{IN_FLIGHT, WATCHED},
};

/// How often the scheduler wakes to launch what is due.
pub const TICK: Duration = Duration::from_millis(10);

/// What the VIP checks are to ask, from the controller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VipPlan {
    pub settings: VipCheck,
    /// Indexed by [`PrefixId`].
    pub prefixes: Vec<PlanPrefix>,
    /// Indexed by [`HostId`].
    pub hosts: Vec<PlanHost>,
}

/// One prefix of a [`VipPlan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanPrefix {
    pub vip: Ipv4Addr,
    /// Slot 0: the holder; slot 1: the host it would fail over to; then the next
    /// candidates in failover order.
    pub watched: [Option<HostId>; WATCHED],
    /// The host its kernel route goes through (the holder, else its owner).
    pub via: HostId,
}

/// One host of a [`VipPlan`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlanHost {
    /// Its MAC is in the data path (a probe marked for it reaches it).
    pub ready: bool,
    /// Its own check says it is down.
    pub down: bool,
}

/// A pair's verdict changed to or from not serving.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipEvent {
    pub prefix: PrefixId,
    pub host: HostId,
    pub vip: Ipv4Addr,
    pub old: VipVerdict,
    pub new: VipVerdict,
    /// `VIP 192.168.1.65 not answered by host3: connection refused`, or the answers
    /// that brought it back.
    pub reason: String,
}

/// One pair's verdict as status shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipPair {
    pub prefix: PrefixId,
    pub host: HostId,
    pub verdict: VipVerdict,
    pub why: Option<String>,
}

/// What the VIP checks know, copied out for status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VipSnapshot {
    /// Every watched pair, and the unwatched ones not serving, by prefix then host.
    pub pairs: Vec<VipPair>,
    /// VIP probes per host (indexed by [`HostId`]), by outcome
    /// ([`ProbeOutcome::index`]).
    pub outcomes: Vec<[u64; ProbeOutcome::ALL.len()]>,
}

/// The shared side of the VIP checks: the book, behind a lock never held across an
/// await.
#[derive(Clone, Debug, Default)]
pub(super) struct Shelf(Arc<std::sync::Mutex<Book>>);

impl Shelf {
    fn with<R>(&self, f: impl FnOnce(&mut Book) -> R) -> R {
        f(&mut self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// VIP probes per host, by outcome.
    pub(super) fn outcomes(&self) -> Vec<[u64; ProbeOutcome::ALL.len()]> {
        self.with(|book| book.outcomes.clone())
    }

    pub(super) fn snapshot(&self) -> VipSnapshot {
        self.with(|book| {
            let mut pairs = Vec::new();
            for (index, (slots, watched)) in book.slots.iter().zip(&book.watched).enumerate() {
                let prefix = PrefixId::new(index);
                for (pair, host) in slots.iter().zip(watched) {
                    let Some(host) = *host else { continue };
                    pairs.push(VipPair {
                        prefix,
                        host,
                        verdict: pair.verdict,
                        why: book.why.get(&(prefix, host)).cloned(),
                    });
                }
            }
            for (&(prefix, host), pair) in &book.unwatched {
                pairs.push(VipPair {
                    prefix,
                    host,
                    verdict: pair.verdict,
                    why: book.why.get(&(prefix, host)).cloned(),
                });
            }
            pairs.sort_by_key(|pair| (pair.prefix, pair.host));
            VipSnapshot {
                pairs,
                outcomes: book.outcomes.clone(),
            }
        })
    }
}

/// A round over every prefix that should take `period`, spread evenly.
#[derive(Debug)]
struct Round {
    period: Duration,
    started: Instant,
    /// The next prefix to enqueue.
    next: usize,
}

impl Round {
    fn new(period: Duration, now: Instant) -> Self {
        Self {
            period,
            started: now,
            next: 0,
        }
    }

    /// The prefixes due by `now` out of `count`, at most `room` of them; starts the
    /// next round once this one is done and its period is over.
    fn due(&mut self, now: Instant, count: usize, room: usize) -> std::ops::Range<usize> {
        if self.next >= count {
            if now < self.started + self.period {
                return count..count;
            }
            self.started = now;
            self.next = 0;
        }
        let elapsed = now.saturating_duration_since(self.started);
        let share = (elapsed.as_secs_f64() / self.period.as_secs_f64().max(1e-9)).min(1.0);
        // At least the first prefix of a round at once: a round of few prefixes does
        // not wait a whole share for its first.
        let target = ((count as f64 * share).ceil() as usize).clamp(1, count);
        let end = target.min(self.next + room).max(self.next);
        let range = self.next..end;
        self.next = end;
        range
    }
}

/// One probe's result, tagged with the plan generation it was launched under.
struct Done {
    generation: u64,
    prefix: PrefixId,
    host: HostId,
    probe: Probe,
}

/// The task that asks the pairs.
pub(super) struct Scheduler {
    pub plan: watch::Receiver<Arc<VipPlan>>,
    /// The hosts (their names and checks), by [`HostId`], and the generation they
    /// belong to (a reload bumps it: verdicts start afresh).
    pub hosts: watch::Receiver<(u64, Arc<Vec<Host>>)>,
    pub shelf: Shelf,
    pub shared: Shared,
    pub events: mpsc::Sender<CheckEvent>,
}

struct State {
    plan: Arc<VipPlan>,
    hosts: Arc<Vec<Host>>,
    generation: u64,
    queue: std::collections::VecDeque<(PrefixId, HostId)>,
    hot: Round,
    cold: Round,
    tokens: f64,
    last_tick: Instant,
}

impl Scheduler {
    pub(super) async fn run(mut self) {
        let now = Instant::now();
        let (generation, hosts) = self.hosts.borrow_and_update().clone();
        let mut state = State {
            plan: self.plan.borrow_and_update().clone(),
            hosts,
            generation,
            queue: std::collections::VecDeque::new(),
            hot: Round::new(Duration::from_secs(1), now),
            cold: Round::new(Duration::from_secs(10), now),
            tokens: 0.0,
            last_tick: now,
        };
        self.adopt(&mut state, true);
        let mut in_flight: JoinSet<Done> = JoinSet::new();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                changed = self.plan.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    state.plan = self.plan.borrow_and_update().clone();
                    self.adopt(&mut state, false);
                }
                changed = self.hosts.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let (generation, hosts) = self.hosts.borrow_and_update().clone();
                    let reset = generation != state.generation;
                    state.hosts = hosts;
                    state.generation = generation;
                    self.adopt(&mut state, reset);
                }
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    // A probe task that panicked has nothing to record.
                    if let Ok(done) = done
                        && self.record(&state, done).await.is_err()
                    {
                        debug!("VIP event receiver closed; stopping VIP checks");
                        return;
                    }
                }
                _ = tick.tick() => self.launch(&mut state, &mut in_flight),
            }
        }
    }

    /// Takes a new plan (or checks): aligns the book with it; `reset` forgets
    /// everything first.
    fn adopt(&self, state: &mut State, reset: bool) {
        let plan = &state.plan;
        let settings = plan.settings;
        state.hot.period = Duration::from_millis(settings.interval_ms.max(1));
        state.cold.period = Duration::from_millis(settings.sweep_ms.max(1));
        self.shelf.with(|book| {
            if reset || book.slots.len() != plan.prefixes.len() {
                book.reset(plan.prefixes.len(), plan.hosts.len());
                state.queue.clear();
            }
            if book.outcomes.len() != plan.hosts.len() {
                book.outcomes
                    .resize(plan.hosts.len(), [0; ProbeOutcome::ALL.len()]);
            }
            for (index, prefix) in plan.prefixes.iter().enumerate() {
                book.rewatch(PrefixId::new(index), prefix);
            }
        });
    }

    /// Queues what is due and launches what the rate and the in-flight bound allow.
    fn launch(&self, state: &mut State, in_flight: &mut JoinSet<Done>) {
        let plan = state.plan.clone();
        if !plan.settings.enabled || plan.prefixes.is_empty() {
            state.queue.clear();
            return;
        }
        let now = Instant::now();
        let rate = f64::from(plan.settings.max_rate.max(1));
        let dt = now.saturating_duration_since(state.last_tick).as_secs_f64();
        state.last_tick = now;
        // Up to two ticks' worth may accumulate (a late tick), never a burst beyond.
        let cap = (rate * TICK.as_secs_f64() * 2.0).max(1.0);
        state.tokens = (state.tokens + rate * dt).min(cap);

        // Enqueue only while the queue is short: a round then stretches to the rate.
        let room = (cap.ceil() as usize).saturating_sub(state.queue.len());
        let count = plan.prefixes.len();
        self.shelf.with(|book| {
            let hot = state.hot.due(now, count, room);
            for index in hot {
                let prefix = PrefixId::new(index);
                let (Some(slots), Some(watched)) =
                    (book.slots.get_mut(index), book.watched.get(index))
                else {
                    continue;
                };
                for (at, (pair, host)) in slots.iter_mut().zip(watched).enumerate() {
                    if let Some(host) = *host
                        && (at < 2 || pair.hot())
                        && !pair.busy
                    {
                        pair.busy = true;
                        state.queue.push_back((prefix, host));
                    }
                }
            }
            let room = (cap.ceil() as usize).saturating_sub(state.queue.len());
            let cold = state.cold.due(now, count, room);
            for index in cold {
                let prefix = PrefixId::new(index);
                if let (Some(slots), Some(watched)) =
                    (book.slots.get_mut(index), book.watched.get(index))
                {
                    for (pair, host) in slots.iter_mut().zip(watched).skip(2) {
                        if let Some(host) = *host
                            && !pair.hot()
                            && !pair.busy
                        {
                            pair.busy = true;
                            state.queue.push_back((prefix, host));
                        }
                    }
                }
                let end = (prefix, HostId::from_raw(u32::MAX));
                for (&(p, host), pair) in book.unwatched.range_mut((prefix, HostId::new(0))..=end) {
                    if !pair.busy {
                        pair.busy = true;
                        state.queue.push_back((p, host));
                    }
                }
            }
        });

        while state.tokens >= 1.0 && in_flight.len() < IN_FLIGHT {
            let Some((prefix, host)) = state.queue.pop_front() else {
                break;
            };
            let askable = self.askable(&plan, prefix, host);
            let (Some(target), Some(configured), true) = (
                plan.prefixes.get(prefix.index()),
                state.hosts.get(host.index()),
                askable,
            ) else {
                self.shelf.with(|book| {
                    if let Some(pair) = book.pair_mut(prefix, host) {
                        pair.busy = false;
                    }
                });
                continue;
            };
            state.tokens -= 1.0;
            let mut prober = Prober::vip(
                target.vip,
                host,
                &configured.health,
                Duration::from_millis(plan.settings.timeout_ms.max(1)),
                &self.shared,
            );
            let generation = state.generation;
            in_flight.spawn(async move {
                let probe = prober.probe().await;
                Done {
                    generation,
                    prefix,
                    host,
                    probe,
                }
            });
        }
    }

    /// Whether a probe of (`prefix`, `host`) can say anything now.
    fn askable(&self, plan: &VipPlan, prefix: PrefixId, host: HostId) -> bool {
        let host_ok = plan
            .hosts
            .get(host.index())
            .is_some_and(|h| h.ready && !h.down);
        let path_ok = plan
            .prefixes
            .get(prefix.index())
            .and_then(|p| plan.hosts.get(p.via.index()))
            .is_some_and(|via| !via.down);
        host_ok && path_ok
    }

    /// Records a finished probe; sends the event of a changed verdict.
    async fn record(
        &self,
        state: &State,
        done: Done,
    ) -> Result<(), mpsc::error::SendError<CheckEvent>> {
        let Done {
            generation,
            prefix,
            host,
            probe,
        } = done;
        if generation != state.generation {
            return Ok(());
        }
        let plan = &state.plan;
        let Some(configured) = state.hosts.get(host.index()) else {
            return Ok(());
        };
        let (rise, fall, name) = (
            configured.health.rise,
            configured.health.fall,
            configured.name.as_str(),
        );
        let vip = plan
            .prefixes
            .get(prefix.index())
            .map_or(Ipv4Addr::UNSPECIFIED, |p| p.vip);
        // Asked again now: is what it said still about the host?
        let counts = self.askable(plan, prefix, host);
        let why_not = |probe: &Probe| {
            format!(
                "VIP {vip} not answered by {name}: {}",
                probe.error.as_deref().unwrap_or("no answer")
            )
        };
        let change = self.shelf.with(|book| {
            book.count(host, probe.outcome);
            let pair = book.pair_mut(prefix, host)?;
            pair.busy = false;
            let verdict = probe.outcome.verdict().filter(|_| counts)?;
            let old = pair.verdict;
            let new = pair.record(verdict, rise, fall);
            let key = (prefix, host);
            if verdict {
                if pair.verdict != VipVerdict::NotServing {
                    book.why.remove(&key);
                }
            } else {
                book.why.insert(key, why_not(&probe));
            }
            let new = new?;
            if new != VipVerdict::NotServing && old != VipVerdict::NotServing {
                // Unknown → serving: nothing was in doubt.
                return None;
            }
            let reason = match new {
                VipVerdict::NotServing => book.why.get(&key).cloned().unwrap_or_default(),
                _ => format!("VIP {vip} answered by {name} {rise} times in a row"),
            };
            Some(VipEvent {
                prefix,
                host,
                vip,
                old,
                new,
                reason,
            })
        });
        match change {
            Some(event) => self.events.send(CheckEvent::Vip(event)).await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
