//! The daemon's answers: status, statistics and the result of an admin command.
//! Hosts are named by their configured names; `null` stands for "no host" (a prefix
//! without a fast-path owner).

use std::{cmp::Ordering, collections::BTreeMap, fmt, net::Ipv4Addr};

use ha_common::{Counter, FlowCounter};
use ipnet::Ipv4Net;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::{Health, Mac, ProbeOutcome, Reason, VipVerdict};

/// `status`: every prefix, then every host, in configuration order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {
    pub prefixes: Vec<PrefixStatus>,
    pub hosts: Vec<HostStatus>,
    pub lan: LanStatus,
}

/// The LAN interface as the controller follows it (by name).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LanStatus {
    pub name: String,
    /// The interface of that name now; `null`: there is none (deleted).
    pub ifindex: Option<u32>,
    /// The fast path steers on it. False while it is down or gone, or when it cannot
    /// be steered on (`why`): the kernel routes carry what they can meanwhile.
    pub steering: bool,
    /// Why it does not steer; `null` while it does.
    pub why: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixStatus {
    pub prefix: Ipv4Net,
    /// The host steering it now; `null`: none (the kernel route carries it).
    pub owner: Option<String>,
    pub configured_owner: String,
    /// Why `owner` holds it (or why nobody does).
    pub why: Reason,
    pub pinned: Option<PinStatus>,
    /// Its last ownership change since the controller started.
    pub last_change: Option<LastChange>,
    /// A move that keeps flows, in progress: established flows stay with their
    /// hosts while new ones go to `owner`.
    pub moving: Option<MovingStatus>,
}

/// A prefix's move in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MovingStatus {
    /// The previous owner.
    pub from: String,
    pub since_unix_ms: u64,
    /// Live flows served by hosts other than the owner at the last sweep of the flow
    /// table; `null` before the first. The move ends when there are none.
    pub flows_elsewhere: Option<u64>,
}

/// A graceful drain in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrainStatus {
    pub since_unix_ms: u64,
    /// When the connections left are moved (`drain_timeout_ms` after the start).
    pub deadline_unix_ms: u64,
    /// Live connections the host still serves, at the last sweep; `null` before
    /// the first.
    pub remaining: Option<u64>,
}

/// A `set-owner` pin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinStatus {
    pub host: String,
    pub force: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LastChange {
    pub at_unix_ms: u64,
    pub old: Option<String>,
    pub new: Option<String>,
    pub reason: Reason,
    /// From the first failed (or succeeded) probe to the decision, for changes a
    /// health change caused.
    pub detection_ms: Option<f64>,
    /// From the decision to the data-path map written.
    pub switch_us: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostStatus {
    pub name: String,
    pub address: Ipv4Addr,
    pub health: Health,
    /// Configured or learned; `null` while unknown (the host is not steered to).
    pub mac: Option<Mac>,
    pub drained: bool,
    /// A drain whose connections may still finish; `null` when there is none (not
    /// drained, drained at once, or over).
    pub draining: Option<DrainStatus>,
    /// The most recent failed probe's error, kept after later successes.
    pub last_error: Option<String>,
    /// The most recent successful probe's duration.
    pub last_rtt_us: Option<u64>,
    /// Probes of its own address since its check started, by outcome.
    pub probes: ProbeCounts,
    /// Which prefixes it can serve: the VIP verdict of every prefix that watches it
    /// (its holder, the host it would fail over to, the next candidates), and of the
    /// prefixes it was found not to serve.
    pub vips: Vec<VipStatus>,
    /// Probes of those VIPs through it, by outcome.
    pub vip_probes: ProbeCounts,
}

/// One host's verdict on one prefix's VIP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VipStatus {
    pub prefix: Ipv4Net,
    pub vip: Ipv4Addr,
    /// `unknown` (not asked yet: counts as serving), `serving`, `not-serving`.
    pub verdict: VipVerdict,
    /// Why not: `VIP 192.168.1.65 not answered by host3: connection refused`; also
    /// while a failure streak runs.
    pub why: Option<String>,
}

/// Probes by outcome: the three that count for or against the host, and the local
/// failures that were discarded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeCounts {
    pub answered: u64,
    pub refused: u64,
    pub silent: u64,
    /// The controller was held up while the probe ran.
    pub late: u64,
    /// No socket, descriptor, buffer or local port.
    pub no_socket: u64,
    /// The LAN interface was down or without carrier.
    pub interface_down: u64,
    /// No route, or the router's own rules refused the probe.
    pub no_route: u64,
}

impl ProbeCounts {
    /// From counts indexed by [`ProbeOutcome::index`].
    pub fn from_array(counts: &[u64; ProbeOutcome::ALL.len()]) -> Self {
        let of = |outcome: ProbeOutcome| counts[outcome.index()];
        Self {
            answered: of(ProbeOutcome::Answered),
            refused: of(ProbeOutcome::Refused),
            silent: of(ProbeOutcome::Silent),
            late: of(ProbeOutcome::Late),
            no_socket: of(ProbeOutcome::NoSocket),
            interface_down: of(ProbeOutcome::InterfaceDown),
            no_route: of(ProbeOutcome::NoRoute),
        }
    }

    /// Every probe counted.
    pub fn total(&self) -> u64 {
        let Self {
            answered,
            refused,
            silent,
            late,
            no_socket,
            interface_down,
            no_route,
        } = self;
        answered + refused + silent + late + no_socket + interface_down + no_route
    }

    /// The probes discarded as local failures.
    pub fn discarded(&self) -> u64 {
        self.late + self.no_socket + self.interface_down + self.no_route
    }
}

/// `stats`: what the data path counted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stats {
    pub prefixes: Vec<PrefixTraffic>,
    pub hosts: Vec<HostTraffic>,
    /// Packets by verdict: `tx`, `redirect`, and one `pass_*` per reason the fast path
    /// stepped aside; every counter of the data path, by name.
    pub counters: BTreeMap<Verdict, u64>,
    /// What the programs did with the flow table (lookups, affinity hits, flows
    /// recorded from the fast path and from the kernel's forwarding, ...), by name.
    pub flows: BTreeMap<FlowTally, u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixTraffic {
    pub prefix: Ipv4Net,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostTraffic {
    pub host: String,
    pub packets: u64,
    pub bytes: u64,
}

/// A kind of data-path counter, named on the wire by the names the eBPF side defines.
pub trait CounterKind: Copy + Eq + 'static {
    /// Every counter of the kind.
    const ALL: &'static [Self];
    fn name(self) -> &'static str;
}

impl CounterKind for Counter {
    const ALL: &'static [Self] = &Counter::ALL;
    fn name(self) -> &'static str {
        Counter::name(self)
    }
}

impl CounterKind for FlowCounter {
    const ALL: &'static [Self] = &FlowCounter::ALL;
    fn name(self) -> &'static str {
        FlowCounter::name(self)
    }
}

/// A data-path counter by its name ([`Counter::name`], [`FlowCounter::name`]), so a
/// new counter needs nothing here. Ordered by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Named<C>(pub C);

/// A verdict counter: `tx`, `redirect`, a `pass_*` reason.
pub type Verdict = Named<Counter>;
/// A flow-table counter.
pub type FlowTally = Named<FlowCounter>;

impl<C: CounterKind> Ord for Named<C> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.name().cmp(other.0.name())
    }
}

impl<C: CounterKind> PartialOrd for Named<C> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<C: CounterKind> fmt::Display for Named<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name())
    }
}

impl<C: CounterKind> Serialize for Named<C> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.name())
    }
}

impl<'de, C: CounterKind> Deserialize<'de> for Named<C> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        C::ALL
            .iter()
            .find(|counter| counter.name() == name)
            .map(|&counter| Named(counter))
            .ok_or_else(|| {
                let known: Vec<&str> = C::ALL.iter().map(|c| c.name()).collect();
                serde::de::Error::custom(format!(
                    "unknown counter `{name}` (counters: {})",
                    known.join(", ")
                ))
            })
    }
}

/// The answer to `set-owner`, `clear-owner`, `drain` and `undrain`: what the command
/// did and the prefixes it moved (their map entries are written when it returns).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeReport {
    pub result: ChangeResult,
    pub changes: Vec<Move>,
}

/// What an admin command did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ChangeResult {
    /// The prefix is on the pinned host.
    Steered {
        host: String,
    },
    /// Pinned, but the host is down or drained: the prefix moves once it has been
    /// up for its failback delay.
    Waiting {
        host: String,
        health: Health,
        drained: bool,
    },
    /// Forced onto the host whatever its health.
    Forced {
        host: String,
        health: Health,
        drained: bool,
    },
    PinCleared {
        prefix: Ipv4Net,
    },
    /// Drained at once (`--now`): its connections follow the prefixes.
    Drained {
        host: String,
    },
    /// Draining: new connections go elsewhere, established ones may finish for up
    /// to `timeout_ms`.
    Draining {
        host: String,
        timeout_ms: u64,
    },
    Undrained {
        host: String,
    },
}

impl fmt::Display for ChangeResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangeResult::Steered { .. } => f.write_str("steered"),
            ChangeResult::Waiting {
                host,
                health,
                drained,
            } => write!(
                f,
                "pinned; {host} is {health}{}: the prefix moves once it is up for its failback delay",
                if *drained { " and drained" } else { "" }
            ),
            ChangeResult::Forced { host, health, .. } => {
                write!(f, "forced onto {host} ({health})")
            }
            ChangeResult::PinCleared { .. } => f.write_str("pin cleared"),
            ChangeResult::Drained { host } => write!(f, "{host} drained"),
            ChangeResult::Draining { host, timeout_ms } => write!(
                f,
                "{host} draining: new connections go elsewhere, established ones may finish within {timeout_ms} ms"
            ),
            ChangeResult::Undrained { host } => write!(f, "{host} undrained"),
        }
    }
}

/// One prefix that changed hands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Move {
    pub prefix: Ipv4Net,
    pub old: Option<String>,
    pub new: Option<String>,
    pub reason: Reason,
}

impl fmt::Display for Move {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            prefix,
            old,
            new,
            reason,
        } = self;
        write!(
            f,
            "{prefix}: {} -> {} ({reason})",
            old.as_deref().unwrap_or("-"),
            new.as_deref().unwrap_or("-")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_by_the_data_path() {
        let mut counters = BTreeMap::new();
        counters.insert(Named(Counter::Tx), 3);
        counters.insert(Named(Counter::PassNoPrefix), 1);
        let text = serde_json::to_string(&counters).expect("serialize");
        assert_eq!(text, r#"{"pass_no_prefix":1,"tx":3}"#);
        let back: BTreeMap<Verdict, u64> = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, counters);
        let err = serde_json::from_str::<BTreeMap<Verdict, u64>>(r#"{"tx_typo":1}"#)
            .expect_err("unknown counter");
        assert!(
            err.to_string().contains("unknown counter `tx_typo`"),
            "{err}"
        );
        let flows: BTreeMap<FlowTally, u64> =
            serde_json::from_str(r#"{"affinity_hit":2}"#).expect("a flow counter");
        assert_eq!(flows.get(&Named(FlowCounter::AffinityHit)), Some(&2));
    }

    #[test]
    fn change_results_read_as_before() {
        let waiting = ChangeResult::Waiting {
            host: "host3".into(),
            health: Health::Down,
            drained: true,
        };
        assert_eq!(
            waiting.to_string(),
            "pinned; host3 is down and drained: the prefix moves once it is up for its failback delay"
        );
        assert_eq!(
            serde_json::to_string(&waiting).expect("serialize"),
            r#"{"kind":"waiting","host":"host3","health":"down","drained":true}"#
        );
        let moved = Move {
            prefix: "192.168.1.64/27".parse().expect("prefix"),
            old: Some("host2".into()),
            new: None,
            reason: Reason::AllDown,
        };
        assert_eq!(
            moved.to_string(),
            "192.168.1.64/27: host2 -> - (no usable host: owner and backups down, drained or not answering on the VIP)"
        );
    }
}
