//! Web servers that misbehave: flapping, answering the wrong status, hanging.

use std::time::{Duration, Instant};

use ha_tests::{
    lab::{Node, XdpMode, net, vip},
    root::require_root,
};
use ha_user::model::Health;

use crate::{common, scaled, wait_until};

const P64: &str = "192.168.1.64/27";

/// host2's link down and up every 100 ms (× the time scale) for 10 s: owner changes
/// of its prefix within the bounds the hysteresis sets, derived from the configured
/// fall, rise, interval and failback delay.
#[test]
fn a_flapping_host_moves_its_prefix_within_the_hysteresis() {
    if !require_root("a_flapping_host_moves_its_prefix_within_the_hysteresis") {
        return;
    }
    let mut lab = common::build(common::spec("ha-s-flap-", XdpMode::Skb));
    lab.wait_steady(scaled(Duration::from_secs(10)))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let health = lab.spec().health.clone();
    let interval = Duration::from_millis(health.interval_ms);
    let phase = scaled(Duration::from_millis(100));
    let flap_for = Duration::from_secs(10);
    // The hysteresis: a down needs `fall` failed probes, an up `rise` good ones, a
    // failback `rise` good ones and the hold-down after them.
    assert!(
        phase > health.detection_time(),
        "a down phase must be detectable"
    );
    assert!(
        phase > interval * health.rise,
        "an up phase must be long enough to rise"
    );
    let failback = health.failback_time();
    let cycle = interval * (health.fall + health.rise);
    let owner_bound = if phase < failback {
        1
    } else {
        2 * flap_for.as_millis().div_ceil(failback.as_millis())
    };
    let health_bound = 2 * flap_for.as_millis().div_ceil(cycle.as_millis());

    let owners_before = lab.owner_changes().expect("events").len();
    let health_before = lab.health_changes().expect("events").len();
    let host2 = Node::host("host2").expect("host2");
    let started = Instant::now();
    let mut next = started;
    let mut flaps = 0u32;
    while started.elapsed() < flap_for {
        for state in ["down", "up"] {
            lab.ip(host2, &["link", "set", "eth0", state])
                .expect("ip link set");
            next += phase;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        flaps += 1;
    }
    let flapped = started.elapsed();
    lab.ip(
        host2,
        &["route", "replace", "default", "via", "192.168.1.1"],
    )
    .expect("host2's default route");
    // The last up phase is too short for a failback: what the event stream holds
    // a little later is what the flap did.
    std::thread::sleep(phase / 2);
    let during: Vec<String> = lab.owner_changes().expect("events")[owners_before..]
        .iter()
        .map(ToString::to_string)
        .collect();
    let health_changes: Vec<(String, Health)> = lab.health_changes().expect("events")
        [health_before..]
        .iter()
        .map(|(host, health, _)| (host.clone(), *health))
        .collect();
    eprintln!(
        "{flaps} flaps of {phase:?} down, {phase:?} up in {flapped:?}: {} health changes of host2 (bound {health_bound}), {} owner changes (bound {owner_bound}): {during:?}",
        health_changes.len(),
        during.len()
    );
    assert!(
        health_changes.iter().all(|(host, _)| host == "host2"),
        "another host changed health: {health_changes:?}"
    );
    assert!(
        health_changes.len() as u128 <= health_bound,
        "{} health changes, more than the hysteresis allows ({health_bound})",
        health_changes.len()
    );
    assert!(
        !health_changes.is_empty(),
        "the flap never marked host2 down: the scenario did not happen"
    );
    assert!(
        during.len() as u128 <= owner_bound && !during.is_empty(),
        "owner changes during the flap: {during:?}, bound {owner_bound}"
    );
    let changes = &lab.owner_changes().expect("events")[owners_before..];
    assert!(
        changes.iter().all(|c| c.prefix == net(P64)),
        "another prefix moved: {changes:?}"
    );
    // After the flap: host2 takes its prefix back, once.
    let back = lab
        .wait_for_owner(
            net(P64),
            Some("host2"),
            owners_before,
            scaled(Duration::from_secs(5)),
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("failback after the flap: {back}");
    lab.wait_steady(scaled(Duration::from_secs(10)))
        .unwrap_or_else(|e| panic!("{e:#}"));
    common::assert_agreement(&lab);
}

/// host2's web server, running and accepting, switched to answering 500 and then
/// to never answering: down each time, the reason naming why, its prefix with the
/// backup; back when it answers 200 again.
#[test]
fn a_wrong_status_or_a_hang_is_down() {
    if !require_root("a_wrong_status_or_a_hang_is_down") {
        return;
    }
    let mut lab = common::build(common::spec("ha-s-status-", XdpMode::Skb));
    lab.wait_steady(scaled(Duration::from_secs(10)))
        .unwrap_or_else(|e| panic!("{e:#}"));
    for (fault, says) in [("status:500", "http status 500"), ("hang", "timeout")] {
        // A server that stays up, with the fault switched on by a signal: the
        // host goes down for the fault, not for a restart.
        lab.kill_web("host2").expect("kill web");
        lab.start_web_with("host2", &["--fault", fault])
            .expect("start web");
        lab.wait_steady(scaled(Duration::from_secs(10)))
            .unwrap_or_else(|e| panic!("{fault}: before the fault: {e:#}"));
        let owners = lab.owner_changes().expect("events").len();
        let healths = lab.health_changes().expect("events").len();
        let started = Instant::now();
        lab.signal_web("host2", libc::SIGUSR1).expect("SIGUSR1");
        let moved = lab
            .wait_for_owner(
                net(P64),
                Some("host1"),
                owners,
                scaled(Duration::from_secs(5)),
            )
            .unwrap_or_else(|e| panic!("{fault}: {e:#}"));
        let took = started.elapsed();
        let downs: Vec<String> = lab.health_changes().expect("events")[healths..]
            .iter()
            .filter(|(host, health, _)| host == "host2" && *health == Health::Down)
            .map(|(_, _, record)| format!("{:?}", record.event))
            .collect();
        eprintln!("{fault}: {P64} moved after {took:?}: {moved}; {downs:?}");
        assert_eq!(downs.len(), 1, "{fault}: host2's downs: {downs:?}");
        assert!(
            downs[0].contains(says),
            "{fault}: should say {says:?}: {downs:?}"
        );
        wait_until(
            &lab,
            scaled(Duration::from_secs(2)),
            "the backup answering",
            || {
                let who = lab.udp_who(Node::LanClient, vip(net(P64)))?;
                anyhow::ensure!(who == "host1", "{P64} answered by {who}");
                Ok(())
            },
        );
        // Still down a while later: the faulty server never counts as up.
        std::thread::sleep(health_hold(&lab));
        let status = lab.status().expect("status");
        let host2 = status
            .hosts
            .iter()
            .find(|h| h.name == "host2")
            .expect("host2");
        assert_eq!(host2.health, Health::Down, "{fault}: {host2:?}");
        // Fault off: back.
        let owners = lab.owner_changes().expect("events").len();
        lab.signal_web("host2", libc::SIGUSR2).expect("SIGUSR2");
        lab.wait_for_owner(
            net(P64),
            Some("host2"),
            owners,
            scaled(Duration::from_secs(5)),
        )
        .unwrap_or_else(|e| panic!("{fault}: failback: {e:#}"));
        common::assert_agreement(&lab);
    }
}

/// Long enough for a server that answered well to have been marked up and given
/// its prefixes back twice over.
fn health_hold(lab: &ha_tests::lab::Lab) -> Duration {
    lab.spec().health.failback_time() * 2
}
