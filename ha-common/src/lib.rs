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
/// One entry: the [`LAYOUT_VERSION`] of the pinned maps ([`Meta`]).
pub const MAP_META: &str = "HA_META";
/// Name of the steering XDP program in the object.
pub const PROG_STEER: &str = "ha_steer";
/// Name of the pass-everything XDP program (for the far end of veth links).
pub const PROG_PASS: &str = "ha_pass";
/// Global switch (u8, 0 or 1) that enables aya-log packet logging at load time.
pub const GLOBAL_LOG_PACKETS: &str = "HA_LOG_PACKETS";

/// Every map the controller pins, in the order it opens them.
pub const PINNED_MAPS: [&str; 8] = [
    MAP_PREFIXES,
    MAP_HOSTS,
    MAP_IFACES,
    MAP_TX_PORTS,
    MAP_COUNTERS,
    MAP_HOST_STATS,
    MAP_PFX_STATS,
    MAP_META,
];

/// The layout of the pinned maps, written into [`MAP_META`] when the controller
/// creates the pins and checked when a controller adopts them: pins of another
/// layout (or without one) are refused, never misread.
///
/// Every change of a pinned map's key, value, kind or capacity, and every map added
/// to or removed from [`PINNED_MAPS`], must bump it.
pub const LAYOUT_VERSION: u32 = 1;

/// Capacity of the prefix table (and of the per-prefix statistics).
pub const MAX_PREFIXES: u32 = 65_536;
/// Capacity of the host table (and of the per-host statistics).
pub const MAX_HOSTS: u32 = 1_024;
/// Capacity of the DEVMAP (interfaces the program redirects to).
pub const MAX_IFACES: u32 = 64;
/// Size of the interface table, indexed by ifindex: the program runs on interfaces
/// whose ifindex is below this (an array lookup costs a fraction of a hash lookup).
pub const MAX_IFINDEX: u32 = 4096;

/// [`IfaceEntry::flags`]: the program runs on this interface.
pub const IFACE_ACTIVE: u16 = 1 << 0;

/// [`HostEntry::flags`]: the entry is complete (MAC known, egress interface set) and
/// the controller wants traffic steered to it.
pub const HOST_READY: u32 = 1 << 0;

/// Value of the prefix table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixEntry {
    /// Index into [`MAP_HOSTS`] of the host that owns the prefix now.
    pub host: u32,
    /// Index into [`MAP_PFX_STATS`], stable for the life of the prefix.
    pub prefix_id: u32,
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
    pub _pad: [u8; 4],
    /// Interface behind which the host sits.
    pub egress_ifindex: u32,
    /// [`HOST_READY`] and future flags.
    pub flags: u32,
}

impl HostEntry {
    pub const fn is_ready(&self) -> bool {
        self.flags & HOST_READY != 0
    }
}

/// Value of the interface table, indexed by ifindex.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceEntry {
    /// The interface's own MAC: only frames addressed to it are steered.
    pub mac: [u8; 6],
    /// [`IFACE_ACTIVE`] for an interface the program runs on.
    pub flags: u16,
}

impl IfaceEntry {
    pub const fn is_active(&self) -> bool {
        self.flags & IFACE_ACTIVE != 0
    }
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
}

impl Counter {
    /// Number of counters: the size of [`MAP_COUNTERS`].
    pub const COUNT: u32 = 11;

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
    unsafe impl aya::Pod for super::Meta {}
}

const _: () = {
    assert!(core::mem::size_of::<PrefixEntry>() == 8);
    assert!(core::mem::size_of::<HostEntry>() == 24);
    assert!(core::mem::size_of::<IfaceEntry>() == 8);
    assert!(core::mem::size_of::<Traffic>() == 16);
    assert!(core::mem::size_of::<Meta>() == 8);
    assert!(Counter::ALL.len() == Counter::COUNT as usize);
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
