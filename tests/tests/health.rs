//! Health checks in the lab (root): a prefix goes only to a host that answers on its
//! VIP (asked through that very host), and failures of the controller's own — no
//! descriptors, the LAN without carrier — never mark a host down.
//!
//! Each test builds its own lab (native XDP) with a prefix of its own and removes it
//! at the end. Run one at a time (`--test-threads=1`, as `cargo xtask test` does).

use std::{
    net::SocketAddrV4,
    time::{Duration, Instant},
};

use ha_tests::{
    lab::{Counter, HOSTS, Lab, LabSpec, Node, Proc, XdpMode, host_address, net, time_scale, vip},
    root::require_root,
};
use ha_user::{
    model::{Health, Reason, VipVerdict},
    proto::{Event, EventRecord, Status, reports::ProbeCounts},
};

mod common;

use common::{assert_agreement, build};

const P64: &str = "192.168.1.64/27";
const WAIT: Duration = Duration::from_secs(5);

fn spec(prefix: &str) -> LabSpec {
    common::spec(prefix, XdpMode::Native)
}

fn status(lab: &Lab) -> Status {
    lab.status().unwrap_or_else(|e| panic!("{e:#}"))
}

/// Waits until every host has a verdict (serving) on every VIP it is asked for:
/// the first round of VIP checks is done, or VIPs put back were answered `rise`
/// times in a row (5 at 1 s).
fn wait_vips_decided(lab: &Lab) {
    let deadline = Instant::now() + Duration::from_secs(15) * time_scale();
    loop {
        let status = status(lab);
        let undecided: Vec<String> = status
            .hosts
            .iter()
            .flat_map(|h| {
                h.vips
                    .iter()
                    .filter(|v| v.verdict != VipVerdict::Serving)
                    .map(move |v| format!("{} {}: {:?}", h.name, v.prefix, v.verdict))
            })
            .collect();
        let asked: usize = status.hosts.iter().map(|h| h.vips.len()).sum();
        if undecided.is_empty() && asked > 0 {
            eprintln!("VIP checks: {asked} pairs serving");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "VIP verdicts not all decided: {undecided:?} ({asked} pairs)"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `ip addr del|add VIP/27 dev lo` on `host`: the VIP of 192.168.1.64/27 taken off
/// its loopback, or put back (label `lo:2`, as `ha-user plan` binds it).
fn vip_on_loopback(lab: &Lab, host: &str, present: bool) {
    let node = Node::host(host).expect("a web server");
    let address = format!("{}/27", vip(net(P64)));
    let args: Vec<&str> = if present {
        vec!["addr", "add", &address, "dev", "lo", "label", "lo:2"]
    } else {
        vec!["addr", "del", &address, "dev", "lo"]
    };
    lab.ip(node, &args)
        .unwrap_or_else(|e| panic!("{host}: {e:#}"));
}

/// Waits for `host`'s verdict on 192.168.1.64/27 to become `new`.
fn wait_vip_verdict(lab: &Lab, since: usize, host: &str, new: VipVerdict) -> EventRecord {
    // fall (3) probes at the holder's interval (1 s), with room for a loaded machine.
    let timeout = Duration::from_secs(10) * time_scale();
    lab.wait_for_event(
        since,
        timeout,
        &format!("{host} {new} on {P64}"),
        |r| match &r.event {
            Event::VipChanged {
                host: h,
                prefix,
                new: n,
                ..
            } if h == host && *prefix == net(P64) && *n == new => Some(r.clone()),
            _ => None,
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}"))
}

/// With the VIP missing from the first backup's loopback, killing the owner moves
/// the prefix to the next backup that serves it; status says why the first one was
/// skipped. With no candidate serving it, the prefix has no fast-path entry and its
/// kernel route (via its configured owner) carries it. The VIPs back, everything
/// returns to its owner.
#[test]
fn a_backup_without_the_vip_is_skipped() {
    if !require_root("a_backup_without_the_vip_is_skipped") {
        return;
    }
    let mut lab = build(spec("ha-h-vip-"));
    let p64 = net(P64);
    let vip64 = vip(p64);
    wait_vips_decided(&lab);

    // host1, the first backup of 192.168.1.64/27, loses the VIP.
    let mark = lab.event_mark().expect("events");
    let removed = Instant::now();
    vip_on_loopback(&lab, "host1", false);
    let event = wait_vip_verdict(&lab, mark, "host1", VipVerdict::NotServing);
    eprintln!("after {:?}: {event}", removed.elapsed());
    let Event::VipChanged { reason, .. } = &event.event else {
        unreachable!("picked a vip-changed event");
    };
    assert!(
        reason.starts_with(&format!("VIP {vip64} not answered by host1: ")),
        "{reason}"
    );
    let host1 = status(&lab)
        .hosts
        .into_iter()
        .find(|h| h.name == "host1")
        .expect("host1 in status");
    let verdict = host1
        .vips
        .iter()
        .find(|v| v.prefix == p64)
        .unwrap_or_else(|| panic!("host1 is asked for {P64}: {host1:?}"));
    assert_eq!(verdict.verdict, VipVerdict::NotServing, "{host1:?}");
    assert!(
        verdict
            .why
            .as_deref()
            .is_some_and(|why| why.starts_with(&format!("VIP {vip64} not answered by host1"))),
        "{verdict:?}"
    );
    assert_eq!(host1.health, Health::Up, "its own address still answers");
    assert!(
        host1
            .vips
            .iter()
            .filter(|v| v.prefix != p64)
            .all(|v| v.verdict == VipVerdict::Serving),
        "only {P64} is not served: {host1:?}"
    );
    assert_eq!(
        lab.map_owners().expect("map").get(&p64).map(String::as_str),
        Some("host2"),
        "the owner keeps it meanwhile"
    );

    // The owner's web server dies: the prefix skips host1 for host3.
    let moves = lab.owner_changes().expect("events").len();
    lab.kill_web("host2").expect("killing host2's web server");
    let change = lab
        .wait_for_owner(p64, Some("host3"), moves, WAIT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("{change}");
    assert_eq!(
        (change.old.as_deref(), change.reason),
        (Some("host2"), Reason::Failover)
    );
    let went_to: Vec<_> = lab.owner_changes().expect("events")[moves..]
        .iter()
        .filter(|c| c.prefix == p64)
        .map(|c| c.new.clone())
        .collect();
    assert_eq!(went_to, [Some("host3".to_owned())], "never to host1");
    assert_eq!(
        lab.udp_who(Node::LanClient, vip64).expect("UDP"),
        "host3",
        "the VIP answers through the fast path"
    );
    assert_agreement(&lab);

    // Nobody else serves it either: no fast-path entry, the kernel route carries it.
    let mark = lab.event_mark().expect("events");
    vip_on_loopback(&lab, "host3", false);
    vip_on_loopback(&lab, "host4", false);
    let change = lab
        .wait_for_owner(p64, None, moves, Duration::from_secs(20) * time_scale())
        .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("{change}");
    assert_eq!(change.reason, Reason::AllDown, "{change}");
    for host in ["host3", "host4"] {
        wait_vip_verdict(&lab, mark, host, VipVerdict::NotServing);
    }
    assert_eq!(lab.map_owners().expect("map").get(&p64), None);
    let owner = host_address("host2").expect("host2's address");
    assert_eq!(
        lab.kernel_routes().expect("routes").get(&p64),
        Some(&owner),
        "the kernel route goes to the configured owner"
    );
    assert_agreement(&lab);
    let counters = lab.xdp_counters().expect("counters");
    let target = SocketAddrV4::new(vip64, lab.spec().udp_port);
    let socket = lab.udp_socket(Node::LanClient).expect("socket");
    socket.send_to(b"kernel", target).expect("send");
    std::thread::sleep(Duration::from_millis(100));
    let moved = lab.xdp_counters().expect("counters").since(&counters);
    assert!(
        moved.get(Counter::PassNoPrefix) >= 1 && moved.get(Counter::Tx) == 0,
        "the fast path leaves it to the kernel: {moved}"
    );

    // Everything back: the owner takes its prefix again.
    for host in ["host1", "host3", "host4"] {
        vip_on_loopback(&lab, host, true);
    }
    lab.start_web("host2")
        .expect("restarting host2's web server");
    lab.wait_steady(Duration::from_secs(20) * time_scale())
        .unwrap_or_else(|e| panic!("{e:#}"));
    wait_vips_decided(&lab);
    assert_agreement(&lab);
    assert_eq!(lab.udp_who(Node::LanClient, vip64).expect("UDP"), "host2");
}

/// `ha-user status --json`'s probe counts of every host, by name.
fn probe_counts(lab: &Lab) -> Vec<(String, Health, ProbeCounts)> {
    status(lab)
        .hosts
        .into_iter()
        .map(|h| (h.name, h.health, h.probes))
        .collect()
}

/// Health changes to down since event `mark`.
fn downs_since(lab: &Lab, mark: usize) -> Vec<String> {
    lab.events()
        .and_then(|events| events.records())
        .expect("events")
        .iter()
        .skip(mark)
        .filter(|r| {
            matches!(
                r.event,
                Event::HealthChanged {
                    new: Health::Down,
                    ..
                }
            )
        })
        .map(ToString::to_string)
        .collect()
}

/// A local failure holds for `hold`: no host goes down, no prefix moves (until
/// `after` past its end), and every host's probes of the outcome `counted` grow.
fn survives(
    lab: &Lab,
    what: &str,
    (hold, after): (Duration, Duration),
    counted: fn(&ProbeCounts) -> u64,
    cause: impl FnOnce(),
    cure: impl FnOnce(),
) {
    let before = probe_counts(lab);
    let mark = lab.event_mark().expect("events");
    let moves = lab.owner_changes().expect("events").len();
    cause();
    std::thread::sleep(hold);
    cure();
    std::thread::sleep(after);
    let downs = downs_since(lab, mark);
    assert!(downs.is_empty(), "{what}: hosts declared down: {downs:#?}");
    let moved: Vec<String> = lab.owner_changes().expect("events")[moves..]
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(moved.is_empty(), "{what}: prefixes moved: {moved:#?}");
    let after = probe_counts(lab);
    for ((name, _, old), (_, health, new)) in before.iter().zip(&after) {
        eprintln!(
            "{what}: {name}: {} more probes discarded ({} -> {}), {health}",
            counted(new) - counted(old),
            counted(old),
            counted(new)
        );
        assert_eq!(*health, Health::Up, "{what}: {name}");
        assert!(
            counted(new) > counted(old),
            "{what}: {name}'s probes should have been discarded: {old:?} -> {new:?}"
        );
    }
}

/// With TCP checks (a new socket for every probe): the controller's descriptors
/// limited to the three it has (`prlimit` on its pid), then the LAN without carrier
/// (the router's switch port down), each for 20 detection times. No host goes down,
/// neither then nor while the path comes back; the probes are counted as no-socket
/// and interface-down.
#[test]
fn local_failures_do_not_mark_hosts_down() {
    if !require_root("local_failures_do_not_mark_hosts_down") {
        return;
    }
    let mut lab = build(spec("ha-h-local-"));
    let (health, prefixes) = (lab.spec().health.clone(), lab.spec().prefixes.clone());
    let text = lab
        .render_config(&health, &prefixes)
        .replace("kind = \"http\"", "kind = \"tcp\"");
    assert!(text.contains("kind = \"tcp\""), "{text}");
    lab.write_config(&text).expect("config");
    lab.stop_controller().expect("SIGTERM");
    lab.start_controller(&[])
        .unwrap_or_else(|e| panic!("{e:#}"));
    lab.wait_steady(WAIT * time_scale())
        .unwrap_or_else(|e| panic!("{e:#}"));
    let hold = lab.spec().health.detection_time() * 20;

    let pid = lab.controller().expect("controller").pid().to_string();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .expect("the soft limit of open files")
        .to_owned();
    let prlimit = |soft: &str| {
        let status = std::process::Command::new("prlimit")
            .args(["--pid", &pid, &format!("--nofile={soft}:")])
            .status()
            .expect("prlimit");
        assert!(status.success(), "prlimit --nofile={soft}: {status}");
    };
    survives(
        &lab,
        "no descriptors",
        // The probes under way when it ended, and the first ones after it.
        (hold, Duration::from_millis(300)),
        |c| c.no_socket,
        || prlimit("3"),
        || prlimit(&soft),
    );

    let switch_port = |state: &str| {
        lab.ip(Node::Switch, &["link", "set", "router", state])
            .unwrap_or_else(|e| panic!("{e:#}"));
    };
    survives(
        &lab,
        "LAN without carrier",
        // The neighbours the kernel flushed resolve again within its ARP retransmit
        // time (1 s): the controller holds off for 2 s after it last saw the LAN
        // down; past that, every host must answer again.
        (hold, Duration::from_millis(2500)),
        |c| c.interface_down,
        || switch_port("down"),
        || switch_port("up"),
    );
    lab.wait_steady(WAIT * time_scale())
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_agreement(&lab);
}

/// Sends SIGCONT to the stopped controller when dropped, panic or not.
struct Stopped<'a>(&'a mut Proc);

impl<'a> Stopped<'a> {
    fn new(controller: &'a mut Proc) -> Stopped<'a> {
        controller
            .signal(libc::SIGSTOP)
            .unwrap_or_else(|e| panic!("{e:#}"));
        Stopped(controller)
    }
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        if let Err(err) = self.0.signal(libc::SIGCONT) {
            eprintln!("{err:#}");
        }
    }
}

/// Every host's probe counts: (name, its own address's, its VIPs').
fn all_counts(lab: &Lab) -> Vec<(String, ProbeCounts, ProbeCounts)> {
    status(lab)
        .hosts
        .into_iter()
        .map(|h| (h.name, h.probes, h.vip_probes))
        .collect()
}

/// Probes counted against a host.
fn failed(counts: &ProbeCounts) -> u64 {
    counts.refused + counts.silent
}

/// Slow servers (every answer 20 ms late, inside the 40 ms timeout, checked every
/// 50 ms: a probe is under way 40 % of the time) and a controller held up: stopped
/// (SIGSTOP) for 150 ms — nearly four timeouts — twenty times, running 100 ms in
/// between. A probe under way when it stopped has its answer waiting when it runs
/// again, long after its deadline: answered, never silent. One stopped before its
/// request left times out late: discarded. No host goes down, no prefix moves, no
/// probe of any host (own address or VIP) is counted against it, and every host is
/// answered meanwhile.
#[test]
fn a_slow_answer_read_late_is_not_down() {
    if !require_root("a_slow_answer_read_late_is_not_down") {
        return;
    }
    let mut spec = spec("ha-h-late-");
    let scale = u64::from(time_scale());
    spec.health.interval_ms = 50 * scale;
    spec.health.timeout_ms = 40 * scale;
    let mut lab = build(spec);
    let delay = (20 * scale).to_string();
    for host in HOSTS {
        lab.kill_web(host).unwrap_or_else(|e| panic!("{e:#}"));
        lab.start_web_with(host, &["--delay-ms", &delay])
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
    lab.wait_steady(Duration::from_secs(10) * time_scale())
        .unwrap_or_else(|e| panic!("{e:#}"));
    wait_vips_decided(&lab);

    let before = all_counts(&lab);
    let mark = lab.event_mark().expect("events");
    let moves = lab.owner_changes().expect("events").len();
    for _ in 0..20 {
        let stopped = Stopped::new(lab.controller().expect("controller"));
        std::thread::sleep(Duration::from_millis(150));
        drop(stopped);
        std::thread::sleep(Duration::from_millis(100));
    }
    // The probes under way after the last stop.
    std::thread::sleep(Duration::from_millis(300));
    let downs = downs_since(&lab, mark);
    assert!(downs.is_empty(), "hosts declared down: {downs:#?}");
    let moved: Vec<String> = lab.owner_changes().expect("events")[moves..]
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(moved.is_empty(), "prefixes moved: {moved:#?}");
    let after = all_counts(&lab);
    for ((name, own, vips), (_, own2, vips2)) in before.iter().zip(&after) {
        eprintln!(
            "held up: {name}: answered {} more, {} more discarded as late; VIP answered {} \
             more",
            own2.answered - own.answered,
            own2.late - own.late,
            vips2.answered - vips.answered
        );
        assert_eq!(
            (failed(own), failed(vips)),
            (failed(own2), failed(vips2)),
            "{name}: probes counted against it while the controller was held up: \
             {own:?} -> {own2:?}, VIP {vips:?} -> {vips2:?}"
        );
        assert!(own2.answered > own.answered, "{name}: not answered since");
    }
    assert_agreement(&lab);
}
