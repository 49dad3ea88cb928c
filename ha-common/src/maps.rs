//! The map table: every map the programs and the controller share, in one place.
//!
//! Each map is a module here holding its key type, its value type and its
//! [`MapSpec`]: the kernel object name, the kind, the key and value sizes (taken from
//! those types), the capacity, what it holds and who writes it. Everything else
//! follows from the specs, and nothing restates them:
//!
//! - ha-ebpf's `maps.rs` declares every map with its module's types and capacity
//!   (`Array<hosts::Value, { hosts::SPEC.capacity() }>`);
//! - [`MAPS`] lists the specs; [`PINNED_MAPS`] is their names, the maps the
//!   controller pins; the shape the controller checks each pin against before it
//!   adopts it is the spec's (ha-user's `kernel/datapath/layout.rs`);
//! - the map tables of the README ("Looking inside with bpftool") and of this crate's
//!   documentation are rendered from [`MAPS`]: `tests/map_table.rs` fails when they
//!   are not current, and `UPDATE_GOLDEN=1 cargo test -p ha-common --test map_table`
//!   rewrites them;
//! - ha-user's `tests/object.rs` compares the BTF map definitions of the built
//!   object (kind, key size, value size, capacity) with [`MAPS`], map by map;
//! - [`LAYOUT_FINGERPRINT`] records the table [`LAYOUT_VERSION`] stands for: a test
//!   fails when the table changes and the version does not.
//!
//! A const table rather than a macro: the specs are plain Rust items that rustdoc
//! shows, `grep` finds and const fns and tests iterate; a macro could also emit the
//! eBPF statics, but only by hiding them, and the BTF test already catches an eBPF
//! declaration that drifts from its spec.

use crate::{Counter, FlowCounter};

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

/// The kinds of map the data path uses (named as aya names them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapKind {
    Array,
    PerCpuArray,
    LpmTrie,
    LruHash,
    DevMapHash,
}

impl MapKind {
    /// The kernel's `enum bpf_map_type` value (include/uapi/linux/bpf.h).
    pub const fn bpf_map_type(self) -> u32 {
        match self {
            MapKind::Array => 2,
            MapKind::PerCpuArray => 6,
            MapKind::LruHash => 9,
            MapKind::LpmTrie => 11,
            MapKind::DevMapHash => 25,
        }
    }

    /// How the documentation names it.
    pub const fn describe(self) -> &'static str {
        match self {
            MapKind::Array => "array",
            MapKind::PerCpuArray => "per-CPU array",
            MapKind::LpmTrie => "LPM trie",
            MapKind::LruHash => "LRU hash",
            MapKind::DevMapHash => "devmap (hash)",
        }
    }

    /// aya's name for the kind, as `MapInfo::map_type` reports a pinned map's.
    #[cfg(feature = "user")]
    pub const fn map_type(self) -> aya::maps::MapType {
        use aya::maps::MapType;
        match self {
            MapKind::Array => MapType::Array,
            MapKind::PerCpuArray => MapType::PerCpuArray,
            MapKind::LpmTrie => MapType::LpmTrie,
            MapKind::LruHash => MapType::LruHash,
            MapKind::DevMapHash => MapType::DevMapHash,
        }
    }
}

/// One map of the data path: what the kernel object must declare and the
/// controller's pin must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSpec {
    /// The kernel object name (at most 15 characters), also the pin's file name.
    pub name: &'static str,
    pub kind: MapKind,
    /// Bytes of a key as the kernel stores it.
    pub key_size: u32,
    /// Bytes of a value (per CPU, for per-CPU maps).
    pub value_size: u32,
    pub max_entries: u32,
    /// What a key maps to, for the documentation.
    pub holds: &'static str,
    /// Who writes the map, for the documentation.
    pub written_by: &'static str,
}

impl MapSpec {
    /// The capacity as the eBPF map types take it (a const generic).
    pub const fn capacity(&self) -> usize {
        self.max_entries as usize
    }
}

const fn size<T>() -> u32 {
    size_of::<T>() as u32
}

/// Longest-prefix-match table: destination prefix → owning host.
pub mod prefixes {
    use super::{MAX_PREFIXES, MapKind, MapSpec, size};
    /// The address half of the key: the kernel's key is the prefix length (a `u32`)
    /// followed by this, in network byte order.
    pub type Key = [u8; 4];
    pub type Value = crate::PrefixEntry;
    pub const SPEC: MapSpec = MapSpec {
        name: "HA_PREFIXES",
        kind: MapKind::LpmTrie,
        key_size: size::<u32>() + size::<Key>(),
        value_size: size::<Value>(),
        max_entries: MAX_PREFIXES,
        holds: "prefix → `PrefixEntry`: owning host id, prefix id, previous host while moving",
        written_by: "controller",
    };
}

/// Host table indexed by host id: MAC to steer to, egress interface, readiness.
pub mod hosts {
    use super::{MAX_HOSTS, MapKind, MapSpec, size};
    /// Host id.
    pub type Key = u32;
    pub type Value = crate::HostEntry;
    pub const SPEC: MapSpec = MapSpec {
        name: "HA_HOSTS",
        kind: MapKind::Array,
        key_size: size::<Key>(),
        value_size: size::<Value>(),
        max_entries: MAX_HOSTS,
        holds: "host id → `HostEntry`: MAC, egress MAC, MTU and ifindex, `READY`/`UP` flags",
        written_by: "controller",
    };
}

/// Interfaces the program runs on, indexed by ifindex: their own MAC and flags.
pub mod ifaces {
    use super::{MAX_IFINDEX, MapKind, MapSpec, size};
    /// Ingress ifindex.
    pub type Key = u32;
    pub type Value = crate::IfaceEntry;
    pub const SPEC: MapSpec = MapSpec {
        name: "HA_IFACES",
        kind: MapKind::Array,
        key_size: size::<Key>(),
        value_size: size::<Value>(),
        max_entries: MAX_IFINDEX,
        holds: "ingress ifindex → `IfaceEntry`: its own MAC (only frames to it are steered), flags",
        written_by: "controller",
    };
}

/// DEVMAP used for `XDP_REDIRECT` to an egress interface other than the ingress one.
pub mod tx_ports {
    use super::{MAX_IFACES, MapKind, MapSpec, size};
    /// Egress ifindex.
    pub type Key = u32;
    /// The kernel's `struct bpf_devmap_val`: the egress ifindex and a program to run
    /// there (none here).
    pub type Value = [u32; 2];
    pub const SPEC: MapSpec = MapSpec {
        name: "HA_TX_PORTS",
        kind: MapKind::DevMapHash,
        key_size: size::<Key>(),
        value_size: size::<Value>(),
        max_entries: MAX_IFACES,
        holds: "egress ifindex → that device, for XDP_REDIRECT",
        written_by: "controller",
    };
}

/// Per-CPU verdict and reason counters, indexed by [`Counter`].
pub mod counters {
    use super::{Counter, MapKind, MapSpec, size};
    /// A [`Counter`] index.
    pub type Key = u32;
    pub type Value = u64;
    pub const SPEC: MapSpec = MapSpec {
        name: "HA_COUNTERS",
        kind: MapKind::PerCpuArray,
        key_size: size::<Key>(),
        value_size: size::<Value>(),
        max_entries: Counter::COUNT,
        holds: "`Counter` → packets: one per verdict and pass reason",
        written_by: "data path",
    };
}

/// Per-CPU packets/bytes steered to each host, indexed by host id.
pub mod host_stats {
    use super::{MAX_HOSTS, MapKind, MapSpec, size};
    /// Host id.
    pub type Key = u32;
    pub type Value = crate::Traffic;
    pub const SPEC: MapSpec = MapSpec {
        name: "HA_HOST_STATS",
        kind: MapKind::PerCpuArray,
        key_size: size::<Key>(),
        value_size: size::<Value>(),
        max_entries: MAX_HOSTS,
        holds: "host id → `Traffic`: packets and bytes steered to it",
        written_by: "data path",
    };
}

/// Per-CPU packets/bytes steered for each prefix, indexed by prefix id.
pub mod pfx_stats {
    use super::{MAX_PREFIXES, MapKind, MapSpec, size};
    /// Prefix id.
    pub type Key = u32;
    pub type Value = crate::Traffic;
    pub const SPEC: MapSpec = MapSpec {
        name: "HA_PFX_STATS",
        kind: MapKind::PerCpuArray,
        key_size: size::<Key>(),
        value_size: size::<Value>(),
        max_entries: MAX_PREFIXES,
        holds: "prefix id → `Traffic`: packets and bytes steered for it",
        written_by: "data path",
    };
}

/// The one flow table: client-to-VIP flows (TCP and UDP) → the host serving them,
/// when the kernel last forwarded one of their packets, when they were last seen.
pub mod flows {
    use super::{MAX_FLOWS, MapKind, MapSpec, size};
    pub type Key = crate::FlowKey;
    pub type Value = crate::FlowEntry;
    pub const SPEC: MapSpec = MapSpec {
        name: "HA_FLOWS",
        kind: MapKind::LruHash,
        key_size: size::<Key>(),
        value_size: size::<Value>(),
        max_entries: MAX_FLOWS,
        holds: "`FlowKey` → `FlowEntry`: serving host, prefix, kernel verification, last seen",
        written_by: "both programs, controller",
    };
}

/// Router-wide settings for both programs (one entry): the router's own addresses,
/// how long a kernel verdict on a flow stays good.
pub mod settings {
    use super::{MapKind, MapSpec, size};
    /// Always 0.
    pub type Key = u32;
    pub type Value = crate::Settings;
    pub const SPEC: MapSpec = MapSpec {
        name: "HA_SETTINGS",
        kind: MapKind::Array,
        key_size: size::<Key>(),
        value_size: size::<Value>(),
        max_entries: 1,
        holds: "0 → `Settings`: the router's own addresses, the verification period",
        written_by: "controller",
    };
}

/// Per-CPU counters of what happened to flows, indexed by [`FlowCounter`].
pub mod flow_counters {
    use super::{FlowCounter, MapKind, MapSpec, size};
    /// A [`FlowCounter`] index.
    pub type Key = u32;
    pub type Value = u64;
    pub const SPEC: MapSpec = MapSpec {
        name: "HA_FLOW_CTRS",
        kind: MapKind::PerCpuArray,
        key_size: size::<Key>(),
        value_size: size::<Value>(),
        max_entries: FlowCounter::COUNT,
        holds: "`FlowCounter` → count: what the programs did with the flow table",
        written_by: "both programs",
    };
}

/// One entry: the [`LAYOUT_VERSION`] of the pinned maps.
pub mod meta {
    use super::{MapKind, MapSpec, size};
    /// Always 0.
    pub type Key = u32;
    pub type Value = crate::Meta;
    pub const SPEC: MapSpec = MapSpec {
        name: "HA_META",
        kind: MapKind::Array,
        key_size: size::<Key>(),
        value_size: size::<Value>(),
        max_entries: 1,
        holds: "0 → `Meta`: the layout version of the pinned maps (`LAYOUT_VERSION`)",
        written_by: "controller, at pinning",
    };
}

/// Every map of the data path, in the order the controller opens them. All are
/// pinned.
pub const MAPS: [MapSpec; 11] = [
    prefixes::SPEC,
    hosts::SPEC,
    ifaces::SPEC,
    tx_ports::SPEC,
    counters::SPEC,
    host_stats::SPEC,
    pfx_stats::SPEC,
    flows::SPEC,
    settings::SPEC,
    flow_counters::SPEC,
    meta::SPEC,
];

/// Every map the controller pins (the names of [`MAPS`]), in the order it opens them.
pub const PINNED_MAPS: [&str; MAPS.len()] = {
    let mut names = [""; MAPS.len()];
    let mut i = 0;
    while i < MAPS.len() {
        names[i] = MAPS[i].name;
        i += 1;
    }
    names
};

/// The spec of the map named `name`.
pub fn spec(name: &str) -> Option<&'static MapSpec> {
    MAPS.iter().find(|spec| spec.name == name)
}

/// Name of [`prefixes`].
pub const MAP_PREFIXES: &str = prefixes::SPEC.name;
/// Name of [`hosts`].
pub const MAP_HOSTS: &str = hosts::SPEC.name;
/// Name of [`ifaces`].
pub const MAP_IFACES: &str = ifaces::SPEC.name;
/// Name of [`tx_ports`].
pub const MAP_TX_PORTS: &str = tx_ports::SPEC.name;
/// Name of [`counters`].
pub const MAP_COUNTERS: &str = counters::SPEC.name;
/// Name of [`host_stats`].
pub const MAP_HOST_STATS: &str = host_stats::SPEC.name;
/// Name of [`pfx_stats`].
pub const MAP_PFX_STATS: &str = pfx_stats::SPEC.name;
/// Name of [`flows`].
pub const MAP_FLOWS: &str = flows::SPEC.name;
/// Name of [`settings`].
pub const MAP_SETTINGS: &str = settings::SPEC.name;
/// Name of [`flow_counters`].
pub const MAP_FLOW_COUNTERS: &str = flow_counters::SPEC.name;
/// Name of [`meta`].
pub const MAP_META: &str = meta::SPEC.name;

/// Prefix of the pin of an XDP link: `<pin_dir>/link_<iface>`.
pub const XDP_LINK_PREFIX: &str = "link_";
/// Prefix of the pin of a TCX link (`ha_learn`): `<pin_dir>/tclink_<iface>`.
pub const TC_LINK_PREFIX: &str = "tclink_";

/// The layout of the pinned maps, written into [`MAP_META`] when the controller
/// creates the pins and checked when a controller adopts them: pins of another
/// layout (or without one) are refused, never misread.
///
/// Every change of a pinned map's key, value, kind or capacity, and every map added
/// to or removed from [`MAPS`], must bump it. A test compares the table with
/// [`LAYOUT_FINGERPRINT`] and fails until both are updated; a change inside a value
/// that keeps its size (fields reordered or renamed) it cannot see: bump for those
/// too.
///
/// 1: the first versioned layout. 2: the flow table, the settings and the flow
/// counters; prefix entries with the previous owner and flags, host entries with the
/// egress MTU, five more pass reasons. 3: [`Settings::flags`](crate::Settings::flags)
/// ([`SETTINGS_CT_SYNC`](crate::SETTINGS_CT_SYNC)) and
/// [`FLOW_CT_SYNCED`](crate::FLOW_CT_SYNCED): a program of layout 2 would steer flows
/// whose conntrack entry nobody keeps (same sizes, so the fingerprint is unchanged).
/// 4: one more pass reason, `pass_from_host` (17 counters).
pub const LAYOUT_VERSION: u32 = 4;

/// [`layout_fingerprint`] of [`MAPS`] at [`LAYOUT_VERSION`]; set together with it.
pub const LAYOUT_FINGERPRINT: u64 = 0xf65e_82e9_1079_e45d;

/// A fingerprint of the maps' names, kinds, key and value sizes and capacities,
/// whatever their order (not of the documentation fields).
pub const fn layout_fingerprint(maps: &[MapSpec]) -> u64 {
    let mut sum = 0u64;
    let mut i = 0;
    while i < maps.len() {
        let spec = &maps[i];
        let mut hash = fnv1a(FNV_OFFSET, spec.name.as_bytes());
        hash = fnv1a(hash, &[0]);
        let numbers = [
            spec.kind.bpf_map_type(),
            spec.key_size,
            spec.value_size,
            spec.max_entries,
        ];
        let mut n = 0;
        while n < numbers.len() {
            hash = fnv1a(hash, &numbers[n].to_le_bytes());
            n += 1;
        }
        sum = sum.wrapping_add(hash);
        i += 1;
    }
    sum
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// FNV-1a, continued from `hash` over `bytes`.
const fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(FNV_PRIME);
        i += 1;
    }
    hash
}

const _: () = {
    let mut i = 0;
    while i < MAPS.len() {
        // Kernel object names are at most 15 characters (BPF_OBJ_NAME_LEN - 1).
        assert!(MAPS[i].name.len() <= 15);
        i += 1;
    }
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_version_follows_the_table() {
        let now = layout_fingerprint(&MAPS);
        assert_eq!(
            now, LAYOUT_FINGERPRINT,
            "the map table is not the one of layout {LAYOUT_VERSION} (fingerprint {now:#018x}, \
             recorded {LAYOUT_FINGERPRINT:#018x}): pins of the old layout would be misread. \
             Bump LAYOUT_VERSION, say in its docs what changed, and set LAYOUT_FINGERPRINT \
             to {now:#018x}"
        );
    }

    #[test]
    fn the_fingerprint_sees_every_shape_field_and_no_order() {
        let base = layout_fingerprint(&MAPS);
        let changes: [fn(&mut MapSpec); 5] = [
            |s| s.name = "HA_OTHER",
            |s| s.kind = MapKind::LruHash,
            |s| s.key_size += 1,
            |s| s.value_size += 8,
            |s| s.max_entries *= 2,
        ];
        for change in changes {
            let mut maps = MAPS;
            change(&mut maps[0]);
            assert_ne!(layout_fingerprint(&maps), base, "{:?}", maps[0]);
        }
        let mut maps = MAPS;
        maps[1].holds = "something else";
        maps[1].written_by = "someone else";
        assert_eq!(layout_fingerprint(&maps), base, "documentation only");
        maps.reverse();
        assert_eq!(layout_fingerprint(&maps), base, "order");
        assert_ne!(layout_fingerprint(&MAPS[1..]), base, "a map removed");
    }

    #[test]
    fn names_are_unique_and_pinned() {
        for (i, spec) in MAPS.iter().enumerate() {
            assert_eq!(PINNED_MAPS[i], spec.name);
            assert_eq!(super::spec(spec.name), Some(spec));
            assert!(
                MAPS[i + 1..].iter().all(|other| other.name != spec.name),
                "{} twice",
                spec.name
            );
            assert!(!spec.name.starts_with(XDP_LINK_PREFIX));
            assert!(!spec.name.starts_with(TC_LINK_PREFIX));
        }
    }
}
