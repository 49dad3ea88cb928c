//! Every map of the data path, in one place. Each takes its key and value types and
//! its capacity from its module of ha-common's map table (`ha_common::maps`); the
//! static's name is the kernel object name, which the table's `name` must match
//! (ha-user's `tests/object.rs` checks the built object against the table).

use aya_ebpf::{
    btf_maps::{Array, DevMapHash, LpmTrie, LruHashMap, PerCpuArray, lpm_trie::Key},
    macros::btf_map,
};
use ha_common::{
    Counter, FlowCounter, PrefixEntry, Traffic,
    maps::{
        counters, flow_counters, flows, host_stats, hosts, ifaces, meta, pfx_stats, prefixes,
        settings, tx_ports,
    },
};

/// Destination prefix → owner. Written by the controller.
#[btf_map]
pub static HA_PREFIXES: LpmTrie<prefixes::Key, prefixes::Value, { prefixes::SPEC.capacity() }> =
    LpmTrie::new();

/// Host id → MAC, egress interface, readiness. Written by the controller.
#[btf_map]
pub static HA_HOSTS: Array<hosts::Value, { hosts::SPEC.capacity() }> = Array::new();

/// Ingress ifindex → that interface's MAC. Written by the controller.
#[btf_map]
pub static HA_IFACES: Array<ifaces::Value, { ifaces::SPEC.capacity() }> = Array::new();

/// Egress ifindex → device, for XDP_REDIRECT. Written by the controller.
#[btf_map]
pub static HA_TX_PORTS: DevMapHash<{ tx_ports::SPEC.capacity() }> = DevMapHash::new();

/// Verdict and reason counters. Written by the data path.
#[btf_map]
pub static HA_COUNTERS: PerCpuArray<counters::Value, { counters::SPEC.capacity() }> =
    PerCpuArray::new();

/// Packets/bytes steered per host id. Written by the data path.
#[btf_map]
pub static HA_HOST_STATS: PerCpuArray<host_stats::Value, { host_stats::SPEC.capacity() }> =
    PerCpuArray::new();

/// Packets/bytes steered per prefix id. Written by the data path.
#[btf_map]
pub static HA_PFX_STATS: PerCpuArray<pfx_stats::Value, { pfx_stats::SPEC.capacity() }> =
    PerCpuArray::new();

/// The one flow table: flow → serving host, kernel verification, last seen. Written
/// by both programs (see `flow.rs`); stale entries removed by the controller.
#[btf_map]
pub static HA_FLOWS: LruHashMap<flows::Key, flows::Value, { flows::SPEC.capacity() }> =
    LruHashMap::new();

/// Entry 0: the router's own addresses, the verification period. Written by the
/// controller.
#[btf_map]
pub static HA_SETTINGS: Array<settings::Value, { settings::SPEC.capacity() }> = Array::new();

/// What the programs did with the flow table. Written by both programs.
#[btf_map]
pub static HA_FLOW_CTRS: PerCpuArray<flow_counters::Value, { flow_counters::SPEC.capacity() }> =
    PerCpuArray::new();

/// The layout version of the pinned maps, in slot 0. Written by the controller when
/// it creates the pins; the program never reads it.
#[btf_map]
pub static HA_META: Array<meta::Value, { meta::SPEC.capacity() }> = Array::new();

#[inline(always)]
pub fn lookup_prefix(dst: [u8; 4]) -> Option<&'static PrefixEntry> {
    HA_PREFIXES.get(&Key::new(32, dst))
}

#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(slot) = HA_COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot, only this CPU's program instance touches it.
        unsafe { *slot += 1 };
    }
}

#[inline(always)]
pub fn count_flow(counter: FlowCounter) {
    if let Some(slot) = HA_FLOW_CTRS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot, only this CPU's program instance touches it.
        unsafe { *slot += 1 };
    }
}

#[inline(always)]
pub fn add_traffic<const N: usize>(map: &PerCpuArray<Traffic, N>, index: u32, bytes: u64) {
    if let Some(slot) = map.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, only this CPU's program instance touches it.
        unsafe {
            (*slot).packets += 1;
            (*slot).bytes += bytes;
        }
    }
}
