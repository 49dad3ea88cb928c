//! Every map of the data path, in one place. The ABI (names, key and value types,
//! capacities) lives in `ha-common`; the kernel object names are the static names.

use aya_ebpf::{
    btf_maps::{Array, DevMapHash, LpmTrie, LruHashMap, PerCpuArray, lpm_trie::Key},
    macros::btf_map,
};
use ha_common::{
    Counter, FlowCounter, FlowEntry, FlowKey, HostEntry, IfaceEntry, MAX_FLOWS, MAX_HOSTS,
    MAX_IFACES, MAX_IFINDEX, MAX_PREFIXES, Meta, PrefixEntry, Settings, Traffic,
};

/// Destination prefix → owner. Written by the controller.
#[btf_map]
pub static HA_PREFIXES: LpmTrie<[u8; 4], PrefixEntry, { MAX_PREFIXES as usize }> = LpmTrie::new();

/// Host id → MAC, egress interface, readiness. Written by the controller.
#[btf_map]
pub static HA_HOSTS: Array<HostEntry, { MAX_HOSTS as usize }> = Array::new();

/// Ingress ifindex → that interface's MAC. Written by the controller.
#[btf_map]
pub static HA_IFACES: Array<IfaceEntry, { MAX_IFINDEX as usize }> = Array::new();

/// Egress ifindex → device, for XDP_REDIRECT. Written by the controller.
#[btf_map]
pub static HA_TX_PORTS: DevMapHash<{ MAX_IFACES as usize }> = DevMapHash::new();

/// Verdict and reason counters. Written by the data path.
#[btf_map]
pub static HA_COUNTERS: PerCpuArray<u64, { Counter::COUNT as usize }> = PerCpuArray::new();

/// Packets/bytes steered per host id. Written by the data path.
#[btf_map]
pub static HA_HOST_STATS: PerCpuArray<Traffic, { MAX_HOSTS as usize }> = PerCpuArray::new();

/// Packets/bytes steered per prefix id. Written by the data path.
#[btf_map]
pub static HA_PFX_STATS: PerCpuArray<Traffic, { MAX_PREFIXES as usize }> = PerCpuArray::new();

/// The one flow table: flow → serving host, kernel verification, last seen. Written
/// by both programs (see `flow.rs`); stale entries removed by the controller.
#[btf_map]
pub static HA_FLOWS: LruHashMap<FlowKey, FlowEntry, { MAX_FLOWS as usize }> = LruHashMap::new();

/// Entry 0: the router's own addresses, the verification period. Written by the
/// controller.
#[btf_map]
pub static HA_SETTINGS: Array<Settings, 1> = Array::new();

/// What the programs did with the flow table. Written by both programs.
#[btf_map]
pub static HA_FLOW_CTRS: PerCpuArray<u64, { FlowCounter::COUNT as usize }> = PerCpuArray::new();

/// The layout version of the pinned maps, in slot 0. Written by the controller when
/// it creates the pins; the program never reads it.
#[btf_map]
pub static HA_META: Array<Meta, 1> = Array::new();

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
