//! Whether a host serves a prefix's VIP, and how that is checked: the
//! configuration's `[vip_check]` table.
//!
//! A host's own health check asks its own address; a prefix is only worth sending to
//! a host that answers on the prefix's VIP (a backup without the VIP on its loopback
//! would black-hole it). The VIP checks ask each watched candidate of a prefix, with
//! the host's own check (kind, port, path), for the VIP, through that very host (see
//! `health::vip`).

use std::{fmt, net::Ipv4Addr};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// How many candidates of each prefix the VIP checks watch: its holder, the host it
/// would fail over to, and the next candidates in failover order up to this many in
/// all. Candidates further down are checked once the holder or the next candidate is
/// one of them. Bounds the checker's memory to 8 bytes × 4 per prefix.
pub const WATCHED: usize = 4;

/// VIP probes in flight at most (each holds a socket for at most its timeout).
pub const IN_FLIGHT: usize = 64;

/// The VIP of `cidr` when the configuration names none: its first usable address, as
/// in the article (192.168.1.33 for 192.168.1.32/27). For a /31 or /32, which have no
/// network or broadcast address, that is the prefix's first address.
pub fn default_vip(cidr: Ipv4Net) -> Ipv4Addr {
    cidr.hosts().next().unwrap_or(cidr.network())
}

/// The `[vip_check]` table, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VipCheck {
    /// Off: every host that is up counts as serving every prefix (the behaviour
    /// before VIP checks).
    pub enabled: bool,
    /// How often the holder of each prefix and the candidate it would fail over to
    /// are asked (the rate bound may stretch it).
    pub interval_ms: u64,
    /// How often the other watched candidates are asked (the rate bound may stretch
    /// it).
    pub sweep_ms: u64,
    /// How long a VIP probe waits for its answer. Longer than a host check's: a VIP
    /// check is about configuration, not latency, and a slow answer still proves the
    /// VIP is served.
    pub timeout_ms: u64,
    /// VIP probes per second at most, all prefixes and hosts together.
    pub max_rate: u32,
}

impl Default for VipCheck {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_ms: 1000,
            sweep_ms: 10_000,
            timeout_ms: 50,
            max_rate: 1000,
        }
    }
}

/// What the VIP checks last decided about one host and one prefix.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VipVerdict {
    /// Not asked yet (or not decided): counts as serving, so that start-up and the
    /// first failover never wait for a VIP check.
    #[default]
    Unknown,
    /// The host answered on the VIP.
    Serving,
    /// The host refused or did not answer on the VIP `fall` times in a row while
    /// answering on its own address: it is skipped for this prefix.
    NotServing,
}

impl fmt::Display for VipVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VipVerdict::Unknown => "unknown",
            VipVerdict::Serving => "serving",
            VipVerdict::NotServing => "not serving",
        })
    }
}
