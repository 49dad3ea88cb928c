//! Family 1: per-packet cost with BPF_PROG_TEST_RUN, `ha_steer` against the minimal
//! MAC-swap XDP_TX program `ha_ref_tx`.
//!
//! With `repeat > 1` the kernel runs the program again on the same buffer, so a
//! forwarded frame comes back rewritten. The interface (the namespace's loopback,
//! MAC 00:00:00:00:00:00) and the owning host get the same MAC, so the rewritten
//! frame is addressed to us again and every repeat is a hit, until the TTL runs out:
//! hence at most 250 repeats from TTL 255, over many calls. The counters prove it.
//!
//! The kernel reports an integer number of nanoseconds per run, too coarse for a
//! ratio of two small numbers, so the cost is taken from wall-clock time instead:
//! calls with 250 and with 10 repeats alternate, and the per-call overhead (syscall,
//! buffer setup) cancels in the difference.

use std::{net::Ipv4Addr, process::Command, time::Instant};

use anyhow::{Context as _, ensure};
use ha_bench_common::{GenHeader, PROG_REF_TX};
use ha_common::{Counter, FlowEntry, FlowKey, IFACE_ACTIVE, IFACE_VERIFY, PROG_PASS, PROG_STEER};
use ha_tests::{
    bench::stats::Dist,
    lab::ns::{self, Netns},
    packet::{IPPROTO_UDP, Ipv4, Ipv4Frame, Mac, ipv6_udp, pad_to_min},
    steer::coarse_now,
};

use crate::{
    profile::{self, ProgramSizes},
    progs::{self, Object},
    report::{Bound, Family, Figure, fmt_num},
    sched, topology,
};

/// Repeats per call (from TTL 255 a hit stays a hit for 253 runs).
const REPEAT_HI: u32 = 250;
const REPEAT_LO: u32 = 10;
/// The CPU the measuring thread runs on, SCHED_FIFO at `PRIORITY`.
const CPU: usize = 1;
const PRIORITY: i32 = 50;
/// Veth pairs that carry no traffic: the programs stay attached there.
const IDLE_DEVS: [&str; 6] = ["hbp0", "hbp1", "hbp2", "hbp3", "hbp4", "hbp5"];
/// The UDP ports of every frame (client, VIP).
const PORTS: (u16, u16) = (40_000, 80);

const LO_MAC: Mac = [0; 6];
const CLIENT_MAC: Mac = [0x02, 0, 0, 0, 0x0c, 0x01];
const EGRESS_MAC: Mac = [0x02, 0, 0, 0, 0x0e, 0x01];
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 11, 1, 2);
/// The lab's four VIP subnets; the hit goes to the first.
const PREFIXES: [Ipv4Addr; 4] = [
    Ipv4Addr::new(192, 168, 1, 32),
    Ipv4Addr::new(192, 168, 1, 64),
    Ipv4Addr::new(192, 168, 1, 96),
    Ipv4Addr::new(192, 168, 1, 128),
];
const VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 33);
/// A VIP of the second prefix, which the `moving` case makes a moving one.
const MOVING_VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 65);
const UNSTEERED: Ipv4Addr = Ipv4Addr::new(192, 168, 2, 1);

pub struct Settings {
    pub rounds: usize,
    /// Pairs of calls (one with `REPEAT_HI`, one with `REPEAT_LO`) per measurement.
    pub pairs: u32,
}

struct Case {
    name: &'static str,
    label: &'static str,
    program: &'static str,
    frame: Vec<u8>,
    /// Expected verdict and the `ha_steer` counter every run must bump.
    action: u32,
    counter: Option<Counter>,
    /// Runs in the second object, whose interface verifies flows (a router with
    /// forward rules).
    verifying: bool,
}

fn udp_frame(dst: Ipv4Addr) -> Vec<u8> {
    let mut ip = Ipv4::new(CLIENT, dst, ha_tests::packet::IPPROTO_UDP);
    ip.ttl = 255;
    let segment = ha_tests::packet::udp_segment(CLIENT, dst, PORTS.0, PORTS.1, &[0; 18]);
    Ipv4Frame::new(LO_MAC, CLIENT_MAC, ip, segment).bytes()
}

fn cases() -> Vec<Case> {
    const XDP_PASS: u32 = 2;
    const XDP_TX: u32 = 3;
    let hit = udp_frame(VIP);
    vec![
        Case {
            name: "floor",
            label: "`ha_pass`: returns XDP_PASS (the harness's own cost per run)",
            program: PROG_PASS,
            frame: hit.clone(),
            action: XDP_PASS,
            counter: None,
            verifying: false,
        },
        Case {
            name: "ref_tx",
            label: "`ha_ref_tx`: MAC swap + XDP_TX (reference)",
            program: PROG_REF_TX,
            frame: hit.clone(),
            action: XDP_TX,
            counter: None,
            verifying: false,
        },
        Case {
            name: "hit",
            label: "`ha_steer`: steering hit, XDP_TX",
            program: PROG_STEER,
            frame: hit,
            action: XDP_TX,
            counter: Some(Counter::Tx),
            verifying: false,
        },
        Case {
            name: "moving",
            label: "`ha_steer`: steering hit on a moving prefix (the flow looked up), XDP_TX",
            program: PROG_STEER,
            frame: udp_frame(MOVING_VIP),
            action: XDP_TX,
            counter: Some(Counter::Tx),
            verifying: false,
        },
        Case {
            name: "miss",
            label: "`ha_steer`: IPv4 to our MAC, no prefix → XDP_PASS",
            program: PROG_STEER,
            frame: udp_frame(UNSTEERED),
            action: XDP_PASS,
            counter: Some(Counter::PassNoPrefix),
            verifying: false,
        },
        Case {
            name: "non_ipv4",
            label: "`ha_steer`: IPv6 to our MAC → XDP_PASS",
            program: PROG_STEER,
            frame: pad_to_min(ipv6_udp(
                LO_MAC,
                CLIENT_MAC,
                "fd00::2".parse().expect("literal"),
                "fd00::1".parse().expect("literal"),
                &[0; 18],
            )),
            action: XDP_PASS,
            counter: Some(Counter::PassNotIpv4),
            verifying: false,
        },
        Case {
            name: "verified",
            label: "`ha_steer`: steering hit on an interface that verifies flows (a router with \
                    forward rules: the flow looked up, verified by the kernel), XDP_TX",
            program: PROG_STEER,
            frame: udp_frame(VIP),
            action: XDP_TX,
            counter: Some(Counter::Tx),
            verifying: true,
        },
    ]
}

pub fn run(settings: &Settings) -> anyhow::Result<Family> {
    let ns = Netns::create("ha-b-pp")?;
    let name = ns.name().to_owned();
    let rounds = settings.rounds;
    let pairs = settings.pairs;
    let measured = std::thread::spawn(move || -> anyhow::Result<Measured> {
        ns::set_netns(&name)?;
        sched::pin_to_cpu(0, CPU)?;
        // Other work on the machine (builds, tests) moves to the other CPU instead of
        // preempting the measurement; the thread ends with the family.
        sched::make_fifo(0, PRIORITY)?;
        measure(rounds, pairs)
    })
    .join()
    .map_err(|panic| anyhow::anyhow!("per-packet thread panicked: {panic:?}"))??;
    drop(ns);
    let (mut figures, details, sizes) = measured;

    let reference = figures
        .iter()
        .find(|f| f.name == "ref_tx")
        .cloned()
        .context("no ref_tx figure")?;
    for figure in figures.iter_mut().filter(|f| f.name != "ref_tx") {
        let target = (figure.name == "hit").then_some(Bound::AtMost(1.25));
        figure.add_ratio(&reference, target);
    }
    let notes = vec![above_floor_note(&figures), profile::sizes_markdown(&sizes)];
    let method = format!(
        "BPF_PROG_TEST_RUN on a 60-byte frame (64 on the wire), in a namespace of its own, \
         the measuring thread pinned to CPU {CPU} at SCHED_FIFO priority {PRIORITY}. Each round measures every case once, in \
         rotating order: {pairs} pairs of calls with {REPEAT_HI} and {REPEAT_LO} repeats; \
         ns/packet = median over the pairs of (wall time of the {REPEAT_HI}-repeat call − \
         wall time of the {REPEAT_LO}-repeat call) / {}, so the syscall and setup cost \
         cancels (the kernel's own figure is whole nanoseconds per call). The programs stay \
         attached to an idle veth pair so that test runs do not update the XDP dispatcher. \
         The hit frame starts at TTL 255 and the host's MAC is the interface's own, so every \
         repeat is a hit (checked against `HA_COUNTERS`). {rounds} rounds. Target: hit ≤ \
         1.25 × `ref_tx`.",
        REPEAT_HI - REPEAT_LO
    );
    Ok(Family {
        name: "per-packet",
        title: "1. Per-packet cost (test_run)",
        method,
        figures,
        notes,
        details,
    })
}

/// Figures, details, and the sizes of the programs measured.
type Measured = (Vec<Figure>, serde_json::Value, Vec<ProgramSizes>);

fn measure(rounds: usize, pairs: u32) -> anyhow::Result<Measured> {
    let mut object = Object::load(&GenHeader::default())?;
    object.set_iface(1, LO_MAC)?;
    object.set_host(0, LO_MAC, EGRESS_MAC, 1)?;
    for (host, prefix) in (0..).zip(PREFIXES) {
        object.set_prefix(prefix, 27, host)?;
    }
    // The second prefix moves to host 0 from host 1: every packet looks its flow up
    // (the first run records it, as the owner's).
    object.set_moving_prefix(PREFIXES[1], 27, 0, 1)?;
    let mut verifying = verifying_object()?;
    let cases = cases();
    for case in &cases {
        if case.verifying {
            verifying.program(case.program)?;
        } else {
            object.program(case.program)?;
        }
    }

    // Keep the programs attached to idle veths for the whole run: with
    // `repeat > 1` BPF_PROG_TEST_RUN adds an unattached program to the XDP dispatcher
    // and takes it out again afterwards, and that update waits ~25-30 ms per call.
    for pair in IDLE_DEVS.chunks(2) {
        ns::check(Command::new("ip").args([
            "link", "add", pair[0], "type", "veth", "peer", "name", pair[1],
        ]))?;
    }
    for (program, dev) in [PROG_STEER, PROG_REF_TX, PROG_PASS]
        .into_iter()
        .zip(IDLE_DEVS)
    {
        object.attach(program, topology::ifindex(dev)?)?;
    }
    verifying.attach(PROG_STEER, topology::ifindex(IDLE_DEVS[3])?)?;
    let holder = |case: &Case| if case.verifying { &verifying } else { &object };

    // Each case once, checked, before anything is timed.
    let mut kernel_ns: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for case in &cases {
        let program = holder(case).loaded(case.program)?;
        let (action, _) = progs::test_run(program, &case.frame, REPEAT_HI)?;
        ensure!(
            action == case.action,
            "{}: verdict {action}, expected {}",
            case.name,
            case.action
        );
    }

    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for round in 0..rounds {
        for offset in 0..cases.len() {
            let index = (round + offset) % cases.len();
            let case = &cases[index];
            let object = holder(case);
            let before = case.counter.map(|c| object.counter(c)).transpose()?;
            let program = object.loaded(case.program)?;
            let (per_run, kernel) = time_pairs(program, &case.frame, pairs)
                .with_context(|| format!("measuring {}", case.name))?;
            if let (Some(counter), Some(before)) = (case.counter, before) {
                let runs = u64::from(pairs) * u64::from(REPEAT_HI + REPEAT_LO);
                let seen = object.counter(counter)? - before;
                ensure!(
                    seen == runs,
                    "{}: {runs} runs but {} counted {seen}: not every repeat took the \
                     measured path",
                    case.name,
                    counter.name()
                );
            }
            samples[index].push(per_run);
            kernel_ns[index].push(kernel);
        }
    }

    let figures = cases
        .iter()
        .zip(samples)
        .zip(&kernel_ns)
        .map(|((case, samples), kernel)| Figure {
            name: case.name.to_owned(),
            label: case.label.to_owned(),
            unit: "ns/packet",
            samples,
            ratios: Vec::new(),
            side: vec![("kernel-reported ns/run".to_owned(), kernel.clone())],
        })
        .collect();
    let details = serde_json::json!({
        "repeat_hi": f64::from(REPEAT_HI),
        "repeat_lo": f64::from(REPEAT_LO),
        "pairs_per_measurement": f64::from(pairs),
        "cpu": CPU as f64,
    });
    let sizes = profile::program_sizes(&object, &[PROG_STEER, PROG_REF_TX, PROG_PASS])?;
    Ok((figures, details, sizes))
}

/// The object of the `verified` case: the same hosts and prefixes, an interface
/// that verifies flows, and the measured frame's flow forwarded by the kernel just
/// now (valid for an hour: the whole run).
fn verifying_object() -> anyhow::Result<Object> {
    let mut object = Object::load(&GenHeader::default())?;
    object.set_iface_flags(1, LO_MAC, IFACE_ACTIVE | IFACE_VERIFY)?;
    object.set_host(0, LO_MAC, EGRESS_MAC, 1)?;
    for (host, prefix) in (0..).zip(PREFIXES) {
        object.set_prefix(prefix, 27, host)?;
    }
    object.set_settings(ha_common::Settings {
        refresh_ns: 3_600 * 1_000_000_000,
        ..ha_common::Settings::default()
    })?;
    let now = coarse_now();
    object.set_flow(
        FlowKey {
            client: CLIENT.octets(),
            vip: VIP.octets(),
            client_port: PORTS.0.to_be_bytes(),
            vip_port: PORTS.1.to_be_bytes(),
            proto: IPPROTO_UDP,
            _pad: [0; 3],
        },
        FlowEntry {
            host: 0,
            prefix_id: 0,
            ingress: 1,
            flags: 0,
            verified_ns: now,
            seen_ns: now,
        },
    )?;
    Ok(object)
}

/// ns per run from `pairs` pairs of calls (one with `REPEAT_HI`, one with
/// `REPEAT_LO` repeats): the median over pairs of the wall-time difference divided by
/// the difference in runs; and the mean kernel-reported ns/run of the long calls.
fn time_pairs(
    program: &aya::programs::Xdp,
    frame: &[u8],
    pairs: u32,
) -> anyhow::Result<(f64, f64)> {
    let mut estimates = Vec::with_capacity(usize::try_from(pairs)?);
    let mut kernel = 0.0;
    for _ in 0..pairs {
        let start = Instant::now();
        let (_, per_run) = progs::test_run(program, frame, REPEAT_HI)?;
        let mid = Instant::now();
        progs::test_run(program, frame, REPEAT_LO)?;
        let end = Instant::now();
        let hi = (mid - start).as_nanos() as f64;
        let lo = (end - mid).as_nanos() as f64;
        estimates.push((hi - lo) / f64::from(REPEAT_HI - REPEAT_LO));
        kernel += per_run as f64;
    }
    // The median pair: an interrupt or a preemption inside one call spoils that pair
    // only.
    let median = Dist::of(&estimates).context("no pairs measured")?.median;
    Ok((median, kernel / f64::from(pairs)))
}

/// The programs' own cost: each median minus the harness floor (`ha_pass`).
fn above_floor_note(figures: &[Figure]) -> String {
    let median = |name: &str| {
        figures
            .iter()
            .find(|f| f.name == name)
            .and_then(Figure::summary)
            .map_or(f64::NAN, |s| s.median)
    };
    let floor = median("floor");
    let own: Vec<String> = ["ref_tx", "hit", "moving", "verified", "miss", "non_ipv4"]
        .iter()
        .map(|name| format!("`{name}` {} ns", fmt_num(median(name) - floor)))
        .collect();
    format!(
        "**Above the floor.** A run of `ha_pass` (return XDP_PASS) costs {} ns here: the \
         test-run loop, not the program. Subtracting it, the programs' own cost per packet \
         (medians): {}. The 1.25 × target is a ratio of totals that include the floor.",
        fmt_num(floor),
        own.join(", ")
    )
}
