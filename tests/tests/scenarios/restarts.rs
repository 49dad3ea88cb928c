//! The controller SIGKILLed in the middle of a reassignment of many prefixes.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use ha_tests::{
    lab::{Lab, PrefixSpec, XdpMode, host_address},
    root::require_root,
};
use ipnet::Ipv4Net;

use crate::{common, scaled, wait_until};

/// The prefixes host2 owns beside the classic ones.
const MANY: u32 = 4000;

/// The classic prefixes and [`MANY`] /32s in 10.64.0.0/16 owned by host2 (backup
/// host1).
fn many_prefixes() -> Vec<PrefixSpec> {
    let mut prefixes = PrefixSpec::classic();
    for n in 0..MANY {
        let address = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 64, 0, 0)) + n);
        prefixes.push(
            PrefixSpec {
                cidr: Ipv4Net::new(address, 32).expect("a /32"),
                owner: "host2".to_owned(),
                backups: None,
            }
            .with_backups(&["host1"]),
        );
    }
    prefixes
}

/// The lab's configuration without VIP checks: the /32s' VIPs are bound nowhere,
/// and the point is the reassignment, not the VIP verdicts.
fn without_vip_checks(lab: &Lab) -> String {
    let text = lab.render_config(&lab.spec().health, &lab.spec().prefixes);
    if text.contains("\n[vip_check]\n") {
        text.replacen("\n[vip_check]\n", "\n[vip_check]\nenabled = false\n", 1)
    } else {
        format!("{text}\n[vip_check]\nenabled = false\n")
    }
}

/// How many of the many prefixes the kernel routes through each of host1, host2.
fn routed_via(lab: &Lab) -> (usize, usize) {
    let routes = lab.kernel_routes().expect("routes");
    let (h1, h2) = (host_address("host1"), host_address("host2"));
    let many = routes.iter().filter(|(cidr, _)| cidr.prefix_len() == 32);
    many.fold((0, 0), |(a, b), (_, via)| {
        (
            a + usize::from(Some(*via) == h1),
            b + usize::from(Some(*via) == h2),
        )
    })
}

/// Host2, owner of 4,004 prefixes, loses its web server; the controller is SIGKILLed
/// once the first of them moved. The restarted controller converges: every prefix
/// with host1, map and routes in agreement; the time is printed.
#[test]
fn killed_during_a_large_reassignment_the_restarted_controller_converges() {
    if !require_root("killed_during_a_large_reassignment_the_restarted_controller_converges") {
        return;
    }
    let mut spec = common::spec("ha-s-kill-", XdpMode::Skb);
    spec.start_controller = false;
    let mut lab = common::build(spec);
    let health = lab.spec().health.clone();
    let mut prefixes = many_prefixes();
    lab.reconfigure(health.clone(), prefixes.clone())
        .expect("config");
    lab.write_config(&without_vip_checks(&lab)).expect("config");
    let started = Instant::now();
    lab.start_controller(&[])
        .unwrap_or_else(|e| panic!("{e:#}"));
    lab.wait_steady(scaled(Duration::from_secs(60)))
        .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!(
        "{} prefixes steady after {:?}",
        prefixes.len(),
        started.elapsed()
    );
    common::assert_agreement(&lab);
    assert_eq!(routed_via(&lab), (0, MANY as usize));

    let mark = lab.owner_changes().expect("events").len();
    lab.kill_web("host2").expect("kill web");
    let killed_web = Instant::now();
    // Kill the controller while the reassignment runs: as soon as the first
    // routes moved.
    let first = wait_until(
        &lab,
        scaled(Duration::from_secs(5)),
        "the first route moved",
        || {
            let (via1, _) = routed_via(&lab);
            anyhow::ensure!(via1 > 0, "no route moved yet");
            Ok(())
        },
    );
    lab.kill_controller().expect("SIGKILL");
    let moved_events = lab.owner_changes().expect("events").len() - mark;
    let (via1, via2) = routed_via(&lab);
    eprintln!(
        "controller SIGKILLed {:?} after the web server died: {moved_events} owner changes published, routes of the /32s: {via1} via host1, {via2} via host2",
        killed_web.elapsed()
    );
    assert!(
        via1 > 0 && via2 > 0,
        "the kill {first:?} after the web server died did not come during the reassignment ({via1} routes moved, {via2} not)"
    );

    // The restarted controller.
    let restarted = Instant::now();
    lab.start_controller(&[])
        .unwrap_or_else(|e| panic!("{e:#}"));
    let serving = restarted.elapsed();
    for prefix in &mut prefixes {
        if prefix.owner == "host2" {
            prefix.owner = "host1".to_owned();
        }
    }
    let converged = wait_until(&lab, scaled(Duration::from_secs(60)), "convergence", || {
        let owners: std::collections::BTreeMap<Ipv4Net, Option<String>> =
            lab.owners()?.into_iter().collect();
        let wrong: Vec<String> = prefixes
            .iter()
            .filter(|spec| owners.get(&spec.cidr) != Some(&Some(spec.owner.clone())))
            .take(3)
            .map(|spec| format!("{} with {:?}", spec.cidr, owners.get(&spec.cidr)))
            .collect();
        anyhow::ensure!(wrong.is_empty(), "not yet with host1: {wrong:?}");
        lab.check_agreement()?;
        Ok(())
    });
    let (via1, via2) = routed_via(&lab);
    eprintln!(
        "restarted: serving after {serving:?}, converged (status, map and routes) {converged:?} later, {:?} after the restart; /32 routes {via1} via host1, {via2} via host2",
        restarted.elapsed()
    );
    assert_eq!((via1, via2), (MANY as usize, 0));
    common::assert_agreement(&lab);
    lab.start_web("host2").expect("web back");
}
