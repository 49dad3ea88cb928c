//! MTUs: what the kernel does with a datagram larger than the LAN's MTU (it answers
//! "fragmentation needed" when DF is set, else fragments), and jumbo frames on links
//! of MTU 9000, where the programs must attach natively and steer multi-buffer frames.

use ha_tests::{
    lab::{Counter, Lab, Node, net, vip},
    root::require_root,
};
use ha_user::{model::XdpMode, proto::Event};

use crate::{
    ProbeRun, check_scenario, compare, kernel_lab, probe::Outcome, probe::Probe, run_probes,
    start_fast_path,
};

/// The LAN's MTU, as the lab builds it.
const LAN_MTU: u32 = 1500;
/// The WAN's MTU in the oversize case (router `eth0` and the WAN client).
const WAN_MTU: u32 = 3400;
/// Every link's MTU in the jumbo case.
const JUMBO_MTU: u32 = 9000;
/// IPv4 and ICMP echo headers: `ping -s N` sends an N + 28 byte datagram.
const PING_HEADERS: u32 = 28;
/// IPv4 and UDP headers.
const UDP_HEADERS: usize = 28;
/// Ethernet header: a datagram of N bytes is a frame of N + 14.
const ETH: u64 = 14;

fn set_mtu(lab: &Lab, node: Node, dev: &str, mtu: u32) {
    lab.ip(node, &["link", "set", "dev", dev, "mtu", &mtu.to_string()])
        .unwrap_or_else(|e| panic!("MTU {mtu} on {node} {dev}: {e:#}"));
}

/// WAN MTU 3400, LAN MTU 1500, native XDP. From the WAN client: a ping of exactly the
/// LAN's MTU with DF is answered and steered (`redirect`); one byte more, or 3000
/// bytes, with DF gets "fragmentation needed" (mtu 1500) from the router; 3000 bytes
/// without DF is fragmented by the router and answered. With the fast path the
/// oversize ones are left to the kernel (`pass_too_big`), never steered.
#[test]
fn oversize_datagrams_from_a_larger_wan() {
    if !require_root("oversize_datagrams_from_a_larger_wan") {
        return;
    }
    let mut lab = kernel_lab("ha-f-mtu-");
    set_mtu(&lab, Node::Router, "eth0", WAN_MTU);
    set_mtu(&lab, Node::WanClient, "eth0", WAN_MTU);
    let to = vip(net("192.168.1.64/27"));
    let fits = LAN_MTU - PING_HEADERS;
    let wan = Node::WanClient;
    let probes = [
        Probe::ping(wan, to, fits, true),
        Probe::ping(wan, to, fits + 1, true),
        Probe::ping(wan, to, 3000, true),
        Probe::ping(wan, to, 3000, false),
        Probe::ping(wan, to, fits + 1, false),
    ];
    let kernel = run_probes(&lab, &probes, false);
    check_scenario(
        "oversize",
        &probes,
        &kernel,
        &[true, false, false, true, true],
    );
    let router_wan = lab.router_addresses()[1];
    for k in &kernel[1..3] {
        assert_eq!(
            k.outcome,
            Outcome::FragNeeded {
                from: router_wan,
                mtu: LAN_MTU
            },
            "the kernel alone should answer DF pings over the LAN MTU with fragmentation needed"
        );
    }

    start_fast_path(&mut lab);
    let fast = run_probes(&lab, &probes, true);
    let differences = compare(
        "oversize (WAN MTU 3400, LAN MTU 1500)",
        &probes,
        &kernel,
        &fast,
    );
    assert!(
        differences.is_empty(),
        "the fast path differs from the kernel:\n  {}",
        differences.join("\n  ")
    );
    assert_steered(&probes[0], &fast[0], Counter::Redirect);
    for (probe, run) in probes.iter().zip(&fast).skip(1) {
        assert_left_to_kernel(probe, run, Counter::PassTooBig);
    }
}

/// The probe was steered once, by `verdict`.
fn assert_steered(probe: &Probe, run: &ProbeRun, verdict: Counter) {
    let moved = run.moved.expect("counters");
    assert!(
        moved.get(verdict) == 1 && run.steered() == 1,
        "{probe}: expected exactly one {} from the fast path: {moved}",
        verdict.name()
    );
}

/// The probe was not steered: passed to the kernel, counted under `reason`.
fn assert_left_to_kernel(probe: &Probe, run: &ProbeRun, reason: Counter) {
    let moved = run.moved.expect("counters");
    assert!(
        run.steered() == 0 && moved.get(reason) >= 1,
        "{probe}: expected no steering and {} >= 1: {moved}",
        reason.name()
    );
}

/// Every link at MTU 9000 (the WAN, the router's LAN port, every switch port, the
/// bridge, the web servers and the LAN client), native XDP. `ha-user run` attaches
/// `ha_steer` natively to both router ports (the program is multi-buffer aware; the
/// switch port facing the router runs the lab's `ha_pass`, also frags-aware), and
/// 8000-byte pings and UDP datagrams from both clients, and a ping filling the MTU
/// exactly, are answered as without it, steered (`tx` from the LAN, `redirect` from
/// the WAN), and counted with their whole length in the host's byte counter.
#[test]
fn jumbo_frames_at_mtu_9000() {
    if !require_root("jumbo_frames_at_mtu_9000") {
        return;
    }
    let mut lab = kernel_lab("ha-f-jumbo-");
    set_mtu(&lab, Node::WanClient, "eth0", JUMBO_MTU);
    set_mtu(&lab, Node::Router, "eth0", JUMBO_MTU);
    set_mtu(&lab, Node::Router, "eth1", JUMBO_MTU);
    for port in ["router", "host1", "host2", "host3", "host4", "lanclient"] {
        set_mtu(&lab, Node::Switch, port, JUMBO_MTU);
    }
    set_mtu(&lab, Node::Switch, "br0", JUMBO_MTU);
    for node in [
        Node::Host(1),
        Node::Host(2),
        Node::Host(3),
        Node::Host(4),
        Node::LanClient,
    ] {
        set_mtu(&lab, node, "eth0", JUMBO_MTU);
    }
    let to = vip(net("192.168.1.64/27"));
    let port = lab.spec().udp_port;
    let full = JUMBO_MTU - PING_HEADERS;
    let (wan, lan) = (Node::WanClient, Node::LanClient);
    let probes = [
        Probe::ping(wan, to, 8000, true),
        Probe::ping(lan, to, 8000, true),
        Probe::ping(wan, to, full, true),
        Probe::ping(lan, to, full, true),
        Probe::udp_sized(wan, to, port, 8000 - UDP_HEADERS),
        Probe::udp_sized(lan, to, port, 8000 - UDP_HEADERS),
        Probe::http(wan, to, 80),
        Probe::http(lan, to, 80),
    ];
    let kernel = run_probes(&lab, &probes, false);
    check_scenario("jumbo", &probes, &kernel, &[true; 8]);

    start_fast_path(&mut lab);
    let attached: Vec<(String, XdpMode)> = lab
        .events()
        .and_then(|e| e.records())
        .expect("the event stream")
        .into_iter()
        .filter_map(|r| match r.event {
            Event::XdpAttached { iface, mode, .. } => Some((iface, mode)),
            _ => None,
        })
        .collect();
    println!("jumbo: attached {attached:?}");
    assert_eq!(
        attached,
        [
            ("eth1".to_owned(), XdpMode::Native),
            ("eth0".to_owned(), XdpMode::Native)
        ],
        "ha_steer should attach natively to both MTU 9000 ports"
    );
    for dev in ["eth0", "eth1"] {
        let mode = xdp_attach_mode(&lab, Node::Router, dev);
        assert_eq!(
            mode, XDP_ATTACHED_DRV,
            "router {dev}: XDP attach mode {mode}"
        );
    }
    assert_eq!(
        xdp_attach_mode(&lab, Node::Switch, "router"),
        XDP_ATTACHED_DRV,
        "the switch port facing the router should run ha_pass natively"
    );

    let owner = lab
        .configured_owner(net("192.168.1.64/27"))
        .expect("owner")
        .to_owned();
    let mut fast = Vec::new();
    let mut bytes = Vec::new();
    for probe in &probes {
        let before = lab.host_traffic(&owner).expect("host traffic");
        fast.extend(run_probes(&lab, std::slice::from_ref(probe), true));
        let after = lab.host_traffic(&owner).expect("host traffic");
        bytes.push((after.packets - before.packets, after.bytes - before.bytes));
    }
    let differences = compare("jumbo (every link MTU 9000)", &probes, &kernel, &fast);
    for (probe, (packets, bytes)) in probes.iter().zip(&bytes) {
        println!("  {probe}: {owner} traffic +{packets} packets, +{bytes} bytes");
    }
    assert!(
        differences.is_empty(),
        "the fast path differs from the kernel:\n  {}",
        differences.join("\n  ")
    );
    for (i, probe) in probes.iter().enumerate().take(6) {
        let verdict = if probe.from() == lan {
            Counter::Tx
        } else {
            Counter::Redirect
        };
        assert_steered(probe, &fast[i], verdict);
        let frame = match probe {
            Probe::Ping { size, .. } => u64::from(size + PING_HEADERS) + ETH,
            Probe::Udp { size, .. } => (size + UDP_HEADERS) as u64 + ETH,
            Probe::Http { .. } => continue,
        };
        assert_eq!(
            bytes[i],
            (1, frame),
            "{probe}: the host byte counter should count the whole {frame}-byte frame once"
        );
    }
}

/// `IFLA_XDP_ATTACHED` of a native attachment, as `ip -j link` reports it.
const XDP_ATTACHED_DRV: u64 = 1;

/// The XDP attach mode of `dev` on `node` (`ip -j link`: 1 driver, 2 generic).
fn xdp_attach_mode(lab: &Lab, node: Node, dev: &str) -> u64 {
    let text = lab
        .ip(node, &["-j", "link", "show", "dev", dev])
        .expect("ip link");
    let links: serde_json::Value = serde_json::from_str(&text).expect("ip -j link");
    links[0]["xdp"]["mode"]
        .as_u64()
        .unwrap_or_else(|| panic!("no XDP program on {node} {dev}: {text}"))
}
