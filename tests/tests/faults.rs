//! Faults around the controller that an operator meets (root): the router's own LAN
//! interface flapping, deleted and created again; a web server's MAC changing; hosts
//! added, readdressed or given a MAC by a reload. Each test states the outcome it
//! expects; each builds its own lab (native XDP) and removes it at the end. Run one
//! at a time (`--test-threads=1`, as `cargo xtask test` does).
//!
//! Outcomes:
//! - **LAN flap** (`ip link set eth1 down`, 100 ms, `up`): the kernel deletes every
//!   route through eth1 with the link, `ha`'s `proto 165` routes among them (without
//!   a notification per route); the controller follows the link and puts them back
//!   once the interface is up again (a few milliseconds after); the map never
//!   changed, no host changed health. A route of `ha`'s deleted by hand is put back
//!   too.
//! - **LAN deleted and created again**, several times (a new, growing ifindex each
//!   time): while it is gone `status` says the LAN does not steer; the controller
//!   follows the interface by name: XDP on the new interface, its
//!   interface entries, host entries, routes and neighbours written again; steering
//!   resumes (within ~150 ms of the interface's creation); no host changed health.
//!   At an ifindex beyond the interface table (4096 entries) only the routes come
//!   back (the kernel carries the traffic), and `status` says why the fast path
//!   does not steer; the next interface of the name steers again.
//! - **A web server's MAC changes** (announced by a gratuitous ARP, `arp_notify`):
//!   the neighbour table follows, the controller with it (within ~10 ms); steering
//!   goes to the new MAC without a restart, and back.
//! - **Reloads and MACs**: a host added by SIGHUP, a host given another address, a
//!   host whose wrong configured MAC is removed: each gets its MAC from the
//!   neighbour table (within ~10 ms of the reload), and is steered.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use ha_tests::{
    lab::{Counter, Lab, LabSpec, Mac, Node, PrefixSpec, XdpMode, host_address, net, vip},
    root::require_root,
};
use ha_user::proto::{Event, reports::LanStatus};
use ipnet::Ipv4Net;

mod common;

use common::{assert_agreement, build};

const WAIT: Duration = Duration::from_secs(5);

const P64: &str = "192.168.1.64/27";
const P128: &str = "192.168.1.128/27";

fn spec(prefix: &str) -> LabSpec {
    common::spec(prefix, XdpMode::Native)
}

/// The lab of `spec`, its LAN client ignoring ICMP redirects: while the kernel
/// forwards its datagrams (the fast path not steering yet) the router redirects it
/// to the server, and a client that obeyed would bypass the router from then on.
fn build_lab(spec: LabSpec) -> Lab {
    let lab = build(spec);
    lab.ignore_icmp_redirects(Node::LanClient)
        .unwrap_or_else(|e| panic!("{e:#}"));
    lab
}

/// Polls `check` every 10 ms until it returns `Ok`, for at most `timeout`; how long
/// it took. Panics with the last error and the controller's log otherwise.
fn wait_until(
    lab: &Lab,
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> anyhow::Result<()>,
) -> Duration {
    let started = Instant::now();
    loop {
        let result = check();
        match result {
            Ok(()) => return started.elapsed(),
            Err(err) if started.elapsed() >= timeout => panic!(
                "{what}: not within {timeout:?}: {err:#}\ncontroller log:\n{}",
                lab.controller_log()
            ),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// The fast path steers `prefix` from the LAN client to `host`: the echo comes from
/// `host` and the data path counted the datagram as sent back out (`tx`).
fn steered(lab: &Lab, prefix: &str, host: &str) -> anyhow::Result<()> {
    steered_from(lab, Node::LanClient, Counter::Tx, prefix, host)
}

/// The fast path steers `prefix` from `client` to `host`, counting it as `counter`
/// (`tx` from the LAN, `redirect` from the WAN into the LAN interface).
fn steered_from(
    lab: &Lab,
    client: Node,
    counter: Counter,
    prefix: &str,
    host: &str,
) -> anyhow::Result<()> {
    let before = lab.xdp_counters()?;
    let who = lab.udp_who(client, vip(net(prefix)))?;
    let moved = lab.xdp_counters()?.since(&before);
    anyhow::ensure!(who == host, "{prefix} answered by {who}, not {host}");
    anyhow::ensure!(
        moved.get(counter) >= 1,
        "{prefix} answered by {host} for {client} but not through the fast path ({counter:?}): {moved}"
    );
    Ok(())
}

/// The MAC `status` reports for `host`.
fn status_mac(lab: &Lab, host: &str) -> anyhow::Result<Option<Mac>> {
    let status = lab.status()?;
    let found = status
        .hosts
        .iter()
        .find(|h| h.name == host)
        .ok_or_else(|| anyhow::anyhow!("no {host} in status"))?;
    Ok(found.mac)
}

/// Finding: a 100 ms flap of the LAN interface deleted every `proto 165` route for
/// good. Outcome: the routes are back shortly after the link is up again (the time
/// is printed), in agreement with the unchanged map, and steering goes on. Then a
/// route deleted by hand (`ip route del ... proto 165`) is put back as well.
#[test]
fn lan_flap_restores_the_routes() {
    if !require_root("lan_flap_restores_the_routes") {
        return;
    }
    let lab = build_lab(spec("ha-f-flap-"));
    let health = lab.health_changes().expect("events").len();
    let routes = lab.kernel_routes().expect("routes");
    let map = lab.map_dump().expect("map");
    assert_eq!(routes.len(), 4, "{routes:?}");
    for round in 0..3 {
        let started = Instant::now();
        lab.flap_router_lan(Duration::from_millis(100))
            .expect("flap");
        let up = started.elapsed();
        let took = wait_until(&lab, WAIT, "the routes back after a LAN flap", || {
            let now = lab.kernel_routes()?;
            anyhow::ensure!(now == routes, "routes now {now:?}, before {routes:?}");
            Ok(())
        });
        eprintln!(
            "flap {round}: link up again {up:?} after going down; every route back {took:?} after it was up"
        );
        assert_eq!(lab.map_dump().expect("map"), map, "the map changed");
        assert_agreement(&lab);
        wait_until(&lab, WAIT, "steering after the flap", || {
            steered(&lab, P64, "host2")
        });
    }
    // Someone deletes one of ha's routes: it is put back.
    lab.ip(Node::Router, &["route", "del", P64, "proto", "165"])
        .expect("ip route del");
    let took = wait_until(&lab, WAIT, "a deleted route put back", || {
        let now = lab.kernel_routes()?;
        anyhow::ensure!(now == routes, "routes now {now:?}, before {routes:?}");
        Ok(())
    });
    eprintln!("a route deleted by hand was back after {took:?}");
    assert_agreement(&lab);
    no_health_change(&lab, health);
}

/// No host changed health since there were `before` health changes: probes that
/// failed because of the router's own interface do not count against the hosts.
fn no_health_change(lab: &Lab, before: usize) {
    let changes = lab.health_changes().expect("events");
    let since: Vec<String> = changes[before..]
        .iter()
        .map(|(host, health, _)| format!("{host} {health}"))
        .collect();
    assert!(since.is_empty(), "hosts changed health: {since:?}");
}

/// `status`'s view of the LAN interface: (ifindex, steering, why).
fn lan_status(lab: &Lab) -> anyhow::Result<(Option<u32>, bool, Option<String>)> {
    let LanStatus {
        name,
        ifindex,
        steering,
        why,
    } = lab.status()?.lan;
    anyhow::ensure!(name == "eth1", "the LAN is {name}");
    Ok((ifindex, steering, why))
}

/// Waits until the LAN is gone from `status`, not steering.
fn wait_gone(lab: &Lab) -> Duration {
    wait_until(lab, WAIT, "status: the LAN gone", || {
        let (ifindex, steering, why) = lan_status(lab)?;
        anyhow::ensure!(
            ifindex.is_none() && !steering && why.is_some(),
            "status says #{ifindex:?} steering {steering} ({why:?})"
        );
        Ok(())
    })
}

/// Waits until the routes are back as `routes`.
fn wait_routes(lab: &Lab, routes: &BTreeMap<Ipv4Net, Ipv4Addr>, what: &str) -> Duration {
    wait_until(lab, WAIT, what, || {
        let now = lab.kernel_routes()?;
        anyhow::ensure!(now == *routes, "routes now {now:?}, before {routes:?}");
        Ok(())
    })
}

/// Finding: the LAN interface deleted and created again was never recovered (the
/// old ifindex kept, no XDP on the new interface, `status` showing every host up).
/// Outcome, for five rounds of delete and create (each a new, larger ifindex): while
/// it is gone `status` says the LAN is not steering; once created again XDP runs on
/// the new interface, the routes are back and agree with the map, `status` says
/// steering, and the LAN client's datagrams are steered (`tx`) to the owner, the WAN
/// client's redirected into the new interface (`redirect`). Then
/// an interface at ifindex 5000, beyond the interface table (4096 entries): the
/// routes come back (the kernel carries the traffic), no XDP is attached, `status`
/// says why; and one more at the next free index steers again.
#[test]
fn lan_recreated_is_steered_again() {
    if !require_root("lan_recreated_is_steered_again") {
        return;
    }
    let mut lab = build_lab(spec("ha-f-recreate-"));
    let health = lab.health_changes().expect("events").len();
    let routes = lab.kernel_routes().expect("routes");
    let mut last = lab.router_lan_ifindex().expect("ifindex");
    for round in 0..5 {
        lab.delete_router_lan().expect("delete eth1");
        let gone = wait_gone(&lab);
        let index = lab.create_router_lan(None).expect("create eth1");
        assert!(index > last, "ifindex {index} after {last}");
        last = index;
        let attached = wait_until(&lab, WAIT, "XDP on the new LAN interface", || {
            let prog = lab.router_lan_xdp()?;
            anyhow::ensure!(prog.is_some(), "no XDP program on eth1 (#{index})");
            Ok(())
        });
        let routed = wait_routes(&lab, &routes, "the routes through the new LAN interface");
        let steering = wait_until(&lab, WAIT, "steering on the new LAN interface", || {
            steered(&lab, P64, "host2")
        });
        // From the WAN: redirected into the new interface.
        wait_until(&lab, WAIT, "steering from the WAN", || {
            steered_from(&lab, Node::WanClient, Counter::Redirect, P64, "host2")
        });
        eprintln!(
            "round {round}: gone in status after {gone:?}; eth1 #{index}: XDP after {attached:?}, routes after {routed:?}, steering after {steering:?} (each measured after the previous, from the interface's creation)"
        );
        assert_eq!(
            lan_status(&lab).expect("status"),
            (Some(index), true, None),
            "status of the new LAN"
        );
        assert_agreement(&lab);
    }

    // Beyond the interface table: the slow path only, and `status` says why.
    lab.delete_router_lan().expect("delete eth1");
    wait_gone(&lab);
    let index = lab.create_router_lan(Some(5000)).expect("create eth1");
    assert_eq!(index, 5000);
    let routed = wait_routes(&lab, &routes, "the routes through eth1 #5000");
    let (ifindex, steering, why) = lan_status(&lab).expect("status");
    eprintln!("eth1 #5000: routes after {routed:?}; status: steering {steering}, why {why:?}");
    assert_eq!((ifindex, steering), (Some(5000), false));
    let why = why.unwrap_or_default();
    assert!(why.contains("4096"), "status should say why: {why}");
    assert_eq!(lab.router_lan_xdp().expect("ip link"), None, "XDP on #5000");
    assert_eq!(
        lab.udp_who(Node::LanClient, vip(net(P64))).expect("UDP"),
        "host2",
        "the kernel route carries the traffic"
    );
    assert_agreement(&lab);
    lab.delete_router_lan().expect("delete eth1");
    wait_gone(&lab);
    let index = lab.create_router_lan(None).expect("create eth1");
    wait_routes(&lab, &routes, "the routes through the last eth1");
    wait_until(&lab, WAIT, "steering on the last eth1", || {
        steered(&lab, P64, "host2")
    });
    assert_eq!(lan_status(&lab).expect("status"), (Some(index), true, None));
    assert_agreement(&lab);
    no_health_change(&lab, health);
}

/// Scenario: web server host2's MAC changes (it announces the new one: `arp_notify`
/// makes the kernel send a gratuitous ARP when the address changes). Outcome: the
/// controller learns the new MAC from the neighbour table (a `mac-learned` event)
/// and the fast path steers to it, without a restart; the same back.
#[test]
fn host_mac_change_is_followed() {
    if !require_root("host_mac_change_is_followed") {
        return;
    }
    let lab = build_lab(spec("ha-f-mac-"));
    let host2 = Node::host("host2").expect("host2");
    let original = lab.host_mac("host2").expect("mac");
    lab.exec_ok(host2, &["sysctl", "-qw", "net.ipv4.conf.eth0.arp_notify=1"])
        .expect("arp_notify");
    let other = Mac([0x02, 0xee, 0, 0, 0, 0x03]);
    for mac in [other, original] {
        let mark = lab.event_mark().expect("events");
        let started = Instant::now();
        lab.ip(host2, &["link", "set", "eth0", "address", &mac.to_string()])
            .expect("ip link set address");
        lab.wait_for_event(mark, WAIT, "mac-learned host2", |record| {
            match &record.event {
                Event::MacLearned {
                    host, mac: learned, ..
                } if host == "host2" && *learned == mac => Some(()),
                _ => None,
            }
        })
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.controller_log()));
        let learned = started.elapsed();
        let entry = lab.host_entry("host2").expect("host entry");
        assert_eq!(entry.mac, mac.0, "the host entry's MAC");
        let steering = wait_until(&lab, WAIT, "steering to the new MAC", || {
            steered(&lab, P64, "host2")
        });
        eprintln!("host2's MAC {mac}: learned after {learned:?}, steered {steering:?} later");
    }
    assert_agreement(&lab);
}

/// The lab's configuration text without host4 (and no prefix naming it).
fn without_host4(lab: &Lab) -> String {
    let prefixes = three_host_prefixes();
    let text = lab.render_config(&lab.spec().health, &prefixes);
    let address = host_address("host4").expect("address");
    let block = format!("\n[[host]]\nname = \"host4\"\naddress = \"{address}\"\n");
    assert!(text.contains(&block), "{text}");
    text.replacen(&block, "", 1)
}

/// The classic prefixes with 192.168.1.128/27 owned by host3, host4 nowhere.
fn three_host_prefixes() -> Vec<PrefixSpec> {
    let mut prefixes = PrefixSpec::classic();
    for prefix in &mut prefixes {
        if prefix.owner == "host4" {
            prefix.owner = "host3".to_owned();
        }
        let backups: Vec<&str> = ["host1", "host2", "host3"]
            .into_iter()
            .filter(|h| *h != prefix.owner)
            .collect();
        *prefix = prefix.clone().with_backups(&backups);
    }
    prefixes
}

/// Sends SIGHUP and waits until the controller applied the file.
fn reload(lab: &mut Lab) {
    let mark = lab.event_mark().expect("events");
    lab.reload_controller().expect("SIGHUP");
    lab.wait_for_event(mark, WAIT, "reload-applied", |record| {
        matches!(record.event, Event::ReloadApplied { .. }).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.controller_log()));
}

/// Finding: a host added by SIGHUP never got its MAC (the neighbour watch knew only
/// the hosts of the start-up). Outcome: host4, absent at start, added by a reload
/// as the owner of 192.168.1.128/27, learns its MAC and gets the prefix steered to it.
#[test]
fn reload_added_host_gets_its_mac() {
    if !require_root("reload_added_host_gets_its_mac") {
        return;
    }
    let mut spec = spec("ha-f-addhost-");
    spec.start_controller = false;
    let mut lab = build_lab(spec);
    let health = lab.spec().health.clone();
    lab.reconfigure(health.clone(), three_host_prefixes())
        .expect("config");
    lab.write_config(&without_host4(&lab)).expect("config");
    lab.start_controller(&[]).expect("start");
    lab.wait_steady(WAIT).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(lab.status().expect("status").hosts.len(), 3);

    lab.reconfigure(health, PrefixSpec::classic())
        .expect("config");
    reload(&mut lab);
    let expected = lab.host_mac("host4").expect("mac");
    let took = wait_until(&lab, WAIT, "host4's MAC after the reload", || {
        let mac = status_mac(&lab, "host4")?;
        anyhow::ensure!(mac == Some(expected), "host4's MAC is {mac:?}");
        Ok(())
    });
    eprintln!("host4 added by reload: MAC known {took:?} after the reload");
    lab.wait_steady(WAIT).unwrap_or_else(|e| panic!("{e:#}"));
    wait_until(&lab, WAIT, "steering to host4", || {
        steered(&lab, P128, "host4")
    });
    assert_agreement(&lab);
}

/// Finding: a host whose address a reload changed lost its MAC for good. Outcome:
/// host4 readdressed to 192.168.1.6 (a second address on its eth0) gets its MAC
/// again and is steered.
#[test]
fn reload_changed_address_relearns_the_mac() {
    if !require_root("reload_changed_address_relearns_the_mac") {
        return;
    }
    let mut lab = build_lab(spec("ha-f-readdress-"));
    let host4 = Node::host("host4").expect("host4");
    let new_address = Ipv4Addr::new(192, 168, 1, 6);
    lab.ip(
        host4,
        &["addr", "add", &format!("{new_address}/27"), "dev", "eth0"],
    )
    .expect("second address");
    let old_address = host_address("host4").expect("address");
    let text = std::fs::read_to_string(lab.config_path()).expect("config");
    let changed = text.replacen(
        &format!("address = \"{old_address}\""),
        &format!("address = \"{new_address}\""),
        1,
    );
    assert_ne!(changed, text);
    lab.write_config(&changed).expect("config");
    reload(&mut lab);
    let expected = lab.host_mac("host4").expect("mac");
    let took = wait_until(&lab, WAIT, "host4's MAC after its new address", || {
        let mac = status_mac(&lab, "host4")?;
        anyhow::ensure!(mac == Some(expected), "host4's MAC is {mac:?}");
        Ok(())
    });
    eprintln!("host4 readdressed by reload: MAC known {took:?} after the reload");
    wait_until(&lab, WAIT, "steering to host4", || {
        steered(&lab, P128, "host4")
    });
}

/// Finding: removing a wrong configured MAC kept using it. Outcome: host4 given a
/// wrong `mac` by one reload (steered to nowhere: the configured MAC wins) and
/// with the line removed by the next gets its MAC from the neighbour table again.
#[test]
fn reload_removed_configured_mac_is_relearned() {
    if !require_root("reload_removed_configured_mac_is_relearned") {
        return;
    }
    let mut lab = build_lab(spec("ha-f-dropmac-"));
    let text = std::fs::read_to_string(lab.config_path()).expect("config");
    let address = host_address("host4").expect("address");
    let line = format!("address = \"{address}\"\n");
    let wrong = Mac([0x02, 0xba, 0xd0, 0, 0, 0x05]);
    let with_mac = text.replacen(&line, &format!("{line}mac = \"{wrong}\"\n"), 1);
    assert_ne!(with_mac, text);
    lab.write_config(&with_mac).expect("config");
    reload(&mut lab);
    assert_eq!(status_mac(&lab, "host4").expect("status"), Some(wrong));
    lab.write_config(&text).expect("config");
    reload(&mut lab);
    let expected = lab.host_mac("host4").expect("mac");
    let took = wait_until(
        &lab,
        WAIT,
        "host4's MAC after its configured one went",
        || {
            let mac = status_mac(&lab, "host4")?;
            anyhow::ensure!(mac == Some(expected), "host4's MAC is {mac:?}");
            Ok(())
        },
    );
    eprintln!("host4's configured MAC removed: learned MAC back {took:?} after the reload");
    wait_until(&lab, WAIT, "steering to host4", || {
        steered(&lab, P128, "host4")
    });
}
