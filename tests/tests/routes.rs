//! The kernel routes `ha` touches, around reloads, kills and `detach --purge`
//! (root, in the lab). Each test builds its own lab (skb mode: the point is the
//! routes, not the fast path) and states the outcome it expects. Run one at a time
//! (`--test-threads=1`, as `cargo xtask test` does).
//!
//! Outcomes:
//! - **A reload meets a route start-up refuses** (a blackhole, a device route
//!   without a gateway, put on prefixes the reload adds): the reload is refused as
//!   a whole, by the start-up's own decision, naming each prefix and its route;
//!   nothing of it is applied (the old configuration keeps running, no route of the
//!   new prefixes appears), the operator's routes stay as they were. With them
//!   removed, the same file reloads.
//! - **A kill during a large reload** (SIGKILL while a reload adds thousands of
//!   /32s of a host that is down, some of their routes written): the next start, with the original
//!   configuration, removes every `proto 165` route it does not name (the count and
//!   the time are printed).
//! - **`detach --purge`** removes `ha`'s routes and only them: a `proto 165` route
//!   through the LAN that no configuration ever named stays.

use std::{
    collections::BTreeSet,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use ha_tests::{
    lab::{Lab, LabSpec, Node, PrefixSpec, XdpMode, ns},
    root::require_root,
};
use ha_user::{model::Health, proto::Event};
use ipnet::Ipv4Net;

mod common;

use common::{assert_agreement, build};

const WAIT: Duration = Duration::from_secs(10);

fn spec(prefix: &str) -> LabSpec {
    common::spec(prefix, XdpMode::Skb)
}

/// The router's main-table routes as `ip route show` prints them, for `prefix`.
fn route_text(lab: &Lab, prefix: &str) -> String {
    lab.ip(Node::Router, &["route", "show", "exact", prefix])
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// SIGHUP, then the reload's outcome: `Ok` (applied) or the refusal's text.
fn reload(lab: &mut Lab) -> Result<(), String> {
    let mark = lab.event_mark().expect("the event stream");
    lab.reload_controller().expect("SIGHUP");
    lab.wait_for_event(
        mark,
        WAIT,
        "reload-applied or reload-refused",
        |record| match &record.event {
            Event::ReloadApplied { .. } => Some(Ok(())),
            Event::ReloadRefused { why } => Some(Err(why.clone())),
            _ => None,
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\ncontroller log:\n{}", lab.controller_log()))
}

/// Finding: a reload replaced a blackhole and a gateway-less device route on the
/// prefixes it added, routes start-up refuses to take over. Outcome: the reload is
/// refused as a whole, naming both; nothing of it is applied; the operator's routes
/// stay. Once they are removed, the same file reloads.
#[test]
fn a_reload_leaves_routes_start_up_refuses() {
    if !require_root("a_reload_leaves_routes_start_up_refuses") {
        return;
    }
    let mut lab = build(spec("ha-r-refuse-"));
    let blackhole = "10.201.0.0/24";
    let device = "10.201.1.0/24";
    let plain = "10.201.2.0/24";
    lab.ip(Node::Router, &["route", "add", "blackhole", blackhole])
        .expect("the operator's blackhole");
    lab.ip(Node::Router, &["route", "add", device, "dev", "eth1"])
        .expect("the operator's device route");
    let operator = (route_text(&lab, blackhole), route_text(&lab, device));
    assert!(operator.0.contains("blackhole"), "{operator:?}");
    let routes = lab.kernel_routes().expect("routes");
    let map = lab.map_dump().expect("map");
    let owners = lab.owners().expect("owners");

    let mut prefixes = PrefixSpec::classic();
    prefixes.push(PrefixSpec::new(blackhole, "host1"));
    prefixes.push(PrefixSpec::new(device, "host2"));
    prefixes.push(PrefixSpec::new(plain, "host3"));
    let text = lab.render_config(&lab.spec().health, &prefixes);
    lab.write_config(&text).expect("config");
    let why = reload(&mut lab).expect_err("a reload over a blackhole and a device route");
    eprintln!("reload refused: {why}");
    for (prefix, route) in [(blackhole, "blackhole"), (device, "dev")] {
        assert!(
            why.contains(prefix) && why.contains(route),
            "the refusal should name {prefix} and its route ({route}): {why}"
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        (route_text(&lab, blackhole), route_text(&lab, device)),
        operator,
        "the operator's routes changed"
    );
    assert_eq!(
        route_text(&lab, plain),
        "",
        "half of the reload was applied"
    );
    assert_eq!(lab.kernel_routes().expect("routes"), routes);
    assert_eq!(lab.map_dump().expect("map"), map);
    assert_eq!(
        lab.owners().expect("owners"),
        owners,
        "the running prefixes"
    );
    assert_agreement(&lab);

    // The same file, the operator's routes gone: applied.
    lab.ip(Node::Router, &["route", "del", "blackhole", blackhole])
        .expect("removing the blackhole");
    lab.ip(Node::Router, &["route", "del", device, "dev", "eth1"])
        .expect("removing the device route");
    let health = lab.spec().health.clone();
    lab.reconfigure(health, prefixes).expect("config");
    reload(&mut lab).unwrap_or_else(|why| panic!("the reload was refused: {why}"));
    let routes = lab.kernel_routes().expect("routes");
    for prefix in [blackhole, device, plain] {
        let prefix: Ipv4Net = prefix.parse().expect("prefix");
        assert!(
            routes.contains_key(&prefix),
            "no route for {prefix}: {routes:?}"
        );
    }
}

/// The number of IPv4 main-table routes of the router (`/proc/net/route`, read
/// in-process: fast enough to watch a reload write its routes).
fn route_count(lab: &Lab) -> usize {
    ns::in_netns(&lab.ns(Node::Router), || {
        std::fs::read_to_string("/proc/thread-self/net/route").map(|text| text.lines().count())
    })
    .expect("the router's namespace")
    .expect("reading /proc/net/route")
}

/// How many /32s the large reload adds.
const LARGE: usize = 4000;

/// Finding: `kill -9` during a large reload left thousands of stale `proto 165`
/// routes that survived restarts. Outcome: the next start with the original
/// configuration removes every route of ours it does not name.
#[test]
fn routes_left_by_a_kill_during_a_reload_are_removed_by_the_next_start() {
    if !require_root("routes_left_by_a_kill_during_a_reload_are_removed_by_the_next_start") {
        return;
    }
    let mut lab = build(spec("ha-r-kill-"));
    let original = lab.spec().prefixes.clone();
    let health = lab.spec().health.clone();
    // The new prefixes belong to host4 alone, and host4 is down: none of them gets
    // a map entry, only a route through its configured owner (the slow path of a
    // prefix whose every host is down).
    lab.kill_web("host4").expect("host4's web server");
    let started = Instant::now();
    while !lab
        .health_changes()
        .expect("events")
        .iter()
        .any(|(host, health, _)| host == "host4" && *health == Health::Down)
    {
        assert!(started.elapsed() < WAIT, "host4 not down within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut large = original.clone();
    for i in 0..LARGE {
        let address = Ipv4Addr::new(10, 200, (i / 256) as u8, (i % 256) as u8);
        large.push(PrefixSpec::new(&format!("{address}/32"), "host4").with_backups(&[]));
    }
    let text = lab.render_config(&health, &large);
    lab.write_config(&text).expect("config");
    let base = route_count(&lab);
    lab.reload_controller().expect("SIGHUP");
    // SIGKILL once some of the new routes are in, before all of them are.
    let started = Instant::now();
    let partway = loop {
        let count = route_count(&lab) - base;
        if count >= LARGE / 4 {
            lab.kill_controller().expect("SIGKILL");
            break count;
        }
        assert!(
            started.elapsed() < WAIT,
            "the reload wrote no routes within {WAIT:?}\ncontroller log:\n{}",
            lab.controller_log()
        );
        std::thread::sleep(Duration::from_micros(200));
    };
    let configured: BTreeSet<Ipv4Net> = original.iter().map(|p| p.cidr).collect();
    let stale = |lab: &Lab| -> Vec<Ipv4Net> {
        lab.kernel_routes()
            .expect("routes")
            .into_keys()
            .filter(|prefix| !configured.contains(prefix))
            .collect()
    };
    let left = stale(&lab).len();
    eprintln!(
        "killed {:?} after the SIGHUP with {partway} new routes seen; {left} proto 165 routes of the large configuration left",
        started.elapsed()
    );
    assert!(
        left > 0 && left < LARGE,
        "the kill should have come partway through the reload: {left} of {LARGE} left"
    );

    lab.reconfigure(health, original)
        .expect("the original config");
    let started = Instant::now();
    lab.start_controller(&[])
        .unwrap_or_else(|e| panic!("{e:#}"));
    let took = started.elapsed();
    let remaining = stale(&lab);
    eprintln!(
        "the next start removed {} of {left} stale routes; serving {took:?} after it was started",
        left - remaining.len()
    );
    assert!(
        remaining.is_empty(),
        "{} proto 165 routes the configuration does not name survived the start (first: {:?})\ncontroller log:\n{}",
        remaining.len(),
        remaining.iter().take(5).collect::<Vec<_>>(),
        lab.controller_log()
    );
    lab.start_web("host4").expect("host4's web server");
    lab.wait_steady(WAIT).unwrap_or_else(|e| panic!("{e:#}"));
    assert_agreement(&lab);
}

/// Finding: `detach --purge` removed every `proto 165` route of the namespace, also
/// ones no configuration named. Outcome: a route added by hand with `proto 165`,
/// through the LAN, stays; `ha`'s own routes are gone.
#[test]
fn detach_purge_removes_only_has_routes() {
    if !require_root("detach_purge_removes_only_has_routes") {
        return;
    }
    let mut lab = build(spec("ha-r-purge-"));
    let foreign = "10.202.0.0/24";
    lab.ip(
        Node::Router,
        &[
            "route",
            "add",
            foreign,
            "via",
            "192.168.1.2",
            "dev",
            "eth1",
            "proto",
            "165",
        ],
    )
    .expect("a proto 165 route by hand");
    let before = route_text(&lab, foreign);
    assert!(before.contains("proto 165"), "{before}");
    let ours = lab.kernel_routes().expect("routes");
    assert_eq!(ours.len(), 5, "{ours:?}");
    lab.stop_controller().expect("SIGTERM");

    let ha_user = lab.spec().bins.ha_user.to_string_lossy().into_owned();
    let config = lab.config_path().to_string_lossy().into_owned();
    let output = lab
        .exec_ok(
            Node::Router,
            &[&ha_user, "--config", &config, "detach", "--purge"],
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("detach --purge:\n{output}");
    assert_eq!(
        route_text(&lab, foreign),
        before,
        "a proto 165 route no configuration named was removed"
    );
    let left = lab.kernel_routes().expect("routes");
    let foreign: Ipv4Net = foreign.parse().expect("prefix");
    assert_eq!(
        left.keys().copied().collect::<Vec<_>>(),
        vec![foreign],
        "ha's routes should be gone, the other one kept"
    );
}
