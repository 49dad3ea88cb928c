//! Kernel tests of `forwarding` (root): each test builds a router namespace
//! (`ha-fw-<tag>-<pid>`, deleted on drop even when the test panics), puts real state
//! in it with the usual tools (`nft`, `iptables-legacy`, `ip`, `tc`, `sysctl`), then
//! gathers the facts on a thread that entered the namespace and checks them and the
//! decision.
//!
//! The router: `lan0` (192.168.77.1/27, the LAN) and `wan0` (10.77.0.1/24, an extra
//! ingress), each one end of a veth pair (`lan1`, `wan1`), forwarding on, every
//! source filter off, a default route through 10.77.0.2.
//!
//! Not root: the tests fail, unless `HA_SKIP_ROOT_TESTS=1`, which prints
//! `SKIPPED: <test> needs root` instead. A kernel without a feature a test needs
//! (read from /proc/config.gz) skips that test with the reason printed; a missing
//! command (`cargo xtask setup` installs them) fails it.

#[path = "../common/root.rs"]
mod root;
mod router;
mod scale;

use ha_user::kernel::forwarding::{
    Facts, Gatherer, Reason, VerifyMode, assess,
    nftables::{NftFamily, NftHook, Policy},
    routes::RouteKind,
    xtables::XtHook,
};
use router::{
    LAN, Router, WAN, chain, decision, open, require_kernel, require_root, verifies_all_for,
};

#[test]
fn a_plain_router_is_open_and_knows_its_addresses() {
    if !require_root("a_plain_router_is_open_and_knows_its_addresses") {
        return;
    }
    let router = Router::new("plain");
    let facts = router.facts();
    assert!(facts.ip_forward);
    assert_eq!(facts.interfaces.len(), 2);
    assert!(facts.interfaces[0].lan && facts.interfaces[0].name == LAN);
    assert!(facts.routes.main_default, "{facts:#?}");
    assert!(facts.rules.is_empty(), "{:#?}", facts.rules);
    assert!(facts.routes.refusing.is_empty() && facts.routes.anyip.is_empty());
    // Own addresses and the subnets' broadcast addresses; nothing of 127.0.0.0/8.
    let local: Vec<String> = facts.routes.local.iter().map(ToString::to_string).collect();
    assert_eq!(
        local,
        ["10.77.0.1", "10.77.0.255", "192.168.77.1", "192.168.77.31"]
    );
    assert!(
        facts.nftables.is_empty() && facts.xtables.is_empty(),
        "{facts:#?}"
    );
    assert!(facts.xfrm.forward.is_empty() && !facts.xfrm.default_block);
    // A kernel with every feature built in reports none absent.
    let built_in = [
        "CONFIG_NF_TABLES",
        "CONFIG_IP_NF_IPTABLES",
        "CONFIG_XFRM_USER",
        "CONFIG_NET_XGRESS",
    ];
    if router::kernel_config().is_some_and(|config| {
        built_in
            .iter()
            .all(|option| config.lines().any(|line| line == format!("{option}=y")))
    }) {
        assert!(facts.absent.is_empty(), "{:?}", facts.absent);
    }
    let assessment = assess(&facts, VerifyMode::Auto);
    open(&assessment);
    let settings = assessment.settings(1_000_000_000);
    assert_eq!(settings.local_count, 4);
    assert_eq!(settings.local[2], u32::from_ne_bytes([192, 168, 77, 1]));

    // Forwarding off: the kernel forwards nothing, so neither may the fast path.
    router.sysctl(&["net.ipv4.ip_forward=0"]);
    let assessment = assess(&router.facts(), VerifyMode::Auto);
    verifies_all_for(&assessment, |r| matches!(r, Reason::IpForwardOff));
    router.sysctl(&["net.ipv4.ip_forward=1", "net.ipv4.conf.wan0.forwarding=0"]);
    let assessment = assess(&router.facts(), VerifyMode::Auto);
    assert_eq!(
        decision(&assessment, WAN),
        (
            true,
            vec![
                "net.ipv4.conf.wan0.forwarding is 0: the kernel forwards nothing that arrives \
                 on wan0, so the fast path steers only what it forwards"
                    .to_owned()
            ]
        )
    );
    assert_eq!(decision(&assessment, LAN), (false, Vec::new()));
}

#[test]
fn nftables_forward_chain_with_a_drop_rule_verifies() {
    let test = "nftables_forward_chain_with_a_drop_rule_verifies";
    if !require_root(test) || !require_kernel(test, &["CONFIG_NF_TABLES", "CONFIG_NF_TABLES_INET"])
    {
        return;
    }
    let router = Router::new("nftdrop");
    router.nft(
        "table inet filter {
           chain forward {
             type filter hook forward priority filter; policy accept;
             iifname wan0 ip daddr 192.168.77.0/27 tcp dport 8080 drop
           }
         }",
    );
    let facts = router.facts();
    let forward = facts
        .nftables
        .iter()
        .find(|c| c.name == "forward")
        .unwrap_or_else(|| panic!("no forward chain: {:#?}", facts.nftables));
    assert_eq!(
        (
            forward.family,
            forward.table.as_str(),
            forward.hook,
            forward.rules,
            forward.policy
        ),
        (
            NftFamily::Inet,
            "filter",
            NftHook::Forward,
            1,
            Policy::Accept
        )
    );
    let assessment = assess(&facts, VerifyMode::Auto);
    assert_eq!(
        decision(&assessment, WAN),
        (
            true,
            vec![
                "nftables chain inet filter forward (hook forward, 1 rule): the kernel must \
                 see each flow first"
                    .to_owned()
            ]
        )
    );
    verifies_all_for(&assessment, |r| matches!(r, Reason::NftChain { .. }));
    // Never: nothing verifies, and the bypass is still named.
    let never = assess(&facts, VerifyMode::Never);
    assert!(never.interfaces.iter().all(|i| !i.verify));
    assert_eq!(never.bypassed().count(), 2);
}

#[test]
fn debian_default_nftables_rule_set_does_not_count() {
    let test = "debian_default_nftables_rule_set_does_not_count";
    if !require_root(test) || !require_kernel(test, &["CONFIG_NF_TABLES", "CONFIG_NF_TABLES_INET"])
    {
        return;
    }
    let router = Router::new("nftdeb");
    // /etc/nftables.conf as Debian ships it.
    router.nft(
        "flush ruleset
         table inet filter {
           chain input { type filter hook input priority filter; }
           chain forward { type filter hook forward priority filter; }
           chain output { type filter hook output priority filter; }
         }",
    );
    let facts = router.facts();
    let names: Vec<(&str, usize, Policy)> = facts
        .nftables
        .iter()
        .map(|c| (c.name.as_str(), c.rules, c.policy))
        .collect();
    // Input and output are local traffic: not gathered. Forward is, and is empty.
    assert_eq!(names, [("forward", 0, Policy::Accept)]);
    open(&assess(&facts, VerifyMode::Auto));
    // The same chain with a drop policy does count.
    router.nft(
        "table inet filter {
           chain forward { type filter hook forward priority filter; policy drop; }
         }",
    );
    let assessment = assess(&router.facts(), VerifyMode::Auto);
    verifies_all_for(
        &assessment,
        |r| matches!(r, Reason::NftChain { chain } if chain.policy == Policy::Drop && chain.rules == 0),
    );
}

#[test]
fn nftables_stateful_and_nat_rule_sets_verify() {
    let test = "nftables_stateful_and_nat_rule_sets_verify";
    let options = [
        "CONFIG_NF_TABLES",
        "CONFIG_NFT_CT",
        "CONFIG_NFT_NAT",
        "CONFIG_NF_TABLES_NETDEV",
    ];
    if !require_root(test) || !require_kernel(test, &options) {
        return;
    }
    let router = Router::new("nftstate");
    router.nft(
        "table ip filter {
           chain forward {
             type filter hook forward priority 0; policy drop;
             ct state established,related accept
             ct state new tcp dport 80 accept
           }
         }
         table ip nat {
           chain prerouting {
             type nat hook prerouting priority dstnat;
             iifname wan0 tcp dport 8080 dnat to 192.168.77.5:80
           }
         }
         table netdev edge {
           chain wan_in { type filter hook ingress device wan0 priority 0; ip saddr 10.66.0.0/16 drop; }
           chain peer_in { type filter hook ingress device wan1 priority 0; ip saddr 10.66.0.0/16 drop; }
         }",
    );
    let facts = router.facts();
    let mut chains: Vec<(NftFamily, &str, &str, NftHook, &str, usize, Policy)> = facts
        .nftables
        .iter()
        .map(|c| {
            (
                c.family,
                c.table.as_str(),
                c.name.as_str(),
                c.hook,
                c.kind.as_str(),
                c.rules,
                c.policy,
            )
        })
        .collect();
    chains.sort_by_key(|c| (c.1, c.2));
    assert_eq!(
        chains,
        [
            (
                NftFamily::Netdev,
                "edge",
                "peer_in",
                NftHook::Ingress,
                "filter",
                1,
                Policy::Accept
            ),
            (
                NftFamily::Netdev,
                "edge",
                "wan_in",
                NftHook::Ingress,
                "filter",
                1,
                Policy::Accept
            ),
            (
                NftFamily::Ip,
                "filter",
                "forward",
                NftHook::Forward,
                "filter",
                2,
                Policy::Drop
            ),
            (
                NftFamily::Ip,
                "nat",
                "prerouting",
                NftHook::Prerouting,
                "nat",
                1,
                Policy::Accept
            ),
        ]
    );
    let assessment = assess(&facts, VerifyMode::Auto);
    let (verify, reasons) = decision(&assessment, LAN);
    assert!(verify);
    // The ingress chain of wan1 (not steered) is not a reason; the three others are.
    assert_eq!(reasons.len(), 3, "{reasons:#?}");
    assert!(reasons.iter().any(|r| {
        r.starts_with("nftables chain ip filter forward (hook forward, policy drop, 2 rules)")
    }));
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("nftables chain ip nat prerouting (hook prerouting, 1 rule)"))
    );
    assert!(
        reasons.iter().any(|r| {
            r.starts_with("nftables chain netdev edge wan_in (hook ingress on wan0, 1 rule)")
        }),
        "{reasons:#?}"
    );
}

#[test]
fn legacy_iptables_forward_rule_and_drop_policy_verify() {
    let test = "legacy_iptables_forward_rule_and_drop_policy_verify";
    let options = [
        "CONFIG_IP_NF_IPTABLES",
        "CONFIG_IP_NF_FILTER",
        "CONFIG_IP_NF_NAT",
    ];
    if !require_root(test) || !require_kernel(test, &options) {
        return;
    }
    let router = Router::new("xt");
    let iptables = |args: &str| {
        router.exec(
            "iptables-legacy",
            &args.split_whitespace().collect::<Vec<_>>(),
        );
    };
    iptables("-A FORWARD -i wan0 -p tcp --dport 8080 -j DROP");
    let facts = router.facts();
    let filter: Vec<(XtHook, bool)> = facts
        .xtables
        .iter()
        .filter(|c| c.table == "filter")
        .map(|c| (c.hook, c.has_rules))
        .collect();
    assert_eq!(filter, [(XtHook::Forward, true)], "{:#?}", facts.xtables);
    verifies_all_for(&assess(&facts, VerifyMode::Auto), |r| {
        r.to_string()
            == "iptables-legacy chain filter FORWARD (has rules): the kernel must see each flow first"
    });

    // No rule, policy ACCEPT: nothing changes.
    iptables("-F FORWARD");
    let facts = router.facts();
    let forward = facts
        .xtables
        .iter()
        .find(|c| c.hook == XtHook::Forward)
        .expect("FORWARD");
    assert_eq!(
        (forward.has_rules, forward.policy),
        (false, Some(Policy::Accept))
    );
    open(&assess(&facts, VerifyMode::Auto));

    // No rule, policy DROP.
    iptables("-P FORWARD DROP");
    verifies_all_for(&assess(&router.facts(), VerifyMode::Auto), |r| {
        r.to_string()
            == "iptables-legacy chain filter FORWARD (policy DROP): the kernel must see each flow first"
    });
    iptables("-P FORWARD ACCEPT");

    // A legacy NAT rule.
    iptables(
        "-t nat -A PREROUTING -i wan0 -p tcp --dport 8080 -j DNAT --to-destination 192.168.77.5:80",
    );
    let facts = router.facts();
    let nat: Vec<(XtHook, bool)> = facts
        .xtables
        .iter()
        .filter(|c| c.table == "nat")
        .map(|c| (c.hook, c.has_rules))
        .collect();
    assert_eq!(
        nat,
        [(XtHook::Prerouting, true), (XtHook::Postrouting, false)]
    );
    verifies_all_for(
        &assess(&facts, VerifyMode::Auto),
        |r| matches!(r, Reason::XtChain { chain } if chain.table == "nat"),
    );
}

#[test]
fn reverse_path_filter_strict_and_loose() {
    if !require_root("reverse_path_filter_strict_and_loose") {
        return;
    }
    let router = Router::new("rpf");
    let rules = |facts: &Facts, name: &str| -> Vec<String> {
        decision(&assess(facts, VerifyMode::Auto), name).1
    };
    // Strict, from conf/all: the higher of all and the interface counts.
    router.sysctl(&["net.ipv4.conf.all.rp_filter=1"]);
    let facts = router.facts();
    assert_eq!(facts.interfaces[1].sysctls.rp_filter, 1);
    assert_eq!(
        rules(&facts, WAN),
        [
            "rp_filter is 1 (strict) on wan0: the kernel refuses a source whose route back is \
          not through wan0, so the kernel must see each flow first"
        ]
    );
    router.sysctl(&[
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.wan0.rp_filter=2",
    ]);
    // Loose with a default route and no refusing route: open.
    open(&assess(&router.facts(), VerifyMode::Auto));
    // Loose without a default route.
    router.ip("route del default");
    let facts = router.facts();
    assert!(!facts.routes.main_default);
    assert_eq!(
        rules(&facts, WAN),
        [
            "rp_filter is 2 (loose) on wan0 and the main table has no default route: the kernel \
          refuses sources it has no route to, so the kernel must see each flow first"
        ]
    );
    assert!(rules(&facts, LAN).is_empty(), "rp_filter 0 on the LAN");
    // Loose with a default route and a blackhole route.
    router.ip("route add default via 10.77.0.2 dev wan0");
    router.ip("route add blackhole 10.66.0.0/16");
    router.ip("route add unreachable 10.67.0.0/16 table 100");
    let facts = router.facts();
    let refusing: Vec<String> = facts
        .routes
        .refusing
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        refusing,
        [
            "blackhole 10.66.0.0/16",
            "unreachable 10.67.0.0/16 table 100"
        ]
    );
    assert_eq!(
        rules(&facts, WAN),
        [
            "rp_filter is 2 (loose) on wan0 and 2 routes refuse traffic (blackhole 10.66.0.0/16, \
          unreachable 10.67.0.0/16 table 100): the kernel refuses sources they cover, so the \
          kernel must see each flow first"
        ]
    );
    // rp_filter 0 on the LAN: verified for the traffic it sends back out of itself.
    assert!(
        matches!(&assess(&facts, VerifyMode::Auto).interface(LAN).expect("lan").reasons[..],
            [Reason::RefusingRoutesLan { routes, .. }] if routes.len() == 2)
    );
}

#[test]
fn custom_policy_rule_verifies_every_interface() {
    if !require_root("custom_policy_rule_verifies_every_interface") {
        return;
    }
    let router = Router::new("rule");
    router.ip("rule add from 10.66.0.0/16 lookup 100 pref 100");
    let facts = router.facts();
    let rules: Vec<(u32, &str)> = facts
        .rules
        .iter()
        .map(|r| (r.priority, r.text.as_str()))
        .collect();
    assert_eq!(rules, [(100, "from 10.66.0.0/16 lookup 100")]);
    verifies_all_for(&assess(&facts, VerifyMode::Auto), |r| {
        r.to_string()
            == "policy routing rule 100: from 10.66.0.0/16 lookup 100 may route a flow \
                elsewhere, so the kernel must see each flow first"
    });
    router.ip("rule del pref 100");
    open(&assess(&router.facts(), VerifyMode::Auto));
    // A default rule removed is a difference too.
    router.ip("rule del pref 32767");
    let facts = router.facts();
    let rules: Vec<(u32, &str)> = facts
        .rules
        .iter()
        .map(|r| (r.priority, r.text.as_str()))
        .collect();
    assert_eq!(rules, [(32767, "lookup default is missing")]);
}

#[test]
fn ipsec_forward_policies_verify_every_interface() {
    let test = "ipsec_forward_policies_verify_every_interface";
    if !require_root(test) || !require_kernel(test, &["CONFIG_XFRM_USER"]) {
        return;
    }
    let router = Router::new("xfrm");
    // An input policy does not apply to forwarded traffic.
    router.ip("xfrm policy add src 10.66.0.0/16 dst 192.168.77.0/27 dir in");
    open(&assess(&router.facts(), VerifyMode::Auto));
    router.ip("xfrm policy add src 10.66.0.0/16 dst 192.168.77.0/27 dir fwd action block");
    let facts = router.facts();
    let policies: Vec<(&str, bool)> = facts
        .xfrm
        .forward
        .iter()
        .map(|p| (p.selector.as_str(), p.block))
        .collect();
    assert_eq!(policies, [("src 10.66.0.0/16 dst 192.168.77.0/27", true)]);
    verifies_all_for(&assess(&facts, VerifyMode::Auto), |r| {
        r.to_string()
            == "IPsec forward policy src 10.66.0.0/16 dst 192.168.77.0/27 (block): the kernel \
                must see each flow first"
    });
    router.ip("xfrm policy flush");
    open(&assess(&router.facts(), VerifyMode::Auto));
    // No policy at all, but a default forward policy of block.
    router.ip("xfrm policy setdefault fwd block");
    let facts = router.facts();
    assert!(facts.xfrm.default_block);
    verifies_all_for(&assess(&facts, VerifyMode::Auto), |r| {
        matches!(r, Reason::XfrmDefaultBlock)
    });
}

#[test]
fn tc_ingress_filters_and_tcx_programs_verify_their_interface() {
    let test = "tc_ingress_filters_and_tcx_programs_verify_their_interface";
    let options = [
        "CONFIG_NET_SCH_INGRESS",
        "CONFIG_NET_CLS_U32",
        "CONFIG_NET_XGRESS",
    ];
    if !require_root(test) || !require_kernel(test, &options) {
        return;
    }
    let router = Router::new("tc");
    let tc = |args: &str| {
        router.exec("tc", &args.split_whitespace().collect::<Vec<_>>());
    };
    // clsact on wan0: an ingress filter counts, an egress one does not.
    tc("qdisc add dev wan0 clsact");
    tc(
        "filter add dev wan0 ingress protocol ip prio 10 u32 match ip dst 192.168.77.0/27 flowid 1:1",
    );
    tc("filter add dev wan0 egress protocol ip prio 10 u32 match ip dst 10.66.0.0/16 flowid 1:1");
    let facts = router.facts();
    let wan = &facts.interfaces[1];
    let filters: Vec<(&str, u16, u16)> = wan
        .tc_filters
        .iter()
        .map(|f| (f.kind.as_str(), f.priority, f.protocol))
        .collect();
    assert_eq!(filters, [("u32", 10, 0x0800)]);
    assert!(facts.interfaces[0].tc_filters.is_empty());
    let assessment = assess(&facts, VerifyMode::Auto);
    assert_eq!(
        decision(&assessment, WAN),
        (
            true,
            vec![
                "1 tc filter on the ingress of wan0 (u32): they run after XDP, so the kernel \
                 must see each flow first"
                    .to_owned()
            ]
        )
    );
    assert_eq!(decision(&assessment, LAN), (false, Vec::new()));

    // The older ingress qdisc on lan0.
    tc("qdisc add dev lan0 ingress");
    tc("filter add dev lan0 parent ffff: protocol all prio 5 u32 match u32 0 0 flowid 1:1");
    let facts = router.facts();
    assert_eq!(
        facts.interfaces[0].tc_filters.len(),
        1,
        "{:#?}",
        facts.interfaces[0]
    );
    tc("qdisc del dev lan0 ingress");
    tc("qdisc del dev wan0 clsact");

    // A TCX ingress program (ha's own classifier, attached by aya as a TCX link).
    let (programs, _) = router.within(|| {
        let mut ebpf = aya::Ebpf::load(ha_user::EBPF_OBJECT).expect("loading the ha object");
        let program: &mut aya::programs::SchedClassifier = ebpf
            .program_mut(ha_common::PROG_LEARN)
            .expect("ha_learn in the object")
            .try_into()
            .expect("ha_learn is a classifier");
        program.load().expect("loading ha_learn");
        let link = program
            .attach(WAN, aya::programs::TcAttachType::Ingress)
            .expect("attaching ha_learn to the ingress of wan0");
        let facts = Gatherer::new()
            .expect("a gatherer")
            .gather(LAN, &[WAN.to_owned()])
            .unwrap_or_else(|err| panic!("gathering: {}", chain(&err)));
        (facts, (ebpf, link))
    });
    let tcx: Vec<&str> = programs.interfaces[1]
        .tcx
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(tcx, ["ha_learn"]);
    let (verify, reasons) = decision(&assess(&programs, VerifyMode::Auto), WAN);
    assert!(
        verify && reasons[0].starts_with("1 TCX program on the ingress of wan0 (ha_learn (id ")
    );
}

#[test]
fn anyip_and_local_sysctls_verify() {
    if !require_root("anyip_and_local_sysctls_verify") {
        return;
    }
    let router = Router::new("anyip");
    router.sysctl(&[
        "net.ipv4.conf.wan0.accept_local=1",
        "net.ipv4.conf.all.route_localnet=1",
    ]);
    let facts = router.facts();
    assert!(facts.interfaces[1].sysctls.accept_local && !facts.interfaces[0].sysctls.accept_local);
    assert!(facts.interfaces.iter().all(|i| i.sysctls.route_localnet));
    let assessment = assess(&facts, VerifyMode::Auto);
    assert_eq!(decision(&assessment, LAN).1.len(), 1, "route_localnet");
    assert_eq!(
        decision(&assessment, WAN).1.len(),
        2,
        "accept_local and route_localnet"
    );
    router.sysctl(&[
        "net.ipv4.conf.wan0.accept_local=0",
        "net.ipv4.conf.all.route_localnet=0",
    ]);
    router.ip("route add local 10.88.0.0/16 dev lo");
    let facts = router.facts();
    let anyip: Vec<String> = facts.routes.anyip.iter().map(ToString::to_string).collect();
    assert_eq!(anyip, ["local 10.88.0.0/16 table local"]);
    verifies_all_for(&assess(&facts, VerifyMode::Auto), |r| {
        matches!(r, Reason::AnyIp { .. })
    });
    assert!(
        facts
            .routes
            .refusing
            .iter()
            .all(|r| r.kind != RouteKind::Local)
    );
}
