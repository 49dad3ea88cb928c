//! Random and mutated frames through the real `ha_steer` program by
//! BPF_PROG_TEST_RUN, judged frame by frame against a reference model written from
//! the README's rules (`model.rs`): 50,000 frames by default, 1,000,000 with
//! `HA_LONG=1` (`cargo xtask test --long`).
//!
//! For every frame: the verdict is never XDP_DROP or XDP_ABORTED; verdict and
//! reason are the model's; XDP_PASS hands the frame back byte for byte; XDP_TX and
//! XDP_REDIRECT hand back exactly the specified rewrite (MACs, TTL − 1, the header
//! checksum updated incrementally and valid whenever it was, nothing else). At the
//! end the per-CPU counters equal the model's counts reason by reason, the per-host
//! and per-prefix traffic its sums, and every verdict and reason was hit at least
//! [`MIN_HITS`] times.
//!
//! The run prints its seed; `HA_SEED=<seed>` repeats it, `HA_SEED=<seed>
//! HA_FRAME=<index>` runs one frame of it. Needs root (see `ha_tests::root`).

mod model;
mod world;

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    time::{Duration, Instant},
};

use aya::{programs::ProgramError, sys::SyscallError};
use ha_common::{Counter, Traffic};
use ha_tests::{
    frames::{self, Generated, Rng, generate},
    hexdump, mode,
    netns::{Veth, in_private_netns},
    packet::{ETH_HLEN, Ipv4Frame, ipv4_header_verifies},
    root::require_root,
    steer::{Action, RunOptions, Steer},
};
use model::{Decision, Packet, RULES, Source, decide, source_of};
use world::World;

/// Every verdict and pass reason must be seen at least this often.
const MIN_HITS: u64 = 100;
/// Violations printed in full; the rest are counted.
const SHOWN: usize = 10;
/// BPF_PROG_TEST_RUN's XDP headroom (`XDP_PACKET_HEADROOM`).
const XDP_HEADROOM: usize = 256;
/// `SKB_DATA_ALIGN(sizeof(struct skb_shared_info))` on x86_64: the tail of the page
/// a linear test frame lives in.
const SHARED_INFO: usize = 320;
/// Whether to generate frames longer than one buffer. BPF_PROG_TEST_RUN hands those
/// to the frags-aware program as multi-buffer frames, whose first buffer holds what
/// fits the page; the README's rules apply to the whole frame.
const MULTI_BUFFER_FRAMES: bool = true;
/// The longest multi-buffer frame to generate then (a 9000-byte MTU's frame).
const LONGEST_MULTI_BUFFER: usize = 9018;

#[test]
fn random_frames() {
    if !require_root("random_frames") {
        return;
    }
    in_private_netns(run);
}

/// One frame of the run: where it arrives and what it is.
struct Case {
    ingress: u32,
    meta_len: u32,
    frame: Generated,
}

fn run() {
    let port = Veth::create("ha-rf0", world::PORT_MAC, "ha-rf1");
    let world = World::new(&port);
    let mut steer = Steer::load();
    world.load_into(&mut steer);
    check_model_names();
    check_short_frames_refused(&steer);
    let accepted = frame_limit(&steer);
    let page = page_size();
    let linear = page - XDP_HEADROOM - SHARED_INFO;
    let longest = if MULTI_BUFFER_FRAMES {
        accepted.min(LONGEST_MULTI_BUFFER)
    } else {
        linear
    };
    println!(
        "BPF_PROG_TEST_RUN: linear frames up to {linear} bytes (page {page} - {XDP_HEADROOM} \
         headroom - {SHARED_INFO} skb_shared_info); frames up to {accepted} bytes accepted, \
         the longer ones as multi-buffer; generating frames up to {longest} bytes"
    );

    let seed = frames::seed();
    let only = frames::only_frame();
    let count = mode::size(50_000, 1_000_000);
    let indices: Vec<u64> = match only {
        Some(index) => vec![index],
        None => (0..count).collect(),
    };
    println!(
        "random frames: seed {seed:#018x} ({}={seed:#x} repeats this run), {} frames",
        frames::SEED_ENV,
        indices.len()
    );

    let before_counters = steer.counters();
    let before_traffic = traffic(&steer, &world);
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut violations = Vec::new();
    let mut violation_count = 0_u64;
    for &index in &indices {
        let case = make_case(seed, index, &world, longest);
        if let Err(problem) = check_case(&steer, &world, &case, &mut tally) {
            violation_count += 1;
            if violations.len() < SHOWN {
                violations.push(format!(
                    "frame #{index} ({}={seed:#x} {}={index}): ingress {} ({}), {} bytes of \
                     metadata\n  {}\n  labels: {}\n{problem}",
                    frames::SEED_ENV,
                    frames::FRAME_ENV,
                    case.ingress,
                    world.link(case.ingress).map_or("?", |l| l.name),
                    case.meta_len,
                    frames::describe(&case.frame.bytes),
                    case.frame.labels.join(", "),
                ));
            }
        }
    }
    let elapsed = started.elapsed();

    let counters = steer.counters();
    let moved: [u64; Counter::COUNT as usize] =
        std::array::from_fn(|i| counters[i] - before_counters[i]);
    let after_traffic = traffic(&steer, &world);
    print_counts(&tally, &moved, indices.len(), elapsed);

    let mut problems = Vec::new();
    if violation_count > 0 {
        problems.push(format!(
            "{violation_count} of {} frames broke the specification (first {}):\n\n{}",
            indices.len(),
            violations.len(),
            violations.join("\n")
        ));
    }
    let frames_run = u64::try_from(indices.len()).expect("fits");
    let total: u64 = moved.iter().sum();
    if total != frames_run {
        problems.push(format!(
            "the counters add up to {total}, not to the {frames_run} frames run"
        ));
    }
    for counter in Counter::ALL {
        let (model, program) = (tally.counter(counter), moved[counter as usize]);
        if model != program {
            problems.push(format!(
                "counter {}: the model expects +{model}, the program counted +{program}",
                counter.name()
            ));
        }
    }
    for (kind, id, expected) in tally.traffic_entries(&world) {
        let (now, then) = match kind {
            "host" => (after_traffic.0[&id], before_traffic.0[&id]),
            _ => (after_traffic.1[&id], before_traffic.1[&id]),
        };
        let actual = Traffic {
            packets: now.packets - then.packets,
            bytes: now.bytes - then.bytes,
        };
        if actual != expected {
            problems.push(format!(
                "{kind} {id} traffic: the model expects {expected:?}, the program counted {actual:?}"
            ));
        }
    }
    if only.is_none() {
        problems.extend(coverage(&tally));
    }
    assert!(
        problems.is_empty(),
        "random frames, seed {seed:#x}: {} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Frame `index` of the run seeded with `seed`: its ingress, metadata and bytes.
fn make_case(seed: u64, index: u64, world: &World, longest: usize) -> Case {
    let mut rng = Rng::for_frame(seed, index);
    let link = rng.weighted(&[(78, 0), (18, 1), (4, 2)]);
    let link = &world.links[*link];
    let meta_len = if rng.chance(10) {
        4 * u32::try_from(rng.between(1, 8)).expect("small")
    } else {
        0
    };
    // Metadata sits in the headroom: it does not shorten the frame.
    let profile = world.profile(link, longest);
    Case {
        ingress: link.ifindex,
        meta_len,
        frame: generate(&mut rng, &profile),
    }
}

/// Runs one case and checks it against the model; counts the model's decision.
fn check_case(steer: &Steer, world: &World, case: &Case, tally: &mut Tally) -> Result<(), String> {
    let input = &case.frame.bytes;
    let decision = decide(
        &Packet {
            bytes: input,
            ingress: case.ingress,
        },
        world,
    );
    tally.count(&decision, input.len());
    let options = RunOptions {
        ingress_ifindex: (case.ingress != 1).then_some(case.ingress),
        meta_len: case.meta_len,
        repeat: 0,
    };
    let result = steer
        .try_run_with(input, options)
        .map_err(|e| format!("  BPF_PROG_TEST_RUN refused the frame: {e:?}\n"))?;
    tally.actions[action_slot(result.action)] += 1;
    let expected = decision.output(input);
    let mut problems = String::new();
    if matches!(
        result.action,
        Action::Drop | Action::Aborted | Action::Other(_)
    ) {
        let _ = writeln!(problems, "  verdict {}: never allowed", result.action);
    }
    if result.action != decision.action() {
        let _ = writeln!(
            problems,
            "  verdict: the model says {} ({}), the program {}",
            decision.action(),
            decision.counter().name(),
            result.action
        );
    }
    if result.output != expected {
        let _ = writeln!(
            problems,
            "  output: not {}",
            match decision {
                Decision::Pass(_) => "the input unchanged",
                Decision::Steer { .. } => "the specified rewrite",
            }
        );
    }
    // The checksum is updated incrementally (compared above) and, for a header that
    // verified, must still verify: the incremental update against a full recompute.
    if matches!(decision, Decision::Steer { .. })
        && ipv4_header_verifies(input)
        && !ipv4_header_verifies(&result.output)
    {
        let _ = writeln!(
            problems,
            "  the header checksum verified before and not after"
        );
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{problems}{}",
        hexdump::compare(input, &expected, &result.output)
    ))
}

/// What the model decided and the program answered, summed over the run.
#[derive(Default)]
struct Tally {
    counters: BTreeMap<usize, u64>,
    /// Pass, Tx, Redirect, anything else.
    actions: [u64; 4],
    /// (host id, prefix id) → traffic the model expects.
    hosts: BTreeMap<u32, Traffic>,
    prefixes: BTreeMap<u32, Traffic>,
}

impl Tally {
    fn count(&mut self, decision: &Decision, len: usize) {
        *self
            .counters
            .entry(decision.counter() as usize)
            .or_default() += 1;
        if let Decision::Steer {
            host_id, prefix_id, ..
        } = *decision
        {
            let bytes = u64::try_from(len).expect("fits");
            for traffic in [
                self.hosts.entry(host_id).or_default(),
                self.prefixes.entry(prefix_id).or_default(),
            ] {
                traffic.packets += 1;
                traffic.bytes += bytes;
            }
        }
    }

    fn counter(&self, counter: Counter) -> u64 {
        self.counters.get(&(counter as usize)).copied().unwrap_or(0)
    }

    /// ("host" | "prefix", id, expected traffic) for every id the run follows.
    fn traffic_entries(&self, world: &World) -> Vec<(&'static str, u32, Traffic)> {
        let hosts = world
            .host_ids()
            .into_iter()
            .map(|id| ("host", id, self.hosts.get(&id).copied().unwrap_or_default()));
        let prefixes = world.prefix_ids().into_iter().map(|id| {
            (
                "prefix",
                id,
                self.prefixes.get(&id).copied().unwrap_or_default(),
            )
        });
        hosts.chain(prefixes).collect()
    }
}

fn action_slot(action: Action) -> usize {
    match action {
        Action::Pass => 0,
        Action::Tx => 1,
        Action::Redirect => 2,
        _ => 3,
    }
}

type TrafficTables = (BTreeMap<u32, Traffic>, BTreeMap<u32, Traffic>);

fn traffic(steer: &Steer, world: &World) -> TrafficTables {
    let hosts = world
        .host_ids()
        .into_iter()
        .map(|id| (id, steer.host_traffic(id)))
        .collect();
    let prefixes = world
        .prefix_ids()
        .into_iter()
        .map(|id| (id, steer.prefix_traffic(id)))
        .collect();
    (hosts, prefixes)
}

/// Every reachable counter at least [`MIN_HITS`] times, and the three verdicts.
fn coverage(tally: &Tally) -> Vec<String> {
    let mut problems = Vec::new();
    for counter in Counter::ALL {
        if source_of(counter) == Source::KernelRefusesShortFrames {
            continue;
        }
        let hits = tally.counter(counter);
        if hits < MIN_HITS {
            problems.push(format!(
                "reason {} was hit {hits} times, fewer than {MIN_HITS}: bias the generator \
                 towards it (tests/src/frames, tests/tests/random_frames/world.rs)",
                counter.name()
            ));
        }
    }
    for (slot, name) in ["XDP_PASS", "XDP_TX", "XDP_REDIRECT"].iter().enumerate() {
        if tally.actions[slot] < MIN_HITS {
            problems.push(format!(
                "verdict {name} was returned {} times, fewer than {MIN_HITS}",
                tally.actions[slot]
            ));
        }
    }
    problems
}

fn print_counts(tally: &Tally, moved: &[u64], frames: usize, elapsed: Duration) {
    println!(
        "random frames: {frames} frames in {:.1} s; verdicts: XDP_PASS {}, XDP_TX {}, \
         XDP_REDIRECT {}, other {}",
        elapsed.as_secs_f64(),
        tally.actions[0],
        tally.actions[1],
        tally.actions[2],
        tally.actions[3]
    );
    println!("  {:<22} {:>10} {:>10}", "counter", "model", "program");
    for counter in Counter::ALL {
        println!(
            "  {:<22} {:>10} {:>10}",
            counter.name(),
            tally.counter(counter),
            moved[counter as usize]
        );
    }
}

/// Every rule [`source_of`] names is in [`RULES`], and every rule produces a
/// counter: the two lists cannot drift apart.
fn check_model_names() {
    for counter in Counter::ALL {
        if let Source::Rule(name) = source_of(counter) {
            assert!(
                RULES.iter().any(|(rule, _)| *rule == name),
                "source_of({}) names rule {name:?}, which is not in model::RULES",
                counter.name()
            );
        }
    }
    for (rule, _) in RULES {
        assert!(
            Counter::ALL
                .iter()
                .any(|&c| source_of(c) == Source::Rule(rule)
                    || (rule == "ethernet_header"
                        && source_of(c) == Source::KernelRefusesShortFrames)),
            "rule {rule} produces no counter in source_of"
        );
    }
}

/// `pass_short_frame` is exempt from the coverage check because the kernel refuses
/// frames shorter than an Ethernet header: checked here, so the exemption ends the
/// day a kernel lets them through.
fn check_short_frames_refused(steer: &Steer) {
    let frame = [0u8; ETH_HLEN];
    for len in [0, 1, ETH_HLEN - 1] {
        match steer.try_run_with(&frame[..len], RunOptions::default()) {
            Err(ProgramError::SyscallError(SyscallError { io_error, .. }))
                if io_error.raw_os_error() == Some(libc::EINVAL) => {}
            other => panic!(
                "a {len}-byte frame was not refused with EINVAL ({other:?}): pass_short_frame \
                 is reachable, remove its exemption in model::source_of"
            ),
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page).expect("a positive page size")
}

/// The longest frame BPF_PROG_TEST_RUN accepts for this program (binary search over
/// a valid UDP frame's length).
fn frame_limit(steer: &Steer) -> usize {
    let frame_of = |len: usize| {
        let mut frame = Ipv4Frame::udp(
            [0; 6],
            [2; 6],
            [192, 0, 2, 1].into(),
            [192, 0, 2, 2].into(),
            9,
            &[],
        )
        .bytes();
        frame.resize(len, 0);
        frame
    };
    let accepted = |len: usize| {
        steer
            .try_run_with(&frame_of(len), RunOptions::default())
            .is_ok()
    };
    let (mut lo, mut hi) = (ETH_HLEN + 20, 65_536);
    assert!(accepted(lo), "BPF_PROG_TEST_RUN refuses a {lo}-byte frame");
    while lo + 1 < hi {
        let mid = (lo + hi) / 2;
        if accepted(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}
