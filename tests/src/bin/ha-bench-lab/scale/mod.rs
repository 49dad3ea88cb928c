//! Family 4 at scale: a router namespace whose LAN holds 1,024 web-server addresses
//! (all on one responder namespace, with static neighbours on the router), a
//! configuration of 1,024 hosts and 65,536 prefixes; start-up, one host failing,
//! and the controller's memory and CPU while it health-checks 64 hosts every 10 ms.
//!
//! ```text
//!   ha-bl-s-router eth1 10.64.0.1/20 ──veth── eth0 ha-bl-s-hosts
//!                                             10.64.0.2/20 + 10.64.1.0 … 10.64.4.255 (/32)
//!                                             lo: local 10.128.0.0/10 (every VIP)
//!                                             ha-webd on :80 answers for every address
//! ```

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use ha_tests::{
    bench::stats::{Dist, Stat},
    lab::{Bins, OwnerChange, ns},
};
use ha_user::{
    model::Health,
    proto::{Event, EventRecord},
};
use serde::Serialize;

use crate::{
    Args, check_interrupted,
    failover::write_json_extra,
    profile::{perf_record, profile, start_perf},
    report::{Figure, Over, Section, number},
};

mod lab;

use self::lab::{
    Checks, HOSTS, NS_HOSTS, NS_ROUTER, Scale, cpu_ns, host_address, host_name, map_entries,
    memory_mib, render_config, route_count,
};

/// Whether `event` says host `host` (any host: `None`) is now `health`.
fn health_is(event: &Event, host: Option<&str>, health: Health) -> bool {
    matches!(event, Event::HealthChanged { host: h, new, .. }
        if *new == health && host.is_none_or(|host| host == h))
}

/// When `record` happened, Unix ms.
fn unix_ms(record: &EventRecord) -> f64 {
    record.at_unix_us as f64 / 1e3
}

/// What the scale runs measured.
#[derive(Debug, Default, Serialize)]
struct Measured {
    prefixes: usize,
    startup_ms: Vec<f64>,
    startup_steps: Vec<BTreeMap<String, f64>>,
    routes_loaded: Vec<usize>,
    map_loaded: Vec<usize>,
    rss_after_start_mib: Vec<f64>,
    hwm_after_start_mib: Vec<f64>,
    fail_map_first_us: Vec<f64>,
    fail_map_all_ms: Vec<f64>,
    fail_routes_ms: Vec<f64>,
    fail_detection_ms: Vec<f64>,
    fail_profile: Option<String>,
    rss_after_failures_mib: f64,
    /// CPU of the controller at full scale with nothing changing (its host checks and
    /// VIP checks), per sub-window, % of one core.
    steady_cpu_percent: Vec<f64>,
    /// `ha-user check-config` time by number of prefixes (1,024 hosts).
    check_config_ms: Vec<(usize, f64)>,
    check_config_profile: Option<String>,
    health64: Vec<Health64>,
    notes: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Health64 {
    kind: &'static str,
    window_s: f64,
    /// CPU per sub-window, % of one core.
    cpu_percent: Vec<f64>,
    rss_mib: f64,
    hwm_mib: f64,
    /// Hosts declared down while nothing failed (false downs).
    downs: usize,
    profile: Option<String>,
}

/// A start-up slower than this is not repeated: the budget of the whole run.
const REPEAT_STARTUP_BELOW_MS: f64 = 10_000.0;

pub fn run(args: &Args, bins: &Bins, section: &mut Section) -> anyhow::Result<()> {
    let (starts, fails) = if args.quick { (1, 1) } else { (3, 3) };
    let prefixes = args.scale_prefixes;
    let mut scale = Scale::build(bins)?;
    let mut measured = Measured {
        prefixes,
        ..Measured::default()
    };
    // ICMP: the responder's kernel answers for all 1,024 addresses. TCP to one
    // listener was tried first: 1,024 connections at once overflow its accept queue
    // (SYNs dropped, retransmitted after 1 s) and hosts fail their first checks.
    let scale_health = Checks {
        kind: "icmp",
        interval_ms: 500,
        timeout_ms: 100,
        fall: 2,
    };
    let config = scale.write_config(
        "scale.toml",
        &render_config(&scale.dir, &scale.pin_dir, HOSTS, prefixes, &scale_health),
    )?;
    section.setup.push(format!(
        "Scale: namespaces `{NS_ROUTER}` (controller, native XDP on veth `eth1`) and \
         `{NS_HOSTS}` (one responder holding all {HOSTS} host addresses 10.64.1.0-10.64.4.255 \
         on its `eth0`, `ha-webd` on port 80 answering for all); static neighbours \
         (`nud permanent`) on the router. Configuration: {HOSTS} hosts, {prefixes} /26 \
         prefixes in 10.128.0.0/10, prefix j owned by host j mod {HOSTS} ({} each) with the \
         next host as its one backup; ICMP checks every 500 ms, timeout 100 ms, fall 2 \
         ({HOSTS} checks every 10 ms would be 100k probes/s on 2 cores; TCP checks of \
         {HOSTS} hosts against one listener overflow its accept queue). Config file \
         {:.1} MB.",
        prefixes / HOSTS,
        std::fs::metadata(&config)?.len() as f64 / 1e6
    ));
    if !args.quick {
        config_scaling(&scale, bins, args, &scale_health, &mut measured)?;
    }
    for run in 0..starts {
        check_interrupted()?;
        let spawned = scale.start(&bins.ha_user, &config)?;
        let steps = startup_steps(&scale.records()?, spawned);
        let total = steps.get("serving").copied().context("no serving event")?;
        let routes = route_count(&[])?;
        let (entries, _) = map_entries(&scale.pin_dir)?;
        let pid = scale.controller()?.pid();
        let (rss, hwm) = memory_mib(pid)?;
        eprintln!(
            "ha-bench-lab: scale start {}: {total:.0} ms to serving; {routes} routes, {entries} \
             map entries; RSS {rss:.1} MiB (peak {hwm:.1}); steps {steps:?}",
            run + 1
        );
        measured.startup_ms.push(total);
        measured.startup_steps.push(steps);
        measured.routes_loaded.push(routes);
        measured.map_loaded.push(entries);
        measured.rss_after_start_mib.push(rss);
        measured.hwm_after_start_mib.push(hwm);
        if total > REPEAT_STARTUP_BELOW_MS && run + 1 < starts {
            measured.notes.push(format!(
                "Start-up took {:.0} s: not repeated (the run's time budget); {} of {starts} \
                 cold starts measured.",
                total / 1e3,
                run + 1
            ));
            break;
        }
    }
    section.setup.push(format!(
        "Start-up: {} cold start(s) (no routes of ours, no pins): from spawning `ha-user \
         run` to its `serving` event (its timestamp); then the kernel's proto-165 routes and \
         the map's entries are counted.",
        measured.startup_ms.len()
    ));
    // Every host must be up before one fails (rise 1: one probe).
    let failures = scale
        .wait_events(0, HOSTS, Duration::from_secs(30), |e| {
            health_is(e, None, Health::Up)
        })
        .and_then(|_| {
            for k in 0..fails {
                check_interrupted()?;
                fail_one(&mut scale, 2 * k, prefixes, &mut measured)?;
            }
            let slow = measured.fail_map_all_ms.iter().any(|&ms| ms > 5.0);
            if slow && !args.quick {
                let pid = scale.controller()?.pid();
                let perf = start_perf(pid, "host-down", 2)?;
                std::thread::sleep(Duration::from_millis(500));
                let mut scratch = Measured::default();
                fail_one(&mut scale, 2 * fails, prefixes, &mut scratch)?;
                measured.fail_profile = Some(perf.finish(&args.out)?);
            }
            Ok(())
        });
    if let Err(err) = failures {
        // The first line: the rest quotes the log, which is saved whole.
        let err = format!("{err:#}");
        let err = err.lines().next().unwrap_or_default().trim_end_matches(':');
        let path = args.out.join("lab-scale-controller.log");
        std::fs::write(&path, scale.log())
            .with_context(|| format!("writing {}", path.display()))?;
        let records = scale.records()?;
        let count = |health| {
            records
                .iter()
                .filter(|r| health_is(&r.event, None, health))
                .count()
        };
        let changes: Vec<OwnerChange> = records.iter().filter_map(OwnerChange::of).collect();
        let slowest = changes.iter().map(|c| c.switch_us).max().unwrap_or(0);
        measured.notes.push(format!(
            "The host-failure runs did not happen: {err}. By then the controller had \
             reported {} hosts up and {} down, {} owner changes, the slowest with \
             switch_us {} (decision → map written); its log is {}.",
            count(Health::Up),
            count(Health::Down),
            changes.len(),
            slowest,
            path.display()
        ));
        eprintln!("ha-bench-lab: scale host failures: {err}");
    }
    let pid = scale.controller()?.pid();
    measured.steady_cpu_percent = cpu_windows(pid, if args.quick { 2 } else { 5 }, 2.0)?;
    eprintln!(
        "ha-bench-lab: scale, nothing changing: CPU {:?} % of a core",
        measured.steady_cpu_percent
    );
    let (rss, hwm) = memory_mib(pid)?;
    measured.rss_after_failures_mib = rss;
    measured.hwm_after_start_mib.push(hwm);
    scale.stop()?;

    // 64 hosts every 10 ms.
    let kinds: &[&'static str] = if args.quick {
        &["http"]
    } else {
        &["http", "tcp", "icmp"]
    };
    for kind in kinds {
        check_interrupted()?;
        let h = Checks {
            kind,
            interval_ms: 10,
            timeout_ms: 10,
            fall: 3,
        };
        let config = scale.write_config(
            &format!("health64-{kind}.toml"),
            &render_config(&scale.dir, &scale.pin_dir, 64, 64, &h),
        )?;
        measured
            .health64
            .push(health64(&mut scale, bins, &config, kind, args)?);
    }
    scale.stop()?;
    figures(section, &measured, fails);
    write_json_extra(args, "scale", &serde_json::to_value(&measured)?)?;
    Ok(())
}

/// How long `ha-user check-config` (parsing and validating, nothing else) takes for
/// growing numbers of prefixes, and a profile of the largest.
fn config_scaling(
    scale: &Scale,
    bins: &Bins,
    args: &Args,
    health: &Checks,
    measured: &mut Measured,
) -> anyhow::Result<()> {
    let ha_user = bins.ha_user.to_string_lossy().into_owned();
    let mut largest = None;
    for prefixes in [2048, 4096, 8192] {
        let path = scale.write_config(
            &format!("check-{prefixes}.toml"),
            &render_config(&scale.dir, &scale.pin_dir, HOSTS, prefixes, health),
        )?;
        let started = Instant::now();
        let output = std::process::Command::new(&ha_user)
            .arg("check-config")
            .arg(&path)
            .output()
            .context("running ha-user check-config")?;
        ensure!(
            output.status.success(),
            "check-config failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let ms = started.elapsed().as_secs_f64() * 1e3;
        eprintln!("ha-bench-lab: check-config {prefixes} prefixes: {ms:.0} ms");
        measured.check_config_ms.push((prefixes, ms));
        largest = Some(path);
    }
    if let Some(path) = largest {
        let path = path.to_string_lossy().into_owned();
        let perf = perf_record("check-config", &["--", &ha_user, "check-config", &path])?;
        measured.check_config_profile = Some(perf.finish(&args.out)?);
    }
    Ok(())
}

/// Start-up milestones from the controller's events, ms after `spawned`.
fn startup_steps(records: &[EventRecord], spawned: f64) -> BTreeMap<String, f64> {
    let mut steps = BTreeMap::new();
    for record in records {
        let step = match record.event {
            Event::ConfigLoaded { .. } => "config-loaded",
            Event::RoutesTakenOver { .. } => "routes-taken-over",
            Event::ProgramLoaded { .. } => "program-loaded",
            Event::MapsWritten { .. } => "maps-written",
            Event::XdpAttached { .. } => "xdp-attached",
            Event::Serving { .. } => "serving",
            _ => continue,
        };
        steps
            .entry(step.to_owned())
            .or_insert(unix_ms(record) - spawned);
    }
    steps
}

/// Makes host `i` unreachable (its address removed from the responder: echo
/// requests go unanswered) and measures its prefixes moving to host `i + 1`; restores it after.
fn fail_one(
    scale: &mut Scale,
    i: usize,
    prefixes: usize,
    measured: &mut Measured,
) -> anyhow::Result<()> {
    let (name, backup) = (host_name(i), host_name(i + 1));
    let address = format!("{}/32", host_address(i));
    let mark = scale.records()?.len();
    ns::check(&mut ns::ip(
        NS_HOSTS,
        &["addr", "del", &address, "dev", "eth0"],
    ))?;
    let expected = prefixes / HOSTS;
    let moved = scale.wait_events(
        mark,
        expected,
        Duration::from_secs(10),
        |e| matches!(e, Event::OwnerChanged { old: Some(old), .. } if *old == name),
    );
    ns::check(&mut ns::ip(
        NS_HOSTS,
        &["addr", "add", &address, "dev", "eth0"],
    ))?;
    let moved = moved?;
    let records = scale.records()?;
    let down = records
        .iter()
        .skip(mark)
        .find(|r| health_is(&r.event, Some(&name), Health::Down))
        .context("no health-changed event for the failed host")?;
    let down_at = unix_ms(down);
    let changes: Vec<OwnerChange> = moved.iter().filter_map(OwnerChange::of).collect();
    ensure!(
        changes.len() == expected && changes.iter().all(|c| c.new.as_deref() == Some(&backup)),
        "expected {expected} changes to {backup}, got {changes:?}"
    );
    let last_at = moved.last().map(unix_ms).context("no owner change")?;
    let first_us = changes.iter().map(|c| c.switch_us).min().unwrap_or(0) as f64;
    let all_us = changes.iter().map(|c| c.switch_us).max().unwrap_or(0) as f64;
    let detection = changes[0].detection_ms.unwrap_or(f64::NAN);
    // Check: the backup's routes and map entries (its own 64 and the 64 taken over).
    let via = host_address(i + 1).to_string();
    let routes = route_count(&["via", &via])?;
    let (_, by_host) = map_entries(&scale.pin_dir)?;
    let in_map = by_host.get(&((i + 1) as u32)).copied().unwrap_or(0);
    ensure!(
        routes == 2 * expected && in_map == 2 * expected,
        "after {name} failed: {routes} routes and {in_map} map entries via {backup}, expected {}",
        2 * expected
    );
    eprintln!(
        "ha-bench-lab: {name} down: {expected} prefixes; map {first_us:.0} µs first, {:.2} ms \
         all; routes + events {:.2} ms after the health event; detection {detection:.0} ms",
        all_us / 1e3,
        last_at - down_at
    );
    measured.fail_map_first_us.push(first_us);
    measured.fail_map_all_ms.push(all_us / 1e3);
    measured.fail_routes_ms.push(last_at - down_at);
    measured.fail_detection_ms.push(detection);
    Ok(())
}

/// `pid`'s CPU over `windows` windows of `each` seconds, % of one core.
fn cpu_windows(pid: u32, windows: usize, each: f64) -> anyhow::Result<Vec<f64>> {
    let mut cpu_percent = Vec::new();
    for _ in 0..windows {
        check_interrupted()?;
        let (t0, c0) = (Instant::now(), cpu_ns(pid)?);
        std::thread::sleep(Duration::from_secs_f64(each));
        let (t1, c1) = (Instant::now(), cpu_ns(pid)?);
        cpu_percent.push(c1.saturating_sub(c0) as f64 / (t1 - t0).as_nanos() as f64 * 100.0);
    }
    Ok(cpu_percent)
}

/// The controller health-checking 64 hosts every 10 ms: CPU over sub-windows, RSS.
fn health64(
    scale: &mut Scale,
    bins: &Bins,
    config: &Path,
    kind: &'static str,
    args: &Args,
) -> anyhow::Result<Health64> {
    scale.start(&bins.ha_user, config)?;
    scale.wait_events(0, 64, Duration::from_secs(10), |e| {
        health_is(e, None, Health::Up)
    })?;
    std::thread::sleep(Duration::from_secs(1));
    let pid = scale.controller()?.pid();
    let (windows, each) = if args.quick { (3, 1.5) } else { (5, 2.0) };
    let cpu_percent = cpu_windows(pid, windows, each)?;
    let (rss_mib, hwm_mib) = memory_mib(pid)?;
    let median = Dist::of(&cpu_percent).map_or(0.0, |d| d.p50);
    let downs = scale
        .records()?
        .iter()
        .filter(|r| health_is(&r.event, None, Health::Down))
        .count();
    eprintln!(
        "ha-bench-lab: 64 hosts, {kind} every 10 ms: CPU {cpu_percent:?} % of a core; RSS \
         {rss_mib:.1} MiB (peak {hwm_mib:.1}); {downs} hosts went down meanwhile"
    );
    let profile = if median > 5.0 && !args.quick {
        Some(profile(pid, &args.out, &format!("health64-{kind}"))?)
    } else {
        None
    };
    Ok(Health64 {
        kind,
        window_s: each,
        cpu_percent,
        rss_mib,
        hwm_mib,
        downs,
        profile,
    })
}

fn figures(section: &mut Section, m: &Measured, fails: usize) {
    let prefixes = m.prefixes;
    let per_host = prefixes / HOSTS;
    section.figures.push(
        Figure::new(
            &format!("start-up to maps and routes loaded ({prefixes} prefixes, {HOSTS} hosts)"),
            "ms",
            Over::Runs,
            &m.startup_ms,
        )
        .target(Stat::Max, 1000.0)
        .note(format!(
            "{} cold start(s); routes counted after each: {:?}, map entries: {:?}; \
             milestones (ms after spawn): {}",
            m.startup_ms.len(),
            m.routes_loaded,
            m.map_loaded,
            m.startup_steps
                .iter()
                .map(|s| s
                    .iter()
                    .map(|(k, v)| format!("{k} {}", number(*v)))
                    .collect::<Vec<_>>()
                    .join(", "))
                .collect::<Vec<_>>()
                .join(" / ")
        )),
    );
    section.figures.push(
        Figure::new(
            &format!("one host down → its {per_host} prefixes rewritten in the map"),
            "ms",
            Over::Runs,
            &m.fail_map_all_ms,
        )
        .target(Stat::Max, 5.0)
        .note(format!(
            "{fails} hosts failed one after the other (address removed from the responder: \
             echoes time out); \
             decision → last of its {per_host} map entries written (the largest switch_us \
             of its `owner-changed` events; the first entry took {:?} µs). Checked after \
             each: {} routes and map entries via the backup.{}",
            m.fail_map_first_us,
            2 * per_host,
            m.fail_profile.as_ref().map_or(String::new(), |p| format!(
                " Profile of one more failure: {p}"
            ))
        )),
    );
    section.figures.push(
        Figure::new(
            &format!("one host down → its {per_host} kernel routes rewritten"),
            "ms",
            Over::Runs,
            &m.fail_routes_ms,
        )
        .note(
            "From the `health-changed … down` event to the last `owner-changed` event \
             (published after its route is replaced); report only, no target.",
        ),
    );
    section.figures.push(
        Figure::new(
            &format!("controller RSS, {prefixes} prefixes / {HOSTS} hosts"),
            "MiB",
            Over::Runs,
            &m.rss_after_start_mib,
        )
        .target(Stat::Max, 32.0)
        .note(format!(
            "VmRSS after each start-up; {} MiB after the host failures (health checks \
             running meanwhile); peak (VmHWM): {:?} MiB",
            number(m.rss_after_failures_mib),
            m.hwm_after_start_mib
                .iter()
                .map(|v| number(*v))
                .collect::<Vec<_>>()
        )),
    );
    section.figures.push(
        Figure::new(
            &format!("controller CPU, {prefixes} prefixes / {HOSTS} hosts, nothing changing"),
            "% of a core",
            Over::Runs,
            &m.steady_cpu_percent,
        )
        .note(format!(
            "Windows of 2 s after the host failures (schedstat of every thread): the \
             {HOSTS} hosts' ICMP checks every 500 ms and the VIP checks of the {prefixes} \
             prefixes (at most `vip_check.max_rate`, 1,000 a second by default, through \
             each holder and the host it would fail over to); report only, no target."
        )),
    );
    if !m.check_config_ms.is_empty() {
        let points: Vec<String> = m
            .check_config_ms
            .iter()
            .map(|(n, ms)| format!("{n} prefixes {} ms", number(*ms)))
            .collect();
        let (first, last) = (
            m.check_config_ms[0].1,
            m.check_config_ms[m.check_config_ms.len() - 1].1,
        );
        let per_doubling = (last / first).powf(1.0 / (m.check_config_ms.len() - 1) as f64);
        section.notes.push(format!(
            "Where start-up goes: `ha-user check-config` alone (parse and validate) takes {} \
             with {HOSTS} hosts: ×{:.1} per doubling of the prefixes (×2 would be linear, ×4 \
             quadratic). Profile of the largest: {}.",
            points.join(", "),
            per_doubling,
            m.check_config_profile.as_deref().unwrap_or("none")
        ));
    }
    section.notes.extend(m.notes.iter().cloned());
    for h in &m.health64 {
        let profile = h
            .profile
            .as_ref()
            .map_or(String::new(), |p| format!("; profile: {p}"));
        section.figures.push(
            Figure::new(
                &format!("controller CPU, 64 hosts, {} checks every 10 ms", h.kind),
                "% of a core",
                Over::Runs,
                &h.cpu_percent,
            )
            .target(Stat::P50, 5.0)
            .note(format!(
                "{} windows of {} s (schedstat of every thread); hosts declared down \
                 meanwhile, nothing having failed: {}{profile}",
                h.cpu_percent.len(),
                h.window_s,
                h.downs
            )),
        );
        section.figures.push(
            Figure::new(
                &format!("controller RSS, 64 hosts, {} checks", h.kind),
                "MiB",
                Over::Runs,
                &[h.rss_mib],
            )
            .target(Stat::Max, 32.0)
            .note(format!("VmHWM {} MiB", number(h.hwm_mib))),
        );
    }
}
