//! The router's firewall: three nftables rule sets in its forward chain, each loaded
//! with `nft -f` before the kernel's run and kept for the fast path's. Probes (`curl`
//! to port 80 and to a port the rules refuse, a UDP echo, `ping`) from both clients,
//! and long-lived flows, must be allowed or refused alike both ways; with the fast
//! path, the interfaces verify flows (the `fast-path` event names the chain), the
//! refused traffic is never steered, and the allowed long-lived flows are, but for
//! the one packet per flow and verification period that takes the kernel's path.

use std::{net::SocketAddrV4, time::Duration};

use ha_common::FlowCounter;
use ha_tests::{
    lab::{Counter, Lab, Node, Proc, XdpCounters, net, ns, vip},
    root::require_root,
};

use crate::{
    FlowCounts, ProbeRun, check_scenario, compare, describe, flow_counters,
    flows::{Delivery, Flow},
    kernel_lab,
    probe::Probe,
    run_probes, start_fast_path, wait_fast_path,
};

/// The nftables table the suite's rule sets live in.
pub const TABLE: &str = "ha_faithful";
/// The port of the second web server on host2 and host3, which rule sets refuse.
pub const EXTRA_HTTP: u16 = 8080;
/// Its UDP echo (any free port: the second server needs one).
const EXTRA_UDP: u16 = 9001;
/// The fast path's verification period (`refresh_ms`, the lab's default).
pub const REFRESH: Duration = Duration::from_millis(1000);
/// Share of an allowed long-lived flow's requests the fast path must have steered.
const MIN_STEERED: f64 = 0.9;

/// A forward-chain rule set: `table inet ha_faithful` with one base chain at the
/// forward hook, policy `policy`, holding `rules`.
pub fn ruleset(policy: &str, rules: &[String]) -> String {
    let mut text = format!(
        "table inet {TABLE} {{\n\tchain forward {{\n\t\ttype filter hook forward priority \
         filter; policy {policy};\n"
    );
    for rule in rules {
        text.push_str(&format!("\t\t{rule}\n"));
    }
    text.push_str("\t}\n}\n");
    text
}

/// Replaces the router's rule set with `text` (`nft flush ruleset`, then `nft -f`).
pub fn load(lab: &Lab, name: &str, text: &str) {
    let path = lab.dir().join(format!("{name}.nft"));
    std::fs::write(&path, format!("flush ruleset\n{text}"))
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    let path_text = path.to_string_lossy().into_owned();
    lab.exec_ok(Node::Router, &["nft", "-f", &path_text])
        .unwrap_or_else(|e| panic!("loading the rule set {name}:\n{text}\n{e:#}"));
}

/// A second `ha-webd` on host2 and host3, on [`EXTRA_HTTP`]: a port that answers
/// unless a rule refuses it. Killed when the returned handles are dropped.
pub fn extra_servers(lab: &Lab) -> Vec<Proc> {
    let webd = lab.spec().bins.webd.to_string_lossy().into_owned();
    ["host2", "host3"]
        .into_iter()
        .map(|host| {
            let node = Node::host(host).expect("host");
            let http = format!("0.0.0.0:{EXTRA_HTTP}");
            let udp = format!("0.0.0.0:{EXTRA_UDP}");
            let mut proc = lab
                .spawn(
                    node,
                    &format!("web-{host}-{EXTRA_HTTP}"),
                    &[&webd, "--name", host, "--http", &http, "--udp", &udp],
                )
                .unwrap_or_else(|e| panic!("a second web server on {host}: {e:#}"));
            proc.wait_for_line("ready", Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("{e:#}"));
            proc
        })
        .collect()
}

/// The router's conntrack `invalid` statistic (`/proc/net/stat/nf_conntrack`, summed
/// over CPUs): packets conntrack found invalid, which `ct state` rules do not accept.
/// 0 while conntrack is not loaded in the router's namespace.
pub fn conntrack_invalid(lab: &Lab) -> u64 {
    let text = ns::in_netns(&lab.ns(Node::Router), || {
        std::fs::read_to_string("/proc/thread-self/net/stat/nf_conntrack")
    })
    .expect("entering the router's namespace");
    let Ok(text) = text else {
        return 0;
    };
    let mut lines = text.lines();
    let column = lines
        .next()
        .and_then(|head| head.split_whitespace().position(|name| name == "invalid"))
        .expect("an `invalid` column in /proc/net/stat/nf_conntrack");
    lines
        .filter_map(|line| line.split_whitespace().nth(column))
        .map(|hex| u64::from_str_radix(hex, 16).expect("hexadecimal statistics"))
        .sum()
}

/// Ends the TCP sockets an earlier run left on the clients and servers, so that
/// every run counts only its own packets: a connection the rules refused half-way
/// keeps retransmitting for half a minute (the server its SYN-ACK, the client its
/// data and FIN), each a packet conntrack finds invalid, during the next run.
fn end_stragglers(lab: &Lab) {
    let nodes = [Node::WanClient, Node::LanClient].into_iter().chain(
        ["host1", "host2", "host3", "host4"]
            .into_iter()
            .filter_map(|h| Node::host(h).ok()),
    );
    for node in nodes {
        lab.exec_ok(node, &["ss", "-K", "-t", "state", "syn-recv"])
            .and_then(|_| lab.exec_ok(node, &["ss", "-K", "-t", "state", "connected"]))
            .unwrap_or_else(|e| panic!("ending the TCP sockets left on {node:?}: {e:#}"));
    }
}

/// One rule set and what is sent through it.
struct Case {
    name: &'static str,
    prefix: &'static str,
    rules: String,
    /// Each probe, and whether the rule set lets it through (checked against the
    /// kernel's run: see [`check_scenario`]).
    probes: Vec<(Probe, bool)>,
    /// Long-lived flows, the same way.
    flows: Vec<(Flow, bool)>,
}

/// Everything one run sent through the rule set, and what came of it.
struct Run {
    /// Per probe, in the case's order.
    probes: Vec<ProbeRun>,
    /// Per flow, in the case's order.
    flows: Vec<Delivery>,
    /// The fast path's counters while the allowed flows ran, and while the refused
    /// probes and flows ran (all zero without a fast path).
    allowed: XdpCounters,
    refused: XdpCounters,
    /// The flow counters while the allowed flows ran.
    allowed_flows: FlowCounts,
    /// Packets the router's conntrack found invalid during the run.
    invalid: u64,
}

/// One run of `case`: the allowed probes one by one (each with its counters), the
/// allowed flows together, then every refused probe and flow together (a refused
/// probe waits out its timeout; waiting for all at once keeps the run short).
fn run(lab: &Lab, probes: &[(Probe, bool)], flows: &[(Flow, bool)], fast: bool) -> Run {
    end_stragglers(lab);
    let invalid = conntrack_invalid(lab);
    let counters = || fast.then(|| lab.xdp_counters().expect("XDP counters"));
    let since = |before: Option<XdpCounters>| {
        before.map_or_else(XdpCounters::default, |b| {
            lab.xdp_counters().expect("XDP counters").since(&b)
        })
    };
    let flow_counts = || fast.then(|| flow_counters(lab));
    let mut probe_runs: Vec<Option<ProbeRun>> = probes.iter().map(|_| None).collect();
    for (i, (probe, _)) in probes.iter().enumerate().filter(|(_, (_, a))| *a) {
        probe_runs[i] = run_probes(lab, std::slice::from_ref(probe), fast).pop();
    }

    let mut deliveries: Vec<Option<Delivery>> = flows.iter().map(|_| None).collect();
    let (before, flows_before) = (counters(), flow_counts());
    let running: Vec<(usize, _)> = flows
        .iter()
        .enumerate()
        .filter(|(_, (_, allowed))| *allowed)
        .map(|(i, (flow, _))| (i, flow.start(lab)))
        .collect();
    for (i, run) in running {
        deliveries[i] = Some(run.wait());
    }
    let allowed = since(before);
    let allowed_flows = match (flows_before, flow_counts()) {
        (Some(b), Some(a)) => a.since(&b),
        _ => FlowCounts::default(),
    };

    let before = counters();
    std::thread::scope(|scope| {
        let probe_threads: Vec<_> = probes
            .iter()
            .enumerate()
            .filter(|(_, (_, allowed))| !allowed)
            .map(|(i, (probe, _))| {
                let thread = scope
                    .spawn(move || probe.run(lab).unwrap_or_else(|e| panic!("{probe}: {e:#}")));
                (i, thread)
            })
            .collect();
        let flow_threads: Vec<_> = flows
            .iter()
            .enumerate()
            .filter(|(_, (_, allowed))| !allowed)
            .map(|(i, (flow, _))| (i, scope.spawn(move || flow.start(lab).wait())))
            .collect();
        for (i, thread) in probe_threads {
            let outcome = thread
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            probe_runs[i] = Some(ProbeRun {
                outcome,
                moved: None,
            });
        }
        for (i, thread) in flow_threads {
            deliveries[i] = Some(
                thread
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p)),
            );
        }
    });
    let refused = since(before);
    Run {
        probes: probe_runs
            .into_iter()
            .map(|r| r.expect("every probe ran"))
            .collect(),
        flows: deliveries
            .into_iter()
            .map(|d| d.expect("every flow ran"))
            .collect(),
        allowed,
        refused,
        allowed_flows,
        invalid: conntrack_invalid(lab) - invalid,
    }
}

/// Runs `case` with the kernel alone, then with the fast path, and compares.
fn firewall(case: Case) {
    let Case {
        name,
        prefix,
        rules,
        probes,
        flows,
    } = case;
    if !require_root(name) {
        return;
    }
    let mut lab = kernel_lab(prefix);
    let _extra = extra_servers(&lab);
    load(&lab, name, &rules);
    println!("{name}: rule set\n{rules}");
    let (probe_list, allowed): (Vec<Probe>, Vec<bool>) = probes.iter().cloned().unzip();

    let kernel = run(&lab, &probes, &flows, false);
    check_scenario(name, &probe_list, &kernel.probes, &allowed);
    for ((flow, allowed), delivery) in flows.iter().zip(&kernel.flows) {
        let expected = if *allowed {
            delivery.all()
        } else {
            delivery.answered == 0
        };
        assert!(
            expected,
            "{name}: the kernel alone should {} {flow}: {delivery}",
            if *allowed { "carry all of" } else { "refuse" }
        );
    }

    start_fast_path(&mut lab);
    let interfaces = wait_fast_path(&lab, true, Duration::from_secs(5));
    println!("{name}: fast-path event: {}", describe(&interfaces));
    let chain = format!("nftables chain inet {TABLE} forward");
    for iface in &interfaces {
        assert!(
            iface.reasons.iter().any(|r| r.starts_with(&chain)),
            "{name}: {} should verify flows because of {chain}: {:?}",
            iface.iface,
            iface.reasons
        );
    }
    let fast = run(&lab, &probes, &flows, true);
    let mut problems = compare(name, &probe_list, &kernel.probes, &fast.probes);
    println!(
        "{name}: fast path while the refused probes and flows ran: {}",
        fast.refused
    );
    println!("{name}: long-lived flows | kernel alone | with the fast path");
    for (((flow, _), k), f) in flows.iter().zip(&kernel.flows).zip(&fast.flows) {
        println!("  {flow} | {k} | {f}");
        if k.answered != f.answered || k.sent != f.sent {
            problems.push(format!("{flow}: kernel alone {k}, with the fast path {f}"));
        }
    }
    println!(
        "{name}: fast path while the allowed flows ran: {}; flows: {}",
        fast.allowed, fast.allowed_flows
    );
    println!(
        "{name}: packets the router's conntrack found invalid: {} with the kernel alone, {} \
         with the fast path",
        kernel.invalid, fast.invalid
    );
    if fast.invalid > kernel.invalid {
        problems.push(format!(
            "the router's conntrack found {} packets invalid with the fast path, {} with the \
             kernel alone (`ct state` rules accept no invalid packet)",
            fast.invalid, kernel.invalid
        ));
    }
    check_flow_steering(&flows, &fast, &mut problems);
    assert!(
        problems.is_empty(),
        "{name}: the fast path differs from the kernel:\n  {}",
        problems.join("\n  ")
    );
}

/// The fast path's part: each client's allowed flows steered but for a few packets
/// per verification period (`tx` from the LAN, `redirect` from the WAN), at least one
/// kernel-forwarded packet per flow and period (`pass_unverified`, and what `ha_learn`
/// recorded or renewed), and nothing steered while the refused probes and flows ran.
fn check_flow_steering(flows: &[(Flow, bool)], fast: &Run, problems: &mut Vec<String>) {
    let allowed: Vec<&Flow> = flows.iter().filter(|(_, a)| *a).map(|(f, _)| f).collect();
    let moved = fast.allowed;
    for (client, verdict) in [
        (Node::LanClient, Counter::Tx),
        (Node::WanClient, Counter::Redirect),
    ] {
        let requests: u64 = allowed
            .iter()
            .filter(|f| f.from() == client)
            .map(|f| f.requests())
            .sum();
        let need = (requests as f64 * MIN_STEERED) as u64;
        if moved.get(verdict) < need {
            problems.push(format!(
                "{client}'s allowed flows ({requests} requests) were steered {} times ({}), \
                 below {need}: {moved}",
                moved.get(verdict),
                verdict.name()
            ));
        }
    }
    let periods: u64 = allowed
        .iter()
        .map(|f| (f.duration().as_millis() / REFRESH.as_millis()) as u64)
        .sum();
    let learned = fast.allowed_flows.get(FlowCounter::RecordedKernel)
        + fast.allowed_flows.get(FlowCounter::Verified);
    for (what, seen) in [
        ("pass_unverified", moved.get(Counter::PassUnverified)),
        ("recorded_kernel + verified", learned),
    ] {
        if seen < periods {
            problems.push(format!(
                "{what} = {seen} during the allowed flows, below one per flow and \
                 verification period ({periods}): the kernel did not see them"
            ));
        }
    }
    let steered = fast.refused.get(Counter::Tx) + fast.refused.get(Counter::Redirect);
    if steered > 0 {
        problems.push(format!(
            "{steered} frames were steered while the refused probes and flows ran (theirs, \
             or late frames of an allowed connection that broke before): {}",
            fast.refused
        ));
    }
}

fn udp(from: Node, to: SocketAddrV4, millis: u64) -> Flow {
    Flow::Udp {
        from,
        to,
        rate: 200,
        duration: Duration::from_millis(millis),
    }
}

fn http(from: Node, to: SocketAddrV4) -> Flow {
    Flow::Http {
        from,
        to,
        requests: 100,
        interval: Duration::from_millis(20),
    }
}

const ALLOWED_MS: u64 = 2000;
const REFUSED_MS: u64 = 1000;

/// (a) A port drop: `ip daddr 192.168.1.65 tcp dport 8080 drop`; port 80, the UDP
/// echo and ping stay allowed, from both clients.
#[test]
fn port_drop() {
    let to = vip(net("192.168.1.64/27"));
    let (wan, lan) = (Node::WanClient, Node::LanClient);
    let echo = SocketAddrV4::new(to, 9000);
    firewall(Case {
        name: "port_drop",
        prefix: "ha-f-port-",
        rules: ruleset(
            "accept",
            &[format!("ip daddr {to} tcp dport {EXTRA_HTTP} drop")],
        ),
        probes: vec![
            (Probe::http(wan, to, 80), true),
            (Probe::http(wan, to, EXTRA_HTTP), false),
            (Probe::udp(wan, to, 9000), true),
            (Probe::ping(wan, to, 56, true), true),
            (Probe::http(lan, to, 80), true),
            (Probe::http(lan, to, EXTRA_HTTP), false),
            (Probe::udp(lan, to, 9000), true),
        ],
        flows: vec![
            (udp(wan, echo, ALLOWED_MS), true),
            (udp(lan, echo, ALLOWED_MS), true),
            (http(wan, SocketAddrV4::new(to, 80)), true),
            (http(wan, SocketAddrV4::new(to, EXTRA_HTTP)), false),
        ],
    });
}

/// (b) A source drop: `ip saddr 10.0.0.2 ip daddr 192.168.1.97 drop`; the WAN client
/// reaches the other VIPs, the LAN client this one.
#[test]
fn source_drop() {
    let (open, closed) = (vip(net("192.168.1.64/27")), vip(net("192.168.1.96/27")));
    let (wan, lan) = (Node::WanClient, Node::LanClient);
    firewall(Case {
        name: "source_drop",
        prefix: "ha-f-source-",
        rules: ruleset(
            "accept",
            &[format!("ip saddr 10.0.0.2 ip daddr {closed} drop")],
        ),
        probes: vec![
            (Probe::http(wan, closed, 80), false),
            (Probe::udp(wan, closed, 9000), false),
            (Probe::ping(wan, closed, 56, true), false),
            (Probe::http(wan, open, 80), true),
            (Probe::udp(wan, open, 9000), true),
            (Probe::ping(wan, open, 56, true), true),
            (Probe::http(lan, closed, 80), true),
            (Probe::udp(lan, closed, 9000), true),
        ],
        flows: vec![
            (udp(wan, SocketAddrV4::new(open, 9000), ALLOWED_MS), true),
            (udp(lan, SocketAddrV4::new(closed, 9000), ALLOWED_MS), true),
            (udp(wan, SocketAddrV4::new(closed, 9000), REFUSED_MS), false),
        ],
    });
}

/// (c) A stateful set, policy drop: `ct state established,related accept`, new
/// connections only to tcp/80. From the WAN only HTTP on port 80 passes. The LAN
/// client's HTTP is refused too: its server answers it directly (same subnet), so the
/// router's conntrack sees only one direction and finds the handshake's ACK invalid.
#[test]
fn stateful() {
    let to = vip(net("192.168.1.64/27"));
    let (wan, lan) = (Node::WanClient, Node::LanClient);
    firewall(Case {
        name: "stateful",
        prefix: "ha-f-state-",
        rules: ruleset(
            "drop",
            &[
                "ct state established,related accept".to_owned(),
                "ct state new tcp dport 80 accept".to_owned(),
            ],
        ),
        probes: vec![
            (Probe::http(wan, to, 80), true),
            (Probe::http(wan, to, EXTRA_HTTP), false),
            (Probe::udp(wan, to, 9000), false),
            (Probe::ping(wan, to, 56, true), false),
            (Probe::http(lan, to, 80), false),
            (Probe::udp(lan, to, 9000), false),
        ],
        flows: vec![
            (http(wan, SocketAddrV4::new(to, 80)), true),
            (udp(wan, SocketAddrV4::new(to, 9000), REFUSED_MS), false),
        ],
    });
}
