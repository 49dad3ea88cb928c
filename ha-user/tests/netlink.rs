//! Kernel tests of `routes` and `neigh` (root): each test builds its own network
//! namespaces (`ha-nl-*`, deleted on drop even when the test panics) and runs the
//! rtnetlink calls on a thread that entered the router namespace before creating
//! its tokio runtime and netlink sockets, so nothing outside is touched.
//!
//! Not root: the tests fail, unless `HA_SKIP_ROOT_TESTS=1`, which prints
//! `SKIPPED: <test> needs root` instead.

use std::{
    net::{Ipv4Addr, UdpSocket},
    time::Duration,
};

use ha_user::{
    kernel::{
        neigh::{self, NeighEvent},
        netdev,
        routes::{self, Adoption, KernelRoute, ROUTE_PROTO, RouteError},
    },
    model::Mac,
};
use tokio::sync::mpsc;

mod common;

use common::{
    PEER_MAC, addr, in_netns, ip_in, neigh_lab, net, require_root, route_for, route_lab, shown,
};

#[test]
fn replace_installs_a_route_with_our_protocol() {
    if !require_root("replace_installs_a_route_with_our_protocol") {
        return;
    }
    let netns = route_lab("repl");
    let listed = in_netns(netns.name(0), || async {
        let handle = netdev::connect().expect("netlink");
        let lan = netdev::interface(&handle, "lan0").await.expect("lan0");
        let prefix = net("10.77.64.0/27");
        routes::replace(&handle, prefix, addr("10.77.0.3"), lan.index)
            .await
            .expect("replace");
        let first = route_for(&handle, prefix).await.expect("the route");
        // Replacing again moves it, still one route.
        routes::replace(&handle, prefix, addr("10.77.0.4"), lan.index)
            .await
            .expect("replace again");
        let routes = routes::list(&handle).await.expect("list");
        (lan.index, first, routes)
    });
    let (lan_index, first, routes) = listed;
    assert_eq!(
        first,
        KernelRoute {
            prefix: net("10.77.64.0/27"),
            gateway: Some(addr("10.77.0.3")),
            oif: Some(lan_index),
            protocol: ROUTE_PROTO,
            metric: 0,
            mtu: None,
            advmss: None,
        }
    );
    let ours: Vec<&KernelRoute> = routes.iter().filter(|r| r.is_ours()).collect();
    assert_eq!(ours.len(), 1, "{routes:#?}");
    assert_eq!(ours[0].gateway, Some(addr("10.77.0.4")));
    // The connected route is listed too, as the kernel's.
    assert!(
        routes
            .iter()
            .any(|r| r.prefix == net("10.77.0.0/24") && r.protocol == 2 && r.gateway.is_none()),
        "{routes:#?}"
    );
    assert_eq!(
        shown(&netns, &ROUTE_PROTO.to_string()),
        ["10.77.64.0/27 via 10.77.0.4 dev lan0"]
    );
}

#[test]
fn adopt_takes_over_foreign_static_routes_of_configured_prefixes_only() {
    if !require_root("adopt_takes_over_foreign_static_routes_of_configured_prefixes_only") {
        return;
    }
    let netns = route_lab("adopt");
    // The classic boot-script route, a route `ip route add` marks `proto static`,
    // a device route, and a route for a prefix ha is not configured for.
    netns.ip(
        0,
        "route add 10.77.32.0/27 via 10.77.0.2 dev lan0 proto boot",
    );
    netns.ip(
        0,
        "route add 10.77.64.0/27 via 10.77.0.3 dev lan0 proto static",
    );
    netns.ip(0, "route add 10.77.96.0/27 dev lan0 proto static");
    netns.ip(
        0,
        "route add 10.77.160.0/27 via 10.77.0.5 dev lan0 proto static",
    );
    netns.ip(0, "route add blackhole 10.77.192.0/27");
    let name = netns.name(0).to_owned();
    let outcomes = in_netns(&name, || async {
        let handle = netdev::connect().expect("netlink");
        let lan = netdev::interface(&handle, "lan0")
            .await
            .expect("lan0")
            .index;
        let owner = addr("10.77.0.9");
        let wanted = ["10.77.32.0/27", "10.77.64.0/27", "10.77.128.0/27"].map(|p| (net(p), owner));
        let mut outcomes: Vec<Adoption> = routes::adopt_all(&handle, &wanted, lan)
            .await
            .unwrap_or_else(|err| panic!("adopting {wanted:?}: {err}"));
        // A second start finds them ours.
        let again = routes::adopt(&handle, net("10.77.64.0/27"), owner, lan)
            .await
            .expect("adopting again");
        outcomes.push(again);
        // A device route, the connected subnet, a blackhole: refused, left alone.
        let mut refused = Vec::new();
        for prefix in ["10.77.96.0/27", "10.77.0.0/24", "10.77.192.0/27"] {
            let result = routes::adopt(&handle, net(prefix), owner, lan).await;
            refused.push(result.expect_err(prefix));
        }
        (lan, outcomes, refused)
    });
    let (lan, outcomes, refused) = outcomes;
    let previous = |gateway: &str, protocol: u8, prefix: &str| Adoption::Adopted {
        previous: KernelRoute {
            prefix: net(prefix),
            gateway: Some(addr(gateway)),
            oif: Some(lan),
            protocol,
            metric: 0,
            mtu: None,
            advmss: None,
        },
    };
    assert_eq!(outcomes[0], previous("10.77.0.2", 3, "10.77.32.0/27"));
    assert_eq!(outcomes[1], previous("10.77.0.3", 4, "10.77.64.0/27"));
    assert_eq!(
        outcomes[2],
        Adoption::Installed {
            gateway: addr("10.77.0.9")
        }
    );
    assert!(
        matches!(&outcomes[3], Adoption::AlreadyOurs { route } if route.gateway == Some(addr("10.77.0.3"))),
        "{:?}",
        outcomes[3]
    );
    for err in &refused {
        assert!(matches!(err, RouteError::Foreign { .. }), "{err:?}");
    }
    // Adopted routes keep their gateway; only the protocol changed.
    assert_eq!(
        shown(&netns, &ROUTE_PROTO.to_string()),
        [
            "10.77.32.0/27 via 10.77.0.2 dev lan0",
            "10.77.64.0/27 via 10.77.0.3 dev lan0",
            "10.77.128.0/27 via 10.77.0.9 dev lan0",
        ]
    );
    // Everything else is as it was.
    assert_eq!(
        shown(&netns, "static"),
        [
            "10.77.96.0/27 dev lan0 scope link",
            "10.77.160.0/27 via 10.77.0.5 dev lan0",
        ]
    );
    assert!(
        shown(&netns, "boot")
            .iter()
            .any(|r| r.starts_with("blackhole 10.77.192.0/27"))
    );
    assert_eq!(
        shown(&netns, "kernel"),
        ["10.77.0.0/24 dev lan0 scope link src 10.77.0.1"]
    );
}

#[test]
fn agree_all_rewrites_only_the_routes_that_differ() {
    if !require_root("agree_all_rewrites_only_the_routes_that_differ") {
        return;
    }
    let netns = route_lab("agree");
    // Ours and right, ours through another gateway, someone else's, missing.
    netns.ip(
        0,
        "route add 10.77.32.0/27 via 10.77.0.2 dev lan0 proto 165",
    );
    netns.ip(
        0,
        "route add 10.77.64.0/27 via 10.77.0.3 dev lan0 proto 165",
    );
    netns.ip(
        0,
        "route add 10.77.96.0/27 via 10.77.0.2 dev lan0 proto static",
    );
    netns.ip(
        0,
        "route add 10.77.160.0/27 via 10.77.0.5 dev lan0 proto static",
    );
    let name = netns.name(0).to_owned();
    let (before, replaced, after, again) = in_netns(&name, || async {
        let handle = netdev::connect().expect("netlink");
        let lan = netdev::interface(&handle, "lan0")
            .await
            .expect("lan0")
            .index;
        let gateway = addr("10.77.0.2");
        let wanted = [
            "10.77.32.0/27",
            "10.77.64.0/27",
            "10.77.96.0/27",
            "10.77.128.0/27",
        ]
        .map(|p| (net(p), gateway));
        let before = routes::our_routes(&handle, lan).await.expect("our routes");
        let replaced = routes::agree_all(&handle, &wanted, lan, &before)
            .await
            .expect("agreeing");
        let after = routes::our_routes(&handle, lan).await.expect("our routes");
        let again = routes::agree_all(&handle, &wanted, lan, &after)
            .await
            .expect("agreeing again");
        (before, replaced, after, again)
    });
    let ours = |pairs: &[(&str, &str)]| -> routes::OurRoutes {
        pairs.iter().map(|(p, g)| (net(p), addr(g))).collect()
    };
    assert_eq!(
        before,
        ours(&[
            ("10.77.32.0/27", "10.77.0.2"),
            ("10.77.64.0/27", "10.77.0.3")
        ])
    );
    assert_eq!(replaced, 3, "all but the route that already agreed");
    assert_eq!(
        after,
        ours(&[
            ("10.77.32.0/27", "10.77.0.2"),
            ("10.77.64.0/27", "10.77.0.2"),
            ("10.77.96.0/27", "10.77.0.2"),
            ("10.77.128.0/27", "10.77.0.2"),
        ])
    );
    assert_eq!(again, 0, "nothing left to change");
    // A route for a prefix that was not asked for stays someone else's.
    assert_eq!(
        shown(&netns, "static"),
        ["10.77.160.0/27 via 10.77.0.5 dev lan0"]
    );
}

#[test]
fn replace_over_a_static_route_adopts_it() {
    if !require_root("replace_over_a_static_route_adopts_it") {
        return;
    }
    let netns = route_lab("rstat");
    netns.ip(
        0,
        "route add 10.77.64.0/27 via 10.77.0.3 dev lan0 proto static",
    );
    let name = netns.name(0).to_owned();
    let route = in_netns(&name, || async {
        let handle = netdev::connect().expect("netlink");
        let lan = netdev::interface(&handle, "lan0")
            .await
            .expect("lan0")
            .index;
        routes::replace(&handle, net("10.77.64.0/27"), addr("10.77.0.4"), lan)
            .await
            .expect("replace");
        route_for(&handle, net("10.77.64.0/27")).await
    });
    let route = route.expect("the route");
    assert!(route.is_ours(), "{route}");
    assert_eq!(shown(&netns, "static"), Vec::<String>::new());
    assert_eq!(
        shown(&netns, &ROUTE_PROTO.to_string()),
        ["10.77.64.0/27 via 10.77.0.4 dev lan0"]
    );
}

#[test]
fn remove_leaves_foreign_routes_alone() {
    if !require_root("remove_leaves_foreign_routes_alone") {
        return;
    }
    let netns = route_lab("rm");
    netns.ip(
        0,
        "route add 10.77.96.0/27 via 10.77.0.4 dev lan0 proto static",
    );
    netns.ip(0, "route add 10.77.128.0/27 via 10.77.0.5 dev lan0");
    let name = netns.name(0).to_owned();
    let removed = in_netns(&name, || async {
        let handle = netdev::connect().expect("netlink");
        let lan = netdev::interface(&handle, "lan0")
            .await
            .expect("lan0")
            .index;
        let foreign = routes::remove(&handle, net("10.77.96.0/27"))
            .await
            .expect("remove");
        let missing = routes::remove(&handle, net("10.77.200.0/27"))
            .await
            .expect("remove");
        routes::replace(&handle, net("10.77.64.0/27"), addr("10.77.0.3"), lan)
            .await
            .expect("replace");
        let ours = routes::remove(&handle, net("10.77.64.0/27"))
            .await
            .expect("remove");
        let twice = routes::remove(&handle, net("10.77.64.0/27"))
            .await
            .expect("remove");
        let host_bits = routes::remove(&handle, net("10.77.96.1/27")).await;
        (foreign, missing, ours, twice, host_bits)
    });
    let (foreign, missing, ours, twice, host_bits) = removed;
    assert!(!foreign, "a static route was removed");
    assert!(!missing);
    assert!(ours, "our route was not removed");
    assert!(!twice);
    assert!(
        matches!(host_bits, Err(RouteError::HostBits { .. })),
        "{host_bits:?}"
    );
    assert_eq!(
        shown(&netns, &ROUTE_PROTO.to_string()),
        Vec::<String>::new()
    );
    assert_eq!(
        shown(&netns, "static"),
        ["10.77.96.0/27 via 10.77.0.4 dev lan0"]
    );
    assert_eq!(
        shown(&netns, "boot"),
        ["10.77.128.0/27 via 10.77.0.5 dev lan0"]
    );
}

/// Polls `lookup` until it gives a MAC, for up to 5 s.
async fn wait_for_mac(handle: &rtnetlink::Handle, addr: Ipv4Addr, ifindex: u32) -> Option<Mac> {
    for _ in 0..50 {
        if let Some(mac) = neigh::lookup(handle, addr, ifindex).await.expect("lookup") {
            return Some(mac);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[test]
fn lookup_finds_the_peer_mac_after_traffic() {
    if !require_root("lookup_finds_the_peer_mac_after_traffic") {
        return;
    }
    let netns = neigh_lab("look");
    let name = netns.name(0).to_owned();
    let (before, after) = in_netns(&name, || async {
        let handle = netdev::connect().expect("netlink");
        let lan = netdev::interface(&handle, "lan0")
            .await
            .expect("lan0")
            .index;
        let peer = addr("10.78.0.2");
        let before = neigh::lookup(&handle, peer, lan).await.expect("lookup");
        // Any datagram to the peer makes the kernel ARP for it.
        let socket = UdpSocket::bind("10.78.0.1:0").expect("a UDP socket");
        socket.send_to(b"ha", "10.78.0.2:9").expect("send");
        (before, wait_for_mac(&handle, peer, lan).await)
    });
    assert_eq!(before, None);
    assert_eq!(after, Some(PEER_MAC.parse().expect("a MAC")));
}

#[test]
fn resolve_makes_the_kernel_ask() {
    if !require_root("resolve_makes_the_kernel_ask") {
        return;
    }
    let netns = neigh_lab("res");
    let name = netns.name(0).to_owned();
    let (found, absent) = in_netns(&name, || async {
        let handle = netdev::connect().expect("netlink");
        let lan = netdev::interface(&handle, "lan0")
            .await
            .expect("lan0")
            .index;
        neigh::resolve(&handle, addr("10.78.0.2"), lan)
            .await
            .expect("resolve");
        let found = wait_for_mac(&handle, addr("10.78.0.2"), lan).await;
        // Nobody answers for .99: the entry exists but has no usable MAC.
        neigh::resolve(&handle, addr("10.78.0.99"), lan)
            .await
            .expect("resolve");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let absent = neigh::lookup(&handle, addr("10.78.0.99"), lan)
            .await
            .expect("lookup");
        // Resolving an address that already has a MAC keeps it.
        neigh::resolve(&handle, addr("10.78.0.2"), lan)
            .await
            .expect("resolve again");
        let kept = neigh::lookup(&handle, addr("10.78.0.2"), lan)
            .await
            .expect("lookup");
        assert_eq!(kept, found);
        (found, absent)
    });
    assert_eq!(found, Some(PEER_MAC.parse().expect("a MAC")));
    assert_eq!(absent, None);
    let table = netns.ip(0, "neigh show 10.78.0.99");
    assert!(
        table.contains("INCOMPLETE") || table.contains("FAILED"),
        "10.78.0.99: {table}"
    );
}

async fn next(events: &mut mpsc::Receiver<NeighEvent>) -> NeighEvent {
    tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("a neighbour event within 5 s")
        .expect("the watch is running")
}

#[test]
fn watch_sees_neighbours_appear_change_and_go() {
    if !require_root("watch_sees_neighbours_appear_change_and_go") {
        return;
    }
    let netns = neigh_lab("watch");
    let name = netns.name(0).to_owned();
    // A MAC the watch must report at once: present before it starts.
    netns.ip(
        0,
        "neigh replace 10.78.0.60 lladdr 02:00:00:00:00:60 dev lan0 nud permanent",
    );
    let ns = name.clone();
    let events = in_netns(&name, move || async move {
        let handle = netdev::connect().expect("netlink");
        let lan = netdev::interface(&handle, "lan0")
            .await
            .expect("lan0")
            .index;
        let mut events = neigh::watch(16).expect("watch");
        let mut seen = Vec::new();
        // The entries with a MAC at the start: 10.78.0.60.
        seen.push(next(&mut events).await);
        let ip = |args: &str| ip_in(&ns, args);
        ip("neigh replace 10.78.0.50 lladdr 02:00:00:00:00:50 dev lan0 nud permanent");
        seen.push(next(&mut events).await);
        // Same MAC, other state: no event.
        ip("neigh replace 10.78.0.50 lladdr 02:00:00:00:00:50 dev lan0 nud stale");
        ip("neigh replace 10.78.0.50 lladdr 02:00:00:00:00:51 dev lan0 nud permanent");
        seen.push(next(&mut events).await);
        ip("neigh del 10.78.0.50 dev lan0");
        seen.push(next(&mut events).await);
        // Learned by ARP.
        neigh::resolve(&handle, addr("10.78.0.2"), lan)
            .await
            .expect("resolve");
        seen.push(next(&mut events).await);
        (lan, seen)
    });
    let (lan, seen) = events;
    let event = |a: &str, mac: Option<&str>| NeighEvent {
        addr: addr(a),
        ifindex: lan,
        mac: mac.map(|m| m.parse().expect("a MAC")),
    };
    assert_eq!(
        seen,
        [
            event("10.78.0.60", Some("02:00:00:00:00:60")),
            event("10.78.0.50", Some("02:00:00:00:00:50")),
            event("10.78.0.50", Some("02:00:00:00:00:51")),
            event("10.78.0.50", None),
            event("10.78.0.2", Some(PEER_MAC)),
        ]
    );
}

#[test]
fn zero_config_reads_the_routes_through_the_lan() {
    if !require_root("zero_config_reads_the_routes_through_the_lan") {
        return;
    }
    let netns = route_lab("zero");
    for (vip, host) in [("32", "2"), ("64", "3"), ("96", "4"), ("128", "5")] {
        netns.ip(
            0,
            &format!("route add 10.77.{vip}.0/27 via 10.77.0.{host} dev lan0"),
        );
    }
    netns.ip(0, "route add default via 10.77.0.254 dev lan0");
    let hosts = std::env::temp_dir().join(format!("ha-nl-hosts-{}", std::process::id()));
    std::fs::write(&hosts, "10.77.0.3 web2\n").expect("writing a hosts file");
    let path = hosts.clone();
    let result = in_netns(netns.name(0), move || async move {
        let handle = netdev::connect().expect("netlink");
        let config = ha_user::daemon::boot::config_from_kernel(&handle, "lan0", &path).await;
        let missing = ha_user::daemon::boot::config_from_kernel(&handle, "lan1", &path).await;
        (config, missing)
    });
    let _ = std::fs::remove_file(&hosts);
    let (config, missing) = result;
    let config = config.expect("a configuration");
    let names: Vec<&str> = config.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["10.77.0.2", "web2", "10.77.0.4", "10.77.0.5"]);
    let prefixes: Vec<(String, usize)> = config
        .prefixes
        .iter()
        .map(|p| (p.cidr.to_string(), p.owner.index()))
        .collect();
    assert_eq!(
        prefixes,
        [
            ("10.77.32.0/27".to_owned(), 0),
            ("10.77.64.0/27".to_owned(), 1),
            ("10.77.96.0/27".to_owned(), 2),
            ("10.77.128.0/27".to_owned(), 3),
        ]
    );
    assert_eq!(config.lan.as_deref(), Some("lan0"));
    let err = missing.expect_err("nothing through lan1");
    assert!(
        matches!(
            err.downcast_ref(),
            Some(ha_user::config::adopt::AdoptError::NothingFound { .. })
        ),
        "{err:?}"
    );
}
