//! Flow affinity, the controller's side: which prefixes are moving, which hosts keep
//! their flows, and the end of a move.
//!
//! # Rules
//!
//! - **A move keeps flows.** When a prefix changes hands from A to B while A keeps
//!   its flows (up, no ended drain) — failback, `set-owner`, `clear-owner`, a drain, a
//!   reload — its entry is written moving ([`ha_common::PFX_MOVING`], previous host
//!   A): established flows stay with their hosts, new ones go to B (see ha-ebpf's
//!   `flow.rs`). A failover (A down) writes a steady entry, unless an earlier move is
//!   still in progress: then the prefix stays moving, the earlier previous host kept,
//!   so flows left on a third host keep it too (their entries say where they are).
//! - **A move ends** when the sweep ([`sweep`](super::sweep)) counts no live flow of
//!   the prefix served by a host other than its owner: the entry is written steady
//!   and a `move-ended` event published. A prefix whose entry is removed (every
//!   candidate down) ends its move at once.
//! - **Which hosts keep their flows** ([`ha_common::HOST_UP`]): a host the health
//!   checks say is up, or — until this controller's checks decide — one whose pinned
//!   entry said so when it started (a restart does not end affinity); never a host
//!   whose drain has ended.
//! - **Restart.** The prefix table is pinned: a new controller adopts the moving
//!   entries it finds (their previous hosts) and goes on from there.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::SystemTime,
};

use anyhow::Context as _;
use ha_common::{HOST_UP, HostEntry, MAX_HOSTS};
use ipnet::Ipv4Net;
use tokio::sync::{Notify, mpsc};
use tracing::{info, warn};

use super::{
    Controller,
    drain::{self, Drain},
    steering_of,
    sweep::{self, SharedView, SweepReport, View},
};
use crate::{
    config::Config,
    kernel::{datapath::Maps, flows::FlowTable, steering},
    model::{Health, HostId, PrefixId},
    policy::{Change, Policy},
    proto::Event,
};

/// A move in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Move {
    /// The host that owned the prefix before (the data path's `prev_host`).
    pub prev: HostId,
    pub since: SystemTime,
    /// Live flows served elsewhere at the last sweep; `None` before the first.
    pub elsewhere: Option<u64>,
}

/// Everything the controller keeps for flow affinity.
pub struct Affinity {
    /// Per prefix id.
    pub(super) moves: Vec<Option<Move>>,
    /// Per host id: its pinned entry had HOST_UP when this controller started.
    adopted_up: Vec<bool>,
    /// Graceful drains, in progress or ended (until `undrain`).
    pub(super) drains: BTreeMap<HostId, Drain>,
    pub(super) view: SharedView,
    pub(super) wake: Arc<Notify>,
    pub(super) reports: mpsc::Receiver<SweepReport>,
    /// The last pass of the sweep.
    pub(super) last_sweep: Option<SweepReport>,
}

impl Affinity {
    /// What the running data path says (moving prefixes, hosts keeping flows) and
    /// the state file (drains in progress); starts the sweep.
    pub fn adopt(config: &Config, maps: &Maps, policy: &Policy) -> anyhow::Result<Affinity> {
        let running: HashMap<Ipv4Net, ha_common::PrefixEntry> = maps
            .prefix_entries()
            .context("reading the pinned prefix table")?
            .into_iter()
            .collect();
        let hosts = config.hosts.len();
        let now = SystemTime::now();
        let moves = config
            .prefixes
            .iter()
            .map(|prefix| {
                let entry = running.get(&prefix.cidr)?;
                let prev = HostId::from_raw(entry.prev_host);
                (entry.is_moving() && prev.index() < hosts && entry.prev_host != entry.host)
                    .then_some(Move {
                        prev,
                        since: now,
                        elsewhere: None,
                    })
            })
            .collect::<Vec<_>>();
        let mut adopted_up = vec![false; hosts];
        for (host, slot) in adopted_up.iter_mut().enumerate() {
            let id = host as u32;
            if id < MAX_HOSTS {
                let entry: HostEntry = maps.hosts.get(&id, 0).unwrap_or_default();
                *slot = entry.flags & HOST_UP != 0;
            }
        }
        let drains = drain::restore(config, policy)?;
        let adopted = moves.iter().filter(|m| m.is_some()).count();
        if adopted > 0 || !drains.is_empty() {
            info!(
                moving = adopted,
                draining = drains.len(),
                "adopting moves and drains in progress"
            );
        }
        let mut view = View::new(
            config.prefix_ids().map(|(id, p)| (p.cidr, id.raw())),
            hosts,
            &config.flows,
        );
        // What the running data path says, until the controller writes it again.
        for prefix in &config.prefixes {
            if let Some(entry) = running.get(&prefix.cidr) {
                view.set_prefix(prefix.cidr, Some(entry.host), entry.is_moving());
            }
        }
        let mut drains = drains;
        for (host, up) in adopted_up.iter().enumerate() {
            let over = drains.get(&HostId::new(host)).is_some_and(|d| d.ended);
            view.set_keeps(host as u32, *up && !over);
        }
        // Only passes after this know the drains' moves.
        let epoch = view.bump();
        for drain in drains.values_mut() {
            drain.since_epoch = epoch;
        }
        let view = Arc::new(Mutex::new(view));
        let wake = Arc::new(Notify::new());
        let (tx, reports) = mpsc::channel(4);
        let table = FlowTable::open(&config.pin_dir)?;
        drop(sweep::spawn(
            table,
            Arc::clone(&view),
            Arc::clone(&wake),
            tx,
        ));
        Ok(Affinity {
            moves,
            adopted_up,
            drains,
            view,
            wake,
            reports,
            last_sweep: None,
        })
    }

    /// The move of `prefix` in progress, if any.
    pub fn moving(&self, prefix: PrefixId) -> Option<&Move> {
        self.moves.get(prefix.index())?.as_ref()
    }

    /// A reload: prefixes matched by CIDR, hosts by name, from `old` to `new`.
    pub(super) fn reconfigure(&mut self, old: &Config, new: &Config) {
        let by_cidr: HashMap<Ipv4Net, Move> = old
            .prefixes
            .iter()
            .zip(std::mem::take(&mut self.moves))
            .filter_map(|(p, m)| Some((p.cidr, m?)))
            .collect();
        let translate = |host: HostId| {
            old.hosts
                .get(host.index())
                .and_then(|h| new.host_id(&h.name))
        };
        self.moves = new
            .prefixes
            .iter()
            .map(|p| {
                let m = by_cidr.get(&p.cidr)?;
                Some(Move {
                    prev: translate(m.prev)?,
                    ..*m
                })
            })
            .collect();
        let old_up = std::mem::take(&mut self.adopted_up);
        self.adopted_up = new
            .hosts
            .iter()
            .map(|h| {
                old.host_id(&h.name)
                    .and_then(|id| old_up.get(id.index()).copied())
                    .unwrap_or(false)
            })
            .collect();
        self.drains = std::mem::take(&mut self.drains)
            .into_iter()
            .filter_map(|(host, drain)| Some((translate(host)?, drain)))
            .collect();
        sweep::lock(&self.view).reset(
            new.prefix_ids().map(|(id, p)| (p.cidr, id.raw())),
            new.hosts.len(),
            &new.flows,
        );
    }
}

impl Controller {
    /// Whether `host` keeps the flows it serves (see the module docs).
    pub(super) fn keeps_flows(&self, host: HostId) -> bool {
        if self
            .affinity
            .drains
            .get(&host)
            .is_some_and(|drain| drain.ended)
        {
            return false;
        }
        match self.policy.health(host) {
            Some(Health::Up) => true,
            Some(Health::Unknown) => self
                .affinity
                .adopted_up
                .get(host.index())
                .copied()
                .unwrap_or(false),
            Some(Health::Down) | None => false,
        }
    }

    /// Writes `host`'s entry (MAC, whether it keeps its flows) and tells the sweep.
    pub(super) fn write_host_entry(&mut self, host: HostId) -> anyhow::Result<()> {
        let mac = self.macs.get(host.index()).copied().flatten();
        let keeps = self.keeps_flows(host);
        let entry = steering::host_entry(mac, &self.lan, keeps);
        steering::write_host(&mut self.maps, host, entry)?;
        sweep::lock(&self.affinity.view).set_keeps(host.raw(), keeps);
        Ok(())
    }

    /// The move `change` starts or continues (see the module docs); `None`: steady.
    pub(super) fn move_after(&self, change: &Change) -> Option<Move> {
        let new = change.new?;
        let earlier = self.affinity.moving(change.prefix).copied();
        match change.old {
            Some(old) if old != new && self.keeps_flows(old) => Some(Move {
                prev: old,
                since: SystemTime::now(),
                elsewhere: None,
            }),
            _ => earlier,
        }
    }

    /// Writes prefix `id`'s map entry for `holder` with `moving` (or removes it), the
    /// sweep's view with it. Returns the kernel route's gateway.
    pub(super) fn steer_prefix(
        &mut self,
        id: PrefixId,
        holder: Option<HostId>,
        moving: Option<Move>,
    ) -> anyhow::Result<std::net::Ipv4Addr> {
        let moving = moving.filter(|_| holder.is_some());
        let cidr = self.config.prefix(id).cidr;
        let steering = steering_of(&self.config, id, holder, moving.map(|m| m.prev));
        {
            let mut view = sweep::lock(&self.affinity.view);
            match steering.entry {
                Some(entry) => steering::write_prefix(&mut self.maps, cidr, entry)?,
                None => steering::remove_prefix(&mut self.maps, cidr)?,
            }
            view.set_prefix(cidr, holder.map(HostId::raw), moving.is_some());
        }
        let started = moving.is_some() && self.affinity.moving(id).is_none();
        if let Some(slot) = self.affinity.moves.get_mut(id.index()) {
            *slot = moving;
        }
        if started {
            // The sweep reads the table at once and then every `sweep_ms`.
            self.affinity.wake.notify_one();
        }
        Ok(steering.route_via)
    }

    /// A pass of the sweep: ends the moves without flows elsewhere, follows drains.
    pub(super) async fn on_sweep(&mut self, report: SweepReport) {
        if let Some(error) = &report.error {
            warn!("flow table sweep: {error}");
        }
        let mut ended = 0;
        for (cidr, (epoch, count)) in &report.elsewhere {
            let Some(id) = self.config.prefix_id(*cidr) else {
                continue;
            };
            let current = sweep::lock(&self.affinity.view).epoch(*cidr);
            if current != Some(*epoch) || report.error.is_some() {
                continue; // written again since it was counted
            }
            let Some(mut moving) = self.affinity.moving(id).copied() else {
                continue;
            };
            moving.elsewhere = Some(*count);
            if let Some(slot) = self.affinity.moves.get_mut(id.index()) {
                *slot = Some(moving);
            }
            if *count > 0 {
                continue;
            }
            let owner = self.policy.owner(id);
            if let Err(err) = self.steer_prefix(id, owner, None) {
                warn!("{cidr}: {err:#}");
                continue;
            }
            ended += 1;
            let took = moving.since.elapsed().unwrap_or_default();
            let from = self.host_name(Some(moving.prev));
            let owner = self.host_name(owner);
            info!(prefix = %cidr, %owner, %from, moving_ms = took.as_millis() as u64, "move ended: no flows left elsewhere");
            self.events.publish(Event::MoveEnded {
                prefix: *cidr,
                owner,
                from,
                moving_ms: took.as_millis() as u64,
            });
        }
        if ended > 0 {
            // Their entries of other hosts are stale now: the next pass removes them.
            self.affinity.wake.notify_one();
        }
        self.follow_drains(&report);
        self.affinity.last_sweep = Some(report);
    }
}
