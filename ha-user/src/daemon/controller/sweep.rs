//! The sweep: a task beside the controller's loop that reads the whole flow table
//! (one batch read, [`FlowTable::read_all`]) every [`Flows::sweep_ms`] while a prefix
//! is moving, and ten times less often otherwise, and:
//!
//! - removes the entries that are over: a TCP connection or UDP flow idle beyond
//!   `tcp_idle_ms` / `udp_idle_ms`, a TCP connection quiet for `fin_linger_ms` since
//!   its client's FIN (the LRU table would only evict them when full);
//! - removes the entries of steady prefixes that name a host other than the owner
//!   (a steady prefix sends every packet to its owner; such an entry would misdirect
//!   the flow's packets once the prefix moves again), and of addresses no prefix has;
//! - counts, per moving prefix, the live flows served by a host other than its owner
//!   that keeps its flows (ready and up, no ended drain), and the same per host: the
//!   controller ends a move when its count is 0 and follows drains with the second.
//!
//! The read runs on a blocking thread, never on the loop: a failover is never late
//! because of a sweep. A pass is followed by at least 50 times its own duration
//! without one, so the sweep stays under 2 % of a CPU however full the table is (a
//! full table, 262,144 entries, takes about 70 ms to read: a pass every 3.5 s). The controller publishes what the sweep needs in a [`View`]
//! behind a mutex, and writes a prefix's map entry and its view together under it; the
//! sweep removes entries of steady prefixes only while holding it, after checking the
//! view again, so it never removes the entry of a flow whose prefix started moving
//! while the table was being read.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use ha_common::{FLOW_FIN, FlowEntry, FlowKey};
use ipnet::Ipv4Net;
use tokio::sync::{Notify, mpsc};
use tracing::warn;

use crate::{
    kernel::flows::{FlowTable, FlowTableError},
    model::Flows,
};

const IPPROTO_TCP: u8 = 6;
/// Without a move in progress the table is read this many times less often.
const IDLE_FACTOR: u32 = 10;
/// A pass is followed by at least this many times its own duration without one: the
/// sweep never takes more than 2 % of a CPU, however full the table.
const COST_FACTOR: u32 = 50;

/// One prefix as the sweep sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefixView {
    pub net: Ipv4Net,
    /// Its id in the data path (`FlowEntry::prefix_id`, `HA_PFX_STATS`).
    pub id: u32,
    /// The host its map entry names; `None`: no entry (the kernel route carries it).
    pub owner: Option<u32>,
    pub moving: bool,
    /// Changes with every write of the prefix's entry: a count taken under another
    /// epoch says nothing about the entry written now.
    pub epoch: u64,
}

/// What the controller tells the sweep.
#[derive(Debug, Default)]
pub struct View {
    /// Sorted by network; configured prefixes never overlap.
    prefixes: Vec<PrefixView>,
    /// Per host id: it keeps the flows it serves.
    keeps: Vec<bool>,
    next_epoch: u64,
    tcp_idle_ns: u64,
    udp_idle_ns: u64,
    fin_linger_ns: u64,
    sweep: Duration,
}

impl View {
    /// A view of `prefixes` (net, id; nothing steered yet) and `hosts` hosts.
    pub fn new(
        prefixes: impl IntoIterator<Item = (Ipv4Net, u32)>,
        hosts: usize,
        flows: &Flows,
    ) -> View {
        let mut view = View::default();
        view.reset(prefixes, hosts, flows);
        view
    }

    /// Replaces the prefixes and hosts (a reload), keeping the epochs increasing. A
    /// prefix kept from before keeps what its map entry says (and a host what it
    /// keeps) until the controller writes them again: a pass in between must not
    /// take the entries of a steered prefix for stale.
    pub fn reset(
        &mut self,
        prefixes: impl IntoIterator<Item = (Ipv4Net, u32)>,
        hosts: usize,
        flows: &Flows,
    ) {
        self.next_epoch += 1;
        let epoch = self.next_epoch;
        let old = std::mem::take(&mut self.prefixes);
        let mut list: Vec<PrefixView> = prefixes
            .into_iter()
            .map(|(net, id)| {
                let before = old.iter().find(|p| p.net == net);
                PrefixView {
                    net,
                    id,
                    owner: before.and_then(|p| p.owner),
                    moving: before.is_some_and(|p| p.moving),
                    epoch,
                }
            })
            .collect();
        list.sort_by_key(|p| (u32::from(p.net.network()), p.net.prefix_len()));
        self.prefixes = list;
        let keeps = std::mem::take(&mut self.keeps);
        self.keeps = (0..hosts)
            .map(|h| keeps.get(h).copied().unwrap_or(false))
            .collect();
        let ns = |ms: u64| ms.saturating_mul(1_000_000);
        self.tcp_idle_ns = ns(flows.tcp_idle_ms);
        self.udp_idle_ns = ns(flows.udp_idle_ms);
        self.fin_linger_ns = ns(flows.fin_linger_ms);
        self.sweep = flows.sweep();
    }

    /// Records that prefix `net`'s entry now names `owner` (moving or not); returns
    /// the epoch of that write.
    pub fn set_prefix(&mut self, net: Ipv4Net, owner: Option<u32>, moving: bool) -> u64 {
        self.next_epoch += 1;
        let epoch = self.next_epoch;
        if let Some(prefix) = self.prefixes.iter_mut().find(|p| p.net == net) {
            prefix.owner = owner;
            prefix.moving = moving && owner.is_some();
            prefix.epoch = epoch;
        }
        epoch
    }

    pub fn set_keeps(&mut self, host: u32, keeps: bool) {
        if let Some(slot) = self.keeps.get_mut(host as usize) {
            *slot = keeps;
        }
    }

    /// A new epoch: a pass whose report carries it or a later one saw every write
    /// made before this call.
    pub fn bump(&mut self) -> u64 {
        self.next_epoch += 1;
        self.next_epoch
    }

    /// The epoch of `net`'s last write.
    pub fn epoch(&self, net: Ipv4Net) -> Option<u64> {
        self.prefixes.iter().find(|p| p.net == net).map(|p| p.epoch)
    }

    fn any_moving(&self) -> bool {
        self.prefixes.iter().any(|p| p.moving)
    }

    /// The prefix holding `addr`.
    fn find(&self, addr: Ipv4Addr) -> Option<&PrefixView> {
        let addr_u32 = u32::from(addr);
        let index = self
            .prefixes
            .partition_point(|p| u32::from(p.net.network()) <= addr_u32);
        let candidate = self.prefixes.get(index.checked_sub(1)?)?;
        candidate.net.contains(&addr).then_some(candidate)
    }

    fn keeps(&self, host: u32) -> bool {
        self.keeps.get(host as usize).copied().unwrap_or(false)
    }

    /// What the sweep makes of one entry at `now_ns`.
    fn classify(&self, key: &FlowKey, entry: &FlowEntry, now_ns: u64) -> Class {
        let age = now_ns.saturating_sub(entry.seen_ns);
        let idle = if key.proto == IPPROTO_TCP {
            self.tcp_idle_ns
        } else {
            self.udp_idle_ns
        };
        if age > idle || (entry.flags & FLOW_FIN != 0 && age > self.fin_linger_ns) {
            return Class::Over;
        }
        let Some(prefix) = self.find(Ipv4Addr::from(key.vip)) else {
            return Class::Stale;
        };
        match prefix.owner {
            None => Class::Stale,
            Some(owner) if owner == entry.host => Class::Owned,
            Some(_) if !prefix.moving => Class::Stale,
            // A host that does not keep its flows: the data path sends the flow to
            // the owner at its next packet. Left alone: removed, the flow would be
            // unknown and a TCP segment would go to the previous owner instead.
            Some(_) if !self.keeps(entry.host) => Class::Owned,
            Some(_) => Class::Elsewhere {
                prefix: prefix.net,
                epoch: prefix.epoch,
            },
        }
    }
}

/// What one entry is to the sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// Idle, or closed: removed.
    Over,
    /// Names a host other than the owner of a steady prefix (or no prefix): removed.
    Stale,
    /// Served by its prefix's owner (or followed to it at its next packet).
    Owned,
    /// Live and served by a host other than its moving prefix's owner.
    Elsewhere { prefix: Ipv4Net, epoch: u64 },
}

/// The view, shared by the controller and the sweep.
pub type SharedView = Arc<Mutex<View>>;

/// Locks the view; a panic elsewhere while it was held leaves nothing half-written
/// that matters here (every field is written whole).
pub fn lock(view: &SharedView) -> MutexGuard<'_, View> {
    view.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What one pass found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// The view's latest epoch when the entries were classified.
    pub epoch: u64,
    /// Entries read.
    pub entries: usize,
    /// How long the read took.
    pub read: Duration,
    /// Entries removed as over (idle, closed).
    pub removed_over: usize,
    /// Entries removed as stale.
    pub removed_stale: usize,
    /// Per moving prefix and the epoch of its entry when counted: live flows served
    /// elsewhere. A moving prefix without any is listed with 0.
    pub elsewhere: BTreeMap<Ipv4Net, (u64, u64)>,
    /// Per host id: live flows it serves for moving prefixes it does not own.
    pub away: BTreeMap<u32, u64>,
    /// Why the pass failed, if it did.
    pub error: Option<String>,
}

/// One pass over `table`.
pub fn pass(
    table: &FlowTable,
    view: &SharedView,
    entries: &mut Vec<(FlowKey, FlowEntry)>,
) -> SweepReport {
    let mut report = SweepReport::default();
    let started = Instant::now();
    if let Err(err) = table.read_all(entries) {
        report.error = Some(format!("{:#}", anyhow::Error::from(err)));
        return report;
    }
    report.read = started.elapsed();
    report.entries = entries.len();
    let now = monotonic_coarse_ns();
    let mut over = Vec::new();
    let mut stale = Vec::new();
    {
        let view = lock(view);
        report.epoch = view.next_epoch;
        for prefix in view.prefixes.iter().filter(|p| p.moving) {
            report.elsewhere.insert(prefix.net, (prefix.epoch, 0));
        }
        for (key, entry) in entries.iter() {
            match view.classify(key, entry, now) {
                Class::Over => over.push(*key),
                Class::Stale => stale.push((*key, *entry)),
                Class::Owned => {}
                Class::Elsewhere { prefix, epoch } => {
                    if let Some((counted, count)) = report.elsewhere.get_mut(&prefix)
                        && *counted == epoch
                    {
                        *count += 1;
                    }
                    *report.away.entry(entry.host).or_default() += 1;
                }
            }
        }
    }
    let removed = |result: Result<usize, FlowTableError>, report: &mut SweepReport| match result {
        Ok(n) => n,
        Err(err) => {
            report.error = Some(format!("{:#}", anyhow::Error::from(err)));
            0
        }
    };
    report.removed_over = removed(table.remove(&over), &mut report);
    if !stale.is_empty() {
        // Under the lock: no prefix changes between this check and the removal.
        let view = lock(view);
        let keys: Vec<FlowKey> = stale
            .iter()
            .filter(|(key, entry)| view.classify(key, entry, now) == Class::Stale)
            .map(|(key, _)| *key)
            .collect();
        report.removed_stale = removed(table.remove(&keys), &mut report);
    }
    report
}

/// `CLOCK_MONOTONIC_COARSE`, the clock of `bpf_ktime_get_coarse_ns`.
fn monotonic_coarse_ns() -> u64 {
    // SAFETY: an all-zero timespec is valid; clock_gettime writes it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid clock id and out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// Runs the sweep until the receiver of its reports is gone. `wake`: sweep now (a
/// move started or ended).
pub fn spawn(
    table: FlowTable,
    view: SharedView,
    wake: Arc<Notify>,
    reports: mpsc::Sender<SweepReport>,
) -> tokio::task::JoinHandle<()> {
    let table = Arc::new(table);
    tokio::spawn(async move {
        let mut entries = Vec::new();
        let mut last_pass = Duration::ZERO;
        loop {
            let period = {
                let view = lock(&view);
                if view.any_moving() {
                    view.sweep
                } else {
                    view.sweep * IDLE_FACTOR
                }
            };
            let period = period.max(last_pass * COST_FACTOR);
            tokio::select! {
                () = tokio::time::sleep(period) => {}
                () = wake.notified() => {}
            }
            let (table, shared) = (Arc::clone(&table), Arc::clone(&view));
            let mut buffer = std::mem::take(&mut entries);
            let started = Instant::now();
            let done = tokio::task::spawn_blocking(move || {
                let report = pass(&table, &shared, &mut buffer);
                (report, buffer)
            })
            .await;
            last_pass = started.elapsed();
            let report = match done {
                Ok((report, buffer)) => {
                    entries = buffer;
                    report
                }
                Err(err) => {
                    warn!("flow table sweep: {err}");
                    continue;
                }
            };
            if reports.send(report).await.is_err() {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> View {
        let flows = Flows {
            tcp_idle_ms: 10_000,
            udp_idle_ms: 5_000,
            fin_linger_ms: 2_000,
            ..Flows::default()
        };
        let nets = [("192.168.1.64/27", 1), ("192.168.1.32/27", 0)];
        let mut view = View::new(
            nets.iter().map(|(n, id)| (n.parse().expect("net"), *id)),
            3,
            &flows,
        );
        view.set_prefix("192.168.1.32/27".parse().expect("net"), Some(0), false);
        view.set_prefix("192.168.1.64/27".parse().expect("net"), Some(1), true);
        view.set_keeps(0, true);
        view.set_keeps(1, true);
        view
    }

    fn key(vip: [u8; 4], proto: u8) -> FlowKey {
        FlowKey {
            client: [10, 0, 0, 2],
            vip,
            client_port: [0x9c, 0x40],
            vip_port: [0, 80],
            proto,
            _pad: [0; 3],
        }
    }

    const S: u64 = 1_000_000_000;

    fn entry(host: u32, seen_s: u64, flags: u32) -> FlowEntry {
        FlowEntry {
            host,
            seen_ns: seen_s * S,
            flags,
            ..FlowEntry::default()
        }
    }

    #[test]
    fn idle_and_closed_flows_are_over_by_protocol() {
        let view = view();
        let (tcp, udp) = (key([192, 168, 1, 65], 6), key([192, 168, 1, 65], 17));
        let now = 100 * S;
        assert_eq!(view.classify(&tcp, &entry(1, 91, 0), now), Class::Owned);
        assert_eq!(view.classify(&tcp, &entry(1, 89, 0), now), Class::Over);
        assert_eq!(view.classify(&udp, &entry(1, 96, 0), now), Class::Owned);
        assert_eq!(view.classify(&udp, &entry(1, 94, 0), now), Class::Over);
        assert_eq!(
            view.classify(&tcp, &entry(1, 99, FLOW_FIN), now),
            Class::Owned
        );
        assert_eq!(
            view.classify(&tcp, &entry(1, 97, FLOW_FIN), now),
            Class::Over
        );
        // A time stamp a little ahead of the sweep's clock is fresh.
        assert_eq!(view.classify(&tcp, &entry(1, 101, 0), now), Class::Owned);
    }

    #[test]
    fn flows_elsewhere_count_only_on_moving_prefixes_and_hosts_that_keep_them() {
        let view = view();
        let now = 100 * S;
        let moving = key([192, 168, 1, 70], 6);
        let steady = key([192, 168, 1, 40], 6);
        let epoch = view
            .epoch("192.168.1.64/27".parse().expect("net"))
            .expect("epoch");
        assert_eq!(
            view.classify(&moving, &entry(0, 99, 0), now),
            Class::Elsewhere {
                prefix: "192.168.1.64/27".parse().expect("net"),
                epoch
            }
        );
        // Host 2 does not keep its flows: they follow the owner, nothing to count.
        assert_eq!(view.classify(&moving, &entry(2, 99, 0), now), Class::Owned);
        assert_eq!(view.classify(&steady, &entry(1, 99, 0), now), Class::Stale);
        assert_eq!(view.classify(&steady, &entry(0, 99, 0), now), Class::Owned);
        // No prefix holds the address.
        let nowhere = key([192, 168, 1, 200], 6);
        assert_eq!(view.classify(&nowhere, &entry(0, 99, 0), now), Class::Stale);
    }
}
