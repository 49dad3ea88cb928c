//! The VIP checks' pacing on a hand-advanced clock, and the scheduler end to end
//! against local test servers (root: the probes carry `SO_MARK`).

use std::{net::Ipv4Addr, sync::Arc, time::Duration};

use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};

use super::*;
use crate::{
    health::probe::tests::{Reply, TestServer, check},
    model::{CheckKind, HealthCheck, Host},
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn a_round_spreads_its_prefixes_over_its_period() {
    let start = std::time::Instant::now();
    let start = Instant::from_std(start);
    let mut round = Round::new(ms(1000), start);
    let mut seen: Vec<(usize, u64)> = Vec::new();
    for step in 0..=200u64 {
        let now = start + ms(step * 10);
        for prefix in round.due(now, 4, 100) {
            seen.push((prefix, step * 10));
        }
    }
    // Two rounds of four, each prefix once per round, a quarter period apart.
    let order: Vec<usize> = seen.iter().map(|(p, _)| *p).collect();
    assert_eq!(order, [0, 1, 2, 3, 0, 1, 2, 3, 0], "{seen:?}");
    let times: Vec<u64> = seen.iter().map(|(_, t)| *t).collect();
    assert_eq!(
        times,
        [0, 260, 510, 760, 1000, 1260, 1510, 1760, 2000],
        "{seen:?}"
    );
}

#[test]
fn a_round_stretches_to_the_room_the_rate_leaves() {
    let start = Instant::from_std(std::time::Instant::now());
    let mut round = Round::new(ms(10), start);
    let mut enqueued = 0;
    let mut rounds_done = 0;
    for step in 0..250u64 {
        let due = round.due(start + ms(step * 10), 100, 1);
        assert!(due.len() <= 1, "room for one: {due:?}");
        enqueued += due.len();
        if due.end == 100 {
            rounds_done += 1;
        }
    }
    assert_eq!(
        enqueued, 250,
        "one per call, not the 100 per call the period asks"
    );
    assert_eq!(rounds_done, 2, "a round of 100 takes 100 calls");
}

fn can_mark() -> bool {
    let socket = match socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None) {
        Ok(socket) => socket,
        Err(err) => panic!("a TCP socket: {err}"),
    };
    match socket.set_mark(1) {
        Ok(()) => true,
        Err(err) => {
            println!("SKIPPED: VIP probes set SO_MARK, which needs CAP_NET_ADMIN: {err}");
            false
        }
    }
}

fn host(name: &str, port: u16) -> Host {
    Host {
        name: name.into(),
        address: Ipv4Addr::LOCALHOST,
        mac: None,
        health: HealthCheck {
            fall: 2,
            rise: 2,
            ..check(CheckKind::Http, port, 200)
        },
    }
}

async fn next_vip(events: &mut mpsc::Receiver<CheckEvent>) -> VipEvent {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("a VIP event within 5 s")
            .expect("checks running");
        if let CheckEvent::Vip(event) = event {
            return event;
        }
    }
}

/// Two prefixes whose VIP is 127.0.0.1, two hosts whose checks ask two local
/// servers: one answers, the other says 503 and later 200.
#[tokio::test]
async fn pairs_become_not_serving_and_serving_again() {
    if !can_mark() {
        return;
    }
    let good = TestServer::start(Reply::Status(200)).await;
    let bad = TestServer::start(Reply::Status(503)).await;
    let hosts = vec![host("h0", good.port), host("h1", bad.port)];
    let (h0, h1) = (HostId::new(0), HostId::new(1));
    let prefix = |watched: [Option<HostId>; WATCHED]| PlanPrefix {
        vip: Ipv4Addr::LOCALHOST,
        watched,
        via: h0,
    };
    let plan = VipPlan {
        settings: VipCheck {
            enabled: true,
            interval_ms: 20,
            sweep_ms: 100,
            timeout_ms: 200,
            max_rate: 1000,
        },
        prefixes: vec![
            prefix([Some(h0), Some(h1), None, None]),
            prefix([Some(h1), None, None, None]),
        ],
        hosts: vec![
            PlanHost {
                ready: true,
                down: false,
            };
            2
        ],
    };
    let (events_tx, mut events) = mpsc::channel(16);
    let (_plan_tx, plan_rx) = watch::channel(Arc::new(plan.clone()));
    let (_hosts_tx, hosts_rx) = watch::channel((0, Arc::new(hosts)));
    let shelf = Shelf::default();
    let scheduler = Scheduler {
        plan: plan_rx,
        hosts: hosts_rx,
        shelf: shelf.clone(),
        shared: Shared::default(),
        events: events_tx,
    };
    let task = tokio::spawn(scheduler.run());

    let mut not_serving = [next_vip(&mut events).await, next_vip(&mut events).await];
    not_serving.sort_by_key(|event| event.prefix);
    for (event, prefix) in not_serving.iter().zip([0, 1]) {
        assert_eq!(
            (event.prefix, event.host, event.old, event.new),
            (
                PrefixId::new(prefix),
                h1,
                VipVerdict::Unknown,
                VipVerdict::NotServing
            ),
            "{event:?}"
        );
        assert_eq!(
            event.reason,
            "VIP 127.0.0.1 not answered by h1: http status 503"
        );
    }
    let snapshot = shelf.snapshot();
    let verdict_of = |prefix: usize, host: HostId| {
        snapshot
            .pairs
            .iter()
            .find(|pair| pair.prefix == PrefixId::new(prefix) && pair.host == host)
            .map(|pair| (pair.verdict, pair.why.clone()))
    };
    assert_eq!(verdict_of(0, h0), Some((VipVerdict::Serving, None)));
    assert_eq!(
        verdict_of(1, h1).map(|(v, _)| v),
        Some(VipVerdict::NotServing)
    );
    assert!(snapshot.outcomes[0][ProbeOutcome::Answered.index()] > 0);
    assert!(snapshot.outcomes[1][ProbeOutcome::Refused.index()] >= 2);

    bad.set(Reply::Status(200));
    let back = next_vip(&mut events).await;
    assert_eq!(
        (back.old, back.new, back.host),
        (VipVerdict::NotServing, VipVerdict::Serving, h1),
        "{back:?}"
    );
    assert_eq!(back.reason, "VIP 127.0.0.1 answered by h1 2 times in a row");
    task.abort();
}

/// A host that is down, or whose MAC is unknown, and the pairs of a prefix routed
/// through a host that is down, are not asked.
#[tokio::test]
async fn hosts_down_or_unknown_are_not_asked() {
    if !can_mark() {
        return;
    }
    let server = TestServer::start(Reply::Status(200)).await;
    let hosts = vec![
        host("up", server.port),
        host("down", server.port),
        host("no-mac", server.port),
    ];
    let ids = [HostId::new(0), HostId::new(1), HostId::new(2)];
    let plan = VipPlan {
        settings: VipCheck {
            interval_ms: 10,
            sweep_ms: 10,
            ..VipCheck::default()
        },
        prefixes: vec![
            PlanPrefix {
                vip: Ipv4Addr::LOCALHOST,
                watched: [Some(ids[0]), Some(ids[1]), Some(ids[2]), None],
                via: ids[0],
            },
            PlanPrefix {
                vip: Ipv4Addr::LOCALHOST,
                watched: [Some(ids[0]), None, None, None],
                via: ids[1],
            },
        ],
        hosts: vec![
            PlanHost {
                ready: true,
                down: false,
            },
            PlanHost {
                ready: true,
                down: true,
            },
            PlanHost {
                ready: false,
                down: false,
            },
        ],
    };
    let (events_tx, _events) = mpsc::channel(16);
    let (_plan_tx, plan_rx) = watch::channel(Arc::new(plan));
    let (_hosts_tx, hosts_rx) = watch::channel((0, Arc::new(hosts)));
    let shelf = Shelf::default();
    let task = tokio::spawn(
        Scheduler {
            plan: plan_rx,
            hosts: hosts_rx,
            shelf: shelf.clone(),
            shared: Shared::default(),
            events: events_tx,
        }
        .run(),
    );
    tokio::time::sleep(ms(300)).await;
    let snapshot = shelf.snapshot();
    let asked = |host: usize| snapshot.outcomes[host].iter().sum::<u64>();
    let answered = snapshot.outcomes[0][ProbeOutcome::Answered.index()];
    // Prefix 0 through host 0 every 10 ms for 300 ms; prefix 1 never (routed
    // through the host that is down).
    assert!((10..=40).contains(&answered), "{snapshot:?}");
    assert_eq!(asked(0), answered, "{snapshot:?}");
    assert_eq!((asked(1), asked(2)), (0, 0), "{snapshot:?}");
    let verdicts: Vec<_> = snapshot
        .pairs
        .iter()
        .map(|pair| (pair.prefix.index(), pair.host.index(), pair.verdict))
        .collect();
    assert_eq!(
        verdicts,
        [
            (0, 0, VipVerdict::Serving),
            (0, 1, VipVerdict::Unknown),
            (0, 2, VipVerdict::Unknown),
            (1, 0, VipVerdict::Unknown),
        ]
    );
    task.abort();
}
