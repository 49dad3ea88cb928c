//! Prefix ownership: which host steers each prefix, and why.
//!
//! [`Policy`] is a pure, synchronous state machine. It does no I/O and never reads a
//! clock: every input carries the time as a [`tokio::time::Instant`], so the
//! controller can be tested on a paused tokio clock. Every input returns the
//! [`Change`]s it caused, in prefix order; the controller writes them into the data
//! path and calls [`Policy::tick`] at [`Policy::next_deadline`].
//!
//! # Rules
//!
//! A prefix's *preferred* host is its admin pin if it has one, else its configured
//! owner. Its *candidates*, in order, are the preferred host, then the configured
//! owner, then the configured backups (each host once). A host is *usable* for a
//! prefix when it is not drained and is up.
//!
//! - **Failover.** When the holder becomes unusable (down, drained, or no longer a
//!   candidate), the prefix moves at once to the first usable candidate, which may be
//!   the preferred host itself even during its hold-down: the prefix has to move
//!   anyway, and this saves a second move later.
//! - **No usable candidate** → the prefix has no fast-path owner (`None`); the
//!   controller removes its entry and traffic follows the kernel route.
//! - **Recovery from none.** A prefix with no holder takes the first usable candidate
//!   at once: there is nothing to disrupt, and for the owner the kernel route already
//!   goes there.
//! - **Failback.** Only the preferred host preempts a healthy holder, and only after
//!   it has been up *continuously* for its own `failback_delay_ms` (a hold-down
//!   measured from its last down → up transition, so a host that goes down during
//!   the hold-down starts over on its next recovery and a flapping host never causes
//!   a failback storm). Backups never preempt each other: a prefix held by backup #2
//!   stays there when backup #1 recovers.
//! - **Pins** (`set_owner`) make the pinned host the preferred one. If it is usable
//!   the prefix moves there at once (the admin asked). If it is down or drained the
//!   pin is accepted, the prefix stays where it is ([`PinEffect::Waiting`]) and moves
//!   after the pinned host's hold-down, like a failback. A pinned host that fails
//!   fails over in the normal order (skipping it) and takes the prefix back after its
//!   hold-down.
//! - **Forced pins** steer the prefix to the pinned host regardless of health and
//!   drain: no failover, no hold-down. The admin asked explicitly, so a forced pin
//!   also wins over a drain.
//! - **`clear_owner`** returns the prefix to the normal rules at once: the owner takes
//!   it now if usable (no hold-down), else a usable holder that is a candidate keeps
//!   it, else the first usable candidate.
//! - **Drain** moves every prefix off the host now (as a failover) and makes it unusable
//!   until undrained, except for forced pins. **Undrain** gives the host back, at once,
//!   the prefixes it is preferred for (the admin asked); prefixes for which it is only a
//!   backup stay where they are.
//! - **Unknown health** (no check result yet, e.g. at start-up) counts as up for a
//!   prefix's preferred host and for its current holder, and as down otherwise. A
//!   fresh controller therefore steers every prefix to its owner (or restored pin) at
//!   once, as the kernel route would, instead of flushing the fast path; a host known
//!   to nobody is never a failover target, and an unknown host never preempts
//!   (preemption needs a hold-down of known health).
//!
//! Hosts and prefixes are identified by their [`HostId`] and [`PrefixId`]: their
//! positions in [`Config::hosts`] and [`Config::prefixes`]. Persisted admin state ([`AdminState`]) names them by host
//! name and prefix CIDR instead, so it survives reordering of the configuration.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    time::Duration,
};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

pub use crate::model::{Health, Reason};
use crate::{
    config::Config,
    model::{Backups, HostId, PrefixId},
};

mod vip;

use vip::VipState;

/// A prefix changed hands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    pub prefix: PrefixId,
    /// The previous holder; `None`: the prefix had no fast-path entry.
    pub old: Option<HostId>,
    /// The new holder; `None`: remove the entry, traffic follows the kernel route.
    pub new: Option<HostId>,
    pub reason: Reason,
}

/// An admin pin of a prefix to a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pin {
    pub host: HostId,
    /// Steer there whatever the host's health or drain.
    pub force: bool,
}

/// What [`Policy::set_owner`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pinned {
    pub changes: Vec<Change>,
    pub effect: PinEffect,
}

/// Whether a new pin steers now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinEffect {
    /// The prefix is on the pinned host.
    Steered,
    /// The pinned host is down or drained: the prefix stays where it is and moves
    /// once the host has been usable for its failback delay.
    Waiting { health: Health, drained: bool },
    /// Forced: the prefix is on the pinned host although it is down or drained.
    Forced { health: Health, drained: bool },
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("no prefix {prefix}: the configuration has {count}")]
    UnknownPrefix { prefix: PrefixId, count: usize },
    #[error("no host {host}: the configuration has {count}")]
    UnknownHost { host: HostId, count: usize },
}

/// The admin's pins and drains, as persisted in the state file: prefixes by CIDR,
/// hosts by name, so the state survives reordering of the configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminState {
    /// Pinned prefixes.
    #[serde(default)]
    pub pins: BTreeMap<Ipv4Net, AdminPin>,
    /// Names of drained hosts.
    #[serde(default)]
    pub drained: BTreeSet<String>,
}

/// One persisted pin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminPin {
    /// Host name.
    pub host: String,
    #[serde(default)]
    pub force: bool,
}

/// An admin entry dropped because the configuration no longer has what it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stale {
    /// A pin of a prefix that is not configured.
    PinPrefix { prefix: Ipv4Net, host: String },
    /// A pin to a host that is not configured.
    PinHost { prefix: Ipv4Net, host: String },
    /// A drain of a host that is not configured.
    Drain { host: String },
}

impl fmt::Display for Stale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stale::PinPrefix { prefix, host } => write!(
                f,
                "pin of {prefix} to {host} dropped: {prefix} is not a configured prefix"
            ),
            Stale::PinHost { prefix, host } => write!(
                f,
                "pin of {prefix} to {host} dropped: {host} is not a configured host"
            ),
            Stale::Drain { host } => {
                write!(
                    f,
                    "drain of {host} dropped: {host} is not a configured host"
                )
            }
        }
    }
}

/// What [`Policy::restore`] or [`Policy::reconfigure`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub changes: Vec<Change>,
    pub stale: Vec<Stale>,
}

#[derive(Clone, Debug)]
struct HostState {
    name: String,
    failback_delay: Duration,
    health: Health,
    /// When the host last went up; `Some` exactly while it is up.
    up_since: Option<Instant>,
    drained: bool,
}

impl HostState {
    /// When the host will have been up for its whole failback delay, if it is up and
    /// not drained. `None` also for a delay too long to represent: never.
    fn failback_at(&self) -> Option<Instant> {
        if self.drained {
            return None;
        }
        self.up_since?.checked_add(self.failback_delay)
    }
}

#[derive(Clone, Debug)]
struct PrefixState {
    cidr: Ipv4Net,
    owner: HostId,
    backups: Backups,
    pin: Option<Pin>,
    holder: Option<HostId>,
    reason: Reason,
    /// What the VIP checks found.
    vip: VipState,
}

impl PrefixState {
    fn preferred(&self) -> HostId {
        self.pin.map_or(self.owner, |pin| pin.host)
    }

    /// Preferred host, owner, backups (of `hosts` hosts): each host once.
    fn candidates(&self, hosts: usize) -> impl Iterator<Item = HostId> + '_ {
        let preferred = self.preferred();
        let rest = std::iter::once(self.owner).chain(self.backups.hosts(self.owner, hosts));
        std::iter::once(preferred).chain(rest.filter(move |&h| h != preferred))
    }

    fn is_candidate(&self, host: HostId, hosts: usize) -> bool {
        match self.backups {
            Backups::AllOthers => host.index() < hosts,
            Backups::Listed(_) => self.candidates(hosts).any(|c| c == host),
        }
    }
}

/// The ownership state of every prefix; see the module documentation for the rules.
#[derive(Clone, Debug)]
pub struct Policy {
    hosts: Vec<HostState>,
    prefixes: Vec<PrefixState>,
}

impl Policy {
    /// Every host's health unknown, nothing pinned or drained, every prefix at its
    /// configured owner ([`Reason::Initial`]).
    pub fn new(config: &Config) -> Self {
        let hosts = config
            .hosts
            .iter()
            .map(|host| HostState {
                name: host.name.clone(),
                failback_delay: Duration::from_millis(host.health.failback_delay_ms),
                health: Health::Unknown,
                up_since: None,
                drained: false,
            })
            .collect();
        let prefixes = config
            .prefixes
            .iter()
            .map(|prefix| PrefixState {
                cidr: prefix.cidr,
                owner: prefix.owner,
                backups: prefix.backups.clone(),
                pin: None,
                holder: Some(prefix.owner),
                reason: Reason::Initial,
                vip: VipState::default(),
            })
            .collect();
        Self { hosts, prefixes }
    }

    /// The health checker's verdict on `host`. Repeating the current health changes
    /// nothing (in particular it does not restart a hold-down).
    pub fn host_health(
        &mut self,
        host: HostId,
        health: Health,
        now: Instant,
    ) -> Result<Vec<Change>, PolicyError> {
        let state = self.host_mut(host)?;
        if state.health != health {
            state.health = health;
            state.up_since = (health == Health::Up).then_some(now);
        }
        Ok(self.settle(now, |_, _| None))
    }

    /// Pins `prefix` to `host` until [`Policy::clear_owner`], replacing any pin.
    pub fn set_owner(
        &mut self,
        prefix: PrefixId,
        host: HostId,
        force: bool,
        now: Instant,
    ) -> Result<Pinned, PolicyError> {
        let HostState {
            health, drained, ..
        } = *self.host(host)?;
        self.prefix_mut(prefix)?.pin = Some(Pin { host, force });
        let reason = if force {
            Reason::AdminForce
        } else {
            Reason::AdminPin
        };
        let changes = self.settle(now, |index, _| (index == prefix).then_some(reason));
        let effect = if !drained && health != Health::Down {
            PinEffect::Steered
        } else if force {
            PinEffect::Forced { health, drained }
        } else {
            PinEffect::Waiting { health, drained }
        };
        Ok(Pinned { changes, effect })
    }

    /// Removes the pin of `prefix` (nothing if there is none): the configured owner
    /// takes it now if usable, else the normal rules apply.
    pub fn clear_owner(
        &mut self,
        prefix: PrefixId,
        now: Instant,
    ) -> Result<Vec<Change>, PolicyError> {
        if self.prefix_mut(prefix)?.pin.take().is_none() {
            return Ok(Vec::new());
        }
        Ok(self.settle(now, |index, _| {
            (index == prefix).then_some(Reason::AdminClear)
        }))
    }

    /// Moves every prefix off `host` (except forced pins) until [`Policy::undrain`].
    pub fn drain(&mut self, host: HostId, now: Instant) -> Result<Vec<Change>, PolicyError> {
        let state = self.host_mut(host)?;
        if state.drained {
            return Ok(Vec::new());
        }
        state.drained = true;
        Ok(self.settle(now, |_, _| None))
    }

    /// Makes `host` usable again; it takes back at once the prefixes it is preferred
    /// for (if it is up).
    pub fn undrain(&mut self, host: HostId, now: Instant) -> Result<Vec<Change>, PolicyError> {
        let state = self.host_mut(host)?;
        if !state.drained {
            return Ok(Vec::new());
        }
        state.drained = false;
        Ok(self.settle(now, |_, prefix| {
            (prefix.preferred() == host).then_some(Reason::Undrain)
        }))
    }

    /// Applies the failbacks whose hold-down has expired by `now`.
    pub fn tick(&mut self, now: Instant) -> Vec<Change> {
        self.settle(now, |_, _| None)
    }

    /// When [`Policy::tick`] must next be called; `None`: no hold-down is running.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.prefixes
            .iter()
            .filter_map(|prefix| self.pending_failback(prefix))
            .min()
    }

    /// The host steering `prefix`; `None` if nobody (or no such prefix).
    pub fn owner(&self, prefix: PrefixId) -> Option<HostId> {
        self.prefixes.get(prefix.index())?.holder
    }

    /// Why [`Policy::owner`] holds `prefix`; `None` if there is no such prefix.
    pub fn why(&self, prefix: PrefixId) -> Option<Reason> {
        self.prefixes.get(prefix.index()).map(|p| p.reason)
    }

    /// The admin pin of `prefix`, if any.
    pub fn pin(&self, prefix: PrefixId) -> Option<Pin> {
        self.prefixes.get(prefix.index())?.pin
    }

    /// The last reported health of `host`; `None` if there is no such host.
    pub fn health(&self, host: HostId) -> Option<Health> {
        self.hosts.get(host.index()).map(|h| h.health)
    }

    /// Whether `host` is drained.
    pub fn is_drained(&self, host: HostId) -> bool {
        self.hosts.get(host.index()).is_some_and(|h| h.drained)
    }

    /// The pins and drains, for the state file.
    pub fn admin_state(&self) -> AdminState {
        let pins = self
            .prefixes
            .iter()
            .filter_map(|prefix| {
                let Pin { host, force } = prefix.pin?;
                let host = self.hosts.get(host.index())?.name.clone();
                Some((prefix.cidr, AdminPin { host, force }))
            })
            .collect();
        let drained = self
            .hosts
            .iter()
            .filter(|h| h.drained)
            .map(|h| h.name.clone())
            .collect();
        AdminState { pins, drained }
    }

    /// Takes each prefix's holder from the data path a previous controller left
    /// running (`None`: no entry), before any health is known. With health unknown
    /// the holder counts as usable, so a restart moves nothing until the checks
    /// decide: a prefix that had failed over stays on its backup instead of being
    /// sent back to a dead owner for a detection time. Holders that are not
    /// candidates of their prefix are ignored.
    pub fn adopt_holders(&mut self, holders: &[Option<HostId>]) {
        for (prefix, holder) in self.prefixes.iter_mut().zip(holders) {
            if holder.is_none_or(|h| prefix.is_candidate(h, self.hosts.len())) {
                prefix.holder = *holder;
                prefix.reason = Reason::Running;
            }
        }
    }

    /// Replaces the pins and drains with `state` (as read from the state file).
    /// Entries naming prefixes or hosts that are not configured are dropped and
    /// reported. Pinned, unpinned and undrained prefixes move at once, as for the
    /// corresponding admin command.
    pub fn restore(&mut self, state: AdminState, now: Instant) -> Applied {
        let AdminState { pins, drained } = state;
        let mut stale = Vec::new();

        let mut drains = vec![false; self.hosts.len()];
        for host in drained {
            match self.host_index(&host) {
                Some(index) => drains[index.index()] = true,
                None => stale.push(Stale::Drain { host }),
            }
        }
        let mut new_pins = vec![None; self.prefixes.len()];
        for (prefix, AdminPin { host, force }) in pins {
            let Some(index) = self.prefixes.iter().position(|p| p.cidr == prefix) else {
                stale.push(Stale::PinPrefix { prefix, host });
                continue;
            };
            let Some(host_index) = self.host_index(&host) else {
                stale.push(Stale::PinHost { prefix, host });
                continue;
            };
            new_pins[index] = Some(Pin {
                host: host_index,
                force,
            });
        }

        let undrained: Vec<bool> = self
            .hosts
            .iter()
            .zip(&drains)
            .map(|(host, &drained)| host.drained && !drained)
            .collect();
        let mut admin = vec![None; self.prefixes.len()];
        for ((prefix, pin), reason) in self.prefixes.iter_mut().zip(new_pins).zip(&mut admin) {
            if prefix.pin != pin {
                *reason = Some(match pin {
                    Some(Pin { force: true, .. }) => Reason::AdminForce,
                    Some(Pin { force: false, .. }) => Reason::AdminPin,
                    None => Reason::AdminClear,
                });
                prefix.pin = pin;
            } else if undrained.get(prefix.preferred().index()) == Some(&true) {
                *reason = Some(Reason::Undrain);
            }
        }
        for (host, drained) in self.hosts.iter_mut().zip(drains) {
            host.drained = drained;
        }
        let changes = self.settle(now, |index, _| admin.get(index.index()).copied().flatten());
        Applied { changes, stale }
    }

    /// Adopts a reloaded configuration. Hosts are matched by name and prefixes by
    /// CIDR: health, hold-downs, drains, pins and holders carry over. Pins and drains
    /// naming what no longer exists are dropped and reported.
    ///
    /// Indices in the returned changes, and from now on, are those of `new`: the
    /// controller should rewrite every prefix entry, since host ids may have moved. A
    /// holder that is no longer configured shows as `old: None`. New prefixes, and
    /// prefixes whose preferred host changed, are placed at once as for an admin
    /// command ([`Reason::Reconfigured`]); the others keep their holder unless it is no
    /// longer a candidate.
    pub fn reconfigure(&mut self, new: &Config, now: Instant) -> Applied {
        let mut stale = Vec::new();
        let find_host = |name: &str| {
            new.hosts
                .iter()
                .position(|h| h.name == name)
                .map(HostId::new)
        };
        // An old host index in the new configuration.
        let translate = |old: HostId| self.hosts.get(old.index()).and_then(|h| find_host(&h.name));

        let hosts = new
            .hosts
            .iter()
            .map(|host| {
                let old = self.hosts.iter().find(|h| h.name == host.name);
                HostState {
                    name: host.name.clone(),
                    failback_delay: Duration::from_millis(host.health.failback_delay_ms),
                    health: old.map_or(Health::Unknown, |h| h.health),
                    up_since: old.and_then(|h| h.up_since),
                    drained: old.is_some_and(|h| h.drained),
                }
            })
            .collect();
        for host in self.hosts.iter().filter(|h| h.drained) {
            if find_host(&host.name).is_none() {
                stale.push(Stale::Drain {
                    host: host.name.clone(),
                });
            }
        }

        let mut admin = Vec::with_capacity(new.prefixes.len());
        let mut prefixes = Vec::with_capacity(new.prefixes.len());
        for prefix in &new.prefixes {
            let Some(old) = self.prefixes.iter().find(|p| p.cidr == prefix.cidr) else {
                admin.push(Some(Reason::Reconfigured));
                prefixes.push(PrefixState {
                    cidr: prefix.cidr,
                    owner: prefix.owner,
                    backups: prefix.backups.clone(),
                    pin: None,
                    holder: None,
                    reason: Reason::AllDown,
                    vip: VipState::default(),
                });
                continue;
            };
            let pin = old.pin.and_then(|pin| match translate(pin.host) {
                Some(host) => Some(Pin { host, ..pin }),
                None => {
                    let host = self
                        .hosts
                        .get(pin.host.index())
                        .map_or_else(|| pin.host.to_string(), |h| h.name.clone());
                    stale.push(Stale::PinHost {
                        prefix: prefix.cidr,
                        host,
                    });
                    None
                }
            });
            let holder = old.holder.and_then(translate);
            let state = PrefixState {
                cidr: prefix.cidr,
                owner: prefix.owner,
                backups: prefix.backups.clone(),
                pin,
                holder,
                reason: old.reason,
                // The VIP checks start afresh after a reload.
                vip: VipState::default(),
            };
            let lost_holder = old.holder.is_some() && holder.is_none();
            let preferred_moved = translate(old.preferred()) != Some(state.preferred());
            admin.push((lost_holder || preferred_moved).then_some(Reason::Reconfigured));
            prefixes.push(state);
        }
        for old in &self.prefixes {
            if let Some(pin) = old.pin
                && !new.prefixes.iter().any(|p| p.cidr == old.cidr)
            {
                let host = self
                    .hosts
                    .get(pin.host.index())
                    .map_or_else(|| pin.host.to_string(), |h| h.name.clone());
                stale.push(Stale::PinPrefix {
                    prefix: old.cidr,
                    host,
                });
            }
        }

        self.hosts = hosts;
        self.prefixes = prefixes;
        let changes = self.settle(now, |index, _| admin.get(index.index()).copied().flatten());
        Applied { changes, stale }
    }

    // ---- internals -----------------------------------------------------------------

    fn host(&self, host: HostId) -> Result<&HostState, PolicyError> {
        let count = self.hosts.len();
        self.hosts
            .get(host.index())
            .ok_or(PolicyError::UnknownHost { host, count })
    }

    fn host_mut(&mut self, host: HostId) -> Result<&mut HostState, PolicyError> {
        let count = self.hosts.len();
        self.hosts
            .get_mut(host.index())
            .ok_or(PolicyError::UnknownHost { host, count })
    }

    fn prefix_mut(&mut self, prefix: PrefixId) -> Result<&mut PrefixState, PolicyError> {
        let count = self.prefixes.len();
        self.prefixes
            .get_mut(prefix.index())
            .ok_or(PolicyError::UnknownPrefix { prefix, count })
    }

    fn host_index(&self, name: &str) -> Option<HostId> {
        self.hosts
            .iter()
            .position(|h| h.name == name)
            .map(HostId::new)
    }

    /// Re-decides every prefix at `now`. `admin` names the prefixes an admin action
    /// targets, with the reason to record: their preferred host takes them at once if
    /// usable, without hold-down.
    fn settle(
        &mut self,
        now: Instant,
        admin: impl Fn(PrefixId, &PrefixState) -> Option<Reason>,
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        let decisions: Vec<(Option<HostId>, Reason)> = self
            .prefixes
            .iter()
            .enumerate()
            .map(|(index, prefix)| self.decide(prefix, now, admin(PrefixId::new(index), prefix)))
            .collect();
        for (index, (prefix, (holder, reason))) in
            self.prefixes.iter_mut().zip(decisions).enumerate()
        {
            if prefix.holder != holder {
                changes.push(Change {
                    prefix: PrefixId::new(index),
                    old: prefix.holder,
                    new: holder,
                    reason,
                });
            }
            prefix.holder = holder;
            prefix.reason = reason;
        }
        changes
    }

    /// The holder `prefix` should have at `now`, and why.
    fn decide(
        &self,
        prefix: &PrefixState,
        now: Instant,
        admin: Option<Reason>,
    ) -> (Option<HostId>, Reason) {
        if let Some(Pin { host, force: true }) = prefix.pin {
            return (Some(host), Reason::AdminForce);
        }
        let preferred = prefix.preferred();
        let keep = (prefix.holder, Self::kept_reason(prefix, admin));
        let holder_ok = prefix
            .holder
            .is_some_and(|h| self.usable(h, prefix) && prefix.is_candidate(h, self.hosts.len()));

        if self.usable(preferred, prefix) {
            if prefix.holder == Some(preferred) {
                return keep;
            }
            if let Some(reason) = admin {
                return (Some(preferred), reason);
            }
            let Some(holder) = prefix.holder else {
                return (Some(preferred), Reason::Recovered);
            };
            if !holder_ok {
                return (Some(preferred), self.leave_reason_of(prefix, holder, admin));
            }
            let ready = self
                .failback_ready_at(prefix, preferred)
                .is_some_and(|at| now >= at);
            if !ready {
                return keep;
            }
            let reason = if prefix.pin.is_some() {
                Reason::PinResumed
            } else {
                Reason::Failback
            };
            return (Some(preferred), reason);
        }

        if holder_ok {
            return keep;
        }
        match (
            prefix
                .candidates(self.hosts.len())
                .find(|&h| self.usable(h, prefix)),
            prefix.holder,
        ) {
            (Some(next), Some(holder)) => (Some(next), self.leave_reason_of(prefix, holder, admin)),
            (Some(next), None) => (Some(next), admin.unwrap_or(Reason::Recovered)),
            (None, _) => (None, Reason::AllDown),
        }
    }

    /// Why the holder of `prefix` holds it if it keeps it.
    fn kept_reason(prefix: &PrefixState, admin: Option<Reason>) -> Reason {
        let on_preferred = prefix.holder == Some(prefix.preferred());
        let reason = match admin {
            Some(reason) if on_preferred => reason,
            // The pinned host cannot take it (yet): say so rather than "pinned".
            Some(_) if prefix.pin.is_some() => Reason::PinWaiting,
            Some(Reason::AdminClear) => Reason::AdminClear,
            _ if prefix.reason.is_pin() && !on_preferred => Reason::PinWaiting,
            _ => prefix.reason,
        };
        // A reason that speaks of a pin that is gone.
        if prefix.pin.is_none() && (reason.is_pin() || reason == Reason::PinWaiting) {
            Reason::AdminClear
        } else {
            reason
        }
    }

    /// Why a prefix leaves `holder`.
    fn leave_reason(&self, holder: HostId, admin: Option<Reason>) -> Reason {
        match self.hosts.get(holder.index()) {
            Some(HostState { drained: true, .. }) => Reason::Drain,
            Some(HostState {
                health: Health::Up, ..
            }) => admin.unwrap_or(Reason::Reconfigured),
            // Down, or unknown and no longer entitled to keep it.
            Some(_) | None => Reason::Failover,
        }
    }

    /// Whether `host` may hold `prefix` (see "Unknown health" in the module docs).
    fn usable(&self, host: HostId, prefix: &PrefixState) -> bool {
        let Some(HostState {
            health, drained, ..
        }) = self.hosts.get(host.index())
        else {
            return false;
        };
        !drained
            && prefix.vip.serves(host)
            && match health {
                Health::Up => true,
                Health::Down => false,
                Health::Unknown => host == prefix.preferred() || prefix.holder == Some(host),
            }
    }

    /// When the preferred host of `prefix` will take it back from a healthy holder.
    fn pending_failback(&self, prefix: &PrefixState) -> Option<Instant> {
        if prefix.pin.is_some_and(|pin| pin.force) {
            return None;
        }
        let preferred = prefix.preferred();
        let holder = prefix.holder?;
        if holder == preferred
            || !self.usable(holder, prefix)
            || !prefix.is_candidate(holder, self.hosts.len())
        {
            return None;
        }
        self.failback_ready_at(prefix, preferred)
    }
}

#[cfg(test)]
mod tests;
