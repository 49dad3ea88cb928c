//! The differential test, the oracle (root, lab): the same corpus of frames through
//! the lab's router twice, once with the kernel's forwarding alone (the classic
//! static routes, `ha-user` not running) and once with the fast path (`ha-user run`,
//! native XDP), from the LAN and the WAN side. Every web server and both clients
//! capture what they receive; for every frame, what was delivered where (every
//! byte) and which ICMP errors the router sent about it must be the same both ways,
//! except for the accepted cases written down in `compare.rs`. The kernel's pass
//! runs twice and must agree with itself, so that the harness's own noise can never
//! pass for a difference. At least
//! [`MIN_STEERED`] of the corpus must have been steered by the fast path (its
//! counters), so that passing everything to the kernel cannot pass the test.
//!
//! The corpus (`corpus.rs`): every frame of the packet fixtures' table from both
//! sides, and seeded random and mutated frames (`ha_tests::frames`): 1,400 by
//! default, 10,000 with `HA_LONG=1`. The WAN's MTU is larger than the LAN's
//! ([`WAN_MTU`], [`LAN_MTU`]), so some frames do not fit the LAN.
//!
//! Set for both runs alike: a default route on the router via the WAN client (the
//! Internet side), as a router has; without one, frames to other destinations get
//! "net unreachable" errors from the kernel's route-error limiter (a token bucket
//! per peer, `net.ipv4.route.error_cost`, not settable per namespace), so whether
//! one is sent depends on timing. GRO, GSO and TSO off on the router's two ports and on
//! the switch port facing it (no frames merged or split by offloads, with or without
//! XDP's NAPI); ICMP rate limits off on the router (`icmp_ratelimit=0`, a million
//! messages per second), so every error the kernel would send is sent; address
//! resolution that fails after one probe and 100 ms (the "host unreachable" about
//! a frame arrives within its run); no netfilter
//! on the switch's bridged traffic (`bridge-nf-call-*=0`: br_netfilter would
//! fragment IPv4 too long for a port, which no switch does).
//!
//! The run prints its seed; `HA_SEED=<seed>` repeats it, `HA_SEED=<seed>
//! HA_FRAME=<n>` sends random frame n alone. The full table of differences goes to
//! `target/oracle/differences.md`.

#[path = "../common/mod.rs"]
mod common;
mod compare;
mod corpus;
mod observe;
#[path = "../fixtures/passed.rs"]
mod passed;
mod report;
#[expect(dead_code, reason = "the oracle takes the fixtures' input frames only")]
#[path = "../fixtures/table.rs"]
mod table;
#[expect(dead_code, reason = "the oracle takes the fixtures' input frames only")]
#[path = "../fixtures/world.rs"]
mod world;

use std::{fmt::Write as _, time::Duration};

use ha_tests::{
    frames,
    lab::{Counter, Lab, Node, XdpMode, workspace_root},
    mode,
    root::require_root,
};

/// MTU of the LAN, as the lab builds it.
pub const LAN_MTU: u32 = 1500;
/// MTU of the WAN (router `eth0` and the WAN client), set by [`prepare`].
pub const WAN_MTU: u32 = 3400;
/// Share of the corpus the fast path must have steered.
const MIN_STEERED: f64 = 0.30;
/// Pause after each frame: the kernel's path is never loaded.
const GAP: Duration = Duration::from_micros(500);

#[test]
fn same_outcome_as_the_kernel() {
    if !require_root("oracle") {
        return;
    }
    let seed = frames::seed();
    let only = frames::only_frame();
    let random = mode::size(1_400, 10_000);
    let mut spec = common::spec("ha-oracle-", XdpMode::Native);
    spec.start_controller = false;
    let mut lab = common::build(spec);
    prepare(&lab).unwrap_or_else(|e| panic!("preparing the lab: {e:#}"));
    let corpus = corpus::build(&lab, seed, random, only);
    let fixtures = corpus
        .entries
        .iter()
        .filter(|e| e.origin.starts_with("fixture"))
        .count();
    println!(
        "oracle: seed {seed:#018x} ({}={seed:#x} repeats this run); corpus {} frames: {fixtures} \
         fixture frames (both sides), {} random",
        frames::SEED_ENV,
        corpus.entries.len(),
        corpus.entries.len() - fixtures
    );

    let kernel =
        observe::observe(&lab, &corpus, GAP).unwrap_or_else(|e| panic!("the kernel's run: {e:#}"));
    // The harness's own check: the kernel must agree with itself, or no difference
    // below would mean anything.
    let again = observe::observe(&lab, &corpus, GAP)
        .unwrap_or_else(|e| panic!("the kernel's second run: {e:#}"));
    let unsteady = compare::differences(&corpus, &kernel, &again);

    lab.start_controller(&[])
        .unwrap_or_else(|e| panic!("starting ha-user: {e:#}"));
    lab.wait_steady(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let counters = lab.xdp_counters().expect("XDP counters");
    let csum_errors = server_csum_errors(&lab);
    let fast = observe::observe(&lab, &corpus, GAP)
        .unwrap_or_else(|e| panic!("the fast path's run: {e:#}"));
    let moved = lab.xdp_counters().expect("XDP counters").since(&counters);
    let servers_dropped = server_csum_errors(&lab) - csum_errors;
    // The fast path's run was a steady one: every prefix with its owner, map and
    // routes agreeing.
    common::assert_agreement(&lab);

    let differences = compare::differences(&corpus, &kernel, &fast);
    let (accepted, failing): (Vec<_>, Vec<_>) =
        differences.iter().partition(|d| d.accepted.is_some());
    let steered = moved.get(Counter::Tx) + moved.get(Counter::Redirect);
    let share = steered as f64 / corpus.entries.len() as f64;

    let mut header = String::new();
    let _ = writeln!(header, "# The oracle: kernel forwarding vs the fast path\n");
    let _ = writeln!(
        header,
        "seed {seed:#x}; {} frames ({fixtures} fixture frames); LAN MTU {LAN_MTU}, WAN MTU \
         {WAN_MTU}",
        corpus.entries.len()
    );
    for (name, run) in [
        ("kernel", &kernel),
        ("kernel, again", &again),
        ("fast path", &fast),
    ] {
        let records: usize = run.outcomes.iter().map(Vec::len).sum();
        let delivered = run.outcomes.iter().filter(|r| !r.is_empty()).count();
        let redirects: u32 = run.redirects.iter().sum();
        let noise: u64 = run.noise.values().sum();
        let _ = writeln!(
            header,
            "{name} run: {:.1} s, {delivered} frames with an outcome ({records} records), \
             {redirects} ICMP redirects (not compared), {noise} other frames captured",
            run.duration.as_secs_f64()
        );
    }
    let _ = writeln!(
        header,
        "fast path counters during its run: {moved}; steered {steered} of {} frames ({:.1} %, at \
         least {:.0} % required)",
        corpus.entries.len(),
        share * 100.0,
        MIN_STEERED * 100.0
    );
    let _ = writeln!(
        header,
        "differences: {} ({} accepted: {}; {} not accepted); the web servers counted \
         {servers_dropped} bad header checksums",
        differences.len(),
        accepted.len(),
        accepted_counts(&accepted),
        failing.len()
    );
    println!("{header}");
    let path = workspace_root().join("target/oracle/differences.md");
    report::write(
        &path,
        &corpus,
        &header,
        &differences.iter().collect::<Vec<_>>(),
    );
    let all = workspace_root().join("target/oracle/outcomes.md");
    std::fs::write(
        &all,
        report::outcomes(&corpus, &kernel.outcomes, &fast.outcomes),
    )
    .unwrap_or_else(|e| panic!("writing {}: {e}", all.display()));
    println!(
        "every difference, with hex dumps: {}; every frame's outcomes: {}",
        path.display(),
        all.display()
    );

    let mut problems = Vec::new();
    if !unsteady.is_empty() {
        problems.push(format!(
            "the kernel's two runs disagree on {} frames: the harness cannot tell the fast \
             path's differences from its own noise:\n{}",
            unsteady.len(),
            report::table(
                &corpus,
                &unsteady.iter().collect::<Vec<_>>(),
                Some(20),
                false
            )
        ));
    }
    if only.is_none() && share < MIN_STEERED {
        problems.push(format!(
            "the fast path steered {:.1} % of the corpus, below {:.0} %: the comparison says \
             little",
            share * 100.0,
            MIN_STEERED * 100.0
        ));
    }
    let accepted_bad_checksums = compare::bad_checksum_deliveries(&differences);
    if u64::try_from(accepted_bad_checksums).expect("fits") > servers_dropped {
        problems.push(format!(
            "{accepted_bad_checksums} bad-checksum frames were accepted as dropped by the \
             servers, but their InCsumErrors grew by {servers_dropped} only"
        ));
    }
    if !failing.is_empty() {
        problems.push(format!(
            "{} frames had another outcome with the fast path than with the kernel alone \
             (`random #N` alone again: {}={seed:#x} {}=N):\n\n{}",
            failing.len(),
            frames::SEED_ENV,
            frames::FRAME_ENV,
            report::printed(&corpus, &failing)
        ));
    }
    assert!(
        problems.is_empty(),
        "oracle, seed {seed:#x}:\n{}",
        problems.join("\n")
    );
}

/// What both runs share: the MTUs, offloads and ICMP rate limits (see the module
/// docs).
fn prepare(lab: &Lab) -> anyhow::Result<()> {
    let (wan_client, _) = lab.station(Node::WanClient)?;
    let via = wan_client.to_string();
    lab.ip(Node::Router, &["route", "add", "default", "via", &via])?;
    let mtu = WAN_MTU.to_string();
    lab.ip(Node::Router, &["link", "set", "eth0", "mtu", &mtu])?;
    lab.ip(Node::WanClient, &["link", "set", "eth0", "mtu", &mtu])?;
    for (node, dev) in [
        (Node::Router, "eth0"),
        (Node::Router, "eth1"),
        (Node::Switch, "router"),
    ] {
        lab.exec_ok(
            node,
            &[
                "ethtool", "-K", dev, "gro", "off", "gso", "off", "tso", "off",
            ],
        )?;
    }
    // The switch port hands VLAN tags to the router in the frame, as a NIC without
    // receive VLAN stripping does: a veth would pass them as metadata, out of the
    // XDP program's sight (see the README on VLAN tags).
    lab.exec_ok(Node::Switch, &["ethtool", "-K", "router", "txvlan", "off"])?;
    // A switch forwards frames as they are: no netfilter on bridged traffic, which
    // would also fragment IPv4 too long for a port (br_netfilter, built in here).
    lab.exec_ok(
        Node::Switch,
        &[
            "sysctl",
            "-qw",
            "net.bridge.bridge-nf-call-iptables=0",
            "net.bridge.bridge-nf-call-ip6tables=0",
            "net.bridge.bridge-nf-call-arptables=0",
        ],
    )?;
    lab.exec_ok(
        Node::Router,
        &[
            "sysctl",
            "-qw",
            "net.ipv4.icmp_ratelimit=0",
            "net.ipv4.icmp_msgs_per_sec=1000000",
            "net.ipv4.icmp_msgs_burst=1000000",
            // An address on a link that nobody has fails resolution after one
            // probe and 100 ms, not three probes and 3 s: its "host unreachable"
            // arrives within the run that caused it.
            "net.ipv4.neigh.eth0.mcast_solicit=1",
            "net.ipv4.neigh.eth0.retrans_time_ms=100",
            "net.ipv4.neigh.eth1.mcast_solicit=1",
            "net.ipv4.neigh.eth1.retrans_time_ms=100",
        ],
    )?;
    Ok(())
}

/// The web servers' `IpExt: InCsumErrors`, summed.
fn server_csum_errors(lab: &Lab) -> u64 {
    (1..=4)
        .map(|n| {
            lab.net_counter(Node::Host(n), "IpExt", "InCsumErrors")
                .unwrap_or_else(|e| panic!("{e:#}"))
        })
        .sum()
}

fn accepted_counts(accepted: &[&compare::Difference]) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for d in accepted {
        if let Some(case) = d.accepted {
            *counts.entry(case).or_insert(0) += 1;
        }
    }
    if counts.is_empty() {
        return "none".into();
    }
    counts
        .into_iter()
        .map(|(case, n)| format!("{n} {}", case.describe()))
        .collect::<Vec<_>>()
        .join(", ")
}
