//! End to end in the lab (root): the classic network in namespaces, real traffic
//! from the LAN and WAN clients, real failures of real web servers.
//!
//! Each test builds its own lab with a prefix of its own and removes it at the end.
//! Run one at a time (`--test-threads=1`, as `cargo xtask test` does): the labs are
//! independent, but timing bounds assume an otherwise idle machine.

use std::{
    net::SocketAddrV4,
    time::{Duration, Instant},
};

use ha_tests::{
    lab::{Counter, Fault, Node, PrefixSpec, StreamReport, XdpMode, time_scale, vip},
    root::require_root,
};
use ha_user::{
    model::Reason,
    proto::{Stats, reports::Named},
};

mod common;

use common::{assert_agreement, build, spec};

/// Datagrams per client and VIP in the steering tests.
const STEERED: u64 = 20;
/// Stream rate of the failover tests, ÷ `HA_LAB_TIME_SCALE` (a slow guest could not
/// carry 1000 datagrams per second without losing some outside the outage).
fn rate() -> u64 {
    1000 / u64::from(time_scale())
}
/// What a loaded 2-core machine may add to the configured detection time before the
/// stream sees the new owner: scheduling of the probe task, the switch, the first
/// answer's round trip. Measured figures are printed by every test.
const MARGIN: Duration = Duration::from_millis(150);

/// Every VIP, from the LAN client (XDP_TX) and the WAN client (XDP_REDIRECT), is
/// answered by its owner; each request arrives at the owner with the router's LAN MAC
/// as source and TTL 63; the data path counted exactly those packets under the
/// expected verdict and the router's kernel forwarded none of them.
fn steering(prefix: &str, mode: XdpMode) {
    if !require_root(prefix) {
        return;
    }
    let lab = build(spec(prefix, mode));
    let router_mac = lab.router_lan_mac();
    for p in PrefixSpec::classic() {
        let owner = p.owner.as_str();
        let vip = vip(p.cidr);
        let target = SocketAddrV4::new(vip, lab.spec().udp_port);
        let owner_mac = lab.host_mac(owner).expect("host MAC");
        for (client, verdict) in [
            (Node::LanClient, Counter::Tx),
            (Node::WanClient, Counter::Redirect),
        ] {
            let capture = lab
                .capture(Node::host(owner).expect("host"), "eth0")
                .expect("capture");
            let counters = lab.xdp_counters().expect("counters");
            let forwarded = lab.forwarded_datagrams().expect("ForwDatagrams");
            for i in 0..STEERED {
                let payload = format!("steer-{i}");
                let answer = lab
                    .udp_ask(client, target, &payload, Duration::from_secs(1))
                    .unwrap_or_else(|e| panic!("{client} -> {target}: {e:#}"));
                assert_eq!(answer, format!("{owner} {payload}"), "{client} -> {target}");
            }
            let moved = lab.xdp_counters().expect("counters").since(&counters);
            let forwarded = lab.forwarded_datagrams().expect("ForwDatagrams") - forwarded;
            let frames = capture.stop();
            let requests: Vec<_> = frames
                .iter()
                .filter(|f| f.is_udp_to(vip, target.port()))
                .collect();
            assert_eq!(
                requests.len() as u64,
                STEERED,
                "{owner} should have received {STEERED} requests from {client} to {vip}: {requests:#?}"
            );
            for frame in &requests {
                assert_eq!(
                    frame.src_mac, router_mac,
                    "{client} -> {vip} at {owner}: {frame}"
                );
                assert_eq!(
                    frame.dst_mac, owner_mac,
                    "{client} -> {vip} at {owner}: {frame}"
                );
                assert_eq!(frame.ip.map(|ip| ip.ttl), Some(63), "{frame}");
            }
            let other = if verdict == Counter::Tx {
                Counter::Redirect
            } else {
                Counter::Tx
            };
            assert_eq!(
                moved.get(verdict),
                STEERED,
                "{client} -> {vip}: counters moved: {moved}"
            );
            assert_eq!(
                moved.get(other),
                0,
                "{client} -> {vip}: counters moved: {moved}"
            );
            // From the WAN the answers go back through the router's kernel (the fast
            // path only steers towards the servers): one forwarded datagram per answer,
            // none per request.
            let expected_forwarded = if client == Node::WanClient {
                STEERED
            } else {
                0
            };
            assert_eq!(
                forwarded, expected_forwarded,
                "{client} -> {vip}: the router's kernel forwarded {forwarded} datagrams (data path: {moved})"
            );
            eprintln!(
                "{client} -> {vip}: answered by {owner}, data path {moved}, kernel forwarded {forwarded}"
            );
            let body = lab
                .http_get(client, vip)
                .unwrap_or_else(|e| panic!("{e:#}"));
            assert_eq!(body, format!("{owner}\n"), "HTTP {client} -> {vip}");
        }
    }
    // The CLI's statistics are the data path's counters.
    let stats: Stats = lab
        .ha_user_json(&["stats"])
        .unwrap_or_else(|e| panic!("{e:#}"));
    let counters = lab.xdp_counters().expect("counters");
    for counter in [Counter::Tx, Counter::Redirect] {
        let cli = stats.counters.get(&Named(counter)).copied();
        assert!(
            cli.is_some_and(|n| n >= 4 * STEERED && n <= counters.get(counter)),
            "stats says {counter:?} = {cli:?}, the map {}: {stats:?}",
            counters.get(counter)
        );
    }
    assert_agreement(&lab);
}

#[test]
fn steering_native() {
    steering("ha-l-steer-n-", XdpMode::Native);
}

#[test]
fn steering_skb() {
    steering("ha-l-steer-s-", XdpMode::Skb);
}

/// The prefix the failover tests break: 192.168.1.64/27, owned by host2; its first
/// backup (the default order: the other hosts in file order) is host1.
const BROKEN: &str = "192.168.1.64/27";
const BROKEN_OWNER: &str = "host2";
const BACKUP: &str = "host1";

/// A stream of [`rate`] datagrams per second from the LAN client to the VIP of
/// [`BROKEN`]; `fault` hits its owner mid-stream. The prefix moves to the backup and
/// the stream's outage (last answer by the owner → first by the backup) stays within
/// the configured detection time plus [`MARGIN`]; the kernel route follows. After the
/// repair the prefix returns, not before the failback delay. The give-up waits are
/// × `HA_LAB_TIME_SCALE`, like the timers they wait for.
fn failover(prefix: &str, mode: XdpMode, fault: Fault) {
    if !require_root(prefix) {
        return;
    }
    let mut lab = build(spec(prefix, mode));
    let broken = ha_tests::lab::net(BROKEN);
    let target = SocketAddrV4::new(vip(broken), lab.spec().udp_port);
    let detection = lab.spec().health.detection_time();
    let bound = detection + MARGIN;

    let mark = lab.owner_changes().expect("the event stream").len();
    let stream = lab
        .stream(Node::LanClient, target, rate(), Duration::from_millis(2000))
        .expect("starting ha-stream");
    std::thread::sleep(Duration::from_millis(500));
    let injected = Instant::now();
    lab.inject(BROKEN_OWNER, fault)
        .unwrap_or_else(|e| panic!("{fault}: {e:#}"));
    let change = lab
        .wait_for_owner(
            broken,
            Some(BACKUP),
            mark,
            Duration::from_secs(3) * time_scale(),
        )
        .unwrap_or_else(|e| panic!("{fault}: {e:#}"));
    let seen_in_log = injected.elapsed();
    let report: StreamReport = stream.wait().expect("ha-stream");
    eprintln!("{prefix} {fault}: {}", report.summary());
    eprintln!(
        "{prefix} {fault}: controller detection {:?} ms, switch {} µs, log line {:.1} ms after the fault",
        change.detection_ms,
        change.switch_us,
        seen_in_log.as_secs_f64() * 1e3
    );
    assert_eq!(change.old.as_deref(), Some(BROKEN_OWNER), "{change}");
    assert_eq!(change.reason, Reason::Failover, "{change}");
    let outage = report.outage.clone().unwrap_or_else(|| {
        panic!(
            "{fault}: the answering host never changed: {}",
            report.summary()
        )
    });
    assert_eq!(
        (outage.from.as_str(), outage.to.as_str()),
        (BROKEN_OWNER, BACKUP),
        "{fault}: {}",
        report.summary()
    );
    assert_eq!(report.switches.len(), 1, "{fault}: {:?}", report.switches);
    assert!(
        outage.gap_ms <= bound.as_secs_f64() * 1e3,
        "{fault}: outage {:.1} ms exceeds detection {detection:?} + margin {MARGIN:?}: {}",
        outage.gap_ms,
        report.summary()
    );
    assert!(
        change
            .detection_ms
            .is_some_and(|d| d <= bound.as_secs_f64() * 1e3),
        "{fault}: detection beyond {bound:?}: {}",
        change
    );
    // Everything lost was lost in the outage: none before, none after.
    assert_eq!(
        report.lost, outage.lost,
        "{fault}: {:?}",
        report.lost_ranges
    );
    assert_agreement(&lab);
    let owner = lab.udp_who(Node::LanClient, vip(broken)).expect("UDP");
    assert_eq!(owner, BACKUP, "after the failover");

    let mark = lab.owner_changes().expect("the event stream").len();
    let repaired = Instant::now();
    lab.repair(BROKEN_OWNER, fault)
        .unwrap_or_else(|e| panic!("repairing {fault}: {e:#}"));
    let back = lab
        .wait_for_owner(
            broken,
            Some(BROKEN_OWNER),
            mark,
            Duration::from_secs(5) * time_scale(),
        )
        .unwrap_or_else(|e| panic!("after repairing {fault}: {e:#}"));
    let took = repaired.elapsed();
    let delay = Duration::from_millis(lab.spec().health.failback_delay_ms);
    eprintln!(
        "{prefix} {fault}: failback {:.1} ms after the repair",
        took.as_secs_f64() * 1e3
    );
    assert_eq!(back.reason, Reason::Failback, "{back}");
    assert!(
        took >= delay,
        "failback after {took:?}, before the delay {delay:?}"
    );
    assert_agreement(&lab);
    let owner = lab.udp_who(Node::LanClient, vip(broken)).expect("UDP");
    assert_eq!(owner, BROKEN_OWNER, "after the failback");
}

#[test]
fn failover_web_server_killed_native() {
    failover("ha-l-kill-n-", XdpMode::Native, Fault::KillWeb);
}

#[test]
fn failover_link_down_native() {
    failover("ha-l-link-n-", XdpMode::Native, Fault::LinkDown);
}

#[test]
fn failover_blackhole_native() {
    failover("ha-l-hole-n-", XdpMode::Native, Fault::Blackhole);
}

#[test]
fn failover_web_server_killed_skb() {
    failover("ha-l-kill-s-", XdpMode::Skb, Fault::KillWeb);
}
