//! The thread that keeps the conntrack entries of the flows the data path may steer
//! (see [`super`]), every [`ROUND`] while [`Policy`] says so:
//! - a flow the kernel forwarded within the verification period, not yet
//!   [`FLOW_CT_SYNCED`]: its entry is looked up; found, it is made liberal (TCP) and
//!   the flow is marked synced, from which moment the data path steers it. The time
//!   from the kernel's forwarding to the mark is the latency until steering starts
//!   (at most about a round plus two ctnetlink requests per flow);
//! - a synced flow: its entry's timeout is renewed from the flow's `seen_ns`
//!   ([`super::keep`]); an entry that is gone (expired, deleted, closed) drops the
//!   mark, so the flow's next packets take the kernel's path and meet the rules as the
//!   kernel alone would have them.
//!
//! The mark is written with a whole-value update of the flow's entry, read just
//! before: a program's write to the entry in between (its `seen_ns`, its verification)
//! may be lost, which costs at most one more packet through the kernel or a
//! [`ha_common::SEEN_GRANULARITY_NS`] of timeout.

use std::{
    path::Path,
    thread,
    time::{Duration, Instant},
};

use aya::maps::{HashMap, Map, MapData};
use ha_common::{FLOW_CT_SYNCED, FlowEntry, FlowKey, MAP_FLOWS};
use rtnetlink::sys::protocols::NETLINK_NETFILTER;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::{ConntrackSync, keep, message};
use crate::kernel::{
    datapath::map_pin_path,
    forwarding::netlink::{Channel, NetlinkError},
};

/// How often the flow table is looked at: well within the shortest conntrack timeout
/// the kernel accepts (1 s), and the bound of the latency until steering starts.
pub const ROUND: Duration = Duration::from_millis(100);
/// Added to the measured time between rounds when choosing the round of a precise
/// renewal (scheduling jitter).
const JITTER_NS: u64 = 5_000_000;
const BPF_EXIST: u64 = 2;

/// What the keeper does, from the controller's assessment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub sync: ConntrackSync,
    /// The data path's verification period (`Settings::refresh_ns`).
    pub refresh_ns: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum KeeperError {
    #[error("cannot open the pinned flow table {}", path.display())]
    Flows {
        path: std::path::PathBuf,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("cannot open a ctnetlink socket")]
    Socket(#[source] NetlinkError),
    #[error("cannot start the conntrack keeper thread")]
    Thread(#[source] std::io::Error),
}

/// Starts the keeper on the flow table pinned under `pin_dir`; it runs until the
/// sender of `policy` goes away.
pub fn spawn(pin_dir: &Path, policy: watch::Receiver<Option<Policy>>) -> Result<(), KeeperError> {
    let path = map_pin_path(pin_dir, MAP_FLOWS);
    let flows = MapData::from_pin(&path)
        .and_then(Map::from_map_data)
        .and_then(HashMap::try_from)
        .map_err(|source| KeeperError::Flows { path, source })?;
    let channel =
        Channel::open(NETLINK_NETFILTER, "netfilter", false).map_err(KeeperError::Socket)?;
    let mut keeper = Keeper {
        flows,
        channel,
        failing: false,
    };
    thread::Builder::new()
        .name("ha-conntrack".to_owned())
        .spawn(move || keeper.run(policy))
        .map_err(KeeperError::Thread)?;
    Ok(())
}

struct Keeper {
    flows: HashMap<MapData, FlowKey, FlowEntry>,
    channel: Channel,
    /// The last round failed (logged once until one succeeds).
    failing: bool,
}

/// `bpf_ktime_get_coarse_ns`'s clock, as the programs write `seen_ns` and
/// `verified_ns` with it.
fn coarse_now() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; the clock exists on every Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    (ts.tv_sec as u64).wrapping_mul(1_000_000_000) + ts.tv_nsec as u64
}

impl Keeper {
    fn run(&mut self, mut policy: watch::Receiver<Option<Policy>>) {
        let mut previous: Option<u64> = None;
        loop {
            let started = Instant::now();
            if policy.has_changed().is_err() {
                return;
            }
            let current = *policy.borrow_and_update();
            match current {
                Some(current) => {
                    let now = coarse_now();
                    let round_ns = previous.map_or(ROUND.as_nanos() as u64, |p| now - p);
                    previous = Some(now);
                    self.round(&current, now, round_ns + JITTER_NS);
                }
                None => previous = None,
            }
            if let Some(rest) = ROUND.checked_sub(started.elapsed()) {
                thread::sleep(rest);
            }
        }
    }

    fn round(&mut self, policy: &Policy, now: u64, round_ns: u64) {
        let flows: Vec<(FlowKey, FlowEntry)> = self.flows.iter().filter_map(Result::ok).collect();
        let mut failed = None;
        for (key, flow) in flows {
            if let Err(err) = self.keep(policy, &key, &flow, now, round_ns) {
                failed = Some(err);
            }
        }
        match (failed, self.failing) {
            (Some(err), false) => {
                warn!("keeping the conntrack entries of steered flows: {err:#}");
                self.failing = true;
            }
            (None, true) => {
                info!("the conntrack entries of steered flows are kept again");
                self.failing = false;
            }
            _ => {}
        }
    }

    fn keep(
        &mut self,
        policy: &Policy,
        key: &FlowKey,
        flow: &FlowEntry,
        now: u64,
        round_ns: u64,
    ) -> anyhow::Result<()> {
        let synced = flow.flags & FLOW_CT_SYNCED != 0;
        let recent =
            flow.verified_ns != 0 && now.saturating_sub(flow.verified_ns) < policy.refresh_ns;
        if !synced && !recent {
            return Ok(());
        }
        let entry = match self.channel.request("conntrack entry", message::get(key)) {
            Ok(reply) => message::parse(&reply)?,
            Err(err) if err.errno() == Some(libc::ENOENT) => return self.gone(key, synced),
            Err(err) => return Err(err.into()),
        };
        let change = keep::change(
            key,
            &entry,
            &policy.sync.timeouts,
            policy.sync.liberal,
            flow.seen_ns,
            now,
            round_ns,
        );
        if !change.is_empty() {
            match self
                .channel
                .command("conntrack change", message::update(key, change))
            {
                Ok(()) => {}
                Err(err) if err.errno() == Some(libc::ENOENT) => return self.gone(key, synced),
                Err(err) => return Err(err.into()),
            }
        }
        if !synced && self.mark(key, true) {
            let latency_ms = now.saturating_sub(flow.verified_ns) as f64 / 1e6;
            debug!(flow = ?key, latency_ms, "conntrack entry kept: the flow may be steered");
        }
        Ok(())
    }

    /// The flow's entry is gone: it is steered no more.
    fn gone(&mut self, key: &FlowKey, synced: bool) -> anyhow::Result<()> {
        if synced {
            self.mark(key, false);
        }
        Ok(())
    }

    /// Sets or clears [`FLOW_CT_SYNCED`]; whether the flow was still there to mark.
    fn mark(&mut self, key: &FlowKey, synced: bool) -> bool {
        let Ok(mut entry) = self.flows.get(key, 0) else {
            return false;
        };
        if synced {
            entry.flags |= FLOW_CT_SYNCED;
        } else {
            entry.flags &= !FLOW_CT_SYNCED;
        }
        self.flows.insert(key, entry, BPF_EXIST).is_ok()
    }
}
