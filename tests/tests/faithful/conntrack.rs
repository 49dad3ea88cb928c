//! A UDP flow and its conntrack entry. The router's stateful rule set accepts new UDP
//! only from the LAN side: a web server opens the flow (from its VIP to the WAN
//! client), after which the WAN client's datagrams to the VIP are `established`
//! while the entry lives, and `new`, thus dropped, once it has expired. The entry's
//! UDP timeouts are set short in the router's namespace.
//!
//! With the fast path, the WAN client's datagrams are steered but for one per flow and
//! verification period, which takes the kernel's path and renews the entry. The
//! exchange must go as with the kernel alone: a flow that keeps sending keeps
//! flowing; one that idles past the timeout is refused, then accepted again once the
//! server reopens it.

use std::{
    net::{SocketAddrV4, UdpSocket},
    time::{Duration, Instant},
};

use ha_tests::{
    lab::{Counter, Lab, Node, XdpCounters, net, ns, vip},
    root::require_root,
};

use crate::{
    describe, firewall, kernel_lab,
    probe::{WAIT, flush_route_cache},
    start_fast_path, wait_fast_path,
};

/// `nf_conntrack_udp_timeout` and `..._stream` in the router's namespace.
const TIMEOUT_S: u64 = 2;
/// The same in [`udp_flow_resumed_within_its_conntrack_timeout`].
const RESUME_TIMEOUT_S: u64 = 3;
/// The port the server's socket uses on its VIP.
const SERVER_PORT: u16 = 9100;

/// The rule set: (c) of the firewall cases, plus new UDP from the LAN side.
fn rules() -> String {
    firewall::ruleset(
        "drop",
        &[
            "ct state established,related accept".to_owned(),
            "ct state new tcp dport 80 accept".to_owned(),
            "iifname \"eth1\" meta l4proto udp ct state new accept".to_owned(),
        ],
    )
}

/// The two ends of the flow: the web server's socket on its VIP, the WAN client's.
struct Ends {
    server: UdpSocket,
    client: UdpSocket,
}

impl Ends {
    fn open(lab: &Lab) -> Ends {
        let prefix = net("192.168.1.64/27");
        let owner = Node::host(lab.configured_owner(prefix).expect("owner")).expect("host");
        let local = SocketAddrV4::new(vip(prefix), SERVER_PORT);
        let server = ns::in_netns(&lab.ns(owner), || UdpSocket::bind(local))
            .and_then(|s| Ok(s?))
            .unwrap_or_else(|e| panic!("binding {local} on {owner}: {e:#}"));
        let client = lab.udp_socket(Node::WanClient).expect("client socket");
        let client_addr = match client.local_addr().expect("local address") {
            std::net::SocketAddr::V4(a) => SocketAddrV4::new(
                lab.station(Node::WanClient).expect("WAN client").0,
                a.port(),
            ),
            other => panic!("unexpected address {other}"),
        };
        server.connect(client_addr).expect("connect");
        client.connect(local).expect("connect");
        for socket in [&server, &client] {
            socket.set_read_timeout(Some(WAIT)).expect("timeout");
        }
        Ends { server, client }
    }

    /// The server sends one datagram to the client (opening the entry); whether it
    /// arrived.
    fn server_opens(&self) -> bool {
        // A send error (an ICMP error about an earlier datagram) is a datagram lost.
        if self.server.send(b"open").is_err() {
            return false;
        }
        let mut buffer = [0u8; 64];
        matches!(self.client.recv(&mut buffer), Ok(4))
    }

    /// The client sends `count` datagrams, one every `every`; how many the server
    /// received.
    fn client_sends(&self, count: u32, every: Duration) -> u32 {
        let start = Instant::now();
        for n in 0..count {
            if let Some(wait) = (start + every * n).checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            // A send error is a datagram lost, as above.
            let _ = self.client.send(format!("seq {n}").as_bytes());
        }
        let mut received = 0;
        let mut buffer = [0u8; 64];
        while self.server.recv(&mut buffer).is_ok() {
            received += 1;
            if received == count {
                break;
            }
        }
        received
    }
}

/// What one run saw.
#[derive(Debug, PartialEq, Eq)]
struct Exchange {
    opened: bool,
    /// Received of sent, while the client keeps sending.
    going: (u32, u32),
    /// After the idle period.
    after_idle: (u32, u32),
    reopened: bool,
    /// After the server reopened the flow.
    again: (u32, u32),
}

impl std::fmt::Display for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Exchange {
            opened,
            going,
            after_idle,
            reopened,
            again,
        } = self;
        write!(
            f,
            "server opens: {}; keeps going: {}/{}; after {IDLE:?} idle: {}/{}; server reopens: \
             {}; then {}/{}",
            if *opened { "delivered" } else { "lost" },
            going.0,
            going.1,
            after_idle.0,
            after_idle.1,
            if *reopened { "delivered" } else { "lost" },
            again.0,
            again.1
        )
    }
}

/// Keeps sending for 2 × the timeout, a datagram every 200 ms.
const GOING: (u32, Duration) = (20, Duration::from_millis(200));
/// Longer than the timeout after the last datagram.
const IDLE: Duration = Duration::from_millis(TIMEOUT_S * 1000 + 1000);
const AFTER: (u32, Duration) = (3, Duration::from_millis(100));

/// The exchange, with the fast path's counters over each phase when there is one.
fn exchange(lab: &Lab) -> (Exchange, Vec<(&'static str, XdpCounters)>) {
    flush_route_cache(lab, Node::WanClient).expect("route cache");
    let ends = Ends::open(lab);
    let mut phases = Vec::new();
    let mut measured = |name: &'static str, phase: &mut dyn FnMut() -> u32| {
        let before = lab.xdp_counters().ok();
        let got = phase();
        let moved = before
            .and_then(|b| lab.xdp_counters().ok().map(|a| a.since(&b)))
            .unwrap_or_default();
        phases.push((name, moved));
        got
    };
    let opened = ends.server_opens();
    let going = measured("keeps going", &mut || ends.client_sends(GOING.0, GOING.1));
    std::thread::sleep(IDLE);
    let after_idle = measured("after idle", &mut || ends.client_sends(AFTER.0, AFTER.1));
    let reopened = ends.server_opens();
    let again = measured("reopened", &mut || ends.client_sends(AFTER.0, AFTER.1));
    (
        Exchange {
            opened,
            going: (going, GOING.0),
            after_idle: (after_idle, AFTER.0),
            reopened,
            again: (again, AFTER.0),
        },
        phases,
    )
}

/// The lab with the rule set and UDP timeouts of `timeout_s` seconds.
fn conntrack_lab(prefix: &str, timeout_s: u64) -> Lab {
    let lab = kernel_lab(prefix);
    firewall::load(&lab, "udp-flow", &rules());
    lab.exec_ok(
        Node::Router,
        &[
            "sysctl",
            "-qw",
            &format!("net.netfilter.nf_conntrack_udp_timeout={timeout_s}"),
            &format!("net.netfilter.nf_conntrack_udp_timeout_stream={timeout_s}"),
        ],
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    lab
}

#[test]
fn udp_flow_outlives_its_conntrack_entry() {
    if !require_root("udp_flow_outlives_its_conntrack_entry") {
        return;
    }
    let mut lab = conntrack_lab("ha-f-ct-", TIMEOUT_S);

    let (kernel, _) = exchange(&lab);
    println!("kernel alone: {kernel}");
    let expected = Exchange {
        opened: true,
        going: (GOING.0, GOING.0),
        after_idle: (0, AFTER.0),
        reopened: true,
        again: (AFTER.0, AFTER.0),
    };
    assert_eq!(
        kernel, expected,
        "the kernel alone does not treat the flow as the scenario needs"
    );

    start_fast_path(&mut lab);
    let interfaces = wait_fast_path(&lab, true, Duration::from_secs(5));
    println!("fast path: {}", describe(&interfaces));
    let (fast, phases) = exchange(&lab);
    println!("fast path: {fast}");
    for (name, moved) in &phases {
        println!("  {name}: {moved}");
    }
    assert_eq!(
        fast, kernel,
        "the fast path treats the flow unlike the kernel"
    );
    let going = phases[0].1;
    // All but one datagram per verification period (and the first) steered.
    let periods = (GOING.1 * GOING.0).as_millis() / firewall::REFRESH.as_millis();
    let need = u64::from(GOING.0) - 2 * (periods as u64 + 1);
    assert!(
        going.get(Counter::Redirect) >= need
            && going.get(Counter::PassUnverified) >= periods as u64,
        "while the flow keeps going, the fast path should steer at least {need} of its {} \
         datagrams and pass one per period ({periods}): {going}",
        GOING.0
    );
    let refused = phases[1].1;
    assert_eq!(
        refused.get(Counter::Tx) + refused.get(Counter::Redirect),
        0,
        "the datagrams after the idle period were steered: {refused}"
    );
}

/// Datagrams before the pause: 0, 0.3, ..., 2.1 s. Verified every 1 s, the fast path
/// passes the ones at 0 and 1.2 s to the kernel (the first ones at least a period
/// after the last that passed) and steers the others.
const BEFORE_PAUSE: (u32, Duration) = (8, Duration::from_millis(300));
/// The pause after the last datagram (at 2.1 s): the flow resumes at 4.65 s, 2.55 s
/// after the datagram the kernel alone saw last (the entry lives until 5.1 s) and
/// 3.45 s after the one it saw last with the fast path (the entry died at 4.2 s).
const PAUSE: Duration = Duration::from_millis(2550);

/// A flow that pauses for less than its conntrack timeout (3 s here) and resumes: the
/// kernel alone renews the entry with every datagram, so the datagram after the pause
/// is `established` and accepted. The fast path renews it only with the datagrams it
/// passes to the kernel, one per verification period: the entry expires up to one
/// period earlier, and a flow resuming in that window is refused where the kernel
/// alone accepts it.
#[test]
fn udp_flow_resumed_within_its_conntrack_timeout() {
    if !require_root("udp_flow_resumed_within_its_conntrack_timeout") {
        return;
    }
    let mut lab = conntrack_lab("ha-f-resume-", RESUME_TIMEOUT_S);
    let resume = |lab: &Lab| {
        flush_route_cache(lab, Node::WanClient).expect("route cache");
        let ends = Ends::open(lab);
        let opened = ends.server_opens();
        let before = lab.xdp_counters().ok();
        let sent = ends.client_sends(BEFORE_PAUSE.0, BEFORE_PAUSE.1);
        let moved = before
            .and_then(|b| lab.xdp_counters().ok().map(|a| a.since(&b)))
            .unwrap_or_default();
        // `client_sends` returns once the server has them all: the pause runs from
        // about the last send.
        std::thread::sleep(PAUSE);
        let resumed = ends.client_sends(1, Duration::ZERO);
        ((opened, sent, resumed), moved)
    };
    let (kernel, _) = resume(&lab);
    println!(
        "kernel alone: opened {}, {}/{} before the pause, {}/1 after {PAUSE:?}",
        kernel.0, kernel.1, BEFORE_PAUSE.0, kernel.2
    );
    assert_eq!(
        kernel,
        (true, BEFORE_PAUSE.0, 1),
        "the kernel alone should carry the whole flow: the pause is shorter than the timeout"
    );
    start_fast_path(&mut lab);
    wait_fast_path(&lab, true, Duration::from_secs(5));
    let (fast, moved) = resume(&lab);
    println!(
        "fast path: opened {}, {}/{} before the pause ({moved}), {}/1 after {PAUSE:?}",
        fast.0, fast.1, BEFORE_PAUSE.0, fast.2
    );
    assert!(
        moved.get(Counter::Redirect) > 0,
        "the fast path did not steer the flow before the pause: {moved}"
    );
    assert_eq!(
        fast,
        kernel,
        "the datagram after a pause shorter than the conntrack timeout ({RESUME_TIMEOUT_S} s) \
         was refused with the fast path and accepted by the kernel alone: the fast path \
         renewed the entry only with the datagrams it passed ({} of {}), so it expired up \
         to one verification period ({:?}) before the kernel alone lets it expire",
        moved.get(Counter::PassUnverified),
        BEFORE_PAUSE.0,
        firewall::REFRESH
    );
}
