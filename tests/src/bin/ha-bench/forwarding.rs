//! Family 2: forwarded packets per second on a veth topology (see `topology`):
//! the kernel's static route, `ha_steer` on XDP_TX and on XDP_REDIRECT, and the
//! minimal programs `ha_ref_tx` and `ha_ref_redir` as ceilings, all measured in
//! rotating order in every round while one generator keeps sending.
//!
//! The generator is BPF_PROG_TEST_RUN in live-frames mode running `ha_gen` on the
//! generator's veth end, on CPU 0. The router's receive processing is the threaded
//! NAPI of its ingress veth, pinned to CPU 1, so the router has a CPU of its own and
//! is the bottleneck: the side measurements show the offered rate, the router's CPU
//! use and the frames its full ring refused.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow};
use aya::{
    programs::{ProgramError, TestRun as _, TestRunAttrs, TestRunOptions},
    sys::SyscallError,
};
use ha_bench_common::{
    BENCH_GENERATED, BENCH_RECEIVED, GEN_HEADER_LEN, GenHeader, PROG_COUNT, PROG_GEN,
    PROG_REF_REDIR, PROG_REF_TX,
};
use ha_common::{Counter, PROG_STEER};
use ha_tests::packet::Ipv4Frame;

use crate::{
    profile::{self, ProgramSizes},
    progs::{self, Object},
    report::{Bound, Family, Figure, fmt_num},
    sched,
    topology::{
        self, GEN_CPU, GEN_IP, GEN_MAC, RCV_MAC, ROUTER_CPU, ROUTER_PRIORITY, RTR_IN_MAC,
        RTR_OUT_MAC, Topology, VIP, VIP_LEN, VIP_NET,
    },
};

/// Frame length without FCS: a 64-byte Ethernet frame on the wire.
const FRAME_LEN: usize = 60;
/// Frames per live-frames batch (the kernel's maximum).
const BATCH: u32 = 256;
/// Generator threads, all on [`GEN_CPU`]. One is enough, as the generator program
/// stays in the XDP dispatcher (no pause between calls).
const GENERATORS: usize = 1;
/// Host ids: the TX owner sits on the generator's segment, the REDIRECT owner
/// behind the router's second port.
const HOST_TX: u32 = 0;
const HOST_REDIRECT: u32 = 1;

pub struct Settings {
    pub rounds: usize,
    pub window: Duration,
    pub settle: Duration,
    /// Frames per generator call.
    pub frames_per_call: u32,
    /// perf and program statistics after the rounds, for this long per configuration.
    pub profile: Option<Duration>,
}

impl Settings {
    pub fn quick() -> Self {
        Self {
            rounds: 3,
            window: Duration::from_millis(700),
            settle: Duration::from_millis(200),
            frames_per_call: 1 << 22,
            profile: None,
        }
    }

    pub fn full() -> Self {
        Self {
            rounds: 10,
            window: Duration::from_secs(2),
            settle: Duration::from_millis(300),
            frames_per_call: 1 << 22,
            profile: Some(Duration::from_secs(2)),
        }
    }
}

#[derive(Clone, Copy)]
struct Config {
    name: &'static str,
    label: &'static str,
    /// Program on the router's ingress; `None`: the kernel forwards.
    program: Option<&'static str>,
    /// Owner of the VIP subnet for `ha_steer`.
    host: u32,
    /// The `ha_steer` counter of the verdict this configuration exercises.
    verdict: Option<Counter>,
}

const CONFIGS: [Config; 5] = [
    Config {
        name: "kernel",
        label: "kernel static-route forwarding, no XDP",
        program: None,
        host: HOST_REDIRECT,
        verdict: None,
    },
    Config {
        name: "ha_tx",
        label: "`ha_steer`, XDP_TX (owner on the ingress segment)",
        program: Some(PROG_STEER),
        host: HOST_TX,
        verdict: Some(Counter::Tx),
    },
    Config {
        name: "ref_tx",
        label: "`ha_ref_tx`: MAC swap + XDP_TX (ceiling)",
        program: Some(PROG_REF_TX),
        host: HOST_TX,
        verdict: None,
    },
    Config {
        name: "ha_redirect",
        label: "`ha_steer`, XDP_REDIRECT via DEVMAP to the second port",
        program: Some(PROG_STEER),
        host: HOST_REDIRECT,
        verdict: Some(Counter::Redirect),
    },
    Config {
        name: "ref_redirect",
        label: "`ha_ref_redir`: MAC swap + DEVMAP redirect (ceiling)",
        program: Some(PROG_REF_REDIR),
        host: HOST_REDIRECT,
        verdict: None,
    },
];

/// Side measurements, in table order.
const SIDES: [&str; 7] = [
    "offered Mpps",
    "refused by router ring Mpps",
    "router CPU 1 busy %",
    "router NAPI thread %",
    "generator CPU 0 busy %",
    "ha_steer verdicts Mpps",
    "other processes on CPU 1 %",
];

pub fn run(settings: &Settings, out: &Path) -> anyhow::Result<Family> {
    // This thread and the commands it runs (ip, ethtool, perf) stay off the router's CPU.
    sched::pin_to_cpu(0, GEN_CPU)?;
    let topo = Topology::build().context("building the veth topology")?;
    let frame = Ipv4Frame::udp(RTR_IN_MAC, GEN_MAC, GEN_IP, VIP, 9, &[0; 18]).bytes();
    anyhow::ensure!(
        frame.len() == FRAME_LEN,
        "generator frame is {} bytes",
        frame.len()
    );
    let header = GenHeader::from_bytes(
        frame[..GEN_HEADER_LEN]
            .try_into()
            .context("frame shorter than its headers")?,
    );
    let mut object = Object::load(&header)?;
    for name in [
        PROG_GEN,
        PROG_COUNT,
        PROG_STEER,
        PROG_REF_TX,
        PROG_REF_REDIR,
    ] {
        object.program(name)?;
    }
    // The generator threads share their own copy of the objects (its own counter map),
    // while this thread attaches and detaches programs of the other.
    // Attached to an idle veth pair it stays in the XDP dispatcher: otherwise every
    // call with `repeat > 1` updates the dispatcher twice and waits ~25 ms for it.
    let mut gen_object = Object::load(&header)?;
    {
        let _inside = topo.generator.enter()?;
        let idle = topology::idle_pair(&topo.generator)?;
        gen_object.attach(PROG_GEN, idle)?;
    }
    let gen_object = gen_object;
    // Receivers: ha_count on the generator's end (XDP_TX path) and on the receiver.
    {
        let _inside = topo.generator.enter()?;
        object.attach(PROG_COUNT, topo.gen_ifindex)?;
    }
    {
        let _inside = topo.receiver.enter()?;
        object.attach(PROG_COUNT, topo.rcv_ifindex)?;
    }
    {
        // DEVMAP entries resolve ifindex in the caller's namespace.
        let _inside = topo.router.enter()?;
        object.set_iface(topo.rtr_in_ifindex, RTR_IN_MAC)?;
        object.set_host(HOST_TX, GEN_MAC, RTR_IN_MAC, topo.rtr_in_ifindex)?;
        object.set_host(HOST_REDIRECT, RCV_MAC, RTR_OUT_MAC, topo.rtr_out_ifindex)?;
        object.set_tx_port(topo.rtr_out_ifindex)?;
        object.set_ref_port(topo.rtr_out_ifindex)?;
        object.set_prefix(VIP_NET, VIP_LEN, HOST_TX)?;
    }
    let sizes = profile::program_sizes(
        &object,
        &[
            PROG_STEER,
            PROG_REF_TX,
            PROG_REF_REDIR,
            PROG_GEN,
            PROG_COUNT,
        ],
    )?;

    let ctx = progs::xdp_md(frame.len(), topo.gen_ifindex)?;
    let stop = AtomicBool::new(false);
    let gen_ns = topo.generator.name();
    let generator = gen_object.loaded(PROG_GEN)?;
    let (measured, generator_errors) = thread::scope(|scope| {
        let threads: Vec<_> = (0..GENERATORS)
            .map(|_| {
                let (stop, frame, ctx, program) = (&stop, &frame, &ctx, generator);
                scope.spawn(move || -> anyhow::Result<(u64, u64)> {
                    ha_tests::lab::ns::set_netns(gen_ns)?;
                    sched::pin_to_cpu(0, GEN_CPU)?;
                    let (mut calls, mut interrupted) = (0u64, 0u64);
                    while !stop.load(Ordering::Relaxed) {
                        let result = program.test_run(TestRunOptions {
                            data_in: Some(frame),
                            ctx_in: Some(ctx),
                            repeat: settings.frames_per_call,
                            attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                            ..TestRunOptions::default()
                        });
                        match result {
                            Ok(_) => calls += 1,
                            // A pending signal ends a call early (bpf_test_timer_continue):
                            // call again.
                            Err(ProgramError::SyscallError(SyscallError { io_error, .. }))
                                if io_error.raw_os_error() == Some(libc::EINTR) =>
                            {
                                interrupted += 1;
                            }
                            Err(err) => {
                                stop.store(true, Ordering::Relaxed);
                                return Err(anyhow!("live-frames test run: {err:?}"));
                            }
                        }
                    }
                    Ok((calls, interrupted))
                })
            })
            .collect();
        let measured = measure_rounds(
            settings,
            &topo,
            &mut object,
            &gen_object,
            &stop,
            out,
            &sizes,
        );
        stop.store(true, Ordering::Relaxed);
        let mut errors = Vec::new();
        let (mut calls, mut interrupted) = (0, 0);
        for thread in threads {
            match thread.join() {
                Ok(Ok((c, i))) => (calls, interrupted) = (calls + c, interrupted + i),
                Ok(Err(err)) => errors.push(format!("{err:#}")),
                Err(panic) => errors.push(format!("generator panicked: {panic:?}")),
            }
        }
        eprintln!("ha-bench:   generator: {calls} calls, {interrupted} interrupted by a signal");
        (measured, errors)
    });
    if let Some(error) = generator_errors.first() {
        return Err(anyhow!("generator failed: {error}"));
    }
    let (mut figures, notes, details) = measured?;

    let by_name = |name: &str| figures.iter().find(|f| f.name == name).cloned();
    let kernel = by_name("kernel").context("kernel figure")?;
    let ref_tx = by_name("ref_tx").context("ref_tx figure")?;
    let ref_redirect = by_name("ref_redirect").context("ref_redirect figure")?;
    for figure in &mut figures {
        match figure.name.as_str() {
            "ha_tx" => {
                figure.add_ratio(&kernel, Some(Bound::AtLeast(4.0)));
                figure.add_ratio(&ref_tx, Some(Bound::AtLeast(0.9)));
            }
            "ha_redirect" => {
                figure.add_ratio(&kernel, Some(Bound::AtLeast(3.0)));
                figure.add_ratio(&ref_redirect, Some(Bound::AtLeast(0.9)));
            }
            "ref_tx" | "ref_redirect" => figure.add_ratio(&kernel, None),
            _ => {}
        }
    }
    let method = format!(
        "Generator namespace → router namespace → receiver namespace over veth pairs, \
         {FRAME_LEN}-byte UDP/IPv4 frames (64 bytes on the wire) to the VIP {VIP}. \
         Generator: BPF_PROG_TEST_RUN live frames, `ha_gen` rewriting every frame's headers, \
         {GENERATORS} generator thread(s) on CPU {GEN_CPU}, {} frames per call in batches of \
         {BATCH}. Router: threaded NAPI on its ingress veth, the kernel thread pinned to CPU \
         {ROUTER_CPU} at SCHED_FIFO {ROUTER_PRIORITY} (other work on the machine moves to \
         CPU {GEN_CPU}). Receivers: `ha_count` (count, XDP_DROP) on the generator's veth end \
         for the XDP_TX path (a one-armed router sends back where it received) and on the \
         receiver namespace's veth for XDP_REDIRECT and kernel forwarding. Each round measures \
         every configuration for {:.1} s after {:.1} s to settle, in rotating order; \
         {} rounds. Mpps = frames counted by the receiver / window. Targets: `ha_tx` ≥ 4 × \
         `kernel` and ≥ 0.90 × `ref_tx`; `ha_redirect` ≥ 3 × `kernel` and ≥ 0.90 × \
         `ref_redirect`.",
        settings.frames_per_call,
        settings.window.as_secs_f64(),
        settings.settle.as_secs_f64(),
        settings.rounds,
    );
    Ok(Family {
        name: "forwarding",
        title: "2. Forwarding rate on veth",
        method,
        figures,
        notes,
        details,
    })
}

/// One reading of everything a window needs.
struct Snapshot {
    at: Instant,
    received: u64,
    generated: u64,
    verdicts: [u64; 2],
    napi_ns: u64,
    cpus: Vec<topology::CpuTimes>,
    refused: u64,
}

fn snapshot(
    object: &Object,
    generator: &Object,
    topo: &Topology,
    napi: &[i32],
) -> anyhow::Result<Snapshot> {
    let refused = refused_frames(topo)?;
    let mut napi_ns = 0;
    for &pid in napi {
        napi_ns += topology::task_cpu_ns(pid)?;
    }
    Ok(Snapshot {
        at: Instant::now(),
        received: object.bench_count(BENCH_RECEIVED)?,
        generated: generator.bench_count(BENCH_GENERATED)?,
        verdicts: [
            object.counter(Counter::Tx)?,
            object.counter(Counter::Redirect)?,
        ],
        napi_ns,
        cpus: topology::cpu_times()?,
        refused,
    })
}

/// Frames the generator's veth could not put into the router's full receive ring.
fn refused_frames(topo: &Topology) -> anyhow::Result<u64> {
    let stats = Topology::veth_stats(&topo.generator, topology::GEN_DEV)?;
    Ok(stats
        .get("tx_queue_0_xdp_xmit_errors")
        .copied()
        .unwrap_or(0))
}

type Measured = (Vec<Figure>, Vec<String>, serde_json::Value);

fn measure_rounds(
    settings: &Settings,
    topo: &Topology,
    object: &mut Object,
    generator: &Object,
    stop: &AtomicBool,
    out: &Path,
    sizes: &[ProgramSizes],
) -> anyhow::Result<Measured> {
    // Wait for the generator to run.
    let start = Instant::now();
    let first = generator.bench_count(BENCH_GENERATED)?;
    while generator.bench_count(BENCH_GENERATED)? == first {
        anyhow::ensure!(!stop.load(Ordering::Relaxed), "the generator stopped");
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(10),
            "the generator sent nothing in 10 s"
        );
        thread::sleep(Duration::from_millis(10));
    }

    let mut attached: Option<(&'static str, aya::programs::xdp::XdpLinkId)> = None;
    let mut samples: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut sides: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    for round in 0..settings.rounds {
        for offset in 0..CONFIGS.len() {
            let config = CONFIGS[(round + offset) % CONFIGS.len()];
            let napi = apply(object, topo, &mut attached, config)?;
            thread::sleep(settings.settle);
            anyhow::ensure!(!stop.load(Ordering::Relaxed), "the generator stopped");
            let a = snapshot(object, generator, topo, &napi)?;
            thread::sleep(settings.window);
            let b = snapshot(object, generator, topo, &napi)?;
            let secs = (b.at - a.at).as_secs_f64();
            let mpps = |n: u64| n as f64 / secs / 1e6;
            let share = |cpu: usize, part: fn(&topology::CpuTimes) -> u64| {
                let total = b.cpus[cpu].total - a.cpus[cpu].total;
                let part = part(&b.cpus[cpu]) - part(&a.cpus[cpu]);
                if total == 0 {
                    f64::NAN
                } else {
                    100.0 * part as f64 / total as f64
                }
            };
            let busy = |cpu: usize| share(cpu, |t| t.busy);
            let forwarded = mpps(b.received - a.received);
            samples.entry(config.name).or_default().push(forwarded);
            let verdicts = match config.verdict {
                Some(Counter::Tx) => mpps(b.verdicts[0] - a.verdicts[0]),
                Some(_) => mpps(b.verdicts[1] - a.verdicts[1]),
                None => f64::NAN,
            };
            let values = [
                mpps(b.generated - a.generated),
                mpps(b.refused - a.refused),
                busy(ROUTER_CPU),
                100.0 * (b.napi_ns - a.napi_ns) as f64 / 1e9 / secs,
                busy(GEN_CPU),
                verdicts,
                share(ROUTER_CPU, |t| t.user),
            ];
            for (side, value) in SIDES.iter().zip(values) {
                sides.entry((config.name, side)).or_default().push(value);
            }
            eprintln!(
                "ha-bench:   round {} {:<13} {:>6.3} Mpps forwarded, {:>6.3} offered, \
                 {:>6.3} refused, CPU{ROUTER_CPU} {:>3.0} %, CPU{GEN_CPU} {:>3.0} %",
                round + 1,
                config.name,
                forwarded,
                values[0],
                values[1],
                values[2],
                values[4],
            );
        }
    }

    let mut profiles = Vec::new();
    if let Some(duration) = settings.profile {
        for config in CONFIGS {
            apply(object, topo, &mut attached, config)?;
            thread::sleep(settings.settle);
            profiles.push(
                profile::profile_config(object, config.name, config.program, duration, out)
                    .with_context(|| format!("profiling {}", config.name))?,
            );
        }
    }
    if let Some((program, link)) = attached.take() {
        object.detach(program, link)?;
    }

    let figures = CONFIGS
        .iter()
        .map(|config| Figure {
            name: config.name.to_owned(),
            label: config.label.to_owned(),
            unit: "Mpps",
            samples: samples.remove(config.name).unwrap_or_default(),
            ratios: Vec::new(),
            side: SIDES
                .iter()
                .map(|side| {
                    (
                        (*side).to_owned(),
                        sides.remove(&(config.name, *side)).unwrap_or_default(),
                    )
                })
                .collect(),
        })
        .collect::<Vec<_>>();
    let mut notes = vec![bottleneck_note(&figures)];
    notes.push(profile::sizes_markdown(sizes));
    notes.extend(profiles.iter().map(profile::ConfigProfile::markdown));
    let details = serde_json::json!({
        "frame_len": FRAME_LEN as f64,
        "generator_threads": GENERATORS as f64,
        "generator_cpu": GEN_CPU as f64,
        "router_cpu": ROUTER_CPU as f64,
        "batch": f64::from(BATCH),
        "frames_per_call": f64::from(settings.frames_per_call),
        "window_seconds": settings.window.as_secs_f64(),
        "program_sizes": sizes,
        "profiles": profiles,
    });
    Ok((figures, notes, details))
}

/// Puts `config` on the router; returns the pids of the router's NAPI thread(s).
fn apply(
    object: &mut Object,
    topo: &Topology,
    attached: &mut Option<(&'static str, aya::programs::xdp::XdpLinkId)>,
    config: Config,
) -> anyhow::Result<Vec<i32>> {
    if let Some((program, link)) = attached.take() {
        object.detach(program, link)?;
    }
    object.set_prefix(VIP_NET, VIP_LEN, config.host)?;
    if let Some(program) = config.program {
        let _inside = topo.router.enter()?;
        let link = object.attach(program, topo.rtr_in_ifindex)?;
        *attached = Some((program, link));
    }
    topo.pin_router_napi()
}

/// Says, from the side measurements, whether the router was the bottleneck.
fn bottleneck_note(figures: &[Figure]) -> String {
    let mut lines = vec![
        "**Is the router the bottleneck?** Per configuration (medians): offered rate, \
         forwarded rate, frames the router's full receive ring refused, CPU use. The \
         router's NAPI thread runs at SCHED_FIFO, so the kernel's RT throttling \
         (sched_rt_runtime_us, 95 %) caps it at 95 % of its CPU in every configuration."
            .to_owned(),
        String::new(),
    ];
    for figure in figures {
        let median = |key: &str| {
            figure
                .side
                .iter()
                .find(|(k, _)| k == key)
                .and_then(|(_, v)| ha_tests::bench::stats::Dist::of(v))
                .map_or(f64::NAN, |s| s.median)
        };
        let forwarded = figure.summary().map_or(f64::NAN, |s| s.median);
        let offered = median(SIDES[0]);
        let refused = median(SIDES[1]);
        let router_busy = median(SIDES[2]);
        let napi = median(SIDES[3]);
        let verdict = if offered > forwarded * 1.05 && refused > 0.0 && napi >= 90.0 {
            "router-bound"
        } else if napi < 90.0 {
            "**not router-bound**"
        } else {
            "router saturated, little excess offered"
        };
        lines.push(format!(
            "- `{}`: offered {} Mpps, forwarded {} Mpps, refused {} Mpps, router CPU {} % \
             (NAPI thread {} %), generator CPU {} %: {verdict}",
            figure.name,
            fmt_num(offered),
            fmt_num(forwarded),
            fmt_num(refused),
            fmt_num(router_busy),
            fmt_num(napi),
            fmt_num(median(SIDES[4])),
        ));
    }
    lines.join("\n")
}
