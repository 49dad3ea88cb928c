//! The `status` and `stats` answers.

use std::{collections::BTreeMap, time::SystemTime};

use super::Controller;
use crate::{
    kernel::datapath::{DatapathError, Maps},
    model::{PrefixId, Reason},
    proto::{
        Stats, Status,
        reports::{
            DrainStatus, FlowTally, HostStatus, HostTraffic, LastChange, MovingStatus, Named,
            PinStatus, PrefixStatus, PrefixTraffic, ProbeCounts, Verdict, VipStatus,
        },
    },
};

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Prefixes (owner, why, pin, last change) and hosts (health, MAC, drain, probes,
/// the VIPs they serve).
pub fn status(controller: &Controller) -> Status {
    let health = controller.health.snapshot();
    let vip_checks = controller.health.vip_snapshot();
    let mut vips: Vec<Vec<VipStatus>> = vec![Vec::new(); controller.config.hosts.len()];
    for pair in vip_checks.pairs {
        let (Some(list), Some(prefix)) = (
            vips.get_mut(pair.host.index()),
            controller.config.prefixes.get(pair.prefix.index()),
        ) else {
            continue;
        };
        list.push(VipStatus {
            prefix: prefix.cidr,
            vip: prefix.vip,
            verdict: pair.verdict,
            why: pair.why,
        });
    }
    let mut vips = vips.into_iter();
    let policy = &controller.policy;
    let prefixes = controller
        .config
        .prefix_ids()
        .map(|(id, prefix)| PrefixStatus {
            prefix: prefix.cidr,
            owner: controller.name_of(policy.owner(id)),
            configured_owner: controller.host_name(Some(prefix.owner)),
            why: policy.why(id).unwrap_or(Reason::Initial),
            pinned: policy.pin(id).map(|pin| PinStatus {
                host: controller.host_name(Some(pin.host)),
                force: pin.force,
            }),
            last_change: last_change(controller, id),
            moving: controller.affinity.moving(id).map(|m| MovingStatus {
                from: controller.host_name(Some(m.prev)),
                since_unix_ms: unix_ms(m.since),
                flows_elsewhere: m.elsewhere,
            }),
        })
        .collect();
    let hosts = controller
        .config
        .host_ids()
        .map(|(id, host)| {
            let probe = health.get(id.index());
            HostStatus {
                name: host.name.clone(),
                address: host.address,
                health: policy.health(id).unwrap_or_default(),
                mac: controller.macs.get(id.index()).copied().flatten(),
                drained: policy.is_drained(id),
                draining: controller
                    .affinity
                    .drains
                    .get(&id)
                    .filter(|d| !d.ended)
                    .map(|d| DrainStatus {
                        since_unix_ms: unix_ms(d.started),
                        deadline_unix_ms: unix_ms(d.deadline_wall),
                        remaining: d.remaining,
                    }),
                last_error: probe.and_then(|p| p.last_error.clone()),
                last_rtt_us: probe.and_then(|p| p.last_rtt).map(|d| d.as_micros() as u64),
                probes: probe.map_or_else(ProbeCounts::default, |p| {
                    ProbeCounts::from_array(&p.outcomes)
                }),
                vips: vips.next().unwrap_or_default(),
                vip_probes: vip_checks
                    .outcomes
                    .get(id.index())
                    .map_or_else(ProbeCounts::default, ProbeCounts::from_array),
            }
        })
        .collect();
    Status {
        prefixes,
        hosts,
        lan: controller.lan_status(),
    }
}

fn last_change(controller: &Controller, id: PrefixId) -> Option<LastChange> {
    let change = controller.last_change.get(id.index())?.as_ref()?;
    Some(LastChange {
        at_unix_ms: unix_ms(change.at),
        old: controller.name_of(change.old),
        new: controller.name_of(change.new),
        reason: change.reason,
        detection_ms: change.detection.map(super::ms),
        switch_us: change.switch.as_micros() as u64,
    })
}

/// Data-path counters: packets and bytes per prefix and host, verdict counters.
pub fn stats(controller: &Controller) -> Result<Stats, DatapathError> {
    let maps = &controller.maps;
    let read = |what: &'static str| move |source| DatapathError::Map { name: what, source };
    let mut prefixes = Vec::with_capacity(controller.config.prefixes.len());
    for (id, prefix) in controller.config.prefix_ids() {
        let t = Maps::traffic(&maps.pfx_stats, id.raw()).map_err(read(ha_common::MAP_PFX_STATS))?;
        prefixes.push(PrefixTraffic {
            prefix: prefix.cidr,
            packets: t.packets,
            bytes: t.bytes,
        });
    }
    let mut hosts = Vec::with_capacity(controller.config.hosts.len());
    for (id, host) in controller.config.host_ids() {
        let t =
            Maps::traffic(&maps.host_stats, id.raw()).map_err(read(ha_common::MAP_HOST_STATS))?;
        hosts.push(HostTraffic {
            host: host.name.clone(),
            packets: t.packets,
            bytes: t.bytes,
        });
    }
    let counters: BTreeMap<Verdict, u64> = maps
        .counter_totals()
        .map_err(read(ha_common::MAP_COUNTERS))?
        .into_iter()
        .map(|(counter, value)| (Named(counter), value))
        .collect();
    let flows: BTreeMap<FlowTally, u64> = maps
        .flow_counter_totals()
        .map_err(read(ha_common::MAP_FLOW_COUNTERS))?
        .into_iter()
        .map(|(counter, value)| (Named(counter), value))
        .collect();
    Ok(Stats {
        prefixes,
        hosts,
        counters,
        flows,
    })
}
