//! The ABI shared by the `ha` XDP program and its controller.
//!
//! Every type here crosses the kernel boundary, so each is `#[repr(C)]` with explicit
//! padding and only integer fields (no `bool`, enum or `Option`). The `user` feature
//! adds `aya::Pod` so the controller can read and write the maps.
//!
//! Map overview (all pinned under the pin directory, default `/sys/fs/bpf/ha/`):
//!
//! | map              | kind          | key                         | value          | written by |
//! |------------------|---------------|-----------------------------|----------------|------------|
//! | [`MAP_PREFIXES`] | LPM trie      | prefix length + IPv4 (BE)   | [`PrefixEntry`]| controller |
//! | [`MAP_HOSTS`]    | array         | host id                     | [`HostEntry`]  | controller |
//! | [`MAP_IFACES`]   | array         | ingress ifindex             | [`IfaceEntry`] | controller |
//! | [`MAP_TX_PORTS`] | devmap (hash) | egress ifindex              | egress ifindex | controller |
//! | [`MAP_COUNTERS`] | per-CPU array | [`Counter`] index           | `u64`          | data path  |
//! | [`MAP_HOST_STATS`]| per-CPU array| host id                     | [`Traffic`]    | data path  |
//! | [`MAP_PFX_STATS`]| per-CPU array | prefix id                   | [`Traffic`]    | data path  |
//! | [`MAP_FLOWS`]    | LRU hash      | [`FlowKey`]                 | [`FlowEntry`]  | both programs, controller |
//! | [`MAP_SETTINGS`] | array (1)     | 0                           | [`Settings`]   | controller |
//! | [`MAP_FLOW_COUNTERS`]| per-CPU array | [`FlowCounter`] index   | `u64`          | both programs |
//! | [`MAP_META`]     | array (1)     | 0                           | [`Meta`]       | controller |
#![no_std]

/// Longest-prefix-match table: destination prefix → owning host.
pub const MAP_PREFIXES: &str = "HA_PREFIXES";
/// Host table indexed by host id: MAC to steer to, egress interface, readiness.
pub const MAP_HOSTS: &str = "HA_HOSTS";
/// Interfaces the program runs on, keyed by ifindex: their own MAC.
pub const MAP_IFACES: &str = "HA_IFACES";
/// DEVMAP used for `XDP_REDIRECT` to an egress interface other than the ingress one.
pub const MAP_TX_PORTS: &str = "HA_TX_PORTS";
/// Per-CPU verdict and reason counters, indexed by [`Counter`].
pub const MAP_COUNTERS: &str = "HA_COUNTERS";
/// Per-CPU packets/bytes steered to each host, indexed by host id.
pub const MAP_HOST_STATS: &str = "HA_HOST_STATS";
/// Per-CPU packets/bytes steered for each prefix, indexed by prefix id.
pub const MAP_PFX_STATS: &str = "HA_PFX_STATS";
/// The one flow table: client-to-VIP flows (TCP and UDP) → the host serving them,
/// when the kernel last forwarded one of their packets, when they were last seen.
pub const MAP_FLOWS: &str = "HA_FLOWS";
/// Router-wide settings for both programs (one entry): the router's own addresses,
/// how long a kernel verdict on a flow stays good.
pub const MAP_SETTINGS: &str = "HA_SETTINGS";
/// Per-CPU counters of what happened to flows, indexed by [`FlowCounter`].
pub const MAP_FLOW_COUNTERS: &str = "HA_FLOW_CTRS";
/// One entry: the [`LAYOUT_VERSION`] of the pinned maps ([`Meta`]).
pub const MAP_META: &str = "HA_META";
/// Name of the steering XDP program in the object.
pub const PROG_STEER: &str = "ha_steer";
/// Name of the TC egress program on the LAN interface: it sees every frame the kernel
/// forwarded to a server (after netfilter) and records its flow.
pub const PROG_LEARN: &str = "ha_learn";
/// Name of the pass-everything XDP program (for the far end of veth links).
pub const PROG_PASS: &str = "ha_pass";
/// Global switch (u8, 0 or 1) that enables aya-log packet logging at load time.
pub const GLOBAL_LOG_PACKETS: &str = "HA_LOG_PACKETS";

/// Every map the controller pins, in the order it opens them.
pub const PINNED_MAPS: [&str; 11] = [
    MAP_PREFIXES,
    MAP_HOSTS,
    MAP_IFACES,
    MAP_TX_PORTS,
    MAP_COUNTERS,
    MAP_HOST_STATS,
    MAP_PFX_STATS,
    MAP_FLOWS,
    MAP_SETTINGS,
    MAP_FLOW_COUNTERS,
    MAP_META,
];

/// The layout of the pinned maps, written into [`MAP_META`] when the controller
/// creates the pins and checked when a controller adopts them: pins of another
/// layout (or without one) are refused, never misread.
///
/// Every change of a pinned map's key, value, kind or capacity, and every map added
/// to or removed from [`PINNED_MAPS`], must bump it.
///
/// 1: the first versioned layout. 2: the flow table, the settings and the flow
/// counters; prefix entries with the previous owner and flags, host entries with the
/// egress MTU, five more pass reasons.
pub const LAYOUT_VERSION: u32 = 2;

/// Capacity of the prefix table (and of the per-prefix statistics).
pub const MAX_PREFIXES: u32 = 65_536;
/// Capacity of the host table (and of the per-host statistics).
pub const MAX_HOSTS: u32 = 1_024;
/// Capacity of the DEVMAP (interfaces the program redirects to).
pub const MAX_IFACES: u32 = 64;
/// Size of the interface table, indexed by ifindex: the program runs on interfaces
/// whose ifindex is below this (an array lookup costs a fraction of a hash lookup).
pub const MAX_IFINDEX: u32 = 4096;

/// Capacity of the flow table. An LRU hash: when it is full, the least recently
/// looked-up flow makes room (see the README's "flow table" section).
pub const MAX_FLOWS: u32 = 262_144;
/// How many of the router's own IPv4 addresses [`Settings`] holds; a router with more
/// has every interface verified ([`IFACE_VERIFY`]), so the kernel checks sources.
pub const MAX_LOCAL_ADDRS: usize = 16;
/// One steered packet in `1 << SAMPLE_SHIFT` (per CPU and prefix) looks its flow up
/// even while nothing requires it, so that busy flows are recorded and kept fresh.
pub const SAMPLE_SHIFT: u32 = 4;

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
    /// [`FLOW_FIN`].
    pub flags: u32,
    /// `bpf_ktime_get_coarse_ns` when the kernel last forwarded a packet of the flow
    /// (0: never): verified interfaces steer the flow only within
    /// [`Settings::refresh_ns`] of it.
    pub verified_ns: u64,
    /// `bpf_ktime_get_coarse_ns` when a packet of the flow was last seen, to within a
    /// second (the programs write it at most once a second).
    pub seen_ns: u64,
}

/// The bit of [`Settings::local_filter`] for an address given as in
/// [`Settings::local`] (`u32::from_ne_bytes(octets)`): a multiplicative hash's top
/// six bits.
pub const fn local_filter_bit(addr: u32) -> u64 {
    1u64 << (addr.wrapping_mul(0x9e37_79b1) >> 26)
}

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
    pub _pad: u32,
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
    /// flow, a refresh due, a protocol without ports).
    PassUnverified = 15,
}

impl Counter {
    /// Number of counters: the size of [`MAP_COUNTERS`].
    pub const COUNT: u32 = 16;

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

// ---------------------------------------------------------------------------------
// Benchmark programs (`ha-ebpf/src/bench.rs`, driven by `cargo xtask bench`). They
// live in the same object as `ha_steer` so the references are built with the same
// toolchain and flags; the controller never loads them.
// ---------------------------------------------------------------------------------

/// Reference: swaps the Ethernet addresses and returns XDP_TX (the XDP_TX ceiling).
pub const PROG_REF_TX: &str = "ha_ref_tx";
/// Reference: swaps the Ethernet addresses and redirects through [`MAP_REF_PORTS`]
/// slot 0 (the DEVMAP redirect ceiling).
pub const PROG_REF_REDIR: &str = "ha_ref_redir";
/// Traffic generator for BPF_PROG_TEST_RUN live-frames mode: writes
/// [`GLOBAL_GEN_HEADER`] over the start of every frame, counts it, XDP_TX.
pub const PROG_GEN: &str = "ha_gen";
/// Receiver: counts every frame into [`MAP_BENCH_COUNT`] and drops it.
pub const PROG_COUNT: &str = "ha_count";
/// DEVMAP (array) of [`PROG_REF_REDIR`]: slot 0 holds the egress ifindex.
pub const MAP_REF_PORTS: &str = "HA_REF_PORTS";
/// Per-CPU `u64` counters of the benchmark programs, indexed by `BENCH_*`.
pub const MAP_BENCH_COUNT: &str = "HA_BENCH_COUNT";
/// [`GenHeader`] global read by [`PROG_GEN`]; set at load time.
pub const GLOBAL_GEN_HEADER: &str = "HA_GEN_HEADER";
/// [`MAP_BENCH_COUNT`] slot: frames counted (and dropped) by [`PROG_COUNT`].
pub const BENCH_RECEIVED: u32 = 0;
/// [`MAP_BENCH_COUNT`] slot: frames emitted by [`PROG_GEN`].
pub const BENCH_GENERATED: u32 = 1;
/// Number of [`MAP_BENCH_COUNT`] slots.
pub const BENCH_COUNTERS: u32 = 2;

/// Length of the Ethernet + IPv4 + UDP headers that [`PROG_GEN`] writes.
pub const GEN_HEADER_LEN: usize = 42;

/// The headers [`PROG_GEN`] writes over every frame, as 16-bit words in wire
/// order (Ethernet, IPv4 with its checksum, UDP), so the copy needs no byte stores.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GenHeader {
    pub words: [u16; GEN_HEADER_LEN / 2],
}

impl GenHeader {
    /// The header whose wire bytes are `bytes`.
    pub fn from_bytes(bytes: &[u8; GEN_HEADER_LEN]) -> Self {
        let mut words = [0; GEN_HEADER_LEN / 2];
        for (word, pair) in words.iter_mut().zip(bytes.chunks_exact(2)) {
            *word = u16::from_ne_bytes([pair[0], pair[1]]);
        }
        Self { words }
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C), a single array of integers, no padding.
unsafe impl aya::Pod for GenHeader {}

const _: () = assert!(core::mem::size_of::<GenHeader>() == GEN_HEADER_LEN);
