//! What the VIP checks mean to the ownership rules.
//!
//! A candidate that does not answer on a prefix's VIP is not *usable* for that prefix
//! (see the module docs of [`super`]): it is skipped like a host that is down, for
//! that prefix only. A holder found not serving its VIP loses the prefix at once
//! ([`Reason::VipNotAnswered`]); with no usable candidate left the prefix has no
//! fast-path owner and follows its kernel route. A verdict not known yet counts as
//! serving, so nothing waits for a VIP check at start-up. The preferred host that
//! serves its VIP again takes the prefix back only after its failback delay, counted
//! from then, as after any recovery. Forced pins ignore VIP verdicts as they ignore
//! health. A reload starts the verdicts afresh (ids may have moved).
//!
//! The policy also says which candidates the VIP checks watch ([`Policy::vip_watch`]):
//! the holder, the host the prefix would fail over to, then the next candidates.

use tokio::time::Instant;

use super::{Change, Policy, PolicyError, PrefixState, Reason};
use crate::model::{HostId, PrefixId, vip::WATCHED};

/// A prefix's VIP verdicts as far as the rules need them: one word while every
/// candidate serves (the usual case, at 65,536 prefixes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct VipState(Option<Box<Verdicts>>);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Verdicts {
    /// Candidates found not serving the VIP.
    not_serving: Vec<HostId>,
    /// Hosts back to serving, and when: their failback delay runs from then.
    back: Vec<(HostId, Instant)>,
}

impl VipState {
    /// Whether `host` may be sent the prefix as far as its VIP goes.
    pub(super) fn serves(&self, host: HostId) -> bool {
        self.0
            .as_ref()
            .is_none_or(|v| !v.not_serving.contains(&host))
    }

    /// When `host` came back to serving, if it did since it last stopped.
    fn back_since(&self, host: HostId) -> Option<Instant> {
        let verdicts = self.0.as_ref()?;
        verdicts
            .back
            .iter()
            .find(|(h, _)| *h == host)
            .map(|(_, at)| *at)
    }

    /// Records a verdict; whether anything changed.
    fn set(&mut self, host: HostId, serving: bool, now: Instant) -> bool {
        let verdicts = self.0.get_or_insert_default();
        let was_serving = !verdicts.not_serving.contains(&host);
        if was_serving == serving {
            return false;
        }
        verdicts.back.retain(|(h, _)| *h != host);
        if serving {
            verdicts.not_serving.retain(|h| *h != host);
            verdicts.back.push((host, now));
        } else {
            verdicts.not_serving.push(host);
        }
        if verdicts.not_serving.is_empty() && verdicts.back.is_empty() {
            self.0 = None;
        }
        true
    }
}

impl Policy {
    /// The VIP checks' verdict on (`prefix`, `host`): `serving` false takes the host
    /// out of the prefix's usable candidates, true puts it back.
    pub fn vip_verdict(
        &mut self,
        prefix: PrefixId,
        host: HostId,
        serving: bool,
        now: Instant,
    ) -> Result<Vec<Change>, PolicyError> {
        self.host(host)?;
        let changed = self.prefix_mut(prefix)?.vip.set(host, serving, now);
        if !changed {
            return Ok(Vec::new());
        }
        Ok(self.settle(now, |_, _| None))
    }

    /// Whether `host` serves the VIP of `prefix`, as far as the checks know (unknown
    /// counts as serving).
    pub fn serves_vip(&self, prefix: PrefixId, host: HostId) -> bool {
        self.prefixes
            .get(prefix.index())
            .is_some_and(|p| p.vip.serves(host))
    }

    /// The candidates of `prefix` the VIP checks watch: its holder, the host it would
    /// fail over to now, then the next candidates in failover order.
    pub fn vip_watch(&self, prefix: PrefixId) -> [Option<HostId>; WATCHED] {
        let mut watched = [None; WATCHED];
        let Some(state) = self.prefixes.get(prefix.index()) else {
            return watched;
        };
        let hosts = self.hosts.len();
        watched[0] = state.holder;
        let next = state
            .candidates(hosts)
            .find(|&h| Some(h) != state.holder && self.usable(h, state));
        let mut filled = 1;
        if let Some(next) = next {
            watched[1] = Some(next);
            filled = 2;
        }
        for candidate in state.candidates(hosts) {
            if filled == WATCHED {
                break;
            }
            if !watched.contains(&Some(candidate)) {
                watched[filled] = Some(candidate);
                filled += 1;
            }
        }
        watched
    }

    /// When the preferred host `host` of `prefix` may take it back: its failback
    /// delay after it came up, and after it came back to serving the VIP.
    pub(super) fn failback_ready_at(&self, prefix: &PrefixState, host: HostId) -> Option<Instant> {
        let state = self.hosts.get(host.index())?;
        let up = state.failback_at()?;
        match prefix.vip.back_since(host) {
            Some(back) => back
                .checked_add(state.failback_delay)
                .map(|vip| vip.max(up)),
            None => Some(up),
        }
    }

    /// Why a prefix leaves `holder`: [`Reason::VipNotAnswered`] if the holder is up
    /// but does not serve the VIP, else as for any other move.
    pub(super) fn leave_reason_of(
        &self,
        prefix: &PrefixState,
        holder: HostId,
        admin: Option<Reason>,
    ) -> Reason {
        let drained = self.hosts.get(holder.index()).is_some_and(|h| h.drained);
        if !drained && !prefix.vip.serves(holder) && admin.is_none() {
            return Reason::VipNotAnswered;
        }
        self.leave_reason(holder, admin)
    }
}

#[cfg(test)]
mod tests;
