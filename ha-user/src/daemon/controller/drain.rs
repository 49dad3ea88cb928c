//! Graceful drains: `drain HOST` moves the host's prefixes at once (as moves that
//! keep flows, so new connections go elsewhere) and lets its connections finish for
//! up to `drain_timeout_ms`; then, or once the sweep counts none left, the drain
//! ends: the host keeps no flows any more (its `HOST_UP` is cleared, so what is left
//! follows the prefixes' owners at its next packet) and the moves end at the next
//! sweep. `drain --now` (or a `drain_timeout_ms` of 0) ends it at once: the prefixes
//! move steady, as a failover would.
//!
//! A drain in progress is kept in the state file beside the pins and drains
//! ([`SavedState`]), with its deadline in wall-clock time, so a restarted controller
//! goes on with it.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::{info, warn};

use super::{
    Controller,
    sweep::{self, SweepReport},
};
use crate::{
    config::Config,
    daemon::state,
    model::HostId,
    policy::{AdminState, Policy},
    proto::{Event, events::DrainOutcome},
};

/// One graceful drain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drain {
    pub started: SystemTime,
    /// When the rest is moved.
    pub deadline: Instant,
    pub deadline_wall: SystemTime,
    /// Over: the host keeps no flows until `undrain`.
    pub ended: bool,
    /// Live flows it still served at the last sweep; `None` before the first.
    pub remaining: Option<u64>,
    /// Only a sweep report of this epoch or later counts its flows: earlier ones were
    /// taken before its prefixes moved ([`Controller::drain_moved`]).
    pub since_epoch: u64,
}

/// The state file: the policy's pins and drains, and the drains in progress.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedState {
    #[serde(flatten)]
    pub admin: AdminState,
    /// Graceful drains by host name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub draining: BTreeMap<String, SavedDrain>,
}

impl state::Keys for SavedState {
    /// [`AdminState`]'s keys and `draining`.
    const KEYS: &'static [&'static str] = &["pins", "drained", "draining"];
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedDrain {
    pub started_unix_ms: u64,
    pub deadline_unix_ms: u64,
    #[serde(default)]
    pub ended: bool,
}

pub(super) fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn from_unix_ms(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

/// The drains of the state file whose host `policy` has drained.
pub(super) fn restore(config: &Config, policy: &Policy) -> anyhow::Result<BTreeMap<HostId, Drain>> {
    let Some(saved) = state::load::<SavedState>(&config.state_file)? else {
        return Ok(BTreeMap::new());
    };
    let now = SystemTime::now();
    let mut drains = BTreeMap::new();
    for (name, saved) in saved.draining {
        let Some(host) = config.host_id(&name) else {
            warn!("saved drain of {name}: not a configured host (ignored)");
            continue;
        };
        if !policy.is_drained(host) {
            continue;
        }
        let deadline_wall = from_unix_ms(saved.deadline_unix_ms);
        let left = deadline_wall.duration_since(now).unwrap_or_default();
        drains.insert(
            host,
            Drain {
                started: from_unix_ms(saved.started_unix_ms),
                deadline: Instant::now() + left,
                deadline_wall,
                ended: saved.ended,
                remaining: None,
                since_epoch: u64::MAX,
            },
        );
    }
    Ok(drains)
}

impl Controller {
    /// What the state file holds now.
    pub(super) fn saved_state(&self) -> SavedState {
        let draining = self
            .affinity
            .drains
            .iter()
            .map(|(host, drain)| {
                (
                    self.host_name(Some(*host)),
                    SavedDrain {
                        started_unix_ms: unix_ms(drain.started),
                        deadline_unix_ms: unix_ms(drain.deadline_wall),
                        ended: drain.ended,
                    },
                )
            })
            .collect();
        SavedState {
            admin: self.policy.admin_state(),
            draining,
        }
    }

    fn save_state(&self) {
        if let Err(err) = state::save(&self.config.state_file, &self.saved_state()) {
            warn!("{err:#}");
        }
    }

    /// Starts a graceful drain of `host` (before its prefixes move). Returns the
    /// timeout, or `None` when the drain is immediate (`--now`, a timeout of 0).
    pub(super) fn start_drain(&mut self, host: HostId, now: bool) -> Option<Duration> {
        let timeout = self.config.flows.drain_timeout();
        if now || timeout.is_zero() {
            self.end_drain(host, DrainOutcome::Now);
            return None;
        }
        if self.policy.is_drained(host) {
            // Drained already: a second `drain` changes nothing.
            return self
                .affinity
                .drains
                .get(&host)
                .filter(|d| !d.ended)
                .map(|d| d.deadline.saturating_duration_since(Instant::now()));
        }
        let started = SystemTime::now();
        self.affinity.drains.insert(
            host,
            Drain {
                started,
                deadline: Instant::now() + timeout,
                deadline_wall: started + timeout,
                ended: false,
                remaining: None,
                since_epoch: u64::MAX,
            },
        );
        Some(timeout)
    }

    /// `host`'s prefixes have moved (their entries are written): sweeps from now on
    /// count its flows.
    pub(super) fn drain_moved(&mut self, host: HostId) {
        let epoch = sweep::lock(&self.affinity.view).bump();
        if let Some(drain) = self.affinity.drains.get_mut(&host)
            && drain.since_epoch == u64::MAX
        {
            drain.since_epoch = epoch;
        }
    }

    /// Ends `host`'s drain: it keeps no flows any more (what is left follows the
    /// owners), the moves it held end at the next sweep.
    pub(super) fn end_drain(&mut self, host: HostId, outcome: DrainOutcome) {
        let now = SystemTime::now();
        let drain = self.affinity.drains.entry(host).or_insert(Drain {
            started: now,
            deadline: Instant::now(),
            deadline_wall: now,
            ended: false,
            remaining: None,
            since_epoch: u64::MAX,
        });
        if drain.ended {
            return;
        }
        drain.ended = true;
        let drain = *drain;
        if let Err(err) = self.write_host_entry(host) {
            warn!("{err:#}");
        }
        let name = self.host_name(Some(host));
        let remaining = drain.remaining.unwrap_or(0);
        let drained_ms = drain.started.elapsed().unwrap_or_default().as_millis() as u64;
        if outcome != DrainOutcome::Now || drain.remaining.is_some() {
            info!(host = %name, ?outcome, remaining, drained_ms, "drain ended");
            self.events.publish(Event::DrainFinished {
                host: name,
                outcome,
                remaining,
                drained_ms,
            });
        }
        self.affinity.wake.notify_one();
    }

    /// `undrain`: the drain is forgotten (before the prefixes come back).
    pub(super) fn forget_drain(&mut self, host: HostId) {
        if let Some(drain) = self.affinity.drains.remove(&host) {
            if !drain.ended {
                let name = self.host_name(Some(host));
                self.events.publish(Event::DrainFinished {
                    host: name,
                    outcome: DrainOutcome::Undrained,
                    remaining: drain.remaining.unwrap_or(0),
                    drained_ms: drain.started.elapsed().unwrap_or_default().as_millis() as u64,
                });
            }
            if let Err(err) = self.write_host_entry(host) {
                warn!("{err:#}");
            }
        }
    }

    /// The earliest deadline of a drain in progress.
    pub(super) fn next_drain_deadline(&self) -> Option<Instant> {
        self.affinity
            .drains
            .values()
            .filter(|d| !d.ended)
            .map(|d| d.deadline)
            .min()
    }

    /// Ends the drains whose deadline has passed.
    pub(super) fn end_due_drains(&mut self) {
        let now = Instant::now();
        let due: Vec<HostId> = self
            .affinity
            .drains
            .iter()
            .filter(|(_, d)| !d.ended && d.deadline <= now)
            .map(|(h, _)| *h)
            .collect();
        for host in &due {
            self.end_drain(*host, DrainOutcome::TimedOut);
        }
        if !due.is_empty() {
            self.save_state();
        }
    }

    /// The sweep's count of each draining host's flows: progress events, and the
    /// end of a drain with nothing left.
    pub(super) fn follow_drains(&mut self, report: &SweepReport) {
        if report.error.is_some() {
            return;
        }
        let mut done = Vec::new();
        let hosts: Vec<HostId> = self.affinity.drains.keys().copied().collect();
        for host in hosts {
            let remaining = report.away.get(&host.raw()).copied().unwrap_or(0);
            let Some(drain) = self.affinity.drains.get_mut(&host) else {
                continue;
            };
            if drain.ended || report.epoch < drain.since_epoch || drain.remaining == Some(remaining)
            {
                continue;
            }
            drain.remaining = Some(remaining);
            let left_ms = drain
                .deadline
                .saturating_duration_since(Instant::now())
                .as_millis() as u64;
            if remaining == 0 {
                done.push(host);
                continue;
            }
            self.events.publish(Event::DrainProgress {
                host: self.host_name(Some(host)),
                remaining,
                left_ms,
            });
        }
        for host in &done {
            self.end_drain(*host, DrainOutcome::Completed);
        }
        if !done.is_empty() {
            self.save_state();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `state_file` naming another program's JSON file is refused when read (at
    /// start-up, before any admin command could overwrite it), naming the file, and
    /// the file is left as it was.
    #[test]
    fn another_programs_json_file_is_refused_and_left_alone() {
        let dir = std::env::temp_dir().join(format!("ha-state-foreign-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("other.json");
        let theirs = "{\"name\": \"other\", \"version\": 3}\n";
        std::fs::write(&path, theirs).expect("their file");
        let loaded = state::load::<SavedState>(&path);
        let after = std::fs::read_to_string(&path).expect("their file");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(after, theirs, "their file changed");
        let err = loaded.expect_err("another program's file is not ha's state");
        let message = err.to_string();
        assert!(
            message.contains(&path.display().to_string())
                && message.contains("is not an ha state file"),
            "{message}"
        );
    }
}
