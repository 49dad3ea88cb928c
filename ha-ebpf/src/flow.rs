//! The one flow table, as both programs use it.
//!
//! A flow is a client's TCP or UDP conversation with a VIP, keyed in the request's
//! direction. Its entry names the host serving it; the entry outlives a change of the
//! prefix's owner, so an established flow stays where it is while that host is up
//! (new flows follow the owner). Entries come from three places:
//! - `ha_learn` (TC egress on the LAN) for every packet the kernel forwarded: the
//!   kernel accepted it (firewall, reverse path, routing), which renews
//!   [`FlowEntry::verified_ns`]; a pure SYN is not recorded (it proves nothing about
//!   the source: spoofed SYNs cannot fill the table), the connection is at its next
//!   packet;
//! - `ha_steer` (XDP) while a prefix is moving (every packet is looked up; unknown
//!   flows are recorded at once) and, on an interface that does not verify, for one
//!   steered packet in `1 << SAMPLE_SHIFT`, so busy flows are known before any move;
//! - the controller, which removes what is stale.
//!
//! Choosing the host of a flow nobody recorded yet ([`unknown_flow_host`]): the
//! prefix's owner, except a TCP segment without SYN while the prefix is moving, which
//! belongs to a connection opened before the move: it goes to the previous owner.

use aya_ebpf::helpers::generated::bpf_ktime_get_coarse_ns;
use ha_common::{
    FLOW_CT_SYNCED, FLOW_FIN, FlowCounter, FlowEntry, FlowKey, PrefixEntry, SEEN_GRANULARITY_NS,
};

use crate::{
    maps::{self, HA_FLOWS, HA_HOSTS},
    parse::{IPPROTO_TCP, Ports, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
};

/// A packet's flow: its key in the request direction and its TCP flags.
pub struct Flow {
    pub key: FlowKey,
    /// The TCP flags byte; 0 for UDP.
    tcp_flags: u8,
}

impl Flow {
    /// The flow of a packet from `client` to `vip` with `ports` (request direction).
    #[inline(always)]
    pub fn new(client: [u8; 4], vip: [u8; 4], proto: u8, ports: &Ports) -> Self {
        let key = FlowKey {
            client,
            vip,
            client_port: ports.src,
            vip_port: ports.dst,
            proto,
            _pad: [0; 3],
        };
        let tcp_flags = if proto == IPPROTO_TCP {
            ports.tcp_flags
        } else {
            0
        };
        Self { key, tcp_flags }
    }

    /// A TCP segment opening a connection: SYN without ACK.
    #[inline(always)]
    pub fn is_syn(&self) -> bool {
        self.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
    }

    /// A TCP segment of a connection already open (no SYN).
    #[inline(always)]
    fn is_established_tcp(&self) -> bool {
        self.key.proto == IPPROTO_TCP && self.tcp_flags & TCP_SYN == 0
    }

    #[inline(always)]
    fn is_rst(&self) -> bool {
        self.tcp_flags & TCP_RST != 0
    }

    #[inline(always)]
    fn is_fin(&self) -> bool {
        self.tcp_flags & TCP_FIN != 0
    }

    /// A TCP segment ending the connection (FIN or RST); never for UDP.
    #[inline(always)]
    pub fn ends(&self) -> bool {
        self.tcp_flags & (TCP_FIN | TCP_RST) != 0
    }
}

/// Whether host `id` is ready and up (its flows stay with it).
#[inline(always)]
pub fn keeps_flows(id: u32) -> bool {
    HA_HOSTS.get(id).is_some_and(|host| host.keeps_flows())
}

/// The current time as the flow table keeps it.
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: the helper takes no arguments.
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// The host a flow that is not in the table belongs to (see the module docs).
#[inline(always)]
pub fn unknown_flow_host(prefix: &PrefixEntry, flow: &Flow) -> u32 {
    if prefix.is_moving() && flow.is_established_tcp() && keeps_flows(prefix.prev_host) {
        prefix.prev_host
    } else {
        prefix.host
    }
}

/// Where a known flow goes now: while the prefix is moving, its own host if that
/// host keeps flows (a new connection reusing the key goes to the owner); otherwise
/// the prefix's owner, which the entry then follows (a steady prefix sends every
/// packet to its owner, looked up or not). Updates the entry's host, FIN flag and
/// `seen_ns`, and drops [`FLOW_CT_SYNCED`] at a SYN; a reset ends the entry (the reset
/// itself still reaches the host).
#[inline(always)]
pub fn known_flow_host(entry: *mut FlowEntry, flow: &Flow, prefix: &PrefixEntry, now: u64) -> u32 {
    // SAFETY: `entry` points at a live value of the flow table; concurrent writers
    // (other CPUs, the controller) only ever store whole aligned fields.
    let entry = unsafe { &mut *entry };
    let mut host = entry.host;
    if host != prefix.host {
        if !prefix.is_moving() || flow.is_syn() || !keeps_flows(host) {
            host = prefix.host;
            entry.host = host;
            // The conntrack entry is the flow's, whichever host serves it.
            entry.flags &= FLOW_CT_SYNCED;
            maps::count_flow(FlowCounter::Followed);
        } else {
            maps::count_flow(FlowCounter::AffinityHit);
        }
    }
    if flow.is_rst() {
        let _ = HA_FLOWS.remove(flow.key);
        maps::count_flow(FlowCounter::Ended);
        return host;
    }
    if flow.is_fin() {
        entry.flags |= FLOW_FIN;
    }
    if flow.is_syn() && entry.flags & FLOW_CT_SYNCED != 0 {
        // A new connection on the key: conntrack gives it a new entry, not synced.
        entry.flags &= !FLOW_CT_SYNCED;
    }
    if now.wrapping_sub(entry.seen_ns) > SEEN_GRANULARITY_NS {
        entry.seen_ns = now;
    }
    host
}

/// Records a new flow served by `host`; a reset records nothing.
#[inline(always)]
pub fn record(
    flow: &Flow,
    host: u32,
    prefix: &PrefixEntry,
    ingress: u32,
    verified_ns: u64,
    seen_ns: u64,
    counter: FlowCounter,
) {
    if flow.is_rst() {
        return;
    }
    let entry = FlowEntry {
        host,
        prefix_id: prefix.prefix_id,
        ingress,
        flags: if flow.is_fin() { FLOW_FIN } else { 0 },
        verified_ns,
        seen_ns,
    };
    match HA_FLOWS.insert(flow.key, entry, 0) {
        Ok(()) => maps::count_flow(counter),
        Err(_) => maps::count_flow(FlowCounter::RecordFailed),
    }
}
