//! The daemon's events: what `ha-user events` prints and what the tests and
//! benchmarks follow instead of the log. Every event is an [`EventRecord`]: a
//! sequence number, a wall-clock time and the [`Event`], tagged by its `kind`.
//!
//! Adding an event: a variant of [`Event`] (its fields named as in the log line it
//! goes with), its line in [`Event`]'s `Display`, and a `publish` where it happens.

use std::{
    fmt,
    net::Ipv4Addr,
    path::PathBuf,
    time::{Duration, SystemTime},
};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::{Request, reports::ChangeResult};
use crate::model::{Health, Mac, ProbeOutcome, Reason, VipVerdict, XdpMode};

/// One event as the daemon sends it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventRecord {
    /// 1 for the first event of a daemon, then one more for each.
    pub seq: u64,
    /// When it happened: microseconds since the Unix epoch (wall clock).
    pub at_unix_us: u64,
    pub event: Event,
}

impl EventRecord {
    /// When it happened.
    pub fn at(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_micros(self.at_unix_us)
    }
}

/// What a stream of events carries, one per line after an `events` request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum StreamItem {
    /// The first line: the request is accepted; `replayed` earlier events follow
    /// before the live ones.
    Subscribed {
        replayed: u64,
    },
    Event(EventRecord),
    /// The reader was too slow: this many events were dropped for it (the daemon
    /// never waits for a reader). The stream goes on with the next one.
    Lagged {
        missed: u64,
    },
}

/// Where the configuration came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ConfigSource {
    File {
        path: PathBuf,
    },
    /// Adopted from the static routes through `iface` (no configuration file).
    Routes {
        iface: String,
    },
}

/// Something the daemon did or saw.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Event {
    // ---- start-up, in this order ----
    /// The configuration is loaded and valid.
    ConfigLoaded {
        source: ConfigSource,
        hosts: usize,
        prefixes: usize,
    },
    /// Every configured prefix has its kernel route, ours.
    RoutesTakenOver {
        installed: usize,
        adopted: usize,
        already_ours: usize,
    },
    /// The XDP program is in the kernel, with its maps pinned under `pin_dir`.
    ProgramLoaded { pin_dir: PathBuf },
    /// Interfaces, hosts and prefixes are in the maps, before any attach.
    MapsWritten {
        hosts: usize,
        prefixes: usize,
        /// Prefixes with a fast-path entry.
        steered: usize,
    },
    /// The program runs on `iface`; `adopted`: through a pinned link a previous
    /// controller left (restart, upgrade).
    XdpAttached {
        iface: String,
        ifindex: u32,
        mode: XdpMode,
        adopted: bool,
    },
    /// Start-up is over: the control socket answers.
    Serving {
        socket: PathBuf,
        hosts: usize,
        prefixes: usize,
    },

    // ---- running ----
    /// A host's health checks decided.
    HealthChanged {
        host: String,
        old: Health,
        new: Health,
        /// The last probe's error when down, the streak of successes when up.
        reason: String,
        /// From the first probe of the streak to the decision.
        detection_ms: f64,
        /// The probes of the streak, oldest first (discarded ones included): what
        /// decided, with its timings.
        probes: Vec<ProbeTiming>,
    },
    /// A host's verdict on a prefix's VIP changed to or from not serving (the first
    /// answer of a host not asked before is no change: it was counted as serving).
    VipChanged {
        host: String,
        prefix: Ipv4Net,
        vip: Ipv4Addr,
        old: VipVerdict,
        new: VipVerdict,
        reason: String,
    },
    /// A prefix changed hands: its map entry and kernel route are written.
    OwnerChanged {
        prefix: Ipv4Net,
        old: Option<String>,
        new: Option<String>,
        reason: Reason,
        detection_ms: Option<f64>,
        switch_us: u64,
        route_via: Ipv4Addr,
    },
    /// A host's MAC, learned from the neighbour table.
    MacLearned {
        host: String,
        mac: Mac,
        old: Option<Mac>,
    },
    /// The LAN interface went down or away (`ifindex` null: no interface has its
    /// name any more), or came back; `steering`: the fast path runs on it again
    /// (`why` says why not).
    LanChanged {
        iface: String,
        ifindex: Option<u32>,
        steering: bool,
        why: Option<String>,
    },
    /// Kernel routes of ours that the kernel lost (the LAN interface went down or
    /// was deleted, or someone deleted them) were put back: `installed` missing,
    /// `repointed` pointing elsewhere; `cause` says what made the controller look.
    RoutesRestored {
        installed: usize,
        repointed: usize,
        cause: String,
    },
    /// An admin command was applied (its owner changes come first).
    Admin {
        request: Request,
        result: ChangeResult,
        moved: usize,
    },
    /// A SIGHUP re-read the configuration and applied the difference.
    ReloadApplied {
        hosts: usize,
        prefixes: usize,
        restarted_checks: usize,
        /// Pins and drains dropped: what they named is gone.
        stale: Vec<String>,
    },
    /// A SIGHUP changed nothing.
    ReloadRefused { why: String },
    /// How each steered interface treats the router's forwarding, at start-up and
    /// whenever that changes: `verify` interfaces steer only flows the kernel
    /// forwarded recently; `reasons` says what made an interface verify (or, with
    /// `verify = "never"`, what the fast path bypasses on an open one).
    FastPath { interfaces: Vec<FastPathInterface> },
    /// A move that kept flows is over: no live flow of the prefix is served by a host
    /// other than `owner` any more; its entry is steady again.
    MoveEnded {
        prefix: Ipv4Net,
        owner: String,
        /// The previous owner of the move.
        from: String,
        moving_ms: u64,
    },
    /// A draining host still serves `remaining` live flows (published when the count
    /// changes); the rest moves in `left_ms`.
    DrainProgress {
        host: String,
        remaining: u64,
        left_ms: u64,
    },
    /// A graceful drain is over: the host keeps no flows any more (until `undrain`).
    DrainFinished {
        host: String,
        outcome: DrainOutcome,
        /// Live flows it still served, moved to the prefixes' owners (0 when completed).
        remaining: u64,
        drained_ms: u64,
    },
    /// The controller stopped; the stream ends. `handover`: the fast path stays
    /// attached and pinned for the next controller (`run --handover`, SIGTERM); else
    /// it is detached and traffic follows the kernel routes.
    Shutdown { removed_pins: usize, handover: bool },
}

/// How a graceful drain ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DrainOutcome {
    /// Its last connection finished.
    Completed,
    /// `drain_timeout_ms` passed: the rest moved.
    TimedOut,
    /// `drain --now`: the rest moved at once.
    Now,
    /// `undrain` before it ended.
    Undrained,
}

impl fmt::Display for DrainOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DrainOutcome::Completed => "completed: no connection left",
            DrainOutcome::TimedOut => "timed out: the rest moved",
            DrainOutcome::Now => "ended at once (--now): the rest moved",
            DrainOutcome::Undrained => "undrained",
        })
    }
}

/// One probe of a health streak, with the controller's own delays measured on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeTiming {
    pub outcome: ProbeOutcome,
    /// When it started (its deadline armed), µs since the Unix epoch.
    pub at_unix_us: u64,
    /// From its start to its outcome: the answer read, the refusal seen, the timeout
    /// observed.
    pub waited_us: u64,
    /// From its start to its request sent.
    pub sent_lag_us: u64,
    /// How late the controller noticed a step of the exchange (a new connection up).
    pub step_lag_us: u64,
    /// How long after its deadline a timeout was observed.
    pub late_us: u64,
}

/// One interface of a [`Event::FastPath`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FastPathInterface {
    pub iface: String,
    pub verify: bool,
    pub reasons: Vec<String>,
}

impl fmt::Display for EventRecord {
    /// One line: time, sequence number, kind and what happened.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} #{} {}",
            humantime::format_rfc3339_micros(self.at()),
            self.seq,
            self.event
        )
    }
}

fn host(host: &Option<String>) -> &str {
    host.as_deref().unwrap_or("-")
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::ConfigLoaded {
                source,
                hosts,
                prefixes,
            } => {
                let from = match source {
                    ConfigSource::File { path } => path.display().to_string(),
                    ConfigSource::Routes { iface } => format!("the static routes through {iface}"),
                };
                write!(
                    f,
                    "config-loaded from {from}: {hosts} hosts, {prefixes} prefixes"
                )
            }
            Event::RoutesTakenOver {
                installed,
                adopted,
                already_ours,
            } => write!(
                f,
                "routes-taken-over: {installed} installed, {adopted} adopted, {already_ours} already ours"
            ),
            Event::ProgramLoaded { pin_dir } => {
                write!(f, "program-loaded, maps pinned in {}", pin_dir.display())
            }
            Event::MapsWritten {
                hosts,
                prefixes,
                steered,
            } => write!(
                f,
                "maps-written: {hosts} hosts, {prefixes} prefixes, {steered} steered"
            ),
            Event::XdpAttached {
                iface,
                ifindex,
                mode,
                adopted,
            } => write!(
                f,
                "xdp-attached to {iface} (#{ifindex}, {mode}{})",
                if *adopted { ", adopted link" } else { "" }
            ),
            Event::Serving {
                socket,
                hosts,
                prefixes,
            } => write!(
                f,
                "serving on {}: {hosts} hosts, {prefixes} prefixes",
                socket.display()
            ),
            Event::HealthChanged {
                host,
                old,
                new,
                reason,
                detection_ms,
                probes,
            } => {
                write!(
                    f,
                    "health-changed {host}: {old} -> {new} ({reason}), detection {detection_ms} ms"
                )?;
                if *new == Health::Down && !probes.is_empty() {
                    let each: Vec<String> = probes
                        .iter()
                        .map(|p| format!("{} after {} µs", p.outcome, p.waited_us))
                        .collect();
                    write!(f, "; probes: {}", each.join(", "))?;
                }
                Ok(())
            }
            Event::VipChanged {
                host,
                prefix,
                vip,
                old,
                new,
                reason,
            } => write!(
                f,
                "vip-changed {host} for {prefix} (VIP {vip}): {old} -> {new} ({reason})"
            ),
            Event::OwnerChanged {
                prefix,
                old,
                new,
                reason,
                detection_ms,
                switch_us,
                route_via,
            } => {
                write!(
                    f,
                    "owner-changed {prefix}: {} -> {} ({reason})",
                    host(old),
                    host(new)
                )?;
                if let Some(ms) = detection_ms {
                    write!(f, ", detection {ms} ms")?;
                }
                write!(f, ", switch {switch_us} µs, route via {route_via}")
            }
            Event::FastPath { interfaces } => {
                f.write_str("fast-path:")?;
                for (n, i) in interfaces.iter().enumerate() {
                    let sep = if n == 0 { " " } else { "; " };
                    let how = if i.verify { "verifies flows" } else { "open" };
                    write!(f, "{sep}{} {how}", i.iface)?;
                    if !i.reasons.is_empty() {
                        write!(f, " ({})", i.reasons.join("; "))?;
                    }
                }
                Ok(())
            }
            Event::LanChanged {
                iface,
                ifindex,
                steering,
                why,
            } => {
                match ifindex {
                    Some(index) => write!(f, "lan-changed {iface} (#{index})")?,
                    None => write!(f, "lan-changed {iface} (gone)")?,
                }
                match (steering, why) {
                    (true, _) => write!(f, ": steering"),
                    (false, Some(why)) => write!(f, ": not steering: {why}"),
                    (false, None) => write!(f, ": not steering"),
                }
            }
            Event::RoutesRestored {
                installed,
                repointed,
                cause,
            } => write!(
                f,
                "routes-restored: {installed} installed, {repointed} re-pointed ({cause})"
            ),
            Event::MacLearned { host, mac, old } => match old {
                Some(old) => write!(f, "mac-learned {host}: {old} -> {mac}"),
                None => write!(f, "mac-learned {host}: {mac}"),
            },
            Event::Admin {
                request,
                result,
                moved,
            } => {
                let command = match request {
                    Request::SetOwner {
                        prefix,
                        host,
                        force,
                    } => format!(
                        "set-owner {prefix} {host}{}",
                        if *force { " --force" } else { "" }
                    ),
                    Request::ClearOwner { prefix } => format!("clear-owner {prefix}"),
                    Request::Drain { host, now } => {
                        format!("drain {host}{}", if *now { " --now" } else { "" })
                    }
                    Request::Undrain { host } => format!("undrain {host}"),
                    other => format!("{other:?}"),
                };
                write!(f, "admin {command}: {result}, {moved} moved")
            }
            Event::ReloadApplied {
                hosts,
                prefixes,
                restarted_checks,
                stale,
            } => {
                write!(
                    f,
                    "reload-applied: {hosts} hosts, {prefixes} prefixes, {restarted_checks} checks restarted"
                )?;
                for stale in stale {
                    write!(f, "; {stale}")?;
                }
                Ok(())
            }
            Event::ReloadRefused { why } => {
                // One line: a refused file's problems are one per line.
                write!(f, "reload-refused: {}", why.replace('\n', "; "))
            }
            Event::MoveEnded {
                prefix,
                owner,
                from,
                moving_ms,
            } => write!(
                f,
                "move-ended {prefix}: no flows left on {from} or elsewhere, steady on {owner} after {moving_ms} ms"
            ),
            Event::DrainProgress {
                host,
                remaining,
                left_ms,
            } => write!(
                f,
                "drain-progress {host}: {remaining} connections left, the rest moves in {left_ms} ms"
            ),
            Event::DrainFinished {
                host,
                outcome,
                remaining,
                drained_ms,
            } => write!(
                f,
                "drain-finished {host}: {outcome} ({remaining} moved) after {drained_ms} ms"
            ),
            Event::Shutdown { handover: true, .. } => write!(
                f,
                "shutdown: the fast path stays attached and pinned for the next controller"
            ),
            Event::Shutdown { removed_pins, .. } => {
                write!(
                    f,
                    "shutdown: {removed_pins} pins removed, the fast path is detached"
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(event: Event) -> EventRecord {
        EventRecord {
            seq: 7,
            at_unix_us: 1_764_000_000_123_456,
            event,
        }
    }

    #[test]
    fn events_are_tagged_records_and_read_back() {
        let changed = record(Event::OwnerChanged {
            prefix: "192.168.1.64/27".parse().expect("prefix"),
            old: Some("host2".into()),
            new: Some("host1".into()),
            reason: Reason::Failover,
            detection_ms: Some(31.25),
            switch_us: 12,
            route_via: Ipv4Addr::new(192, 168, 1, 2),
        });
        let text = serde_json::to_string(&changed).expect("serialize");
        assert_eq!(
            text,
            r#"{"seq":7,"at_unix_us":1764000000123456,"event":{"kind":"owner-changed","prefix":"192.168.1.64/27","old":"host2","new":"host1","reason":"failover","detection_ms":31.25,"switch_us":12,"route_via":"192.168.1.2"}}"#
        );
        assert_eq!(
            serde_json::from_str::<EventRecord>(&text).expect("parse"),
            changed
        );
        assert_eq!(
            changed.to_string(),
            "2025-11-24T16:00:00.123456Z #7 owner-changed 192.168.1.64/27: host2 -> host1 \
             (failover: previous holder down), detection 31.25 ms, switch 12 µs, route via 192.168.1.2"
        );
        let unknown_field = text.replace("\"switch_us\"", "\"switch_ns\"");
        assert!(serde_json::from_str::<EventRecord>(&unknown_field).is_err());
    }

    #[test]
    fn every_event_has_one_line() {
        let events = [
            Event::ConfigLoaded {
                source: ConfigSource::Routes {
                    iface: "eth1".into(),
                },
                hosts: 4,
                prefixes: 4,
            },
            Event::ReloadRefused {
                why: "a.toml:1: lan: bad\na.toml:2: metrics: bad".into(),
            },
            Event::Admin {
                request: Request::Drain {
                    host: "host2".into(),
                    now: false,
                },
                result: ChangeResult::Drained {
                    host: "host2".into(),
                },
                moved: 1,
            },
        ];
        for event in events {
            let line = record(event).to_string();
            assert!(!line.contains('\n'), "{line}");
        }
        let timing = |outcome, waited_us, late_us| ProbeTiming {
            outcome,
            at_unix_us: 1_764_000_000_000_000,
            waited_us,
            sent_lag_us: 3,
            step_lag_us: 0,
            late_us,
        };
        let down = record(Event::HealthChanged {
            host: "host2".into(),
            old: Health::Up,
            new: Health::Down,
            reason: "timeout after 5 ms".into(),
            detection_ms: 25.5,
            probes: vec![
                timing(ProbeOutcome::Silent, 5100, 100),
                timing(ProbeOutcome::Late, 31000, 26000),
                timing(ProbeOutcome::Silent, 5200, 200),
            ],
        });
        assert_eq!(
            down.event.to_string(),
            "health-changed host2: up -> down (timeout after 5 ms), detection 25.5 ms; probes: \
             silent after 5100 µs, late after 31000 µs, silent after 5200 µs"
        );
        let vip = record(Event::VipChanged {
            host: "host3".into(),
            prefix: "192.168.1.64/27".parse().expect("prefix"),
            vip: Ipv4Addr::new(192, 168, 1, 65),
            old: VipVerdict::Serving,
            new: VipVerdict::NotServing,
            reason: "VIP 192.168.1.65 not answered by host3: connection refused".into(),
        });
        assert_eq!(
            vip.event.to_string(),
            "vip-changed host3 for 192.168.1.64/27 (VIP 192.168.1.65): serving -> not serving \
             (VIP 192.168.1.65 not answered by host3: connection refused)"
        );
        let text = serde_json::to_string(&vip).expect("serialize");
        assert!(
            text.contains(r#""kind":"vip-changed","host":"host3","prefix":"192.168.1.64/27","vip":"192.168.1.65","old":"serving","new":"not-serving""#),
            "{text}"
        );
        assert_eq!(
            serde_json::from_str::<EventRecord>(&text).expect("parse"),
            vip
        );
        let item = StreamItem::Lagged { missed: 3 };
        assert_eq!(
            serde_json::to_string(&item).expect("serialize"),
            r#"{"lagged":{"missed":3}}"#
        );
    }
}
