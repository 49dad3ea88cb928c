//! The ABI shared by the `ha` XDP program and its controller.
//!
//! Every type here crosses the kernel boundary, so each is `#[repr(C)]` with explicit
//! padding and only integer fields (no `bool`, enum or `Option`). The `user` feature
//! adds `aya::Pod` so the controller can read and write the maps.
//!
//! The maps are listed in [`maps`], the one table of their names, kinds, key and
//! value types, capacities and pins; all are pinned under the pin directory (default
//! `/sys/fs/bpf/ha/`):
//!
//! <!-- map table: rendered from ha_common::MAPS; `UPDATE_GOLDEN=1 cargo test -p ha-common --test map_table` rewrites it -->
//! | map | kind | key | value | entries | holds | written by |
//! |---|---|---|---|---|---|---|
//! | `HA_PREFIXES` | LPM trie | 8 B | 16 B | 65536 | prefix → `PrefixEntry`: owning host id, prefix id, previous host while moving | controller |
//! | `HA_HOSTS` | array | 4 B | 24 B | 1024 | host id → `HostEntry`: MAC, egress MAC, MTU and ifindex, `READY`/`UP` flags | controller |
//! | `HA_IFACES` | array | 4 B | 8 B | 4096 | ingress ifindex → `IfaceEntry`: its own MAC (only frames to it are steered), flags | controller |
//! | `HA_TX_PORTS` | devmap (hash) | 4 B | 8 B | 64 | egress ifindex → that device, for XDP_REDIRECT | controller |
//! | `HA_COUNTERS` | per-CPU array | 4 B | 8 B | 17 | `Counter` → packets: one per verdict and pass reason | data path |
//! | `HA_HOST_STATS` | per-CPU array | 4 B | 16 B | 1024 | host id → `Traffic`: packets and bytes steered to it | data path |
//! | `HA_PFX_STATS` | per-CPU array | 4 B | 16 B | 65536 | prefix id → `Traffic`: packets and bytes steered for it | data path |
//! | `HA_FLOWS` | LRU hash | 16 B | 32 B | 262144 | `FlowKey` → `FlowEntry`: serving host, prefix, kernel verification, last seen | both programs, controller |
//! | `HA_SETTINGS` | array | 4 B | 88 B | 1 | 0 → `Settings`: the router's own addresses, the verification period | controller |
//! | `HA_FLOW_CTRS` | per-CPU array | 4 B | 8 B | 10 | `FlowCounter` → count: what the programs did with the flow table | both programs |
//! | `HA_META` | array | 4 B | 8 B | 1 | 0 → `Meta`: the layout version of the pinned maps (`LAYOUT_VERSION`) | controller, at pinning |
//! <!-- end of map table -->
#![no_std]

pub mod maps;

pub use maps::{
    LAYOUT_FINGERPRINT, LAYOUT_VERSION, MAP_COUNTERS, MAP_FLOW_COUNTERS, MAP_FLOWS, MAP_HOST_STATS,
    MAP_HOSTS, MAP_IFACES, MAP_META, MAP_PFX_STATS, MAP_PREFIXES, MAP_SETTINGS, MAP_TX_PORTS, MAPS,
    MAX_FLOWS, MAX_HOSTS, MAX_IFACES, MAX_IFINDEX, MAX_PREFIXES, MapKind, MapSpec, PINNED_MAPS,
    TC_LINK_PREFIX, XDP_LINK_PREFIX,
};

/// Name of the steering XDP program in the object.
pub const PROG_STEER: &str = "ha_steer";
/// Name of the TC egress program on the LAN interface: it sees every frame the kernel
/// forwarded to a server (after netfilter) and records its flow.
pub const PROG_LEARN: &str = "ha_learn";
/// Name of the pass-everything XDP program (for the far end of veth links).
pub const PROG_PASS: &str = "ha_pass";
/// Global switch (u8, 0 or 1) that enables aya-log packet logging at load time.
pub const GLOBAL_LOG_PACKETS: &str = "HA_LOG_PACKETS";

/// How many of the router's own IPv4 addresses [`Settings`] holds; a router with more
/// has every interface verified ([`IFACE_VERIFY`]), so the kernel checks sources.
pub const MAX_LOCAL_ADDRS: usize = 16;
/// One steered packet in `1 << SAMPLE_SHIFT` (per CPU and prefix, on average) looks
/// its flow up even while nothing requires it, so that busy flows are recorded and
/// kept fresh. One in 32: the lookup costs ~1 ns per steered packet on average (one
/// in 16 cost ~2.4 ns, `cargo xtask bench --only per-packet`); a flow of 20 packets a
/// second is recorded within a few seconds.
pub const SAMPLE_SHIFT: u32 = 5;

/// Whether the steered packet that finds `packets` earlier ones in its prefix's
/// per-CPU counter is a sample ([`SAMPLE_SHIFT`]). A multiplicative hash of the count,
/// not `count % n`: flows that take turns (two clients in lockstep) would otherwise
/// put the same flow on every sampled count and never record the other.
pub const fn is_sample(packets: u64) -> bool {
    packets.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SAMPLE_SHIFT) == 0
}

/// `skb->mark` of the controller's VIP probes: [`PROBE_MARK_TAG`] | host id. The
/// router routes a probe to a VIP like any other packet (to the prefix's owner);
/// `ha_learn` sends a probe so marked to that host's MAC instead, so the controller
/// can ask each candidate host whether it serves the VIP.
pub const PROBE_MARK_TAG: u32 = 0x4861_0000;
/// The bits of `skb->mark` that carry [`PROBE_MARK_TAG`]; the rest is the host id.
pub const PROBE_MARK_MASK: u32 = 0xffff_0000;

/// [`IfaceEntry::flags`]: the program runs on this interface.
pub const IFACE_ACTIVE: u16 = 1 << 0;
/// [`IfaceEntry::flags`]: only flows the kernel itself forwarded recently (within
/// [`Settings::refresh_ns`], from this interface) are steered; the rest pass, so the
/// router's firewall, reverse-path filter and policy routing decide as before.
pub const IFACE_VERIFY: u16 = 1 << 1;

/// [`HostEntry::flags`]: the entry is complete (MAC known, egress interface set) and
/// the controller wants traffic steered to it.
pub const HOST_READY: u32 = 1 << 0;
/// [`HostEntry::flags`]: the host keeps the flows it serves even when their prefix
/// has moved elsewhere: the health checks say it is up (or said so to the previous
/// controller, until this one's checks decide) and no drain of it has ended.
pub const HOST_UP: u32 = 1 << 1;

/// [`PrefixEntry::flags`]: the prefix has moved from `prev_host` to `host` while
/// `prev_host` was still up: every packet looks its flow up, recorded flows stay where
/// they are, and TCP segments of unknown connections (no SYN) go to `prev_host`.
pub const PFX_MOVING: u32 = 1 << 0;

/// Value of the prefix table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixEntry {
    /// Index into [`MAP_HOSTS`] of the host that owns the prefix now: new flows go there.
    pub host: u32,
    /// Index into [`MAP_PFX_STATS`], stable for the life of the prefix.
    pub prefix_id: u32,
    /// The host that owned the prefix before, while [`PFX_MOVING`] is set.
    pub prev_host: u32,
    /// [`PFX_MOVING`].
    pub flags: u32,
}

impl PrefixEntry {
    /// A prefix owned by `host`, with nothing moving.
    pub const fn owned(host: u32, prefix_id: u32) -> Self {
        Self {
            host,
            prefix_id,
            prev_host: 0,
            flags: 0,
        }
    }

    /// A prefix that moved to `host` from `prev_host` while `prev_host` was still up:
    /// its flows keep their hosts ([`PFX_MOVING`]).
    pub const fn moving(host: u32, prefix_id: u32, prev_host: u32) -> Self {
        Self {
            host,
            prefix_id,
            prev_host,
            flags: PFX_MOVING,
        }
    }

    pub const fn is_moving(&self) -> bool {
        self.flags & PFX_MOVING != 0
    }
}

/// Value of the host table.
///
/// The controller never rewrites the MAC of a ready entry in place: it clears
/// [`HOST_READY`] first, so the data path cannot read half a MAC.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostEntry {
    /// The host's MAC: the destination of steered frames.
    pub mac: [u8; 6],
    /// MAC of the egress interface: the source of steered frames.
    pub egress_mac: [u8; 6],
    /// MTU of the egress interface: a datagram longer than this is the kernel's (it
    /// fragments it or answers "fragmentation needed").
    pub mtu: u16,
    pub _pad: [u8; 2],
    /// Interface behind which the host sits.
    pub egress_ifindex: u32,
    /// [`HOST_READY`], [`HOST_UP`].
    pub flags: u32,
}

impl HostEntry {
    pub const fn is_ready(&self) -> bool {
        self.flags & HOST_READY != 0
    }

    /// Ready and up: a flow it serves may stay with it.
    pub const fn keeps_flows(&self) -> bool {
        self.flags & (HOST_READY | HOST_UP) == HOST_READY | HOST_UP
    }
}

/// Value of the interface table, indexed by ifindex.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceEntry {
    /// The interface's own MAC: only frames addressed to it are steered.
    pub mac: [u8; 6],
    /// [`IFACE_ACTIVE`] for an interface the program runs on, [`IFACE_VERIFY`].
    pub flags: u16,
}

impl IfaceEntry {
    pub const fn is_active(&self) -> bool {
        self.flags & IFACE_ACTIVE != 0
    }

    pub const fn verifies(&self) -> bool {
        self.flags & IFACE_VERIFY != 0
    }
}

/// Key of the flow table: a TCP or UDP flow from a client to a VIP, in the request's
/// direction. Addresses and ports in network byte order, as on the wire.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub client: [u8; 4],
    pub vip: [u8; 4],
    pub client_port: [u8; 2],
    pub vip_port: [u8; 2],
    /// IPPROTO_TCP or IPPROTO_UDP.
    pub proto: u8,
    pub _pad: [u8; 3],
}

/// [`FlowEntry::flags`]: a FIN was seen; the connection is closing.
pub const FLOW_FIN: u32 = 1 << 0;
/// [`FlowEntry::flags`]: the controller has found the flow's conntrack entry and keeps
/// it as the kernel would while the flow is steered (TCP window tracking told to be
/// liberal, the timeout renewed from [`FlowEntry::seen_ns`]). Set only by the
/// controller; cleared by the programs when a SYN reuses the key (a new connection has
/// a new entry), and by the controller when the entry is gone. While
/// [`SETTINGS_CT_SYNC`] is set, verified interfaces steer only flows that have it.
pub const FLOW_CT_SYNCED: u32 = 1 << 1;

/// How often the programs rewrite a flow's [`FlowEntry::seen_ns`], at most: the
/// precision of the conntrack timeouts the controller keeps from it.
pub const SEEN_GRANULARITY_NS: u64 = 100_000_000;

/// Value of the flow table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowEntry {
    /// Index into [`MAP_HOSTS`] of the host serving the flow.
    pub host: u32,
    /// The prefix the VIP belongs to (index into [`MAP_PFX_STATS`]).
    pub prefix_id: u32,
    /// Interface the kernel received the flow's last forwarded packet on (0: never).
    pub ingress: u32,
    /// [`FLOW_FIN`], [`FLOW_CT_SYNCED`].
    pub flags: u32,
    /// `bpf_ktime_get_coarse_ns` when the kernel last forwarded a packet of the flow
    /// (0: never): verified interfaces steer the flow only within
    /// [`Settings::refresh_ns`] of it.
    pub verified_ns: u64,
    /// `bpf_ktime_get_coarse_ns` when a packet of the flow was last seen, to within
    /// [`SEEN_GRANULARITY_NS`] (the programs write it at most that often).
    pub seen_ns: u64,
}

/// The bit of [`Settings::local_filter`] for an address given as in
/// [`Settings::local`] (`u32::from_ne_bytes(octets)`): a multiplicative hash's top
/// six bits.
pub const fn local_filter_bit(addr: u32) -> u64 {
    1u64 << (addr.wrapping_mul(0x9e37_79b1) >> 26)
}

/// [`Settings::flags`]: the router's forwarding consults connection tracking, and the
/// controller keeps the conntrack entries of steered flows: verified interfaces steer
/// only flows marked [`FLOW_CT_SYNCED`], and pass TCP segments with FIN or RST to the
/// kernel (its tracking follows the connection's end, as with the kernel's own
/// flowtable).
pub const SETTINGS_CT_SYNC: u32 = 1 << 0;

/// Value of [`MAP_SETTINGS`] (entry 0), written by the controller.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// How long the kernel's forwarding of one packet vouches for a flow on a
    /// verified interface; one packet per flow and period goes through the kernel,
    /// which keeps its connection tracking and rules in force.
    pub refresh_ns: u64,
    /// A one-word Bloom filter of `local` ([`local_filter_bit`] of each): a source
    /// whose bit is clear is none of them, without a look at the list.
    pub local_filter: u64,
    /// How many entries of `local` are used.
    pub local_count: u32,
    /// [`SETTINGS_CT_SYNC`].
    pub flags: u32,
    /// The router's own IPv4 addresses and its subnets' broadcast addresses, each as
    /// the u32 whose memory holds the address in network order
    /// (`u32::from_ne_bytes(octets)`): frames from them are martians to the kernel.
    pub local: [u32; MAX_LOCAL_ADDRS],
}

/// Value of [`MAP_META`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// [`LAYOUT_VERSION`] of the controller that created the pins.
    pub layout: u32,
    pub _pad: u32,
}

/// Packets and bytes (whole frame length) seen by the data path.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub packets: u64,
    pub bytes: u64,
}

/// Indices of [`MAP_COUNTERS`]. Every packet increments exactly one verdict counter
/// (`Tx`, `Redirect` or one `Pass*` reason), so their sum is the packets seen.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Steered back out of the ingress interface.
    Tx = 0,
    /// Steered to another interface through the DEVMAP.
    Redirect = 1,
    /// Ingress interface not in [`MAP_IFACES`].
    PassUnknownIface = 2,
    /// Destination MAC is not the ingress interface's own (other unicast, broadcast, multicast).
    PassNotOurMac = 3,
    /// Frame too short for an Ethernet header.
    PassShortFrame = 4,
    /// Not IPv4 (ARP, IPv6, LLDP, VLAN-tagged, ...).
    PassNotIpv4 = 5,
    /// IPv4 header malformed: truncated, version not 4, IHL < 5, header past the end, bad length.
    PassBadIpv4 = 6,
    /// No prefix matches the destination.
    PassNoPrefix = 7,
    /// Prefix owner missing or not ready (no MAC yet, disabled).
    PassHostNotReady = 8,
    /// TTL <= 1: the kernel answers with ICMP time exceeded.
    PassTtl = 9,
    /// Redirect target missing from the DEVMAP.
    PassNoTxPort = 10,
    /// IPv4 options (IHL > 5): the kernel processes them (record route, timestamps,
    /// source routing) when it forwards.
    PassIpOptions = 11,
    /// A fragment: all fragments of a datagram take the kernel's one path.
    PassFragment = 12,
    /// A source the kernel's forwarding refuses: 0.0.0.0/8, 127.0.0.0/8, multicast,
    /// 255.255.255.255, or one of the router's own addresses.
    PassBadSource = 13,
    /// Datagram longer than the egress MTU: the kernel fragments it or answers
    /// "fragmentation needed".
    PassTooBig = 14,
    /// On a verified interface, a flow the kernel has not forwarded recently (a new
    /// flow, a refresh due, a protocol without ports); with [`SETTINGS_CT_SYNC`], also a
    /// flow whose conntrack entry the controller does not keep yet, and a TCP FIN or RST.
    PassUnverified = 15,
    /// The frame comes from the very host it would be steered to (its source MAC is
    /// that host's: a server sending to a VIP it owns): steering would bounce it
    /// straight back, so the kernel decides.
    PassFromHost = 16,
}

impl Counter {
    /// Number of counters: the size of [`MAP_COUNTERS`].
    pub const COUNT: u32 = 17;

    /// Every counter, in index order.
    pub const ALL: [Counter; Self::COUNT as usize] = [
        Counter::Tx,
        Counter::Redirect,
        Counter::PassUnknownIface,
        Counter::PassNotOurMac,
        Counter::PassShortFrame,
        Counter::PassNotIpv4,
        Counter::PassBadIpv4,
        Counter::PassNoPrefix,
        Counter::PassHostNotReady,
        Counter::PassTtl,
        Counter::PassNoTxPort,
        Counter::PassIpOptions,
        Counter::PassFragment,
        Counter::PassBadSource,
        Counter::PassTooBig,
        Counter::PassUnverified,
        Counter::PassFromHost,
    ];

    /// Stable snake_case name used in `stats` output and metrics labels.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Tx => "tx",
            Counter::Redirect => "redirect",
            Counter::PassUnknownIface => "pass_unknown_iface",
            Counter::PassNotOurMac => "pass_not_our_mac",
            Counter::PassShortFrame => "pass_short_frame",
            Counter::PassNotIpv4 => "pass_not_ipv4",
            Counter::PassBadIpv4 => "pass_bad_ipv4",
            Counter::PassNoPrefix => "pass_no_prefix",
            Counter::PassHostNotReady => "pass_host_not_ready",
            Counter::PassTtl => "pass_ttl",
            Counter::PassNoTxPort => "pass_no_tx_port",
            Counter::PassIpOptions => "pass_ip_options",
            Counter::PassFragment => "pass_fragment",
            Counter::PassBadSource => "pass_bad_source",
            Counter::PassTooBig => "pass_too_big",
            Counter::PassUnverified => "pass_unverified",
            Counter::PassFromHost => "pass_from_host",
        }
    }
}

/// Indices of [`MAP_FLOW_COUNTERS`]: what the programs did with the flow table. Not
/// verdicts (a packet may count in several, or none).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowCounter {
    /// The fast path looked a flow up.
    Lookup = 0,
    /// Steered to the host serving the flow rather than the prefix's owner.
    AffinityHit = 1,
    /// The flow's host is no longer up: the flow moved to the prefix's owner.
    Followed = 2,
    /// The fast path recorded a new flow.
    RecordedFast = 3,
    /// The kernel forwarded a packet of a new flow and `ha_learn` recorded it.
    RecordedKernel = 4,
    /// The kernel forwarded a packet of a known flow (its verification renewed).
    Verified = 5,
    /// `ha_learn` sent a kernel-forwarded packet to the flow's host instead of the
    /// route's next hop.
    KernelAffinity = 6,
    /// A TCP reset ended a flow.
    Ended = 7,
    /// A flow could not be recorded (the kernel refused the update).
    RecordFailed = 8,
    /// `ha_learn` sent one of the controller's VIP probes to the probed host.
    ProbeSteered = 9,
}

impl FlowCounter {
    /// Number of counters: the size of [`MAP_FLOW_COUNTERS`].
    pub const COUNT: u32 = 10;

    /// Every counter, in index order.
    pub const ALL: [FlowCounter; Self::COUNT as usize] = [
        FlowCounter::Lookup,
        FlowCounter::AffinityHit,
        FlowCounter::Followed,
        FlowCounter::RecordedFast,
        FlowCounter::RecordedKernel,
        FlowCounter::Verified,
        FlowCounter::KernelAffinity,
        FlowCounter::Ended,
        FlowCounter::RecordFailed,
        FlowCounter::ProbeSteered,
    ];

    /// Stable snake_case name used in `stats` output and metrics labels.
    pub const fn name(self) -> &'static str {
        match self {
            FlowCounter::Lookup => "lookup",
            FlowCounter::AffinityHit => "affinity_hit",
            FlowCounter::Followed => "followed",
            FlowCounter::RecordedFast => "recorded_fast",
            FlowCounter::RecordedKernel => "recorded_kernel",
            FlowCounter::Verified => "verified",
            FlowCounter::KernelAffinity => "kernel_affinity",
            FlowCounter::Ended => "ended",
            FlowCounter::RecordFailed => "record_failed",
            FlowCounter::ProbeSteered => "probe_steered",
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are repr(C), contain only integers and byte arrays, and have
    // no implicit padding (checked by the size assertions below).
    unsafe impl aya::Pod for super::PrefixEntry {}
    unsafe impl aya::Pod for super::HostEntry {}
    unsafe impl aya::Pod for super::IfaceEntry {}
    unsafe impl aya::Pod for super::Traffic {}
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowEntry {}
    unsafe impl aya::Pod for super::Settings {}
    unsafe impl aya::Pod for super::Meta {}
}

const _: () = {
    assert!(core::mem::size_of::<PrefixEntry>() == 16);
    assert!(core::mem::size_of::<HostEntry>() == 24);
    assert!(core::mem::size_of::<IfaceEntry>() == 8);
    assert!(core::mem::size_of::<Traffic>() == 16);
    assert!(core::mem::size_of::<FlowKey>() == 16);
    assert!(core::mem::size_of::<FlowEntry>() == 32);
    assert!(core::mem::size_of::<Settings>() == 24 + 4 * MAX_LOCAL_ADDRS);
    assert!(core::mem::size_of::<Meta>() == 8);
    assert!(Counter::ALL.len() == Counter::COUNT as usize);
    assert!(FlowCounter::ALL.len() == FlowCounter::COUNT as usize);
};
