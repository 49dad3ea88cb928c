//! The forwarding facts with a large main table: still right, and what they cost.

use std::time::{Duration, Instant};

use ha_user::kernel::forwarding::{Gatherer, VerifyMode, assess};

use crate::router::{LAN, Router, WAN, require_root, say};

/// 65,536 routes (172.16.0.0/12 in /28s) through the WAN gateway, in one `ip -batch`.
fn add_many_routes(router: &Router) {
    let mut batch = String::new();
    for i in 0u32..65_536 {
        let addr = std::net::Ipv4Addr::from(u32::from_be_bytes([172, 16, 0, 0]) + i * 16);
        batch.push_str(&format!("route add {addr}/28 via 10.77.0.2 dev wan0\n"));
    }
    let path = std::env::temp_dir().join(format!("{}-routes", router.name));
    std::fs::write(&path, batch).expect("writing the route batch");
    let path_text = path.to_string_lossy().into_owned();
    router.ip(&format!("-batch {path_text}"));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_large_main_table_keeps_the_route_facts() {
    if !require_root("a_large_main_table_keeps_the_route_facts") {
        return;
    }
    let router = Router::new("many");
    add_many_routes(&router);
    router.ip("route add blackhole 10.66.0.0/16");
    let facts = router.facts();
    assert!(facts.routes.main_default);
    assert_eq!(facts.routes.refusing.len(), 1);
    // Without a default route the partial dump still finds none.
    router.ip("route del default");
    assert!(!router.facts().routes.main_default);
}

/// Median and minimum of `runs` timings of `f`.
fn timed(runs: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    (times[runs / 2], times[0])
}

/// Prints the cost of one gathering and decision, with a handful of routes and with
/// 65,536, next to a plain dump of every route (what a scan without the kernel's
/// type filter costs).
#[test]
#[ignore = "a measurement, not a check: run with --ignored --nocapture"]
fn gathering_cost() {
    if !require_root("gathering_cost") {
        return;
    }
    let router = Router::new("cost");
    router.nft(
        "table inet filter {
           chain forward { type filter hook forward priority filter; }
         }",
    );
    for label in ["a handful of", "65,536"] {
        if label == "65,536" {
            add_many_routes(&router);
        }
        let report = router.within(move || {
            let mut gatherer = Gatherer::new().expect("a gatherer");
            let (gather, gather_min) = timed(21, || {
                let facts = gatherer.gather(LAN, &[WAN.to_owned()]).expect("gathering");
                std::hint::black_box(assess(&facts, VerifyMode::Auto));
            });
            let (scan, scan_min) = timed(21, || {
                std::hint::black_box(gatherer.routes().expect("the route facts"));
            });
            let routes = gatherer.routes().expect("the route facts");
            let (rest, rest_min) = timed(21, || {
                let facts = gatherer
                    .gather_with_routes(LAN, &[WAN.to_owned()], routes.clone())
                    .expect("gathering");
                std::hint::black_box(assess(&facts, VerifyMode::Auto));
            });
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            let (full, full_min) = timed(5, || {
                runtime.block_on(async {
                    use futures::TryStreamExt as _;
                    let (connection, handle, _) = rtnetlink::new_connection().expect("netlink");
                    let task = tokio::spawn(connection);
                    let message =
                        rtnetlink::RouteMessageBuilder::<std::net::Ipv4Addr>::new().build();
                    let all: Vec<_> = handle
                        .route()
                        .get(message)
                        .execute()
                        .try_collect()
                        .await
                        .expect("route dump");
                    std::hint::black_box(all.len());
                    task.abort();
                });
            });
            format!(
                "{label} routes: gather + assess median {gather:?} (min {gather_min:?}); the \
                 route facts alone {scan:?} (min {scan_min:?}); everything else + assess \
                 {rest:?} (min {rest_min:?}); a full route dump (rtnetlink) {full:?} (min \
                 {full_min:?})"
            )
        });
        say(&report);
    }
}
