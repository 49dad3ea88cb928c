//! The soak: minutes under forwarding load at the target health settings, with
//! nothing failing — or, in the long soak, one real server kill in the middle. It
//! counts what the controller's events and status say, never its log:
//!
//! - false failovers: prefixes that left a holder nobody broke (`owner-changed`
//!   with reason `failover`, `all-down` or `vip-not-answered` outside the kill);
//! - every host declared down that nobody broke, with the timings of the probes
//!   that decided it (from its `health-changed` event): what the host did, and that
//!   the controller was listening;
//! - the kill: detection (the controller's `detection_ms`) and the stream's outage,
//!   against the configured bound;
//! - the probes by outcome (`status`, before and after): how many were discarded as
//!   late, and the other local failures.

use std::{
    net::SocketAddrV4,
    time::{Duration, Instant},
};

use ha_tests::{
    bench::{machine::unix_ms_now, stats::Stat},
    lab::{Bins, Fault, HealthSpec, Lab, Node, OwnerChange, net, vip},
};
use ha_user::{
    model::{Health, ProbeOutcome, Reason},
    proto::{Event, events::ProbeTiming, reports::ProbeCounts},
};
use serde::Serialize;

use super::{
    BROKEN, LOAD_RATE, OWNER, Trial, build_lab, default_health, detection_bound_ms, settings,
    setup_lines, trial, write_json_extra,
};
use crate::{
    Args, check_interrupted,
    load::{self, Lane, LoadReport},
    report::{Figure, Over, Section},
};

/// The four load lanes: the LAN client to the VIPs of host1 and host2 (XDP_TX), the
/// WAN client to those of host3 and host4 (XDP_REDIRECT, answers forwarded by the
/// router's kernel).
fn lanes(lab: &Lab) -> Vec<Lane> {
    let port = lab.spec().udp_port;
    let to = |prefix: &str| SocketAddrV4::new(vip(net(prefix)), port);
    vec![
        Lane {
            node: Node::LanClient,
            target: to("192.168.1.32/27"),
        },
        Lane {
            node: Node::LanClient,
            target: to("192.168.1.64/27"),
        },
        Lane {
            node: Node::WanClient,
            target: to("192.168.1.96/27"),
        },
        Lane {
            node: Node::WanClient,
            target: to("192.168.1.128/27"),
        },
    ]
}

/// A host declared down that nobody broke.
#[derive(Clone, Debug, Serialize)]
pub struct FalseDown {
    pub host: String,
    /// The event, as `ha-user events` prints it.
    pub event: String,
    /// The probes of its streak, from the event.
    pub probes: Vec<ProbeTiming>,
    /// What the timings show.
    pub finding: String,
}

/// The kill in the middle of a long soak.
#[derive(Clone, Debug, Serialize)]
pub struct Kill {
    /// Seconds into the soak.
    pub at_s: f64,
    pub trial: Trial,
    pub bound_ms: u64,
}

/// What a soak saw.
#[derive(Clone, Debug, Serialize)]
pub struct Soak {
    pub settings: String,
    pub detection_bound_ms: u64,
    pub seconds: u64,
    pub load: LoadReport,
    /// The controller's `owner-changed` events during the soak, one line each (the
    /// kill's included).
    pub owner_changes: Vec<String>,
    /// Failovers nobody caused: changes away from a holder (reason `failover`,
    /// `all-down` or `vip-not-answered`) outside the kill.
    pub failovers: usize,
    /// Hosts declared down that nobody broke, with their probes.
    pub false_downs: Vec<FalseDown>,
    /// Its `health-changed` events to down during the soak (the kill's included).
    pub health_downs: Vec<String>,
    pub kill: Option<Kill>,
    /// Probes of the hosts' own addresses during the soak, all hosts together.
    pub probes: ProbeCounts,
    /// VIP probes during the soak, all hosts together.
    pub vip_probes: ProbeCounts,
    /// `/proc/loadavg` at the end of the soak (two cores).
    pub load_average_end: String,
}

impl Soak {
    pub fn false_failovers(&self) -> usize {
        self.failovers
    }

    /// The share of probes discarded as late, in percent (host checks).
    pub fn late_percent(&self) -> f64 {
        percent(self.probes.late, self.probes.total())
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// The probe counts of every host now, summed: (own, VIP).
fn probe_totals(lab: &Lab) -> anyhow::Result<(ProbeCounts, ProbeCounts)> {
    let status = lab.status()?;
    let mut own = ProbeCounts::default();
    let mut vips = ProbeCounts::default();
    for host in &status.hosts {
        add(&mut own, &host.probes, 1);
        add(&mut vips, &host.vip_probes, 1);
    }
    Ok((own, vips))
}

/// `total += sign × counts`, field by field (sign −1: the difference).
fn add(total: &mut ProbeCounts, counts: &ProbeCounts, sign: i64) {
    let ProbeCounts {
        answered,
        refused,
        silent,
        late,
        no_socket,
        interface_down,
        no_route,
    } = counts;
    let each = [
        (&mut total.answered, answered),
        (&mut total.refused, refused),
        (&mut total.silent, silent),
        (&mut total.late, late),
        (&mut total.no_socket, no_socket),
        (&mut total.interface_down, interface_down),
        (&mut total.no_route, no_route),
    ];
    for (sum, value) in each {
        *sum = sum.saturating_add_signed(sign * *value as i64);
    }
}

/// What the probes of a host's streak show about it.
fn finding(probes: &[ProbeTiming], h: &HealthSpec) -> String {
    let counted: Vec<&ProbeTiming> = probes
        .iter()
        .filter(|p| p.outcome.verdict() == Some(false))
        .collect();
    let discarded = probes
        .iter()
        .filter(|p| p.outcome.verdict().is_none())
        .count();
    let silent = counted
        .iter()
        .filter(|p| p.outcome == ProbeOutcome::Silent)
        .count();
    let most = |f: fn(&ProbeTiming) -> u64| counted.iter().map(|p| f(p)).max().unwrap_or(0);
    let least = |f: fn(&ProbeTiming) -> u64| counted.iter().map(|p| f(p)).min().unwrap_or(0);
    let ms = |us: u64| format!("{:.2}", us as f64 / 1e3);
    let mut text = if silent == counted.len() && !counted.is_empty() {
        format!(
            "the server did not answer in time: {} probes silent, each waited {}–{} ms \
             (timeout {} ms); the controller was listening: each timeout seen at most {} ms \
             after its deadline, each request sent at most {} ms after its start, no \
             connection noticed more than {} ms late",
            counted.len(),
            ms(least(|p| p.waited_us)),
            ms(most(|p| p.waited_us)),
            h.timeout_ms,
            ms(most(|p| p.late_us)),
            ms(most(|p| p.sent_lag_us)),
            ms(most(|p| p.step_lag_us)),
        )
    } else {
        let outcomes: Vec<String> = counted.iter().map(|p| p.outcome.to_string()).collect();
        format!(
            "the server failed {} probes ({})",
            counted.len(),
            outcomes.join(", ")
        )
    };
    if discarded > 0 {
        text.push_str(&format!("; {discarded} probes of the streak discarded"));
    }
    text
}

/// A soak of `seconds` under load; with `kill`, one trial of a killed web server
/// (with its stream, repair and failback) in the middle.
pub fn soak(lab: &mut Lab, seconds: u64, kill: bool) -> anyhow::Result<Soak> {
    let events_mark = lab.event_mark()?;
    let (own_before, vip_before) = probe_totals(lab)?;
    let lanes = lanes(lab);
    let run = load::start(lab, &lanes, LOAD_RATE)?;
    let started = Instant::now();
    let mut kill_done: Option<(Kill, usize, usize)> = None;
    let mut result = Ok(());
    while started.elapsed() < Duration::from_secs(seconds) {
        if let Err(err) = check_interrupted() {
            result = Err(err);
            break;
        }
        if kill && kill_done.is_none() && started.elapsed() >= Duration::from_secs(seconds / 2) {
            let at_s = started.elapsed().as_secs_f64();
            let before = lab.event_mark()?;
            match trial(lab, Fault::KillWeb) {
                Ok(trial) => {
                    let after = lab.event_mark()?;
                    let bound_ms = detection_bound_ms(&lab.spec().health);
                    eprintln!(
                        "ha-bench-lab: soak: {OWNER}'s web server killed at {at_s:.0} s: \
                         detection {:.1} ms (bound {bound_ms} ms), outage {:.1} ms",
                        trial.detection_ms, trial.outage_ms
                    );
                    kill_done = Some((
                        Kill {
                            at_s,
                            trial,
                            bound_ms,
                        },
                        before,
                        after,
                    ));
                }
                Err(err) => {
                    result = Err(err.context("the kill in the middle of the soak"));
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let load = run.stop(lab)?;
    result?;
    let (own_after, vip_after) = probe_totals(lab)?;
    let (mut probes, mut vip_probes) = (own_after, vip_after);
    add(&mut probes, &own_before, -1);
    add(&mut vip_probes, &vip_before, -1);

    let records = lab.events()?.records()?;
    // Events of the kill: the killed host's health, and the broken prefix's moves.
    let in_kill = |seq_index: usize| {
        kill_done
            .as_ref()
            .is_some_and(|(_, before, after)| (*before..*after).contains(&seq_index))
    };
    let changed: Vec<(usize, OwnerChange)> = records
        .iter()
        .enumerate()
        .skip(events_mark)
        .filter_map(|(i, r)| OwnerChange::of(r).map(|c| (i, c)))
        .collect();
    let failovers = changed
        .iter()
        .filter(|(i, c)| {
            matches!(
                c.reason,
                Reason::Failover | Reason::AllDown | Reason::VipNotAnswered
            ) && !(in_kill(*i) && c.prefix == net(BROKEN))
        })
        .count();
    let owner_changes = changed.iter().map(|(_, c)| c.to_string()).collect();
    let health = lab.spec().health.clone();
    let mut health_downs = Vec::new();
    let mut false_downs = Vec::new();
    for (i, record) in records.iter().enumerate().skip(events_mark) {
        let Event::HealthChanged {
            host,
            new: Health::Down,
            probes,
            ..
        } = &record.event
        else {
            continue;
        };
        health_downs.push(record.to_string());
        if in_kill(i) && host == OWNER {
            continue;
        }
        false_downs.push(FalseDown {
            host: host.clone(),
            event: record.to_string(),
            probes: probes.clone(),
            finding: finding(probes, &health),
        });
    }
    let soak = Soak {
        settings: settings(&health),
        detection_bound_ms: detection_bound_ms(&health),
        seconds,
        load,
        owner_changes,
        failovers,
        false_downs,
        health_downs,
        kill: kill_done.map(|(kill, ..)| kill),
        probes,
        vip_probes,
        load_average_end: ha_tests::bench::machine::load_average(),
    };
    eprintln!(
        "ha-bench-lab: soak {} s at {}: {} owner changes, {} false failovers, {} hosts \
         falsely down, {:.3} % of {} probes discarded as late; {}",
        seconds,
        soak.settings,
        soak.owner_changes.len(),
        soak.failovers,
        soak.false_downs.len(),
        soak.late_percent(),
        soak.probes.total(),
        soak.load.summary()
    );
    Ok(soak)
}

/// The set-up lines of a soak: what ran, the kill, the probes, every false down.
pub fn soak_section_lines(soak: &Soak, what: &str) -> Vec<String> {
    let ProbeCounts {
        answered,
        refused,
        silent,
        late,
        no_socket,
        interface_down,
        no_route,
    } = soak.probes;
    let mut lines = vec![format!(
        "{what}: {} s at {} under load: {}. Owner changes: {}; false failovers: {}; hosts \
         declared down: {} ({} nobody broke); load average at its end {}.",
        soak.seconds,
        soak.settings,
        soak.load.summary(),
        soak.owner_changes.len(),
        soak.failovers,
        soak.health_downs.len(),
        soak.false_downs.len(),
        soak.load_average_end
    )];
    lines.push(format!(
        "Probes of the hosts' own addresses during the soak (status, before and after): \
         {} in all — answered {answered}, refused {refused}, silent {silent}; discarded: \
         late {late} ({:.3} %), no socket {no_socket}, interface down {interface_down}, no \
         route {no_route}. VIP probes: {} (answered {}, refused {}, silent {}, late {}).",
        soak.probes.total(),
        soak.late_percent(),
        soak.vip_probes.total(),
        soak.vip_probes.answered,
        soak.vip_probes.refused,
        soak.vip_probes.silent,
        soak.vip_probes.late,
    ));
    if let Some(kill) = &soak.kill {
        lines.push(format!(
            "The kill: {OWNER}'s web server SIGKILLed {:.0} s into the soak, under the load: \
             detection {:.1} ms (bound {} ms: {}), switch {} µs, outage {:.1} ms at the \
             client ({} datagrams lost); repaired, failback, then the soak went on.",
            kill.at_s,
            kill.trial.detection_ms,
            kill.bound_ms,
            if kill.trial.detection_ms <= kill.bound_ms as f64 {
                "within"
            } else {
                "NOT within"
            },
            kill.trial.switch_us,
            kill.trial.outage_ms,
            kill.trial.lost
        ));
    }
    for down in &soak.false_downs {
        lines.push(format!(
            "  {} down, nobody broke it: {}",
            down.host, down.finding
        ));
        lines.push(format!("    `{}`", down.event));
    }
    for line in soak.owner_changes.iter().take(20) {
        lines.push(format!("  owner change: `{line}`"));
    }
    lines
}

/// The soak's figures: false failovers (target 0), probes discarded as late (target
/// ≤ 1 %), and the kill's detection (target: the configured bound).
pub fn soak_figures(soak: &Soak, name: &str) -> Vec<Figure> {
    let mut figures = vec![
        Figure::new(name, "", Over::Runs, &[soak.false_failovers() as f64])
            .target(Stat::Max, 0.0)
            .note(format!(
                "{} s soak at {}; load achieved: {}",
                soak.seconds,
                soak.settings,
                soak.load.summary()
            )),
        Figure::new(
            &format!("probes discarded as late in {} s under load", soak.seconds),
            "%",
            Over::Runs,
            &[soak.late_percent()],
        )
        .target(Stat::Max, 1.0)
        .note(format!(
            "{} of {} probes of the hosts' own addresses",
            soak.probes.late,
            soak.probes.total()
        )),
    ];
    if let Some(kill) = &soak.kill {
        figures.push(
            Figure::new(
                "the kill in the soak: detection",
                "ms",
                Over::Runs,
                &[kill.trial.detection_ms],
            )
            .target(Stat::Max, kill.bound_ms as f64),
        );
        figures.push(Figure::new(
            "the kill in the soak: outage at the client",
            "ms",
            Over::Runs,
            &[kill.trial.outage_ms],
        ));
    }
    figures
}

/// `--only soak`: the long soak at the target settings, with one real server kill in
/// its middle.
pub fn run_soak_family(args: &Args, bins: &Bins) -> anyhow::Result<Section> {
    let mut section = Section::new("3. Failover outage: false failovers, long soak");
    let mut lab = build_lab(bins, default_health())?;
    section.setup = setup_lines(&lab);
    let started = unix_ms_now();
    let soaked = soak(&mut lab, args.soak_seconds, true)?;
    section.setup.extend(soak_section_lines(
        &soaked,
        &format!("Soak started {}", ha_tests::bench::machine::utc(started)),
    ));
    section.figures.extend(soak_figures(
        &soaked,
        &format!(
            "false failovers in {} s under load, interval 10 / fall 3",
            args.soak_seconds
        ),
    ));
    write_json_extra(args, "soak", &serde_json::to_value(&soaked)?)?;
    Ok(section)
}
