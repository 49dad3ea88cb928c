//! `status` and `stats` answers, as JSON documents the CLI prints.

use std::time::SystemTime;

use anyhow::Context as _;
use serde_json::{Value, json};

use super::controller::Controller;
use crate::{
    kernel::datapath::Maps,
    model::{HostId, PrefixId},
};

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Prefixes (owner, why, pin, last change) and hosts (health, MAC, drain).
pub fn status(controller: &Controller) -> Value {
    let health = controller.health.snapshot();
    let prefixes: Vec<Value> = controller
        .config
        .prefixes
        .iter()
        .enumerate()
        .map(|(index, prefix)| {
            let id = PrefixId::new(index);
            let owner = controller.policy.owner(id);
            let last = controller.last_change[index].as_ref().map(|c| {
                json!({
                    "at_unix_ms": unix_ms(c.at),
                    "old": controller.host_name(c.old),
                    "new": controller.host_name(c.new),
                    "reason": c.reason.to_string(),
                    "detection_ms": c.detection.map(|d| d.as_secs_f64() * 1e3),
                    "switch_us": c.switch.as_micros() as u64,
                })
            });
            json!({
                "prefix": prefix.cidr.to_string(),
                "owner": controller.host_name(owner),
                "configured_owner": controller.host_name(Some(prefix.owner)),
                "why": controller.policy.why(id).map(|r| r.to_string()),
                "pinned": controller.policy.pin(id).map(|p| json!({ "host": controller.host_name(Some(p.host)), "force": p.force })),
                "last_change": last,
            })
        })
        .collect();
    let hosts: Vec<Value> = controller
        .config
        .hosts
        .iter()
        .enumerate()
        .map(|(index, host)| {
            let id = HostId::new(index);
            let probe = health.get(index);
            json!({
                "name": host.name,
                "address": host.address.to_string(),
                "health": controller.policy.health(id).map(|h| h.to_string()),
                "mac": controller.macs[index].map(|m| m.to_string()),
                "drained": controller.policy.is_drained(id),
                "last_error": probe.and_then(|p| p.last_error.clone()),
                "last_rtt_us": probe.and_then(|p| p.last_rtt).map(|d| d.as_micros() as u64),
            })
        })
        .collect();
    json!({ "prefixes": prefixes, "hosts": hosts })
}

/// Data-path counters: packets and bytes per prefix and host, verdict counters.
pub fn stats(controller: &Controller) -> anyhow::Result<Value> {
    let maps = &controller.maps;
    let mut prefixes = Vec::new();
    for (id, prefix) in controller.config.prefix_ids() {
        let t = Maps::traffic(&maps.pfx_stats, id.raw()).context("reading prefix statistics")?;
        prefixes.push(
            json!({ "prefix": prefix.cidr.to_string(), "packets": t.packets, "bytes": t.bytes }),
        );
    }
    let mut hosts = Vec::new();
    for (id, host) in controller.config.host_ids() {
        let t = Maps::traffic(&maps.host_stats, id.raw()).context("reading host statistics")?;
        hosts.push(json!({ "host": host.name, "packets": t.packets, "bytes": t.bytes }));
    }
    let counters: serde_json::Map<String, Value> = maps
        .counter_totals()
        .context("reading verdict counters")?
        .into_iter()
        .map(|(counter, value)| (counter.name().to_owned(), json!(value)))
        .collect();
    Ok(json!({ "prefixes": prefixes, "hosts": hosts, "counters": counters }))
}
