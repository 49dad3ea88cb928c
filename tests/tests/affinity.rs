//! What clients see when a prefix moves (root): long-lived TCP connections (an
//! HTTP/1.1 keep-alive request every 50 ms) and UDP exchanges, from the WAN client
//! (whose replies cross the router) and from the LAN client (whose replies do not),
//! keep their server across a failback, `set-owner`, `clear-owner`, a graceful
//! `drain` and a controller restart, while new connections go to the new owner;
//! `drain_timeout_ms` ends what a drain left, and `drain --now` moves it at once.
//!
//! Each test builds its own lab (native XDP) and removes it at the end. Run one at a
//! time (`--test-threads=1`, as `cargo xtask test` does).

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use ha_common::{FlowCounter, FlowKey};
use ha_tests::{
    lab::{
        Lab, LabSpec, Node, XdpMode,
        conversation::{Conversation, Record, Transport},
        flow_entries, net, time_scale, vip,
    },
    root::require_root,
};
use ha_user::{
    model::Reason,
    proto::{
        ChangeReport, Event, Stats, Status,
        events::DrainOutcome,
        reports::{ChangeResult, Named},
    },
};

mod common;

use common::{assert_agreement, build};

const P64: &str = "192.168.1.64/27";
/// One exchange per conversation every 50 ms.
const PERIOD: Duration = Duration::from_millis(50);
/// How long conversations must go on after a move.
const KEEP: Duration = Duration::from_millis(2500);
const WAIT: Duration = Duration::from_secs(5);
/// At least this share of the exchanges a conversation could have made in a span
/// must be answered (the machine is shared: threads slip, never by half).
const MIN_SHARE: f64 = 0.5;

/// Health checks slower than the default ones: these tests are about flows, and a
/// controller that is late to read a probe on a loaded machine declares healthy
/// hosts down (every host at once), which moves prefixes the tests do not expect.
fn spec(prefix: &str) -> LabSpec {
    let mut spec = common::spec(prefix, XdpMode::Native);
    let scale = u64::from(time_scale());
    spec.health.interval_ms = 50 * scale;
    spec.health.timeout_ms = 40 * scale;
    spec
}

fn scaled(d: Duration) -> Duration {
    d * time_scale()
}

/// The `[flows]` table the tests use: short idle times so that moves end within the
/// test, a sweep four times a second. Not shorter than 5 s for UDP: on a steady prefix
/// a flow is seen only at its sampled packets (one in 32 of the prefix's, at a hash of
/// the count), and a conversation of 20 datagrams a second can go 3 s unsampled.
fn flows_table(drain_timeout_ms: u64) -> String {
    format!(
        "\n[flows]\ndrain_timeout_ms = {drain_timeout_ms}\ntcp_idle_ms = 5000\nudp_idle_ms = 5000\n\
         fin_linger_ms = 500\nsweep_ms = 250\n"
    )
}

/// Rewrites the lab's configuration with [`flows_table`] and reloads the controller.
fn set_flows(lab: &mut Lab, drain_timeout_ms: u64) {
    let spec = lab.spec().clone();
    let text = lab.render_config(&spec.health, &spec.prefixes) + &flows_table(drain_timeout_ms);
    lab.write_config(&text).expect("writing the configuration");
    let mark = lab.event_mark().expect("events");
    lab.reload_controller().expect("SIGHUP");
    lab.wait_for_event(mark, WAIT, "reload-applied", |r| match &r.event {
        Event::ReloadApplied { .. } => Some(()),
        Event::ReloadRefused { why } => panic!("reload refused: {why}"),
        _ => None,
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
}

fn cli(lab: &Lab, args: &[&str]) -> ChangeReport {
    lab.ha_user_json(args).unwrap_or_else(|e| panic!("{e:#}"))
}

fn stats(lab: &Lab) -> Stats {
    lab.ha_user_json(&["stats"])
        .unwrap_or_else(|e| panic!("{e:#}"))
}

fn flow_counter(stats: &Stats, counter: FlowCounter) -> u64 {
    stats.flows.get(&Named(counter)).copied().unwrap_or(0)
}

fn status(lab: &Lab) -> Status {
    lab.status().unwrap_or_else(|e| panic!("{e:#}"))
}

/// The owner changes so far: a mark for `wait_for_owner`.
fn changes(lab: &Lab) -> usize {
    lab.owner_changes().expect("the event stream").len()
}

fn vip64() -> Ipv4Addr {
    vip(net(P64))
}

/// A TCP and a UDP conversation from each client, to the VIP of P64.
fn converse_all(lab: &Lab) -> Vec<Conversation> {
    let mut all = Vec::new();
    for node in [Node::WanClient, Node::LanClient] {
        all.push(
            lab.converse_tcp(node, vip64(), PERIOD)
                .unwrap_or_else(|e| panic!("TCP from {node}: {e:#}")),
        );
        all.push(
            lab.converse_udp(node, vip64(), PERIOD)
                .unwrap_or_else(|e| panic!("UDP from {node}: {e:#}")),
        );
    }
    all
}

/// The flow table's key of a conversation.
fn key_of(record: &Record) -> FlowKey {
    let local = record.local.expect("an IPv4 conversation");
    let (proto, port) = match record.transport {
        Transport::Tcp => (6, 80u16),
        Transport::Udp => (17, 9000u16),
    };
    FlowKey {
        client: local.ip().octets(),
        vip: vip64().octets(),
        client_port: local.port().to_be_bytes(),
        vip_port: port.to_be_bytes(),
        proto,
        _pad: [0; 3],
    }
}

/// Waits until the data path has recorded every conversation's flow as served by
/// `host` (steady prefixes record one packet in 16: a young UDP flow may not be
/// known yet, and an unknown UDP flow follows the owner at a move).
fn wait_recorded(lab: &Lab, conversations: &[Conversation], host: &str) {
    let id = lab.host_id(host).expect("host id");
    let started = Instant::now();
    let keys: Vec<FlowKey> = conversations.iter().map(|c| key_of(&c.record())).collect();
    loop {
        let entries = flow_entries(lab.pin_dir()).expect("reading HA_FLOWS");
        let missing: Vec<&FlowKey> = keys
            .iter()
            .filter(|k| !entries.iter().any(|(key, e)| key == *k && e.host == id))
            .collect();
        if missing.is_empty() {
            eprintln!(
                "all {} flows recorded as {host}'s after {:?}",
                keys.len(),
                started.elapsed()
            );
            return;
        }
        assert!(
            started.elapsed() < scaled(Duration::from_secs(15)),
            "flows not recorded as {host}'s: {missing:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The health changes so far, for failure messages: a host declared down that was
/// not explains a conversation that moved.
fn health_changes(lab: &Lab) -> String {
    lab.health_changes()
        .map(|changes| {
            changes
                .iter()
                .map(|(_, _, record)| format!("\n  {record}"))
                .collect()
        })
        .unwrap_or_default()
}

/// Every conversation is alive and was answered only by `host` since `since_ms` (its
/// own clock), often enough, without a stall.
fn assert_kept(lab: &Lab, conversation: &Conversation, since_ms: f64, host: &str, what: &str) {
    let record = conversation.record();
    let span_ms = conversation.ms() - since_ms;
    eprintln!("{what}: {record}");
    assert!(
        record.alive(),
        "{what}: {record}; health changes:{}",
        health_changes(lab)
    );
    let after = record.answers_after(since_ms);
    let answered: u64 = after.values().sum();
    let possible = span_ms / PERIOD.as_secs_f64() / 1e3;
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        vec![host],
        "{what}: answers since the move {after:?}: {record}"
    );
    assert!(
        answered as f64 >= possible * MIN_SHARE,
        "{what}: {answered} answers in {span_ms:.0} ms: {record}"
    );
    assert_eq!(record.stalls, 0, "{what}: {record}");
}

fn prefix_moving_from(lab: &Lab) -> Option<String> {
    status(lab)
        .prefixes
        .into_iter()
        .find(|p| p.prefix == net(P64))
        .and_then(|p| p.moving)
        .map(|m| m.from)
}

/// Waits for the `move-ended` event of P64 after `mark`; returns how long the move
/// lasted as the controller says.
fn wait_move_ended(lab: &Lab, mark: usize, owner: &str) -> u64 {
    let (ended_owner, moving_ms) = lab
        .wait_for_event(
            mark,
            scaled(Duration::from_secs(10)),
            "move-ended",
            |r| match &r.event {
                Event::MoveEnded {
                    prefix,
                    owner,
                    moving_ms,
                    ..
                } if *prefix == net(P64) => Some((owner.clone(), *moving_ms)),
                _ => None,
            },
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(ended_owner, owner);
    let entry = lab.map_dump().expect("map")[&net(P64)];
    assert!(!entry.is_moving(), "steady after the move's end: {entry:?}");
    assert_eq!(prefix_moving_from(lab), None);
    moving_ms
}

/// Connections and UDP exchanges opened to the backup while the owner was down stay
/// with the backup after the owner's failback; new ones go to the owner. Once they
/// close, the move ends and the prefix is steady again.
#[test]
fn connections_to_the_backup_survive_the_failback() {
    if !require_root("connections_to_the_backup_survive_the_failback") {
        return;
    }
    let mut lab = build(spec("ha-af-back-"));
    set_flows(&mut lab, 60_000);
    let mark = changes(&lab);
    lab.kill_web("host2").expect("killing host2's web server");
    lab.wait_for_owner(net(P64), Some("host1"), mark, WAIT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let conversations = converse_all(&lab);
    wait_recorded(&lab, &conversations, "host1");
    let before = stats(&lab);

    let mark = changes(&lab);
    lab.start_web("host2")
        .expect("restarting host2's web server");
    let change = lab
        .wait_for_owner(
            net(P64),
            Some("host2"),
            mark,
            scaled(Duration::from_secs(10)),
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(change.reason, Reason::Failback, "{change}");
    let moved: Vec<f64> = conversations.iter().map(Conversation::ms).collect();
    let entry = lab.map_dump().expect("map")[&net(P64)];
    assert!(entry.is_moving(), "a failback keeps flows: {entry:?}");
    assert_eq!(entry.prev_host, lab.host_id("host1").expect("id"));
    assert_agreement(&lab);

    // New connections and exchanges go to the owner.
    assert_eq!(
        lab.http_get(Node::WanClient, vip64()).expect("GET"),
        "host2\n"
    );
    assert_eq!(lab.udp_who(Node::LanClient, vip64()).expect("UDP"), "host2");
    std::thread::sleep(KEEP);
    for (conversation, at) in conversations.iter().zip(&moved) {
        assert_kept(&lab, conversation, *at, "host1", "after the failback");
    }
    let after = stats(&lab);
    let hits = flow_counter(&after, FlowCounter::AffinityHit)
        - flow_counter(&before, FlowCounter::AffinityHit);
    eprintln!("affinity_hit +{hits} over {KEEP:?}");
    assert!(hits >= 40, "affinity hits: {hits}");
    assert_eq!(prefix_moving_from(&lab).as_deref(), Some("host1"));

    let mark = lab.event_mark().expect("events");
    for conversation in conversations {
        let record = conversation.close();
        assert!(record.alive(), "{record}");
    }
    let moving_ms = wait_move_ended(&lab, mark, "host2");
    eprintln!("the move ended {moving_ms} ms after the failback");
}

/// `set-owner` elsewhere keeps the connections of the owner there; `clear-owner`
/// keeps those of the pinned host there; new ones follow the prefix each time.
#[test]
fn connections_survive_set_owner_and_clear_owner() {
    if !require_root("connections_survive_set_owner_and_clear_owner") {
        return;
    }
    let mut lab = build(spec("ha-af-pin-"));
    set_flows(&mut lab, 60_000);
    let on_owner = converse_all(&lab);
    wait_recorded(&lab, &on_owner, "host2");
    let before = stats(&lab);

    let mark = changes(&lab);
    let answer = cli(&lab, &["set-owner", P64, "host3"]);
    assert_eq!(
        answer.result,
        ChangeResult::Steered {
            host: "host3".into()
        }
    );
    let change = lab
        .wait_for_owner(net(P64), Some("host3"), mark, WAIT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(change.reason, Reason::AdminPin, "{change}");
    let pinned_at: Vec<f64> = on_owner.iter().map(Conversation::ms).collect();
    // Opened after the pin: on host3.
    let on_pinned = converse_all(&lab);
    for conversation in &on_pinned {
        assert_eq!(
            conversation.record().answering_hosts(),
            vec!["host3".to_owned()]
        );
    }
    wait_recorded(&lab, &on_pinned, "host3");
    std::thread::sleep(KEEP);
    for (conversation, at) in on_owner.iter().zip(&pinned_at) {
        assert_kept(&lab, conversation, *at, "host2", "after set-owner host3");
    }

    let mark = changes(&lab);
    let answer = cli(&lab, &["clear-owner", P64]);
    assert_eq!(
        answer.changes.first().and_then(|c| c.new.as_deref()),
        Some("host2")
    );
    let change = lab
        .wait_for_owner(net(P64), Some("host2"), mark, WAIT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(change.reason, Reason::AdminClear, "{change}");
    let cleared_at: Vec<f64> = on_pinned.iter().map(Conversation::ms).collect();
    let entry = lab.map_dump().expect("map")[&net(P64)];
    assert!(entry.is_moving(), "{entry:?}");
    assert_eq!(entry.prev_host, lab.host_id("host3").expect("id"));
    assert_agreement(&lab);
    assert_eq!(
        lab.http_get(Node::WanClient, vip64()).expect("GET"),
        "host2\n"
    );
    std::thread::sleep(KEEP);
    for (conversation, at) in on_pinned.iter().zip(&cleared_at) {
        assert_kept(&lab, conversation, *at, "host3", "after clear-owner");
    }
    for (conversation, at) in on_owner.iter().zip(&pinned_at) {
        assert_kept(
            &lab,
            conversation,
            *at,
            "host2",
            "through set-owner and clear-owner",
        );
    }
    let hits = flow_counter(&stats(&lab), FlowCounter::AffinityHit)
        - flow_counter(&before, FlowCounter::AffinityHit);
    eprintln!("affinity_hit +{hits}");
    assert!(hits >= 80, "affinity hits: {hits}");

    let mark = lab.event_mark().expect("events");
    for conversation in on_owner.into_iter().chain(on_pinned) {
        let record = conversation.close();
        assert!(record.alive(), "{record}");
    }
    let moving_ms = wait_move_ended(&lab, mark, "host2");
    eprintln!("the move ended {moving_ms} ms after clear-owner");
}

/// Waits for the end of host2's drain; returns its outcome, what it moved and how
/// long it took.
fn wait_drain_finished(lab: &Lab, mark: usize, timeout: Duration) -> (DrainOutcome, u64, u64) {
    lab.wait_for_event(mark, timeout, "drain-finished host2", |r| match &r.event {
        Event::DrainFinished {
            host,
            outcome,
            remaining,
            drained_ms,
        } if host == "host2" => Some((*outcome, *remaining, *drained_ms)),
        _ => None,
    })
    .unwrap_or_else(|e| panic!("{e:#}"))
}

/// A graceful drain: new connections go elsewhere at once, a connection to the
/// drained host completes, the others go on until `drain_timeout_ms` moves them (TCP
/// then resets: its server is gone; UDP follows the owner). A drain whose last
/// connection closes ends early; `drain --now` moves everything at once (resets).
#[test]
fn drain_lets_connections_finish_and_its_timeout_moves_the_rest() {
    if !require_root("drain_lets_connections_finish_and_its_timeout_moves_the_rest") {
        return;
    }
    const TIMEOUT_MS: u64 = 6000;
    let mut lab = build(spec("ha-af-drain-"));
    set_flows(&mut lab, TIMEOUT_MS);
    let staying = converse_all(&lab);
    let finishing = lab
        .converse_tcp(Node::WanClient, vip64(), PERIOD)
        .expect("a connection that completes");
    wait_recorded(&lab, &staying, "host2");

    let mark = lab.event_mark().expect("events");
    let drained = Instant::now();
    let answer = cli(&lab, &["drain", "host2"]);
    assert_eq!(
        answer.result,
        ChangeResult::Draining {
            host: "host2".into(),
            timeout_ms: TIMEOUT_MS
        },
        "{answer:?}"
    );
    assert_eq!(
        answer.changes.first().and_then(|c| c.new.as_deref()),
        Some("host1")
    );
    let at: Vec<f64> = staying.iter().map(Conversation::ms).collect();
    let finishing_at = finishing.ms();
    assert_eq!(
        lab.http_get(Node::WanClient, vip64()).expect("GET"),
        "host1\n"
    );
    assert_eq!(lab.udp_who(Node::LanClient, vip64()).expect("UDP"), "host1");
    std::thread::sleep(Duration::from_secs(1));
    assert_kept(
        &lab,
        &finishing,
        finishing_at,
        "host2",
        "the connection that completes",
    );
    let record = finishing.close();
    assert!(record.alive(), "{record}");
    let (left, progress_ms) = lab
        .wait_for_event(mark, WAIT, "drain-progress", |r| match &r.event {
            Event::DrainProgress {
                host,
                remaining,
                left_ms,
            } if host == "host2" => Some((*remaining, *left_ms)),
            _ => None,
        })
        .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("drain-progress: {left} connections left, {progress_ms} ms to go");
    assert!(
        left >= 4,
        "the four conversations (and perhaps the fifth): {left}"
    );
    let host = status(&lab)
        .hosts
        .into_iter()
        .find(|h| h.name == "host2")
        .expect("host2");
    let draining = host.draining.expect("host2 is draining");
    assert!(host.drained);
    assert!(draining.remaining.is_some_and(|n| n >= 4), "{draining:?}");
    std::thread::sleep(KEEP.saturating_sub(drained.elapsed()));
    for (conversation, at) in staying.iter().zip(&at) {
        assert_kept(&lab, conversation, *at, "host2", "while host2 drains");
    }

    let (outcome, moved, drained_ms) =
        wait_drain_finished(&lab, mark, scaled(Duration::from_millis(TIMEOUT_MS + 3000)));
    let ended_at: Vec<f64> = staying.iter().map(Conversation::ms).collect();
    eprintln!("drain-finished: {outcome}, {moved} moved after {drained_ms} ms");
    assert_eq!(outcome, DrainOutcome::TimedOut);
    assert_eq!(moved, 4, "the four conversations");
    assert!(drained_ms >= TIMEOUT_MS, "{drained_ms} ms");
    std::thread::sleep(Duration::from_secs(2));
    for (conversation, at) in staying.iter().zip(&ended_at) {
        let record = conversation.record();
        eprintln!("after the drain's end: {record}");
        match record.transport {
            // Its server does not have the connection: the client sees a reset.
            Transport::Tcp => assert!(
                record.reset_ms.is_some_and(|r| r >= *at - 300.0),
                "{record}"
            ),
            Transport::Udp => assert_eq!(
                record.answers_after(*at + 500.0).keys().collect::<Vec<_>>(),
                vec!["host1"],
                "{record}"
            ),
        }
    }
    drop(staying);

    // A drain whose last connection closes ends before its timeout.
    let mark = changes(&lab);
    cli(&lab, &["undrain", "host2"]);
    lab.wait_for_owner(net(P64), Some("host2"), mark, WAIT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let short = lab
        .converse_tcp(Node::LanClient, vip64(), PERIOD)
        .expect("a connection");
    let mark = lab.event_mark().expect("events");
    cli(&lab, &["drain", "host2"]);
    std::thread::sleep(Duration::from_millis(500));
    let record = short.close();
    assert!(record.alive(), "{record}");
    assert_eq!(
        record.answering_hosts(),
        vec!["host2".to_owned()],
        "{record}"
    );
    let (outcome, moved, drained_ms) = wait_drain_finished(&lab, mark, scaled(WAIT));
    eprintln!("second drain: {outcome}, {moved} moved after {drained_ms} ms");
    assert_eq!(outcome, DrainOutcome::Completed);
    assert_eq!(moved, 0);
    assert!(drained_ms < TIMEOUT_MS, "{drained_ms} ms");

    // `drain --now`: the connection goes with the prefix, and is reset there.
    let mark = changes(&lab);
    cli(&lab, &["undrain", "host2"]);
    lab.wait_for_owner(net(P64), Some("host2"), mark, WAIT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let doomed = lab
        .converse_tcp(Node::WanClient, vip64(), PERIOD)
        .expect("a connection");
    std::thread::sleep(Duration::from_millis(300));
    let answer = cli(&lab, &["drain", "host2", "--now"]);
    assert_eq!(
        answer.result,
        ChangeResult::Drained {
            host: "host2".into()
        }
    );
    // host1 (id 0) owns it. It may still be moving from the undrain above (its UDP
    // flows on host1 idle out only after `udp_idle_ms`), but then from host1 itself:
    // `--now` never keeps host2's flows.
    let entry = lab.map_dump().expect("map")[&net(P64)];
    assert_eq!(entry.host, 0, "host1 owns it after --now: {entry:?}");
    assert!(
        !entry.is_moving() || entry.prev_host == 0,
        "--now does not keep host2's flows: {entry:?}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let record = doomed.record();
    eprintln!("drain --now: {record}");
    assert!(record.reset_ms.is_some(), "{record}");
}

/// A controller killed (SIGKILL) in the middle of a move and a drain, and started
/// again: the new controller adopts the moving entry, the hosts that keep flows and
/// the drain with its deadline; the conversations never notice.
#[test]
fn a_controller_restart_keeps_moves_and_drains() {
    if !require_root("a_controller_restart_keeps_moves_and_drains") {
        return;
    }
    const TIMEOUT_MS: u64 = 9000;
    let mut lab = build(spec("ha-af-restart-"));
    set_flows(&mut lab, TIMEOUT_MS);
    let conversations = converse_all(&lab);
    wait_recorded(&lab, &conversations, "host2");
    let answer = cli(&lab, &["drain", "host2"]);
    let drained = Instant::now();
    assert!(
        matches!(answer.result, ChangeResult::Draining { .. }),
        "{answer:?}"
    );
    let at: Vec<f64> = conversations.iter().map(Conversation::ms).collect();
    std::thread::sleep(Duration::from_millis(500));

    lab.kill_controller().expect("SIGKILL");
    std::thread::sleep(Duration::from_millis(200));
    let entry = lab.map_dump().expect("map")[&net(P64)];
    assert!(
        entry.is_moving(),
        "the pinned entry outlives the controller: {entry:?}"
    );
    lab.start_controller(&[])
        .expect("starting the controller again");
    let restarted = Instant::now();
    let entry = lab.map_dump().expect("map")[&net(P64)];
    assert!(entry.is_moving(), "adopted, not reset: {entry:?}");
    assert_eq!(entry.prev_host, lab.host_id("host2").expect("id"));
    assert_eq!(prefix_moving_from(&lab).as_deref(), Some("host2"));
    let host = status(&lab)
        .hosts
        .into_iter()
        .find(|h| h.name == "host2")
        .expect("host2");
    assert!(host.draining.is_some(), "the drain goes on: {host:?}");
    std::thread::sleep(KEEP);
    for (conversation, at) in conversations.iter().zip(&at) {
        assert_kept(
            &lab,
            conversation,
            *at,
            "host2",
            "across the controller's restart",
        );
    }
    eprintln!(
        "restart: {:?} after the drain, kept {:?}",
        restarted - drained,
        KEEP
    );
    let mark = 0;
    let left = Duration::from_millis(TIMEOUT_MS).saturating_sub(drained.elapsed());
    let (outcome, moved, drained_ms) =
        wait_drain_finished(&lab, mark, scaled(left + Duration::from_secs(3)));
    eprintln!("drain-finished after the restart: {outcome}, {moved} moved after {drained_ms} ms");
    assert_eq!(outcome, DrainOutcome::TimedOut);
    assert!(
        drained.elapsed() >= Duration::from_millis(TIMEOUT_MS - 200),
        "the deadline of the first controller: {:?}",
        drained.elapsed()
    );
    assert!(moved >= 1, "{moved}");
}
