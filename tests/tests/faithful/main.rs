//! Never worse than the kernel (root, lab, native XDP): real tools through the lab's
//! router, once with the kernel's forwarding alone (the classic static routes,
//! `ha-user` not running) and once with the fast path (`ha-user run`), in the same
//! network and the same order; every outcome must be the same both ways. The kernel
//! is the judge, not the project's own idea of what should happen: each scenario
//! checks only that the kernel's own outcomes are the ones the scenario is built to
//! show (a rule set that refused nothing would prove nothing), and that the fast path
//! really took part where it should (its verdict counters, its flow counters from
//! `ha-user stats --json`, its `fast-path` events).
//!
//! - `mtu.rs`: a WAN MTU larger than the LAN's (`ping -M do` gets "fragmentation
//!   needed", `ping -M dont` is fragmented by the kernel), and jumbo frames on MTU
//!   9000 links (native attach on both router ports, 8000-byte and MTU-sized frames
//!   steered, delivered and counted whole).
//! - `firewall.rs`: three nftables rule sets in the router's forward chain (a port
//!   drop, a source drop, a stateful set); probes by `curl`, `ping` and UDP, and
//!   long-lived flows that the fast path must carry.
//! - `change.rs`: a drop rule added while flows run stops them within the documented
//!   bound, as the kernel alone stops them at once.
//! - `conntrack.rs`: a UDP flow that outlives its conntrack entry, and one that
//!   resumes shortly before the entry would expire.
//!
//! Every case prints its outcomes both ways and the counters it measured. The whole
//! suite takes about 80 s here.

mod change;
#[path = "../common/mod.rs"]
mod common;
mod conntrack;
mod firewall;
mod flows;
mod mtu;
mod probe;

use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use ha_common::FlowCounter;
use ha_tests::lab::{Counter, Lab, Node, XdpCounters, XdpMode, time_scale};
use ha_user::proto::{Event, Stats, events::FastPathInterface, reports::Named};

use crate::probe::{Outcome, Probe};

/// The lab of prefix `prefix` with the classic static routes and no controller: the
/// kernel's forwarding alone until [`start_fast_path`].
///
/// The LAN client ignores ICMP redirects, in both runs. The router sends one when it
/// forwards the LAN client's datagram back out of the LAN (the server is on the same
/// link); a client that follows it sends the rest of its flow straight to the
/// server, past the router, so what the router's forwarding does to that flow would
/// no longer be measured (see the README on ICMP redirects).
pub fn kernel_lab(prefix: &str) -> Lab {
    let mut spec = common::spec(prefix, XdpMode::Native);
    spec.start_controller = false;
    let lab = common::build(spec);
    lab.ignore_icmp_redirects(Node::LanClient)
        .unwrap_or_else(|e| panic!("{e:#}"));
    lab
}

/// Starts `ha-user run` in the lab and waits until every prefix is steered to its
/// owner, its map and the kernel routes agreeing.
pub fn start_fast_path(lab: &mut Lab) {
    lab.start_controller(&[])
        .unwrap_or_else(|e| panic!("starting ha-user: {e:#}"));
    lab.wait_steady(Duration::from_secs(10) * time_scale())
        .unwrap_or_else(|e| panic!("{e:#}"));
    common::assert_agreement(lab);
}

/// One probe's result in one run: its outcome and, with the fast path, what its
/// counters did meanwhile.
pub struct ProbeRun {
    pub outcome: Outcome,
    pub moved: Option<XdpCounters>,
}

impl ProbeRun {
    /// Frames the fast path steered during the probe.
    pub fn steered(&self) -> u64 {
        self.moved
            .map_or(0, |m| m.get(Counter::Tx) + m.get(Counter::Redirect))
    }
}

/// Runs `probes` one after the other; with `counters`, reads the fast path's counters
/// around each.
pub fn run_probes(lab: &Lab, probes: &[Probe], counters: bool) -> Vec<ProbeRun> {
    probes
        .iter()
        .map(|probe| {
            let before = counters.then(|| lab.xdp_counters().expect("XDP counters"));
            let outcome = probe.run(lab).unwrap_or_else(|e| panic!("{probe}: {e:#}"));
            let moved = before.map(|b| lab.xdp_counters().expect("XDP counters").since(&b));
            ProbeRun { outcome, moved }
        })
        .collect()
}

/// Prints the outcomes of both runs side by side, and returns the probes whose
/// outcomes differ.
pub fn compare(
    case: &str,
    probes: &[Probe],
    kernel: &[ProbeRun],
    fast: &[ProbeRun],
) -> Vec<String> {
    let mut table =
        format!("{case}: probe | kernel alone | with the fast path | fast path counters\n");
    let mut differences = Vec::new();
    for ((probe, k), f) in probes.iter().zip(kernel).zip(fast) {
        let moved = f.moved.map_or_else(|| "-".to_owned(), |m| m.to_string());
        let mark = if k.outcome == f.outcome {
            ""
        } else {
            "  <-- DIFFERS"
        };
        let _ = writeln!(
            table,
            "  {probe} | {} | {} | {moved}{mark}",
            k.outcome, f.outcome
        );
        if k.outcome != f.outcome {
            differences.push(format!(
                "{probe}: kernel alone {}, with the fast path {} (counters {moved})",
                k.outcome, f.outcome
            ));
        }
    }
    println!("{table}");
    differences
}

/// Checks that the kernel's own outcomes are what the scenario is built on: the
/// probes `allowed` says were answered, the others not.
pub fn check_scenario(case: &str, probes: &[Probe], kernel: &[ProbeRun], allowed: &[bool]) {
    let wrong: Vec<String> = probes
        .iter()
        .zip(kernel)
        .zip(allowed)
        .filter(|((_, k), allowed)| k.outcome.answered() != **allowed)
        .map(|((probe, k), allowed)| {
            format!(
                "{probe}: the kernel alone gave {} (the scenario needs it {})",
                k.outcome,
                if *allowed { "answered" } else { "refused" }
            )
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{case}: the lab does not set up the scenario (its kernel outcomes are not the \
         ones the comparison is about):\n  {}",
        wrong.join("\n  ")
    );
}

/// The fast path's flow counters (`ha-user stats --json`).
pub fn flow_counters(lab: &Lab) -> FlowCounts {
    let stats: Stats = lab
        .ha_user_json(&["stats"])
        .unwrap_or_else(|e| panic!("{e:#}"));
    FlowCounts(FlowCounter::ALL.map(|c| stats.flows.get(&Named(c)).copied().unwrap_or(0)))
}

/// The flow counters, by [`FlowCounter`] index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowCounts([u64; FlowCounter::COUNT as usize]);

impl FlowCounts {
    pub fn get(&self, counter: FlowCounter) -> u64 {
        self.0[counter as usize]
    }

    pub fn since(&self, earlier: &FlowCounts) -> FlowCounts {
        let mut values = self.0;
        for (value, before) in values.iter_mut().zip(earlier.0) {
            *value = value.wrapping_sub(before);
        }
        FlowCounts(values)
    }
}

impl std::fmt::Display for FlowCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = FlowCounter::ALL
            .iter()
            .filter(|&&c| self.get(c) != 0)
            .map(|&c| format!("{}={}", c.name(), self.get(c)))
            .collect();
        if parts.is_empty() {
            f.write_str("(all zero)")
        } else {
            f.write_str(&parts.join(" "))
        }
    }
}

/// The interfaces of the controller's latest `fast-path` event, once every interface
/// there verifies flows (`verify`) or none does; waits up to `timeout` for it.
pub fn wait_fast_path(lab: &Lab, verify: bool, timeout: Duration) -> Vec<FastPathInterface> {
    let what = if verify {
        "every interface verifying flows"
    } else {
        "every interface open"
    };
    let deadline = Instant::now() + timeout;
    loop {
        let records = lab
            .events()
            .and_then(|e| e.records())
            .unwrap_or_else(|e| panic!("{e:#}"));
        let latest = records.iter().rev().find_map(|record| match &record.event {
            Event::FastPath { interfaces } => Some(interfaces.clone()),
            _ => None,
        });
        if let Some(interfaces) = &latest
            && !interfaces.is_empty()
            && interfaces.iter().all(|i| i.verify == verify)
        {
            return interfaces.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the controller's latest fast-path event is not one with {what} after \
             {timeout:?}: {}",
            latest.as_deref().map_or("(none)".to_owned(), describe)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `fast-path` interfaces as one line.
pub fn describe(interfaces: &[FastPathInterface]) -> String {
    interfaces
        .iter()
        .map(|i| {
            format!(
                "{} {} ({})",
                i.iface,
                if i.verify { "verifies" } else { "open" },
                i.reasons.join("; ")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}
