//! Kernel tests (root) of what a start-up does to the routes and how it puts them
//! back: every prefix is decided before any route changes, a route with its own
//! `mtu` or `advmss` is refused, the route snapshot puts back exactly what was
//! there; and the MTU watch follows the LAN interface. Each test builds its own
//! network namespace (`ha-nl-*`, see `common`).

use std::time::Duration;

use ha_user::{
    config::adopt::AdoptError,
    kernel::{
        mtu::{self, MtuEvent},
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

/// The next MTU event, within a second.
async fn next(events: &mut tokio::sync::mpsc::Receiver<MtuEvent>) -> Option<MtuEvent> {
    tokio::time::timeout(Duration::from_secs(1), events.recv())
        .await
        .ok()
        .flatten()
}

#[test]
fn the_mtu_watch_follows_the_interface() {
    if !require_root("the_mtu_watch_follows_the_interface") {
        return;
    }
    let netns = route_lab("mtuw");
    let ns = netns.name(0).to_owned();
    let seen = in_netns(netns.name(0), move || async move {
        let handle = netdev::connect().expect("netlink");
        let lan = netdev::interface(&handle, "lan0").await.expect("lan0");
        let other = netdev::interface(&handle, "lan1").await.expect("lan1");
        let mut events = mtu::watch(lan.index, lan.mtu, 8).expect("watch");
        let mut seen = Vec::new();
        ip_in(&ns, "link set lan0 mtu 1400");
        seen.push(next(&mut events).await);
        // Other attributes, another interface: no event.
        ip_in(&ns, "link set lan0 alias steered");
        ip_in(&ns, "link set lan1 mtu 1300");
        ip_in(&ns, "link set lan0 mtu 9000");
        seen.push(next(&mut events).await);
        seen.push(next(&mut events).await);
        (lan.index, other.index, seen)
    });
    let (lan, other, seen) = seen;
    assert_ne!(lan, other);
    let event = |mtu| Some(MtuEvent { ifindex: lan, mtu });
    assert_eq!(seen, [event(1400), event(9000), None]);
}
