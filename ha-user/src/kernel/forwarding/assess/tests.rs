//! The decision table of `assess`, case by case, without a kernel.

use std::net::Ipv4Addr;

use super::*;
use crate::kernel::forwarding::{
    XfrmFacts,
    conntrack::{ConntrackFacts, Timeouts},
    nftables::{NftChain, NftFamily, NftHook, Policy},
    routes::{KindedRoute, Prefix, RouteFacts, RouteKind},
    rules::PolicyRule,
    sysctl::InterfaceSysctls,
    tc::{TcFilter, TcxProgram},
    xfrm::XfrmPolicy,
    xtables::{XtChain, XtHook},
};

const LAN: &str = "eth1";
const WAN: &str = "eth0";

fn iface(name: &str, index: u32, lan: bool) -> InterfaceFacts {
    InterfaceFacts {
        name: name.into(),
        index,
        lan,
        sysctls: InterfaceSysctls {
            forwarding: true,
            rp_filter: 0,
            accept_local: false,
            route_localnet: false,
        },
        tc_filters: Vec::new(),
        tcx: Vec::new(),
    }
}

fn chain(family: NftFamily, table: &str, name: &str, hook: NftHook) -> NftChain {
    NftChain {
        family,
        table: table.into(),
        name: name.into(),
        hook,
        kind: "filter".into(),
        priority: 0,
        policy: Policy::Accept,
        devices: Vec::new(),
        rules: 0,
        conntrack: false,
    }
}

fn route(kind: RouteKind, addr: [u8; 4], len: u8) -> KindedRoute {
    KindedRoute {
        kind,
        prefix: Prefix {
            addr: Ipv4Addr::from(addr),
            len,
        },
        table: 254,
    }
}

/// A router where the fast path may steer on its own: forwarding on, Debian's
/// default (empty, accepting) nftables rule set, a default route, no source filter.
fn open_router() -> Facts {
    Facts {
        ip_forward: true,
        interfaces: vec![iface(LAN, 3, true), iface(WAN, 2, false)],
        nftables: vec![
            chain(NftFamily::Ip, "nat", "prerouting", NftHook::Prerouting),
            chain(NftFamily::Inet, "filter", "forward", NftHook::Forward),
        ],
        xtables: vec![XtChain {
            table: "filter".into(),
            hook: XtHook::Forward,
            has_rules: false,
            policy: Some(Policy::Accept),
        }],
        rules: Vec::new(),
        routes: RouteFacts {
            refusing: Vec::new(),
            main_default: true,
            anyip: Vec::new(),
            local: vec![
                Ipv4Addr::new(10, 0, 0, 1),
                Ipv4Addr::new(10, 0, 0, 255),
                Ipv4Addr::new(192, 168, 1, 1),
                Ipv4Addr::new(192, 168, 1, 31),
            ],
        },
        xfrm: XfrmFacts::default(),
        conntrack: Some(ConntrackFacts {
            tcp_be_liberal: false,
            timeouts: Timeouts {
                udp: 30,
                udp_stream: 120,
                tcp_established: 432_000,
                ..Timeouts::default()
            },
        }),
        absent: Vec::new(),
    }
}

fn lan(facts: &mut Facts) -> &mut InterfaceFacts {
    &mut facts.interfaces[0]
}

fn wan(facts: &mut Facts) -> &mut InterfaceFacts {
    &mut facts.interfaces[1]
}

/// The name of a reason's rule, for comparing decisions.
fn rule(reason: &Reason) -> &'static str {
    match reason {
        Reason::IpForwardOff => "ip_forward",
        Reason::InterfaceForwardingOff { .. } => "forwarding",
        Reason::NftChain { .. } => "nftables",
        Reason::XtChain { .. } => "iptables",
        Reason::PolicyRule { .. } => "rule",
        Reason::XfrmPolicy { .. } => "xfrm",
        Reason::XfrmDefaultBlock => "xfrm_default",
        Reason::AnyIp { .. } => "anyip",
        Reason::TooManyLocal { .. } => "too_many_local",
        Reason::RpFilterStrict { .. } => "rp_strict",
        Reason::RpFilterLooseNoDefault { .. } => "rp_loose_no_default",
        Reason::RpFilterLooseRefusing { .. } => "rp_loose_refusing",
        Reason::RefusingRoutesLan { .. } => "refusing_lan",
        Reason::AcceptLocal { .. } => "accept_local",
        Reason::RouteLocalnet { .. } => "route_localnet",
        Reason::TcFilters { .. } => "tc",
        Reason::TcxPrograms { .. } => "tcx",
        Reason::Forced => "forced",
    }
}

struct Case {
    what: &'static str,
    change: fn(&mut Facts),
    mode: VerifyMode,
    /// (verify, rules) for the LAN, then for the WAN.
    lan: (bool, &'static [&'static str]),
    wan: (bool, &'static [&'static str]),
}

const OPEN: (bool, &[&str]) = (false, &[]);

fn cases() -> Vec<Case> {
    use VerifyMode::{Always, Auto, Never};
    vec![
        Case {
            what: "no reason anywhere: both open",
            change: |_| {},
            mode: Auto,
            lan: OPEN,
            wan: OPEN,
        },
        Case {
            what: "ip_forward 0 verifies every interface",
            change: |f| f.ip_forward = false,
            mode: Auto,
            lan: (true, &["ip_forward"]),
            wan: (true, &["ip_forward"]),
        },
        Case {
            what: "an interface's forwarding 0 verifies it alone",
            change: |f| wan(f).sysctls.forwarding = false,
            mode: Auto,
            lan: OPEN,
            wan: (true, &["forwarding"]),
        },
        Case {
            what: "a forward chain with rules verifies every interface",
            change: |f| f.nftables[1].rules = 3,
            mode: Auto,
            lan: (true, &["nftables"]),
            wan: (true, &["nftables"]),
        },
        Case {
            what: "an empty chain with a drop policy verifies every interface",
            change: |f| f.nftables[1].policy = Policy::Drop,
            mode: Auto,
            lan: (true, &["nftables"]),
            wan: (true, &["nftables"]),
        },
        Case {
            what: "a netdev ingress chain on an interface not steered changes nothing",
            change: |f| {
                let mut ingress = chain(NftFamily::Netdev, "edge", "in", NftHook::Ingress);
                ingress.devices = vec!["eth9".into()];
                ingress.rules = 1;
                f.nftables.push(ingress);
            },
            mode: Auto,
            lan: OPEN,
            wan: OPEN,
        },
        Case {
            what: "a netdev ingress chain on the WAN verifies every interface",
            change: |f| {
                let mut ingress = chain(NftFamily::Netdev, "edge", "in", NftHook::Ingress);
                ingress.devices = vec![WAN.into()];
                ingress.rules = 1;
                f.nftables.push(ingress);
            },
            mode: Auto,
            lan: (true, &["nftables"]),
            wan: (true, &["nftables"]),
        },
        Case {
            what: "a legacy FORWARD chain with rules verifies every interface",
            change: |f| f.xtables[0].has_rules = true,
            mode: Auto,
            lan: (true, &["iptables"]),
            wan: (true, &["iptables"]),
        },
        Case {
            what: "a legacy FORWARD policy DROP verifies every interface",
            change: |f| f.xtables[0].policy = Some(Policy::Drop),
            mode: Auto,
            lan: (true, &["iptables"]),
            wan: (true, &["iptables"]),
        },
        Case {
            what: "a custom policy routing rule verifies every interface",
            change: |f| {
                f.rules.push(PolicyRule {
                    priority: 100,
                    text: "from 10.0.0.0/8 lookup 100".into(),
                });
            },
            mode: Auto,
            lan: (true, &["rule"]),
            wan: (true, &["rule"]),
        },
        Case {
            what: "an IPsec forward policy verifies every interface",
            change: |f| {
                f.xfrm.forward.push(XfrmPolicy {
                    selector: "src 10.0.0.0/8 dst 0.0.0.0/0".into(),
                    block: false,
                });
            },
            mode: Auto,
            lan: (true, &["xfrm"]),
            wan: (true, &["xfrm"]),
        },
        Case {
            what: "an IPsec default forward policy of block verifies every interface",
            change: |f| f.xfrm.default_block = true,
            mode: Auto,
            lan: (true, &["xfrm_default"]),
            wan: (true, &["xfrm_default"]),
        },
        Case {
            what: "rp_filter 1 verifies that interface",
            change: |f| wan(f).sysctls.rp_filter = 1,
            mode: Auto,
            lan: OPEN,
            wan: (true, &["rp_strict"]),
        },
        Case {
            what: "rp_filter 2 with a default route and nothing refusing stays open",
            change: |f| wan(f).sysctls.rp_filter = 2,
            mode: Auto,
            lan: OPEN,
            wan: OPEN,
        },
        Case {
            what: "rp_filter 2 without a default route verifies that interface",
            change: |f| {
                wan(f).sysctls.rp_filter = 2;
                f.routes.main_default = false;
            },
            mode: Auto,
            lan: OPEN,
            wan: (true, &["rp_loose_no_default"]),
        },
        Case {
            what: "rp_filter 2 with a blackhole route verifies that interface",
            change: |f| {
                wan(f).sysctls.rp_filter = 2;
                f.routes
                    .refusing
                    .push(route(RouteKind::Blackhole, [10, 9, 0, 0], 16));
            },
            mode: Auto,
            lan: (true, &["refusing_lan"]),
            wan: (true, &["rp_loose_refusing"]),
        },
        Case {
            what: "rp_filter 0 with a refusing route verifies the LAN only",
            change: |f| {
                f.routes
                    .refusing
                    .push(route(RouteKind::Unreachable, [10, 9, 0, 0], 16))
            },
            mode: Auto,
            lan: (true, &["refusing_lan"]),
            wan: OPEN,
        },
        Case {
            what: "accept_local and route_localnet verify their interfaces",
            change: |f| {
                wan(f).sysctls.accept_local = true;
                lan(f).sysctls.route_localnet = true;
            },
            mode: Auto,
            lan: (true, &["route_localnet"]),
            wan: (true, &["accept_local"]),
        },
        Case {
            what: "tc ingress filters and TCX programs verify their interfaces",
            change: |f| {
                wan(f).tc_filters.push(TcFilter {
                    kind: "u32".into(),
                    chain: 0,
                    priority: 49152,
                    protocol: 0x0800,
                });
                lan(f).tcx.push(TcxProgram {
                    id: 7,
                    name: "shaper".into(),
                });
            },
            mode: Auto,
            lan: (true, &["tcx"]),
            wan: (true, &["tc"]),
        },
        Case {
            what: "an AnyIP route verifies every interface",
            change: |f| {
                f.routes
                    .anyip
                    .push(route(RouteKind::Local, [10, 50, 0, 0], 16))
            },
            mode: Auto,
            lan: (true, &["anyip"]),
            wan: (true, &["anyip"]),
        },
        Case {
            what: "more addresses than the settings hold verify every interface",
            change: |f| {
                f.routes.local = (1..=17).map(|i| Ipv4Addr::new(10, 1, 0, i)).collect();
            },
            mode: Auto,
            lan: (true, &["too_many_local"]),
            wan: (true, &["too_many_local"]),
        },
        Case {
            what: "several reasons are all listed",
            change: |f| {
                f.ip_forward = false;
                wan(f).sysctls.rp_filter = 1;
            },
            mode: Auto,
            lan: (true, &["ip_forward"]),
            wan: (true, &["ip_forward", "rp_strict"]),
        },
        Case {
            what: "always verifies an open router",
            change: |_| {},
            mode: Always,
            lan: (true, &["forced"]),
            wan: (true, &["forced"]),
        },
        Case {
            what: "never verifies nothing but keeps the reasons",
            change: |f| {
                f.nftables[1].rules = 1;
                wan(f).sysctls.rp_filter = 1;
            },
            mode: Never,
            lan: (false, &["nftables"]),
            wan: (false, &["nftables", "rp_strict"]),
        },
    ]
}

#[test]
fn decision_table() {
    for case in cases() {
        let mut facts = open_router();
        (case.change)(&mut facts);
        let assessment = assess(&facts, case.mode);
        for (name, (verify, rules)) in [(LAN, case.lan), (WAN, case.wan)] {
            let iface = assessment
                .interface(name)
                .unwrap_or_else(|| panic!("{}: {name} not assessed", case.what));
            let got: Vec<&str> = iface.reasons.iter().map(rule).collect();
            assert_eq!(
                (iface.verify, got.as_slice()),
                (verify, rules),
                "{}: {name} (reasons: {:?})",
                case.what,
                iface
                    .reasons
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            );
        }
    }
}

#[test]
fn flags_follow_the_decision() {
    let mut facts = open_router();
    wan(&mut facts).sysctls.rp_filter = 1;
    let assessment = assess(&facts, VerifyMode::Auto);
    assert_eq!(assessment.flag(2), ha_common::IFACE_VERIFY);
    assert_eq!(assessment.flag(3), 0);
    assert_eq!(assessment.flag(99), 0, "an interface not assessed");
    assert_eq!(assessment.bypassed().count(), 0);
    let never = assess(&facts, VerifyMode::Never);
    let bypassed: Vec<&str> = never.bypassed().map(|(name, _)| name).collect();
    assert_eq!(bypassed, [WAN]);
}

#[test]
fn settings_hold_the_local_addresses_in_network_order() {
    let assessment = assess(&open_router(), VerifyMode::Auto);
    let settings = assessment.settings(5_000_000_000);
    assert_eq!(settings.refresh_ns, 5_000_000_000);
    assert_eq!(settings.local_count, 4);
    assert_eq!(settings.local[0], u32::from_ne_bytes([10, 0, 0, 1]));
    assert_eq!(settings.local[3], u32::from_ne_bytes([192, 168, 1, 31]));
    assert_eq!(settings.local[4], 0);

    let mut many = open_router();
    many.routes.local = (1..=20).map(|i| Ipv4Addr::new(10, 1, 0, i)).collect();
    let settings = assess(&many, VerifyMode::Auto).settings(1);
    assert_eq!(settings.local_count as usize, ha_common::MAX_LOCAL_ADDRS);
    assert_eq!(settings.local[15], u32::from_ne_bytes([10, 1, 0, 16]));
}

#[test]
fn reasons_read_as_one_sentence() {
    let mut forward = chain(NftFamily::Inet, "filter", "forward", NftHook::Forward);
    forward.rules = 3;
    assert_eq!(
        Reason::NftChain { chain: forward }.to_string(),
        "nftables chain inet filter forward (hook forward, 3 rules): the kernel must see \
         each flow first"
    );
    let mut ingress = chain(NftFamily::Netdev, "edge", "in", NftHook::Ingress);
    ingress.devices = vec![WAN.into()];
    ingress.policy = Policy::Drop;
    assert_eq!(
        Reason::NftChain { chain: ingress }.to_string(),
        "nftables chain netdev edge in (hook ingress on eth0, policy drop, 0 rules): the \
         kernel must see each flow first"
    );
    let routes: Vec<KindedRoute> = (0..5)
        .map(|i| route(RouteKind::Blackhole, [10, i, 0, 0], 16))
        .collect();
    assert_eq!(
        Reason::RpFilterLooseRefusing {
            interface: WAN.into(),
            routes,
        }
        .to_string(),
        "rp_filter is 2 (loose) on eth0 and 5 routes refuse traffic (blackhole 10.0.0.0/16, \
         blackhole 10.1.0.0/16, blackhole 10.2.0.0/16 and 2 more): the kernel refuses sources \
         they cover, so the kernel must see each flow first"
    );
    // Every reason of every case: one line, naming a setting before its effect.
    for case in cases() {
        let mut facts = open_router();
        (case.change)(&mut facts);
        for iface in assess(&facts, case.mode).interfaces {
            for reason in iface.reasons {
                let text = reason.to_string();
                assert!(!text.contains('\n') && text.contains(": "), "{text}");
            }
        }
    }
}

#[test]
fn verify_mode_names_are_lowercase() {
    use clap::ValueEnum as _;
    let names: Vec<String> = VerifyMode::value_variants()
        .iter()
        .filter_map(|mode| mode.to_possible_value().map(|v| v.get_name().to_owned()))
        .collect();
    assert_eq!(names, ["auto", "always", "never"]);
    let parsed: VerifyMode = serde_json::from_str("\"never\"").expect("a mode");
    assert_eq!(parsed, VerifyMode::Never);
}

/// A stateful forward chain: `ct state established,related accept`, then more.
fn stateful(facts: &mut Facts) {
    let forward = &mut facts.nftables[1];
    forward.rules = 2;
    forward.conntrack = true;
    forward.policy = Policy::Drop;
}

#[test]
fn stateful_rules_ask_for_the_conntrack_entries_to_be_kept() {
    let mut facts = open_router();
    stateful(&mut facts);
    let assessment = assess(&facts, VerifyMode::Auto);
    let sync = assessment.conntrack.expect("conntrack kept");
    assert!(sync.liberal);
    assert_eq!(sync.timeouts.udp, 30);
    assert_eq!(assessment.settings(1).flags, SETTINGS_CT_SYNC);
    // With every entry liberal already, only the timeouts are kept.
    facts.conntrack = facts.conntrack.map(|ct| ConntrackFacts {
        tcp_be_liberal: true,
        ..ct
    });
    let sync = assess(&facts, VerifyMode::Auto)
        .conntrack
        .expect("conntrack kept");
    assert!(!sync.liberal);
}

#[test]
fn rules_without_conntrack_keep_todays_path() {
    let mut facts = open_router();
    // A port drop: the interfaces verify, nothing consults conntrack.
    facts.nftables[1].rules = 1;
    let assessment = assess(&facts, VerifyMode::Auto);
    assert!(assessment.interfaces.iter().all(|i| i.verify));
    assert_eq!(assessment.conntrack, None);
    assert_eq!(assessment.settings(1).flags, 0);
    // No rules at all: open, nothing kept.
    let open = assess(&open_router(), VerifyMode::Auto);
    assert_eq!(open.conntrack, None);
}

#[test]
fn conntrack_is_kept_only_where_an_interface_verifies_and_it_is_loaded() {
    let mut facts = open_router();
    stateful(&mut facts);
    assert_eq!(assess(&facts, VerifyMode::Never).conntrack, None);
    facts.conntrack = None;
    assert_eq!(assess(&facts, VerifyMode::Auto).conntrack, None);
    // A legacy iptables chain with rules may match on state: kept.
    let mut legacy = open_router();
    legacy.xtables[0].has_rules = true;
    assert!(assess(&legacy, VerifyMode::Auto).conntrack.is_some());
    // A nat chain with a rule is conntrack's.
    let mut nat = open_router();
    nat.nftables[0].kind = "nat".into();
    nat.nftables[0].rules = 1;
    assert!(assess(&nat, VerifyMode::Auto).conntrack.is_some());
}
