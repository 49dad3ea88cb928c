//! The controller in the lab (root): health-driven failover and failback with the
//! kernel routes in agreement, the admin commands through the control socket, all
//! hosts down, restarts and program upgrades under traffic, configuration reloads.
//!
//! Each test builds its own lab (native XDP) with a prefix of its own and removes it
//! at the end. Run one at a time (`--test-threads=1`, as `cargo xtask test` does).

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddrV4},
    time::{Duration, Instant},
};

use ha_tests::{
    lab::{
        Counter, Lab, LabSpec, Node, PrefixSpec, StreamReport, XdpMode, host_address, net,
        time_scale, vip,
    },
    root::require_root,
};
use ha_user::{
    model::{Reason, VipVerdict},
    proto::{
        ChangeReport, Event, Status,
        reports::{HostStatus, PrefixStatus, ProbeCounts},
    },
};
use serde_json::Value;

mod common;

use common::{assert_agreement, build};

/// What a loaded 2-core machine may add to a configured time (scheduling, the switch,
/// a round trip). Measured figures are printed by every test.
const MARGIN: Duration = Duration::from_millis(150);
/// How long a test waits for what it expects before it gives up (not a bound it
/// asserts): × [`time_scale`], like the timers it waits for.
const WAIT: Duration = Duration::from_secs(5);

fn wait() -> Duration {
    WAIT * time_scale()
}
/// Failback takes `rise` probes plus the delay; probes slip under load, so only a
/// gross error (a delay not applied, a default one used) fails the bound.
const FAILBACK_SLACK: Duration = Duration::from_millis(600);

const P32: &str = "192.168.1.32/27";
const P64: &str = "192.168.1.64/27";
const P96: &str = "192.168.1.96/27";

/// This suite's labs run the data path in native mode.
fn spec(prefix: &str) -> LabSpec {
    common::spec(prefix, XdpMode::Native)
}

/// The host answering UDP to the VIP of `prefix` from the LAN client.
fn who(lab: &Lab, prefix: &str) -> String {
    lab.udp_who(Node::LanClient, vip(net(prefix)))
        .unwrap_or_else(|e| panic!("UDP to the VIP of {prefix}: {e:#}"))
}

fn map_owner(lab: &Lab, prefix: &str) -> Option<String> {
    lab.map_owners()
        .expect("reading the map")
        .remove(&net(prefix))
}

/// Runs the admin command `ha-user ARGS --json`, which must succeed.
fn cli(lab: &Lab, args: &[&str]) -> ChangeReport {
    lab.ha_user_json(args).unwrap_or_else(|e| panic!("{e:#}"))
}

/// The owner changes so far.
fn changes(lab: &Lab) -> usize {
    lab.owner_changes().expect("the event stream").len()
}

/// A killed web server's prefix moves to the first backup, the kernel route with it;
/// once the server is back the prefix returns after the failback delay.
#[test]
fn killed_server_moves_to_backup_and_back() {
    if !require_root("killed_server_moves_to_backup_and_back") {
        return;
    }
    let mut lab = build(spec("ha-c-kill-"));
    assert_agreement(&lab);
    let p64 = net(P64);
    let mark = changes(&lab);
    let killed = Instant::now();
    lab.kill_web("host2").expect("killing host2's web server");
    let change = lab
        .wait_for_owner(p64, Some("host1"), mark, wait())
        .unwrap_or_else(|e| panic!("{e:#}"));
    let detection = lab.spec().health.detection_time();
    eprintln!(
        "failover seen {:?} after the kill: {change}",
        killed.elapsed()
    );
    assert_eq!(change.old.as_deref(), Some("host2"));
    assert_eq!(change.reason, Reason::Failover, "{change}");
    assert!(
        change
            .detection_ms
            .is_some_and(|d| d <= (detection + MARGIN).as_secs_f64() * 1e3),
        "{change}"
    );
    assert_eq!(change.route_via, Ipv4Addr::new(192, 168, 1, 2), "{change}");
    assert_eq!(map_owner(&lab, P64).as_deref(), Some("host1"));
    assert_agreement(&lab);
    assert_eq!(who(&lab, P64), "host1");
    // Nothing else moved.
    assert_eq!(
        changes(&lab),
        mark + 1,
        "{:#?}",
        lab.owner_changes().expect("the event stream")
    );

    let mark = changes(&lab);
    let restarted = Instant::now();
    lab.start_web("host2")
        .expect("restarting host2's web server");
    let change = lab
        .wait_for_owner(p64, Some("host2"), mark, wait())
        .unwrap_or_else(|e| panic!("{e:#}"));
    let took = restarted.elapsed();
    let delay = Duration::from_millis(lab.spec().health.failback_delay_ms);
    eprintln!("failback {took:?} after the restart: {change}");
    assert_eq!(change.reason, Reason::Failback, "{change}");
    assert!(
        took >= delay,
        "failback after {took:?}, before the delay {delay:?}"
    );
    assert!(
        took <= lab.spec().health.failback_time() + FAILBACK_SLACK,
        "failback after {took:?}, expected about {:?}",
        lab.spec().health.failback_time()
    );
    assert_eq!(map_owner(&lab, P64).as_deref(), Some("host2"));
    assert_agreement(&lab);
    assert_eq!(who(&lab, P64), "host2");
}

/// `set-owner` through the socket takes effect before the command returns: the next
/// new flow's first datagram is answered by the new owner (a flow already served
/// stays with its host: flow affinity, `tests/tests/affinity.rs`). `clear-owner`
/// gives the prefix back.
#[test]
fn set_owner_and_clear_owner() {
    if !require_root("set_owner_and_clear_owner") {
        return;
    }
    let lab = build(spec("ha-c-pin-"));
    let target = SocketAddrV4::new(vip(net(P64)), lab.spec().udp_port);
    let mut seq = 0u64;
    let mut ask = |expected: &str| -> Duration {
        seq += 1;
        // A new socket, so a new flow (another source port) every time.
        let socket = lab.udp_socket(Node::LanClient).expect("socket");
        socket
            .set_read_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        let sent = Instant::now();
        socket
            .send_to(seq.to_string().as_bytes(), target)
            .expect("send");
        let mut buffer = [0u8; 256];
        let (n, _) = socket.recv_from(&mut buffer).expect("an answer");
        let answered = sent.elapsed();
        let answer = String::from_utf8_lossy(&buffer[..n]).into_owned();
        assert_eq!(answer, format!("{expected} {seq}"));
        answered
    };
    ask("host2");
    let mut latencies = Vec::new();
    let mut commands = Vec::new();
    for host in ["host4", "host3", "host1", "host4", "host3"] {
        let started = Instant::now();
        let answer = cli(&lab, &["set-owner", P64, host]);
        let returned = Instant::now();
        // The very next datagram, sent after the command returned.
        let first = ask(host);
        commands.push(returned - started);
        latencies.push(returned.elapsed());
        assert_eq!(
            answer.changes.first().and_then(|c| c.new.as_deref()),
            Some(host),
            "set-owner {P64} {host}: {answer:?}"
        );
        assert_eq!(map_owner(&lab, P64).as_deref(), Some(host));
        assert_agreement(&lab);
        eprintln!(
            "set-owner {P64} {host}: command {:?}, then the first datagram answered by {host} in {first:?}",
            returned - started
        );
    }
    latencies.sort();
    commands.sort();
    eprintln!(
        "set-owner: command round trip min {:?} median {:?} max {:?}; command return -> first answer by the new owner min {:?} median {:?} max {:?}",
        commands[0],
        commands[commands.len() / 2],
        commands[commands.len() - 1],
        latencies[0],
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    let status = lab.status().expect("status");
    let p = prefix_status(&status, P64);
    assert_eq!(p.owner.as_deref(), Some("host3"), "{p:?}");
    assert_eq!(
        p.pinned.as_ref().map(|pin| pin.host.as_str()),
        Some("host3"),
        "{p:?}"
    );

    let answer = cli(&lab, &["clear-owner", P64]);
    assert_eq!(
        answer.changes.first().and_then(|c| c.new.as_deref()),
        Some("host2"),
        "clear-owner: {answer:?}"
    );
    ask("host2");
    let status = lab.status().expect("status");
    assert_eq!(prefix_status(&status, P64).pinned, None, "{status:?}");
    assert_eq!(map_owner(&lab, P64).as_deref(), Some("host2"));
    assert_agreement(&lab);
}

fn prefix_status<'a>(status: &'a Status, prefix: &str) -> &'a PrefixStatus {
    status
        .prefixes
        .iter()
        .find(|p| p.prefix == net(prefix))
        .unwrap_or_else(|| panic!("{prefix} missing from status: {status:?}"))
}

fn host_status<'a>(status: &'a Status, host: &str) -> &'a HostStatus {
    status
        .hosts
        .iter()
        .find(|h| h.name == host)
        .unwrap_or_else(|| panic!("{host} missing from status: {status:?}"))
}

/// `drain host2` moves its prefix to the first backup at once; `undrain` returns it.
#[test]
fn drain_and_undrain() {
    if !require_root("drain_and_undrain") {
        return;
    }
    let lab = build(spec("ha-c-drain-"));
    let answer = cli(&lab, &["drain", "host2"]);
    assert_eq!(answer.changes.len(), 1, "drain host2: {answer:?}");
    assert_eq!(answer.changes[0].prefix, net(P64), "{answer:?}");
    assert_eq!(
        answer.changes[0].new.as_deref(),
        Some("host1"),
        "{answer:?}"
    );
    assert_eq!(who(&lab, P64), "host1");
    assert_eq!(map_owner(&lab, P64).as_deref(), Some("host1"));
    assert_agreement(&lab);
    let status = lab.status().expect("status");
    assert!(host_status(&status, "host2").drained, "{status:?}");

    let answer = cli(&lab, &["undrain", "host2"]);
    assert_eq!(
        answer.changes.first().and_then(|c| c.new.as_deref()),
        Some("host2"),
        "undrain host2: {answer:?}"
    );
    assert_eq!(who(&lab, P64), "host2");
    assert_eq!(map_owner(&lab, P64).as_deref(), Some("host2"));
    assert_agreement(&lab);
}

/// 192.168.1.64/27 with owner host2 and the single backup host3: with both down the
/// map entry goes, the kernel route points at the configured owner (host2) and
/// carries the traffic (the data path passes it: `pass_no_prefix`).
#[test]
fn all_hosts_down_fall_back_to_the_kernel_route() {
    if !require_root("all_hosts_down_fall_back_to_the_kernel_route") {
        return;
    }
    let mut spec = spec("ha-c-down-");
    spec.prefixes = PrefixSpec::classic();
    spec.prefixes[1] = PrefixSpec::new(P64, "host2").with_backups(&["host3"]);
    let mut lab = build(spec);
    let p64 = net(P64);
    let mark = changes(&lab);
    lab.kill_web("host2").expect("kill");
    lab.wait_for_owner(p64, Some("host3"), mark, wait())
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_agreement(&lab);
    let mark = changes(&lab);
    lab.kill_web("host3").expect("kill");
    let change = lab
        .wait_for_owner(p64, None, mark, wait())
        .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("{change}");
    assert_eq!(change.route_via, host_address("host2").expect("address"));
    assert_eq!(map_owner(&lab, P64), None, "the entry should be gone");
    // host3's own prefix went to its first backup meanwhile.
    lab.wait_for_owner(net(P96), Some("host1"), mark, wait())
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_agreement(&lab);
    assert_eq!(
        lab.kernel_routes().expect("routes").get(&p64).copied(),
        host_address("host2")
    );

    // Traffic to the VIP now takes the kernel route to host2 (whose web server is
    // dead: nobody answers, but the datagrams arrive there).
    let vip64 = vip(p64);
    let target = SocketAddrV4::new(vip64, lab.spec().udp_port);
    let capture = lab.capture(Node::Host(2), "eth0").expect("capture");
    let counters = lab.xdp_counters().expect("counters");
    let forwarded = lab.forwarded_datagrams().expect("forwarded");
    let socket = lab.udp_socket(Node::LanClient).expect("socket");
    const SENT: u64 = 20;
    for i in 0..SENT {
        socket
            .send_to(format!("kernel-{i}").as_bytes(), target)
            .expect("send");
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(100));
    let frames = capture.stop();
    let moved = lab.xdp_counters().expect("counters").since(&counters);
    let forwarded = lab.forwarded_datagrams().expect("forwarded") - forwarded;
    let arrived = frames
        .iter()
        .filter(|f| f.is_udp_to(vip64, target.port()))
        .count() as u64;
    eprintln!(
        "all down: data path {moved}; kernel forwarded {forwarded}; {arrived} arrived at host2"
    );
    assert_eq!(arrived, SENT, "datagrams to {vip64} arriving at host2");
    assert_eq!(moved.get(Counter::Tx), 0, "{moved}");
    assert!(moved.get(Counter::PassNoPrefix) >= SENT, "{moved}");
    assert_eq!(
        forwarded, SENT,
        "the router's kernel should have routed them"
    );

    // The first host back takes the prefix.
    let mark = changes(&lab);
    lab.start_web("host2").expect("restart");
    lab.wait_for_owner(p64, Some("host2"), mark, wait())
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_agreement(&lab);
    assert_eq!(who(&lab, P64), "host2");
}

/// A 1000 pps stream from the LAN client to the VIP of 192.168.1.64/27 for `millis`
/// ms while `during` runs; the stream's report. Under `HA_LAB_TIME_SCALE` the rate
/// is divided and the duration multiplied by it.
fn stream_during(lab: &mut Lab, millis: u64, during: impl FnOnce(&mut Lab)) -> StreamReport {
    let target = SocketAddrV4::new(vip(net(P64)), lab.spec().udp_port);
    let stream = lab
        .stream(
            Node::LanClient,
            target,
            1000 / u64::from(time_scale()),
            Duration::from_millis(millis * u64::from(time_scale())),
        )
        .expect("ha-stream");
    during(lab);
    let report = stream.wait().expect("ha-stream");
    eprintln!("stream: {}", report.summary());
    report
}

fn xdp_prog_id(lab: &Lab, iface: &str) -> u64 {
    let text = lab
        .ip(Node::Router, &["-j", "link", "show", "dev", iface])
        .expect("ip link");
    let links: Value = serde_json::from_str(&text).expect("ip -j link");
    links[0]["xdp"]["prog"]["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("no XDP program on {iface}: {text}"))
}

/// SIGKILL the controller mid-stream, then start a new one: the pinned data path
/// keeps steering meanwhile and across the takeover; not a datagram is lost.
#[test]
fn controller_killed_and_restarted_loses_nothing() {
    if !require_root("controller_killed_and_restarted_loses_nothing") {
        return;
    }
    let mut lab = build(spec("ha-c-restart-"));
    let before = lab.map_dump().expect("map");
    let prog = xdp_prog_id(&lab, "eth1");
    let report = stream_during(&mut lab, 2500, |lab| {
        std::thread::sleep(Duration::from_millis(400));
        lab.kill_controller().expect("SIGKILL");
        let counters = lab.xdp_counters().expect("counters");
        std::thread::sleep(Duration::from_millis(300));
        let moved = lab.xdp_counters().expect("counters").since(&counters);
        eprintln!("without a controller for 300 ms: data path {moved}");
        // Two thirds of the 300 ms of the stream.
        assert!(
            moved.get(Counter::Tx) >= 200 / u64::from(time_scale()),
            "steering stopped with the controller: {moved}"
        );
        let started = Instant::now();
        lab.start_controller(&[]).expect("restart");
        eprintln!("new controller steering after {:?}", started.elapsed());
    });
    assert_eq!(report.lost, 0, "{:?}", report.lost_ranges);
    assert_eq!(report.per_host.keys().collect::<Vec<_>>(), ["host2"]);
    lab.wait_steady(wait()).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(lab.map_dump().expect("map"), before);
    let adopted = xdp_prog_id(&lab, "eth1");
    assert_ne!(
        adopted, prog,
        "the new controller's program should be behind the link"
    );
    assert_eq!(
        attachments(&lab),
        [("eth1".to_owned(), true), ("eth0".to_owned(), true)],
        "the new controller should take over both pinned links"
    );
    let moved = lab.owner_changes().expect("the event stream");
    assert!(
        moved
            .iter()
            .all(|c| c.new.as_deref() == Some(lab.configured_owner(c.prefix).unwrap_or("?"))),
        "the restart moved a prefix: {moved:#?}"
    );
    assert_agreement(&lab);
}

/// The interfaces the current controller attached to, and whether it adopted a
/// pinned link there, from its events.
fn attachments(lab: &Lab) -> Vec<(String, bool)> {
    lab.events()
        .and_then(|events| events.records())
        .expect("the event stream")
        .into_iter()
        .filter_map(|record| match record.event {
            Event::XdpAttached { iface, adopted, .. } => Some((iface, adopted)),
            _ => None,
        })
        .collect()
}

/// The size of program `id` after the verifier (`bpftool prog show`'s `bytes_xlated`).
fn xlated_bytes(lab: &Lab, id: u64) -> u64 {
    let text = lab
        .exec_ok(
            Node::Router,
            &["bpftool", "-j", "prog", "show", "id", &id.to_string()],
        )
        .expect("bpftool prog show");
    let prog: Value = serde_json::from_str(&text).expect("bpftool -j");
    prog["bytes_xlated"]
        .as_u64()
        .unwrap_or_else(|| panic!("no bytes_xlated: {text}"))
}

/// The upgrade path: a new `ha-user run` with `--log-packets` (another program: the
/// logging global is a load-time constant) replaces the program behind the pinned
/// links of a SIGKILLed controller, mid-stream, without losing a datagram.
#[test]
fn program_upgrade_loses_nothing() {
    if !require_root("program_upgrade_loses_nothing") {
        return;
    }
    let mut lab = build(spec("ha-c-upgrade-"));
    let old = (xdp_prog_id(&lab, "eth1"), xdp_prog_id(&lab, "eth0"));
    let old_size = xlated_bytes(&lab, old.0);
    let report = stream_during(&mut lab, 2000, |lab| {
        std::thread::sleep(Duration::from_millis(400));
        lab.kill_controller().expect("SIGKILL");
        lab.start_controller(&["--log-packets"]).expect("upgrade");
    });
    assert_eq!(report.lost, 0, "{:?}", report.lost_ranges);
    assert_eq!(report.per_host.keys().collect::<Vec<_>>(), ["host2"]);
    let new = (xdp_prog_id(&lab, "eth1"), xdp_prog_id(&lab, "eth0"));
    assert_ne!(new.0, old.0, "eth1 still runs the old program");
    assert_ne!(new.1, old.1, "eth0 still runs the old program");
    assert_eq!(new.0, new.1, "one program on both interfaces");
    assert_eq!(
        attachments(&lab),
        [("eth1".to_owned(), true), ("eth0".to_owned(), true)],
        "the links were not adopted"
    );
    // The new program is the logging variant: with logging off the verifier removes
    // the logging code, so the new one is larger after verification.
    let new_size = xlated_bytes(&lab, new.0);
    eprintln!("program after the verifier: {old_size} B before the upgrade, {new_size} B after");
    assert!(
        new_size > old_size,
        "the new program ({new_size} B) should be the logging variant, larger than the old ({old_size} B)"
    );
    lab.wait_steady(wait()).unwrap_or_else(|e| panic!("{e:#}"));
    assert_agreement(&lab);
}

/// The parts of `status` that a reload could change: not probe timings or counts,
/// and a VIP verdict not decided yet counts as serving (as it does for the policy:
/// the first round of VIP checks may end in between).
fn stable_status(mut status: Status) -> Status {
    for host in &mut status.hosts {
        host.last_error = None;
        host.last_rtt_us = None;
        host.probes = ProbeCounts::default();
        host.vip_probes = ProbeCounts::default();
        for vip in &mut host.vips {
            if vip.verdict == VipVerdict::Unknown {
                vip.verdict = VipVerdict::Serving;
            }
        }
    }
    status
}

/// A configuration that does not validate, delivered by SIGHUP, changes nothing:
/// status, map and routes stay as they were and the controller says why it refused.
/// The CLI still reaches the controller with the bad file in place.
#[test]
fn bad_reload_changes_nothing() {
    if !require_root("bad_reload_changes_nothing") {
        return;
    }
    let mut lab = build(spec("ha-c-badhup-"));
    let status = stable_status(lab.status().expect("status"));
    let map = lab.map_dump().expect("map");
    let routes = lab.kernel_routes().expect("routes");
    let good = std::fs::read_to_string(lab.config_path()).expect("config");
    let bad = good.replacen("owner = \"host3\"", "owner = \"host9\"", 1);
    assert_ne!(bad, good);
    lab.write_config(&bad).expect("write");
    let mark = lab.event_mark().expect("the event stream");
    let moved = changes(&lab);
    lab.reload_controller().expect("SIGHUP");
    let why = lab
        .wait_for_event(mark, wait(), "reload-refused", |record| {
            match &record.event {
                Event::ReloadRefused { why } => Some(why.clone()),
                _ => None,
            }
        })
        .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("reload refused: {why}");
    assert!(
        why.contains("unknown host `host9`"),
        "the refusal should name the problem: {why}"
    );
    std::thread::sleep(Duration::from_millis(100));
    // With the bad file still in place: the CLI reads only its control_socket.
    assert_eq!(stable_status(lab.status().expect("status")), status);
    assert_eq!(lab.map_dump().expect("map"), map);
    assert_eq!(lab.kernel_routes().expect("routes"), routes);
    let after = lab.owner_changes().expect("the event stream");
    assert_eq!(
        after.len(),
        moved,
        "a refused reload moved something: {after:#?}"
    );
    lab.write_config(&good).expect("write");
}

/// A valid new configuration (192.168.1.96/27 now owned by host4) moves exactly that
/// prefix; a stream to another VIP does not notice.
#[test]
fn good_reload_applies_only_the_difference() {
    if !require_root("good_reload_applies_only_the_difference") {
        return;
    }
    let mut lab = build(spec("ha-c-goodhup-"));
    let before: BTreeMap<_, _> = lab.map_dump().expect("map");
    let mut prefixes = PrefixSpec::classic();
    prefixes[2] = PrefixSpec::new(P96, "host4");
    let health = lab.spec().health.clone();
    let mark = changes(&lab);
    let event_mark = lab.event_mark().expect("the event stream");
    let report = stream_during(&mut lab, 1500, |lab| {
        std::thread::sleep(Duration::from_millis(400));
        lab.reconfigure(health, prefixes).expect("write");
        lab.reload_controller().expect("SIGHUP");
        lab.wait_for_event(event_mark, wait(), "reload-applied", |record| {
            matches!(record.event, Event::ReloadApplied { .. }).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e:#}"));
    });
    assert_eq!(report.lost, 0, "{:?}", report.lost_ranges);
    assert_eq!(report.per_host.keys().collect::<Vec<_>>(), ["host2"]);
    let changes: Vec<_> = lab
        .owner_changes()
        .expect("the event stream")
        .into_iter()
        .skip(mark)
        .collect();
    assert_eq!(changes.len(), 1, "{changes:#?}");
    assert_eq!(changes[0].prefix, net(P96));
    assert_eq!(changes[0].new.as_deref(), Some("host4"), "{}", changes[0]);
    let after = lab.map_dump().expect("map");
    for (prefix, entry) in &before {
        if *prefix != net(P96) {
            assert_eq!(after.get(prefix), Some(entry), "{prefix} changed");
        }
    }
    assert_eq!(who(&lab, P96), "host4");
    assert_eq!(who(&lab, P32), "host1");
    assert_eq!(
        lab.kernel_routes().expect("routes").get(&net(P96)).copied(),
        host_address("host4")
    );
    assert_agreement(&lab);
    lab.wait_steady(wait()).unwrap_or_else(|e| panic!("{e:#}"));
}

/// The MTU of every host entry (the egress MTU the data path compares with).
fn host_mtus(lab: &Lab) -> Vec<u16> {
    ha_tests::lab::HOSTS
        .iter()
        .map(|host| lab.host_entry(host).expect("a host entry").mtu)
        .collect()
}

/// Waits until every host entry carries `mtu`; how long after `started` it was.
fn wait_for_host_mtu(lab: &Lab, mtu: u16, started: Instant) -> Duration {
    loop {
        let mtus = host_mtus(lab);
        if mtus.iter().all(|m| *m == mtu) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < wait(),
            "the host entries did not follow the LAN MTU {mtu} within {:?}: {mtus:?}\n{}",
            wait(),
            lab.controller_log()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `ip link set eth1 mtu N` under a running controller: every host entry follows,
/// down and up, and steering goes on.
#[test]
fn host_entries_follow_the_lan_mtu() {
    if !require_root("host_entries_follow_the_lan_mtu") {
        return;
    }
    let lab = build(spec("ha-c-mtu-"));
    assert_eq!(host_mtus(&lab), [1500; 4]);
    for mtu in [1400u16, 9000, 1500] {
        let started = Instant::now();
        lab.ip(
            Node::Router,
            &["link", "set", "eth1", "mtu", &mtu.to_string()],
        )
        .expect("ip link set mtu");
        let set = started.elapsed();
        let took = wait_for_host_mtu(&lab, mtu, started);
        eprintln!(
            "LAN MTU {mtu}: `ip link set` returned after {set:?}; every host entry followed within {took:?} of its start"
        );
        assert_eq!(who(&lab, P64), "host2");
    }
    assert_agreement(&lab);
}
