//! Family 3, failover outage: trials of each fault with a sequence-numbered stream
//! through a VIP, a soak under forwarding load counting false failovers, and a grid
//! of faster health settings under load.

use std::{net::SocketAddrV4, time::Duration};

use anyhow::{Context as _, bail, ensure};
use ha_tests::{
    bench::stats::{Dist, Stat},
    lab::{Bins, Fault, HealthSpec, Lab, LabSpec, Node, PrefixSpec, XdpMode, net, vip},
};
use serde::Serialize;

pub mod clients;
pub mod soak;

use self::soak::{Soak, soak, soak_figures, soak_section_lines};
use crate::{
    Args, check_interrupted,
    report::{Figure, Over, Section, Table, number},
};

pub(crate) const LAB_PREFIX: &str = "ha-bl-f-";
/// The prefix the trials break, its owner and its first backup.
pub(crate) const BROKEN: &str = "192.168.1.64/27";
pub(crate) const OWNER: &str = "host2";
pub(crate) const BACKUP: &str = "host1";
/// The trial stream: one datagram every 0.2 ms.
const STREAM_RATE: u64 = 5000;
const STREAM_MS: u64 = 450;
/// When the fault hits, after the stream started.
const FAULT_AFTER: Duration = Duration::from_millis(120);
/// Datagrams per second per load lane (four lanes).
pub(crate) const LOAD_RATE: u64 = 25_000;
/// Failback hold-down in the trials: shorter than the default 2 s so that a trial
/// takes about a second; it does not enter the failover outage.
pub(crate) const FAILBACK_MS: u64 = 150;

/// The target: interval 10 ms, fall 3, with ha-user's default timeout of 5 ms.
pub(crate) fn default_health() -> HealthSpec {
    HealthSpec {
        interval_ms: 10,
        timeout_ms: 5,
        fall: 3,
        rise: 3,
        failback_delay_ms: FAILBACK_MS,
    }
}

/// Upper bound of the detection time of `h` (see ha-user's health module).
pub(crate) fn detection_bound_ms(h: &HealthSpec) -> u64 {
    h.interval_ms + u64::from(h.fall - 1) * h.interval_ms.max(h.timeout_ms) + h.timeout_ms
}

pub(crate) fn settings(h: &HealthSpec) -> String {
    format!(
        "interval {} ms, timeout {} ms, fall {}",
        h.interval_ms, h.timeout_ms, h.fall
    )
}

/// One failover trial.
#[derive(Clone, Debug, Serialize)]
pub struct Trial {
    pub fault: String,
    /// Last answer by the owner → first by the backup, at the client.
    pub outage_ms: f64,
    pub lost: u64,
    /// The controller's: first failing probe → decision.
    pub detection_ms: f64,
    /// The controller's: decision → map written.
    pub switch_us: u64,
    /// Changes of answering host from owner to backup within the stream (1 unless
    /// answers interleaved).
    pub switches: usize,
}

pub(crate) fn build_lab(bins: &Bins, health: HealthSpec) -> anyhow::Result<Lab> {
    let mut spec = LabSpec::new(LAB_PREFIX, XdpMode::Native, bins.clone());
    spec.health = health;
    spec.prefixes = PrefixSpec::classic();
    Lab::build(spec).context("building the lab")
}

pub(crate) fn setup_lines(lab: &Lab) -> Vec<String> {
    let mut lines = vec![format!(
        "Lab: the classic network in namespaces `{LAB_PREFIX}*` (router with ha_steer in \
         native XDP mode on veth, four web servers, LAN and WAN clients), release builds. \
         HTTP health checks; the broken prefix is {BROKEN} (VIP {}), owned by {OWNER}, first \
         backup {BACKUP}.",
        vip(net(BROKEN))
    )];
    for note in lab.notes() {
        lines.push(format!("Lab note: {note}"));
    }
    lines
}

/// Runs one trial of `fault` against the owner of [`BROKEN`] and repairs it.
pub(crate) fn trial(lab: &mut Lab, fault: Fault) -> anyhow::Result<Trial> {
    let broken = net(BROKEN);
    let target = SocketAddrV4::new(vip(broken), lab.spec().udp_port);
    let mark = lab.owner_changes()?.len();
    let stream = lab.stream(
        Node::LanClient,
        target,
        STREAM_RATE,
        Duration::from_millis(STREAM_MS),
    )?;
    std::thread::sleep(FAULT_AFTER);
    lab.inject(OWNER, fault)?;
    let change = lab.wait_for_owner(broken, Some(BACKUP), mark, Duration::from_secs(3));
    let report = stream.wait();
    // Repair whatever happened, so the next trial starts clean.
    lab.repair(OWNER, fault)?;
    lab.wait_for_owner(broken, Some(OWNER), mark, Duration::from_secs(5))?;
    lab.wait_steady(Duration::from_secs(5))?;
    let (change, report) = (change?, report?);
    ensure!(
        change.old.as_deref() == Some(OWNER),
        "unexpected change: {change}"
    );
    let moves: Vec<_> = report
        .switches
        .iter()
        .filter(|s| s.from == OWNER && s.to == BACKUP)
        .collect();
    let Some(outage) = moves.iter().max_by(|a, b| a.gap_ms.total_cmp(&b.gap_ms)) else {
        let backup_vip = vip(net("192.168.1.32/27"));
        bail!(
            "{fault}: the stream never moved from {OWNER} to {BACKUP}: {}; the controller \
             reported `{}`; {BACKUP}'s own VIP {backup_vip} answers: {:?}",
            report.summary(),
            change,
            lab.udp_who(Node::LanClient, backup_vip)
                .map_err(|e| format!("{e:#}"))
        );
    };
    Ok(Trial {
        fault: fault.to_string(),
        outage_ms: outage.gap_ms,
        lost: outage.lost,
        detection_ms: change.detection_ms.unwrap_or(f64::NAN),
        switch_us: change.switch_us,
        switches: moves.len(),
    })
}

/// `per_fault` trials of every fault, interleaved so that drifting machine load
/// hits all faults alike. Failed trials are counted and described, not fatal,
/// unless most fail.
fn trials(lab: &mut Lab, per_fault: usize) -> anyhow::Result<(Vec<Trial>, Vec<String>)> {
    let mut done = Vec::new();
    let mut failures = Vec::new();
    for round in 0..per_fault {
        for fault in Fault::ALL {
            check_interrupted()?;
            match trial(lab, fault) {
                Ok(trial) => done.push(trial),
                Err(err) => {
                    eprintln!("ha-bench-lab: failover trial {round} {fault}: {err:#}");
                    failures.push(format!("{fault} (round {round}): {err:#}"));
                    ensure!(
                        failures.len() <= per_fault,
                        "too many failed trials; the last: {err:#}"
                    );
                }
            }
        }
        eprintln!(
            "ha-bench-lab: failover round {}/{per_fault} done",
            round + 1
        );
    }
    Ok((done, failures))
}

/// Figures of `trials` for each fault and for all of them; the outage target
/// (`p99 ≤ outage_limit`) on every outage figure.
fn trial_figures(trials: &[Trial], outage_limit: f64, label: &str) -> Vec<Figure> {
    let mut figures = Vec::new();
    let mut groups: Vec<(String, Vec<&Trial>)> = Fault::ALL
        .iter()
        .map(|f| {
            let name = f.to_string();
            let group = trials.iter().filter(|t| t.fault == name).collect();
            (name, group)
        })
        .collect();
    groups.push(("all faults".to_owned(), trials.iter().collect()));
    for (fault, group) in groups {
        let values = |f: &dyn Fn(&Trial) -> f64| group.iter().map(|t| f(t)).collect::<Vec<_>>();
        let outage = values(&|t| t.outage_ms);
        let detection = values(&|t| t.detection_ms);
        let switch = values(&|t| t.switch_us as f64);
        let rest: Vec<f64> = group
            .iter()
            .map(|t| t.outage_ms - t.detection_ms - t.switch_us as f64 / 1e3)
            .collect();
        let lost = values(&|t| t.lost as f64);
        figures.push(
            Figure::new(
                &format!("{label}outage, {fault}"),
                "ms",
                Over::Trials,
                &outage,
            )
            .target(Stat::P99, outage_limit),
        );
        if fault == "all faults" {
            continue;
        }
        figures.push(Figure::new(
            &format!("{label}detection, {fault}"),
            "ms",
            Over::Trials,
            &detection,
        ));
        figures.push(Figure::new(
            &format!("{label}switch (decision → map), {fault}"),
            "µs",
            Over::Trials,
            &switch,
        ));
        figures.push(Figure::new(
            &format!("{label}rest of the outage, {fault}"),
            "ms",
            Over::Trials,
            &rest,
        ));
        figures.push(Figure::new(
            &format!("{label}datagrams lost, {fault}"),
            "",
            Over::Trials,
            &lost,
        ));
    }
    figures
}

/// Restarts the controller with other health settings and waits until it steers
/// every prefix to its owner.
pub(crate) fn restart_with(lab: &mut Lab, health: HealthSpec) -> anyhow::Result<()> {
    lab.stop_controller()?;
    let prefixes = lab.spec().prefixes.clone();
    lab.reconfigure(health, prefixes)?;
    lab.start_controller(&[])?;
    lab.wait_steady(Duration::from_secs(10))
}

/// Family 3 as the default run holds it. What was measured before an error stays in
/// the section; the error is its `error`.
pub fn run(args: &Args, bins: &Bins) -> anyhow::Result<Section> {
    let mut section = Section::new("3. Failover outage");
    let mut raw = serde_json::json!({});
    if let Err(err) = run_into(args, bins, &mut section, &mut raw) {
        eprintln!("ha-bench-lab: failover: {err:#}");
        section.error = Some(format!("{err:#}"));
    }
    write_json_extra(args, "failover", &raw)?;
    Ok(section)
}

fn run_into(
    args: &Args,
    bins: &Bins,
    section: &mut Section,
    raw: &mut serde_json::Value,
) -> anyhow::Result<()> {
    let (per_fault, client_rounds, soak_s, grid_s, grid_trials) = if args.quick {
        (8, 2, 10, None, 0)
    } else {
        (30, 5, 120, Some(12), 5)
    };
    let mut lab = build_lab(bins, default_health())?;
    section.setup = setup_lines(&lab);
    let health = default_health();
    section.setup.push(format!(
        "Trials: {per_fault} per fault (web server SIGKILLed, its link down, blackholed by \
         a `blackhole` qdisc both ways), interleaved; each with its own `ha-stream` from the \
         LAN client at {STREAM_RATE} datagrams/s (0.2 ms resolution), the fault {} ms after \
         the stream starts, then repair and failback ({FAILBACK_MS} ms hold-down) before \
         the next. Health: {} (detection bound {} ms), rise 3.",
        FAULT_AFTER.as_millis(),
        settings(&health),
        detection_bound_ms(&health)
    ));
    section.setup.push(
        "Outage = last answer by the old owner → first answer by the new one, at the \
         client (ha-stream's switch gap). Detection = the controller's detection_ms (first \
         failing probe → Down decision); switch = its switch_us (decision → map entry \
         written); rest = outage − detection − switch (fault → first failing probe, and \
         delivery)."
            .to_owned(),
    );
    let (done, failures) = trials(&mut lab, per_fault)?;
    raw["trials"] = serde_json::to_value(&done)?;
    section.figures.extend(trial_figures(&done, 40.0, ""));
    analyse(section, &done);
    if !failures.is_empty() {
        section.notes.push(format!(
            "{} trials failed and are not in the figures: {}",
            failures.len(),
            failures.join("; ")
        ));
    }
    check_interrupted()?;

    section.setup.push(clients::setup_line(client_rounds));
    let fates = clients::run(&mut lab, client_rounds)?;
    raw["clients"] = serde_json::to_value(&fates)?;
    let (table, figures) = clients::report(&fates);
    section.tables.push(table);
    section.figures.extend(figures);
    check_interrupted()?;

    let soaked = soak(&mut lab, soak_s, false)?;
    section.setup.extend(soak_section_lines(
        &soaked,
        "False-failover soak (default run; the 10-minute soak is `--only soak`), no fault \
         injected",
    ));
    section.figures.extend(soak_figures(
        &soaked,
        &format!("false failovers in {soak_s} s under load, interval 10 / fall 3"),
    ));

    raw["soak"] = serde_json::to_value(&soaked)?;
    if let Some(grid_s) = grid_s {
        let (grid_table, winner, soaks) = grid(&mut lab, grid_s)?;
        section.tables.push(grid_table);
        raw["grid"] = serde_json::to_value(&soaks)?;
        match winner {
            Some(best) => {
                // A fresh lab: the same conditions as the trials above, nothing carried
                // over from the soaks.
                drop(lab);
                let mut lab = build_lab(bins, best.clone())?;
                let (fast, fast_failures) = trials(&mut lab, grid_trials)?;
                section.setup.push(format!(
                    "Lowest settings without false failovers in the grid: {} (detection \
                     bound {} ms); {grid_trials} trials per fault at those settings, no load.",
                    settings(&best),
                    detection_bound_ms(&best)
                ));
                let label = format!("[{}/{}/{}] ", best.interval_ms, best.timeout_ms, best.fall);
                let figures = trial_figures(&fast, 25.0, &label);
                // The aim is for every fault together; keep the summary figures.
                section.figures.extend(
                    figures
                        .into_iter()
                        .filter(|f| f.name.contains("outage") && !f.name.contains("rest")),
                );
                if !fast_failures.is_empty() {
                    section.notes.push(format!(
                        "{} trials at the fastest settings failed: {}",
                        fast_failures.len(),
                        fast_failures.join("; ")
                    ));
                }
                raw["fast_trials"] = serde_json::to_value(&fast)?;
            }
            None => section
                .notes
                .push("Every setting of the grid had false failovers under load.".to_owned()),
        }
    } else {
        section
            .setup
            .push("`--quick`: no grid of faster settings (the full run holds it).".to_owned());
    }
    Ok(())
}

/// The grid: every setting under load for `seconds`, fastest first.
fn grid(lab: &mut Lab, seconds: u64) -> anyhow::Result<(Table, Option<HealthSpec>, Vec<Soak>)> {
    let mut grid = Vec::new();
    for interval_ms in [5, 10] {
        for fall in [2, 3] {
            for timeout_ms in [5, 10] {
                grid.push(HealthSpec {
                    interval_ms,
                    timeout_ms,
                    fall,
                    rise: 3,
                    failback_delay_ms: FAILBACK_MS,
                });
            }
        }
    }
    grid.sort_by_key(|h| (detection_bound_ms(h), h.interval_ms));
    let mut rows = Vec::new();
    let mut soaks = Vec::new();
    let mut winner = None;
    for health in grid {
        check_interrupted()?;
        restart_with(lab, health.clone())?;
        let soaked = soak(lab, seconds, false)?;
        if winner.is_none() && soaked.false_failovers() == 0 {
            winner = Some(health.clone());
        }
        rows.push(vec![
            health.interval_ms.to_string(),
            health.timeout_ms.to_string(),
            health.fall.to_string(),
            detection_bound_ms(&health).to_string(),
            soaked.false_failovers().to_string(),
            soaked.false_downs.len().to_string(),
            format!(
                "{:.0}",
                soaked.load.steered_pps + soaked.load.kernel_forwarded_pps
            ),
        ]);
        soaks.push(soaked);
    }
    let table = Table {
        title: format!(
            "Grid under load ({seconds} s each, fastest first; the first row with 0 false \
             failovers is the lowest setting):"
        ),
        header: [
            "interval ms",
            "timeout ms",
            "fall",
            "detection bound ms",
            "false failovers",
            "hosts down",
            "router pps",
        ]
        .map(str::to_owned)
        .to_vec(),
        rows,
    };
    Ok((table, winner, soaks))
}

/// Notes on the outage figures: whether the target was met, and where the time goes.
fn analyse(section: &mut Section, trials: &[Trial]) {
    let health = default_health();
    let of = |fault: Option<Fault>, f: fn(&Trial) -> f64| -> Option<Dist> {
        let values: Vec<f64> = trials
            .iter()
            .filter(|t| fault.is_none_or(|fault| t.fault == fault.to_string()))
            .map(f)
            .collect();
        Dist::of(&values)
    };
    let (Some(outage), Some(killed), Some(silent)) = (
        of(None, |t| t.outage_ms),
        of(Some(Fault::KillWeb), |t| t.detection_ms),
        of(Some(Fault::Blackhole), |t| t.detection_ms),
    ) else {
        return;
    };
    let rest = of(None, |t| {
        t.outage_ms - t.detection_ms - t.switch_us as f64 / 1e3
    });
    let fall = f64::from(health.fall);
    section.notes.push(format!(
        "Outage over all faults at interval {} / timeout {} / fall {}: p50 {} ms, p99 {} ms, \
         max {} ms (target p99 ≤ 40 ms: {}). Detection, from the first failing probe: a \
         refused connection (web server killed) fails at once, so {} probes span {} \
         intervals: p50 {} ms (nominal {} ms); a silent host (link down, blackhole) adds the \
         last probe's timeout: p50 {} ms (nominal {} ms: {} × max(interval, timeout) + \
         timeout). Before that, the fault waits up to one interval for the next probe \
         (the rest: p50 {} ms, max {} ms); the map switch is ~0.1-0.3 ms.",
        health.interval_ms,
        health.timeout_ms,
        health.fall,
        number(outage.p50),
        number(outage.p99),
        number(outage.max),
        if outage.p99 <= 40.0 { "met" } else { "NOT met" },
        health.fall,
        health.fall - 1,
        number(killed.p50),
        (u64::from(health.fall) - 1) * health.interval_ms,
        number(silent.p50),
        detection_bound_ms(&health) - health.interval_ms,
        health.fall - 1,
        rest.as_ref().map_or("–".to_owned(), |d| number(d.p50)),
        rest.as_ref().map_or("–".to_owned(), |d| number(d.max)),
    ));
    if outage.p99 > 40.0 {
        section.notes.push(format!(
            "Why the silent faults miss 40 ms: the bound interval + (fall − 1) × \
             max(interval, timeout) + timeout = {} ms assumes each timed-out probe takes \
             exactly its timeout. A probe is `tokio::time::timeout`, and tokio's timer wheel \
             has 1 ms granularity and fires late, so a timed-out probe ends ~{} ms after it \
             started; when that is after its next tick, `MissedTickBehavior::Delay` restarts \
             the schedule from the late tick and the overrun adds up over the {} probes. \
             Worst case ≈ interval (waiting for the first failing probe) + {} × {} ms + \
             delivery. A timeout below the interval keeps every probe inside its tick.",
            detection_bound_ms(&health),
            number(silent.p50 / fall),
            health.fall,
            health.fall,
            number(silent.p50 / fall),
        ));
    }
}

/// Writes the raw data of a family next to the reports (`<family>-raw.json`).
pub fn write_json_extra(
    args: &Args,
    family: &str,
    value: &serde_json::Value,
) -> anyhow::Result<()> {
    ha_tests::bench::report::write_json(&args.out.join(format!("lab-{family}-raw.json")), value)
}
