//! A rule added while flows run. The kernel alone stops a flow at the packet after
//! the rule; the fast path must stop it within the documented bound: on interfaces
//! that already verify flows, within one verification period (`refresh_ms`); on
//! open interfaces (no rules before), within the re-assessment period (2 s) plus one
//! verification period. Two UDP streams (from the WAN and the LAN client) run; a
//! drop rule for their VIP and port is added a second in.

use std::{
    net::SocketAddrV4,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use ha_tests::{
    lab::{Counter, Lab, Node, StreamReport, net, vip},
    root::require_root,
};
use ha_user::proto::Event;

use crate::{
    describe,
    firewall::{EXTRA_HTTP, REFRESH, TABLE, load, ruleset},
    flows::Flow,
    kernel_lab, start_fast_path, wait_fast_path,
};

/// How often the controller looks at the router's forwarding again
/// (`ha-user`'s `fast_path::PERIOD`).
const REASSESSMENT: Duration = Duration::from_secs(2);
/// What a loaded machine may add: the gathering itself, scheduling, the in-flight
/// datagrams.
const MARGIN: Duration = Duration::from_millis(500);
/// When the rule is added, after the streams start.
const RULE_AT: Duration = Duration::from_millis(1000);
/// Stream rate.
const RATE: u64 = 200;

/// What became of one stream around the rule.
#[derive(Debug)]
struct Stop {
    flow: Flow,
    /// Datagrams sent before the rule was being loaded (by the stream's schedule),
    /// and how many of them were answered.
    before: (u64, u64),
    /// From the rule to the send time of the last answered datagram (negative: the
    /// last answer was sent before the rule).
    stop_ms: f64,
    /// Answered datagrams sent after the rule.
    after: u64,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} answered before the rule; last answered datagram sent {:.0} ms after it ({} \
             answered after it)",
            self.before.1, self.before.0, self.stop_ms, self.after
        )
    }
}

fn unix_ms(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// Runs both streams for `length`, adds `rule` (a whole rule set replacing the
/// current one) [`RULE_AT`] in, and measures when each stream stopped.
fn stop_after_rule(lab: &Lab, rule: &str, length: Duration) -> (Vec<Stop>, SystemTime) {
    let to = SocketAddrV4::new(vip(net("192.168.1.64/27")), lab.spec().udp_port);
    let flows = [Node::WanClient, Node::LanClient].map(|from| Flow::Udp {
        from,
        to,
        rate: RATE,
        duration: length,
    });
    let running: Vec<_> = flows.iter().map(|f| f.start(lab)).collect();
    std::thread::sleep(RULE_AT);
    // The rule takes effect while `nft` runs: datagrams sent before it starts count
    // as before the rule, the stop is measured from its end.
    let loading = SystemTime::now();
    load(lab, "added", rule);
    let ruled = SystemTime::now();
    let reports: Vec<StreamReport> = running.into_iter().map(|r| r.wait_report()).collect();
    let (loading_ms, rule_ms) = (unix_ms(loading), unix_ms(ruled));
    let stops = flows
        .iter()
        .zip(reports)
        .map(|(flow, report)| {
            let answers = report.answers.clone().unwrap_or_default();
            let at = |sent_ms: f64| report.start_unix_ms + sent_ms - rule_ms;
            let before = |sent_ms: f64| report.start_unix_ms + sent_ms < loading_ms;
            let sent_before = (0..report.sent)
                .filter(|seq| before(*seq as f64 * 1e3 / RATE as f64))
                .count() as u64;
            let answered_before = answers.iter().filter(|a| before(a.sent_ms)).count() as u64;
            let after = answers.iter().filter(|a| at(a.sent_ms) >= 0.0).count() as u64;
            let stop_ms = answers
                .iter()
                .map(|a| at(a.sent_ms))
                .fold(f64::NEG_INFINITY, f64::max);
            Stop {
                flow: *flow,
                before: (sent_before, answered_before),
                stop_ms,
                after,
            }
        })
        .collect();
    (stops, ruled)
}

/// Asserts the streams flowed until the rule and stopped within `bound` of it.
fn check(case: &str, stops: &[Stop], bound: Duration, problems: &mut Vec<String>) {
    for stop in stops {
        println!("  {case}: {}: {stop}", stop.flow);
        // A datagram or two may be in flight at the rule.
        if stop.before.1 + 2 < stop.before.0 {
            problems.push(format!(
                "{case}: {}: not flowing before the rule: {stop}",
                stop.flow
            ));
        }
        if stop.stop_ms > bound.as_secs_f64() * 1e3 {
            problems.push(format!(
                "{case}: {}: still answered {:.0} ms after the rule, beyond {bound:?}: {stop}",
                stop.flow, stop.stop_ms
            ));
        }
    }
}

#[test]
fn rule_added_while_flows_run() {
    if !require_root("rule_added_while_flows_run") {
        return;
    }
    let mut lab = kernel_lab("ha-f-change-");
    let to = vip(net("192.168.1.64/27"));
    let port = lab.spec().udp_port;
    let drop = format!("ip daddr {to} udp dport {port} drop");
    // Verifying before the rule: a port drop that does not touch the streams.
    let before = format!("ip daddr {to} tcp dport {EXTRA_HTTP} drop");
    let open_then_ruled = ruleset("accept", std::slice::from_ref(&drop));
    let verifying = ruleset("accept", std::slice::from_ref(&before));
    let verifying_then_ruled = ruleset("accept", &[before.clone(), drop.clone()]);
    let open_length = RULE_AT + REASSESSMENT + REFRESH + MARGIN * 2;
    let verifying_length = RULE_AT + REFRESH + MARGIN * 2;
    let mut problems = Vec::new();

    println!("kernel alone, no rules before:");
    lab.exec_ok(Node::Router, &["nft", "flush", "ruleset"])
        .expect("nft flush ruleset");
    let (kernel_open, _) = stop_after_rule(&lab, &open_then_ruled, open_length);
    check("kernel, open", &kernel_open, MARGIN, &mut problems);
    println!("kernel alone, a rule set before:");
    load(&lab, "before", &verifying);
    let (kernel_verifying, _) = stop_after_rule(&lab, &verifying_then_ruled, verifying_length);
    check(
        "kernel, verifying",
        &kernel_verifying,
        MARGIN,
        &mut problems,
    );
    assert!(
        problems.is_empty(),
        "the kernel alone does not stop the streams at the rule, so the scenario shows \
         nothing:\n  {}",
        problems.join("\n  ")
    );

    lab.exec_ok(Node::Router, &["nft", "flush", "ruleset"])
        .expect("nft flush ruleset");
    start_fast_path(&mut lab);
    let interfaces = wait_fast_path(&lab, false, Duration::from_secs(5));
    println!("fast path, no rules before: {}", describe(&interfaces));
    let mark = lab.event_mark().expect("events");
    let counters = lab.xdp_counters().expect("counters");
    let (fast_open, ruled) = stop_after_rule(&lab, &open_then_ruled, open_length);
    let moved = lab.xdp_counters().expect("counters").since(&counters);
    let switched = lab
        .wait_for_event(mark, Duration::ZERO, "fast-path verifying", |record| {
            matches!(&record.event, Event::FastPath { interfaces }
                if interfaces.iter().all(|i| i.verify))
            .then(|| record.at())
        })
        .ok();
    println!(
        "  fast path: {moved}; interfaces verifying {} after the rule",
        switched
            .and_then(|at| at.duration_since(ruled).ok())
            .map_or("(never)".to_owned(), |d| format!(
                "{:.0} ms",
                d.as_secs_f64() * 1e3
            ))
    );
    check_steered("fast path, open", &moved, &mut problems);
    check(
        "fast path, open",
        &fast_open,
        REASSESSMENT + REFRESH + MARGIN,
        &mut problems,
    );

    println!("fast path, a rule set before:");
    load(&lab, "before", &verifying);
    let interfaces = wait_fast_path(&lab, true, REASSESSMENT + MARGIN * 2);
    println!("  {}", describe(&interfaces));
    let chain = format!("nftables chain inet {TABLE} forward");
    assert!(
        interfaces
            .iter()
            .all(|i| i.reasons.iter().any(|r| r.starts_with(&chain))),
        "the interfaces should verify because of {chain}"
    );
    let counters = lab.xdp_counters().expect("counters");
    let (fast_verifying, _) = stop_after_rule(&lab, &verifying_then_ruled, verifying_length);
    let moved = lab.xdp_counters().expect("counters").since(&counters);
    println!("  fast path: {moved}");
    check_steered("fast path, verifying", &moved, &mut problems);
    check(
        "fast path, verifying",
        &fast_verifying,
        REFRESH + MARGIN,
        &mut problems,
    );
    assert!(
        problems.is_empty(),
        "the fast path does not stop flows like the kernel:\n  {}",
        problems.join("\n  ")
    );
}

/// Both streams were steered before the rule: at least half of what they sent
/// before it, from each side.
fn check_steered(case: &str, moved: &ha_tests::lab::XdpCounters, problems: &mut Vec<String>) {
    let need = RATE * RULE_AT.as_millis() as u64 / 1000 / 2;
    for verdict in [Counter::Tx, Counter::Redirect] {
        if moved.get(verdict) < need {
            problems.push(format!(
                "{case}: {} = {} while the streams ran, below {need}: the fast path did not \
                 carry them",
                verdict.name(),
                moved.get(verdict)
            ));
        }
    }
}
