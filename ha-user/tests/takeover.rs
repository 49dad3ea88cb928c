//! Kernel tests (root) of what a start-up does to the routes and how it puts them
//! back: every prefix is decided before any route changes, a route with its own
//! `mtu` or `advmss` is refused, the route snapshot puts back exactly what was
//! there; and the LAN watch follows the LAN interface and ha's routes. Each test builds its own
//! network namespace (`ha-nl-*`, see `common`).

use std::time::Duration;

use ha_user::{
    config::adopt::AdoptError,
    kernel::{
        lan::{self, LanEvent, LanLink},
        netdev,
        route_snapshot::{Restored, RouteSnapshot},
        routes::{self, RouteError},
    },
};
use serde_json::Value;

mod common;

use common::{Netns, addr, in_netns, ip_in, net, require_root, route_lab};

/// The namespace's whole IPv4 routing table (`ip -j route show table all`), one JSON
/// object a route, sorted: what a start-up must leave as it found it.
fn route_table(netns: &Netns) -> Vec<String> {
    let text = netns.ip(0, "-j route show table all");
    let routes: Vec<Value> = serde_json::from_str(&text).expect("ip -j route");
    let mut lines: Vec<String> = routes.iter().map(Value::to_string).collect();
    lines.sort();
    lines
}

/// `lan0` with the classic boot-script route for 10.77.32.0/27 and a route for a
/// prefix `ha` is not configured for.
fn classic_lab(tag: &str) -> Netns {
    let netns = route_lab(tag);
    netns.ip(
        0,
        "route add 10.77.32.0/27 via 10.77.0.2 dev lan0 proto boot",
    );
    netns.ip(
        0,
        "route add 10.77.160.0/27 via 10.77.0.6 dev lan0 proto static",
    );
    netns
}

#[test]
fn one_refused_prefix_changes_no_route() {
    if !require_root("one_refused_prefix_changes_no_route") {
        return;
    }
    let netns = classic_lab("refuse");
    // A device route: the configuration and the router disagree about 10.77.96.0/27.
    netns.ip(0, "route add 10.77.96.0/27 dev lan0 proto static");
    netns.ip(0, "route add blackhole 10.77.192.0/27");
    let before = route_table(&netns);
    let (one, two) = in_netns(netns.name(0), || async {
        let handle = netdev::connect().expect("netlink");
        let lan = netdev::interface(&handle, "lan0")
            .await
            .expect("lan0")
            .index;
        let owner = addr("10.77.0.9");
        // Adopt, install, refuse: in this order, the first two would have changed
        // routes before the third was looked at.
        let wanted = ["10.77.32.0/27", "10.77.64.0/27", "10.77.96.0/27"].map(|p| (net(p), owner));
        let one = routes::adopt_all(&handle, &wanted, lan).await;
        let more = ["10.77.32.0/27", "10.77.96.0/27", "10.77.192.0/27"].map(|p| (net(p), owner));
        let two = routes::adopt_all(&handle, &more, lan).await;
        (one, two)
    });
    let err = one.expect_err("10.77.96.0/27 must be refused");
    assert!(
        matches!(&err, RouteError::Foreign { prefix, .. } if *prefix == net("10.77.96.0/27")),
        "{err:?}"
    );
    let err = two.expect_err("two prefixes must be refused");
    let RouteError::Refused(refusals) = &err else {
        panic!("expected both refusals, got {err:?}");
    };
    assert_eq!(refusals.len(), 2, "{err}");
    let message = err.to_string();
    assert!(
        message.contains("10.77.96.0/27") && message.contains("10.77.192.0/27"),
        "{message}"
    );
    assert_eq!(
        route_table(&netns),
        before,
        "a refused start changed routes"
    );
}

#[test]
fn a_route_with_its_own_mtu_or_advmss_is_refused_before_anything_changes() {
    if !require_root("a_route_with_its_own_mtu_or_advmss_is_refused_before_anything_changes") {
        return;
    }
    let netns = route_lab("mtu");
    netns.ip(
        0,
        "route add 10.77.32.0/27 via 10.77.0.2 dev lan0 proto boot",
    );
    netns.ip(0, "route add 10.77.64.0/27 via 10.77.0.3 dev lan0 mtu 1400");
    netns.ip(
        0,
        "route add 10.77.96.0/27 via 10.77.0.4 dev lan0 advmss 1360",
    );
    let before = route_table(&netns);
    let hosts = std::env::temp_dir().join(format!("ha-nl-mtu-hosts-{}", std::process::id()));
    std::fs::write(&hosts, "").expect("writing a hosts file");
    let path = hosts.clone();
    let (adopted, zero_config) = in_netns(netns.name(0), move || async move {
        let handle = netdev::connect().expect("netlink");
        let lan = netdev::interface(&handle, "lan0")
            .await
            .expect("lan0")
            .index;
        let owner = addr("10.77.0.9");
        let wanted = [
            "10.77.32.0/27",
            "10.77.64.0/27",
            "10.77.96.0/27",
            "10.77.128.0/27",
        ]
        .map(|p| (net(p), owner));
        let adopted = routes::adopt_all(&handle, &wanted, lan).await;
        let zero_config = ha_user::daemon::boot::config_from_kernel(&handle, "lan0", &path).await;
        (adopted, zero_config)
    });
    let _ = std::fs::remove_file(&hosts);
    let err = adopted.expect_err("the routes with an MTU must be refused");
    let RouteError::Refused(refusals) = &err else {
        panic!("expected two refusals, got {err:?}");
    };
    let named: Vec<(String, Vec<&str>)> = refusals
        .iter()
        .map(|refusal| match refusal {
            RouteError::SizeAttribute {
                prefix, attributes, ..
            } => (prefix.to_string(), attributes.clone()),
            other => panic!("expected a size-attribute refusal, got {other:?}"),
        })
        .collect();
    assert_eq!(
        named,
        [
            ("10.77.64.0/27".to_owned(), vec!["mtu"]),
            ("10.77.96.0/27".to_owned(), vec!["advmss"]),
        ]
    );
    let message = err.to_string();
    eprintln!("{message}");
    assert!(
        message.contains("ip link set LAN mtu N") && message.contains("LAN interface's MTU"),
        "{message}"
    );
    assert_eq!(
        route_table(&netns),
        before,
        "a refused start changed routes"
    );

    let err = zero_config.expect_err("zero-config must refuse the route with an MTU");
    let message = format!("{err:#}");
    assert!(
        matches!(
            err.downcast_ref(),
            Some(AdoptError::SizeAttribute { prefix, .. }) if *prefix == net("10.77.64.0/27")
        ),
        "{message}"
    );
    assert!(message.contains("mtu 1400"), "{message}");
}

#[test]
fn a_route_snapshot_puts_back_exactly_what_was_there() {
    if !require_root("a_route_snapshot_puts_back_exactly_what_was_there") {
        return;
    }
    let netns = classic_lab("snap");
    // Attributes an adoption drops: a preferred source, onlink, a realm.
    netns.ip(
        0,
        "route replace 10.77.32.0/27 via 10.77.0.2 dev lan0 proto boot src 10.77.0.1 onlink realm 7",
    );
    // The same prefix at another metric: never touched.
    netns.ip(
        0,
        "route add 10.77.32.0/27 via 10.77.0.8 dev lan0 metric 10",
    );
    // Ours, pointing elsewhere; ours for a prefix the configuration dropped.
    netns.ip(
        0,
        "route add 10.77.96.0/27 via 10.77.0.4 dev lan0 proto 165",
    );
    netns.ip(
        0,
        "route add 10.77.128.0/27 via 10.77.0.5 dev lan0 proto 165",
    );
    let before = route_table(&netns);
    let ns = netns.name(0).to_owned();
    let (changed, restored, again) = in_netns(netns.name(0), move || async move {
        let handle = netdev::connect().expect("netlink");
        let lan = netdev::interface(&handle, "lan0")
            .await
            .expect("lan0")
            .index;
        let configured = ["10.77.32.0/27", "10.77.64.0/27", "10.77.96.0/27"].map(net);
        let snapshot = RouteSnapshot::take(&handle, configured)
            .await
            .expect("snapshot");
        // A start-up: adopt 32, install 64, keep 96, re-point 96, drop 128.
        let owner = addr("10.77.0.9");
        let wanted = configured.map(|p| (p, owner));
        routes::adopt_all(&handle, &wanted, lan)
            .await
            .expect("the adoption");
        routes::replace(&handle, net("10.77.96.0/27"), owner, lan)
            .await
            .expect("re-pointing");
        assert!(
            routes::remove(&handle, net("10.77.128.0/27"))
                .await
                .expect("removing")
        );
        let changed = ip_in(&ns, "route show proto 165");
        let restored = snapshot.restore(&handle).await.expect("restoring");
        let again = snapshot.restore(&handle).await.expect("restoring again");
        (changed, restored, again)
    });
    eprintln!("ha's routes before the restore:\n{changed}");
    assert_eq!(
        changed.lines().count(),
        3,
        "the start-up should have changed the routes"
    );
    assert_eq!(
        restored,
        Restored {
            deleted: 1,
            put_back: 3,
        }
    );
    assert_eq!(
        again,
        Restored::default(),
        "a second restore has nothing to do"
    );
    assert_eq!(route_table(&netns), before);
}

/// The next LAN event, within a second.
async fn next(events: &mut tokio::sync::mpsc::Receiver<LanEvent>) -> Option<LanEvent> {
    tokio::time::timeout(Duration::from_secs(1), events.recv())
        .await
        .ok()
        .flatten()
}

/// The LAN watch follows `lan0` by name: MTU changes, down and up, a route of ours
/// deleted (not another's), the interface deleted and created again (another
/// ifindex); other attributes and other interfaces are no news.
#[test]
fn the_lan_watch_follows_the_interface_and_our_routes() {
    if !require_root("the_lan_watch_follows_the_interface_and_our_routes") {
        return;
    }
    let netns = route_lab("lanw");
    let ns = netns.name(0).to_owned();
    let seen = in_netns(netns.name(0), move || async move {
        let handle = netdev::connect().expect("netlink");
        let known = lan::read(&handle, "lan0")
            .await
            .expect("read")
            .expect("lan0");
        let other = netdev::interface(&handle, "lan1").await.expect("lan1");
        let mut events = lan::watch("lan0", Some(known), 8).expect("watch");
        let mut seen = Vec::new();
        let ip = |args: &str| ip_in(&ns, args);
        ip("link set lan0 mtu 1400");
        seen.push(next(&mut events).await);
        // Other attributes, another interface, another's route: no event.
        ip("link set lan0 alias steered");
        ip("link set lan1 mtu 1300");
        ip("route add 10.77.96.0/27 via 10.77.0.4 dev lan0 proto boot");
        ip("route del 10.77.96.0/27 via 10.77.0.4 dev lan0 proto boot");
        ip("link set lan0 mtu 9000");
        seen.push(next(&mut events).await);
        ip("route add 10.77.64.0/27 via 10.77.0.3 dev lan0 proto 165");
        ip("route del 10.77.64.0/27 proto 165");
        seen.push(next(&mut events).await);
        ip("link set lan0 down");
        seen.push(next(&mut events).await);
        ip("link set lan0 up");
        seen.push(next(&mut events).await);
        // Deleting takes it down first.
        ip("link del lan0");
        seen.push(next(&mut events).await);
        seen.push(next(&mut events).await);
        ip("link add name lan0 type veth peer name lan2");
        seen.push(next(&mut events).await);
        seen.push(next(&mut events).await);
        (known, other.index, seen)
    });
    let (known, other, seen) = seen;
    assert_ne!(known.index, other);
    let link = |index, mtu, up| {
        Some(LanEvent::Link(LanLink {
            index,
            mtu,
            up,
            ..known
        }))
    };
    let [a, b, c, d, e, f, g, h, i] = seen.try_into().expect("nine");
    assert_eq!(
        [a, b],
        [link(known.index, 1400, true), link(known.index, 9000, true)]
    );
    assert_eq!(
        c,
        Some(LanEvent::RouteDeleted {
            prefix: net("10.77.64.0/27"),
            oif: Some(known.index),
        })
    );
    assert_eq!(
        [d, e],
        [
            link(known.index, 9000, false),
            link(known.index, 9000, true)
        ]
    );
    assert_eq!(
        [f, g],
        [
            link(known.index, 9000, false),
            Some(LanEvent::Gone { index: known.index })
        ]
    );
    // Created again (down, another MAC): a new ifindex; nothing more.
    let Some(LanEvent::Link(again)) = h else {
        panic!("expected the new lan0, got {h:?}")
    };
    assert!(again.index > known.index && !again.up, "{again:?}");
    assert_eq!(i, None);
}
