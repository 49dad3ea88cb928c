//! The reference model: what the README ("The data path, step by step") says the
//! program does with a frame, written from those documented rules and the maps'
//! contents ([`World`]), never from the program's code.
//!
//! The rules, in order; the first that refuses a frame passes it with its reason:
//!
//! 1. [`ingress_runs_the_program`]: the ingress interface is in `HA_IFACES`
//!    (`pass_unknown_iface`).
//! 2. [`ethernet_header`]: the frame holds an Ethernet header (`pass_short_frame`).
//! 3. [`addressed_to_ingress`]: the destination MAC is the ingress interface's own
//!    (`pass_not_our_mac`).
//! 4. [`ipv4_ethertype`]: the EtherType is IPv4 (`pass_not_ipv4`).
//! 5. [`ipv4_header_sane`]: version 4, IHL ≥ 5, total length between the header
//!    length and the frame's end, the header (options too) inside the frame, and for
//!    a header without options its checksum (`pass_bad_ipv4`; the checksum of a
//!    header with options is the kernel's to check, after rule 6).
//! 6. [`no_options`]: IHL 5 (`pass_ip_options`).
//! 7. [`not_a_fragment`]: neither MF nor an offset (`pass_fragment`).
//! 8. [`source_accepted`]: the source is not in 0/8, 127/8, 224/4,
//!    255.255.255.255, nor one of the router's own or broadcast addresses
//!    (`pass_bad_source`).
//! 9. [`destination_prefix`]: the destination is in a prefix (`pass_no_prefix`).
//! 10. [`flow_verified`]: on an interface that verifies flows, only a flow the kernel
//!     forwarded recently goes on; this world records none (`pass_unverified`).
//! 11. [`owner_ready`]: the prefix's host is in the table and ready
//!     (`pass_host_not_ready`).
//! 12. [`not_from_the_host`]: the source MAC is not that host's own: a server
//!     sending to a VIP is never sent its own frame back (`pass_from_host`).
//! 13. [`ttl_above_one`]: TTL ≥ 2 (`pass_ttl`).
//! 14. [`fits_egress_mtu`]: the datagram is no longer than the host's egress MTU
//!     (`pass_too_big`).
//! 15. [`egress_port`]: a host behind another interface needs that interface in
//!     `HA_TX_PORTS` (`pass_no_tx_port`).
//!
//! A frame no rule refuses is steered: `tx` when the host is behind the ingress
//! interface, else `redirect`, rewritten as [`rewritten`] says.
//!
//! To add a rule: write its function, put it in [`RULES`] where the README puts
//! it, and name its counter in [`source_of`] (which does not compile while a
//! `Counter` has no source).

use ha_common::{Counter, HostEntry, MAX_HOSTS, PrefixEntry};
use ha_tests::{
    frames::Ipv4Fields,
    packet::{ETH_HLEN, ETH_P_IPV4, IPV4_HLEN, ones_complement_sum},
    steer::Action,
};

/// IPv4 `flags_fragment`: more fragments, and the offset.
const MF_AND_OFFSET: u16 = 0x3fff;

use crate::world::{Link, World};

/// A frame as the program meets it.
pub struct Packet<'a> {
    pub bytes: &'a [u8],
    pub ingress: u32,
}

/// What the rules found out, for the rules after them.
#[derive(Default)]
pub struct Facts {
    ingress: Option<Link>,
    ip: Option<Ipv4Fields>,
    prefix: Option<PrefixEntry>,
    host: Option<HostEntry>,
}

/// A rule: `Err(reason)` passes the frame.
pub type Rule = fn(&Packet, &World, &mut Facts) -> Result<(), Counter>;

/// Every rule, in the order the README gives them.
pub const RULES: [(&str, Rule); 15] = [
    ("ingress_runs_the_program", ingress_runs_the_program),
    ("ethernet_header", ethernet_header),
    ("addressed_to_ingress", addressed_to_ingress),
    ("ipv4_ethertype", ipv4_ethertype),
    ("ipv4_header_sane", ipv4_header_sane),
    ("no_options", no_options),
    ("not_a_fragment", not_a_fragment),
    ("source_accepted", source_accepted),
    ("destination_prefix", destination_prefix),
    ("flow_verified", flow_verified),
    ("owner_ready", owner_ready),
    ("not_from_the_host", not_from_the_host),
    ("ttl_above_one", ttl_above_one),
    ("fits_egress_mtu", fits_egress_mtu),
    ("egress_port", egress_port),
];

/// Where a counter comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A steered frame.
    Steered,
    /// The rule of [`RULES`] with this name.
    Rule(&'static str),
    /// No frame BPF_PROG_TEST_RUN accepts can produce it: the kernel refuses frames
    /// shorter than an Ethernet header (the suite checks that it still does).
    KernelRefusesShortFrames,
}

/// The source of every counter. Deliberately without a wildcard: a new `Counter`
/// variant does not compile until the model says which rule produces it.
pub fn source_of(counter: Counter) -> Source {
    match counter {
        Counter::Tx | Counter::Redirect => Source::Steered,
        Counter::PassUnknownIface => Source::Rule("ingress_runs_the_program"),
        Counter::PassShortFrame => Source::KernelRefusesShortFrames,
        Counter::PassNotOurMac => Source::Rule("addressed_to_ingress"),
        Counter::PassNotIpv4 => Source::Rule("ipv4_ethertype"),
        Counter::PassBadIpv4 => Source::Rule("ipv4_header_sane"),
        Counter::PassNoPrefix => Source::Rule("destination_prefix"),
        Counter::PassHostNotReady => Source::Rule("owner_ready"),
        Counter::PassTtl => Source::Rule("ttl_above_one"),
        Counter::PassNoTxPort => Source::Rule("egress_port"),
        Counter::PassIpOptions => Source::Rule("no_options"),
        Counter::PassFragment => Source::Rule("not_a_fragment"),
        Counter::PassBadSource => Source::Rule("source_accepted"),
        Counter::PassTooBig => Source::Rule("fits_egress_mtu"),
        Counter::PassUnverified => Source::Rule("flow_verified"),
        Counter::PassFromHost => Source::Rule("not_from_the_host"),
    }
}

/// What the program must do with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Pass(Counter),
    Steer {
        /// `Tx` or `Redirect`.
        counter: Counter,
        host_id: u32,
        prefix_id: u32,
        host: HostEntry,
    },
}

impl Decision {
    pub fn counter(&self) -> Counter {
        match *self {
            Decision::Pass(counter) | Decision::Steer { counter, .. } => counter,
        }
    }

    pub fn action(&self) -> Action {
        match self.counter() {
            Counter::Tx => Action::Tx,
            Counter::Redirect => Action::Redirect,
            _ => Action::Pass,
        }
    }

    /// The frame the program must hand back for `input`.
    pub fn output(&self, input: &[u8]) -> Vec<u8> {
        match self {
            Decision::Pass(_) => input.to_vec(),
            Decision::Steer { host, .. } => rewritten(input, host),
        }
    }
}

/// The model's verdict on `packet`.
pub fn decide(packet: &Packet, world: &World) -> Decision {
    let mut facts = Facts::default();
    for (_, rule) in RULES {
        if let Err(reason) = rule(packet, world, &mut facts) {
            return Decision::Pass(reason);
        }
    }
    let (Some(ingress), Some(prefix), Some(host)) = (facts.ingress, facts.prefix, facts.host)
    else {
        panic!("a frame passed every rule without the facts steering needs");
    };
    let counter = if host.egress_ifindex == ingress.ifindex {
        Counter::Tx
    } else {
        Counter::Redirect
    };
    Decision::Steer {
        counter,
        host_id: prefix.host,
        prefix_id: prefix.prefix_id,
        host,
    }
}

pub fn ingress_runs_the_program(p: &Packet, w: &World, f: &mut Facts) -> Result<(), Counter> {
    let link = w.link(p.ingress).filter(|link| link.runs_program);
    f.ingress = Some(link.ok_or(Counter::PassUnknownIface)?.clone());
    Ok(())
}

pub fn ethernet_header(p: &Packet, _: &World, _: &mut Facts) -> Result<(), Counter> {
    if p.bytes.len() < ETH_HLEN {
        return Err(Counter::PassShortFrame);
    }
    Ok(())
}

pub fn addressed_to_ingress(p: &Packet, _: &World, f: &mut Facts) -> Result<(), Counter> {
    let ingress = f.ingress.as_ref().expect("rule 1 found the ingress");
    if p.bytes[..6] != ingress.mac {
        return Err(Counter::PassNotOurMac);
    }
    Ok(())
}

pub fn ipv4_ethertype(p: &Packet, _: &World, _: &mut Facts) -> Result<(), Counter> {
    if p.bytes[12..14] != ETH_P_IPV4.to_be_bytes() {
        return Err(Counter::PassNotIpv4);
    }
    Ok(())
}

pub fn ipv4_header_sane(p: &Packet, _: &World, f: &mut Facts) -> Result<(), Counter> {
    let l3 = &p.bytes[ETH_HLEN..];
    let ip = Ipv4Fields::read(l3).ok_or(Counter::PassBadIpv4)?;
    let header_len = usize::from(ip.ihl) * 4;
    let total = usize::from(ip.total_len);
    if ip.version != 4 || header_len < IPV4_HLEN || header_len > l3.len() {
        return Err(Counter::PassBadIpv4);
    }
    if total < header_len || total > l3.len() {
        return Err(Counter::PassBadIpv4);
    }
    // A header without options must sum (checksum included) to 0xffff.
    if header_len == IPV4_HLEN && ones_complement_sum(&l3[..IPV4_HLEN]) != 0xffff {
        return Err(Counter::PassBadIpv4);
    }
    f.ip = Some(ip);
    Ok(())
}

pub fn no_options(_: &Packet, _: &World, f: &mut Facts) -> Result<(), Counter> {
    if f.ip.expect("rule 5 read the header").ihl != 5 {
        return Err(Counter::PassIpOptions);
    }
    Ok(())
}

pub fn not_a_fragment(_: &Packet, _: &World, f: &mut Facts) -> Result<(), Counter> {
    if f.ip.expect("rule 5 read the header").flags_fragment & MF_AND_OFFSET != 0 {
        return Err(Counter::PassFragment);
    }
    Ok(())
}

pub fn source_accepted(_: &Packet, w: &World, f: &mut Facts) -> Result<(), Counter> {
    let src = f.ip.expect("rule 5 read the header").src;
    let [first, ..] = src.octets();
    let martian = first == 0 || first == 127 || (224..240).contains(&first) || src.is_broadcast();
    if martian || w.local.contains(&src) {
        return Err(Counter::PassBadSource);
    }
    Ok(())
}

pub fn flow_verified(_: &Packet, _: &World, f: &mut Facts) -> Result<(), Counter> {
    if f.ingress
        .as_ref()
        .expect("rule 1 found the ingress")
        .verifies
    {
        return Err(Counter::PassUnverified);
    }
    Ok(())
}

pub fn fits_egress_mtu(_: &Packet, _: &World, f: &mut Facts) -> Result<(), Counter> {
    let len = f.ip.expect("rule 5 read the header").total_len;
    if len > f.host.expect("rule 11 found the host").mtu {
        return Err(Counter::PassTooBig);
    }
    Ok(())
}

pub fn destination_prefix(_: &Packet, w: &World, f: &mut Facts) -> Result<(), Counter> {
    let dst = f.ip.expect("rule 5 read the header").dst;
    let longest = w
        .prefixes
        .iter()
        .filter(|(net, _)| net.contains(&dst))
        .max_by_key(|(net, _)| net.prefix_len());
    f.prefix = Some(longest.ok_or(Counter::PassNoPrefix)?.1);
    Ok(())
}

pub fn owner_ready(_: &Packet, w: &World, f: &mut Facts) -> Result<(), Counter> {
    let id = f.prefix.expect("rule 9 found the prefix").host;
    let host = (id < MAX_HOSTS)
        .then(|| w.hosts.get(&id).copied().unwrap_or_default())
        .filter(HostEntry::is_ready);
    f.host = Some(host.ok_or(Counter::PassHostNotReady)?);
    Ok(())
}

pub fn not_from_the_host(p: &Packet, _: &World, f: &mut Facts) -> Result<(), Counter> {
    let host = f.host.expect("rule 11 found the host");
    if p.bytes.get(6..12) == Some(&host.mac[..]) {
        return Err(Counter::PassFromHost);
    }
    Ok(())
}

pub fn ttl_above_one(_: &Packet, _: &World, f: &mut Facts) -> Result<(), Counter> {
    if f.ip.expect("rule 5 read the header").ttl <= 1 {
        return Err(Counter::PassTtl);
    }
    Ok(())
}

pub fn egress_port(_: &Packet, w: &World, f: &mut Facts) -> Result<(), Counter> {
    let egress = f.host.expect("rule 11 found the host").egress_ifindex;
    let ingress = f
        .ingress
        .as_ref()
        .expect("rule 1 found the ingress")
        .ifindex;
    let port = w.link(egress).is_some_and(|link| link.tx_port);
    if egress != ingress && !port {
        return Err(Counter::PassNoTxPort);
    }
    Ok(())
}

/// The specified rewrite of a steered frame, the kernel's forwarding's: destination
/// MAC the host's, source MAC the egress interface's, TTL − 1 with the header
/// checksum updated for the TTL word by RFC 1624 eqn. 3 (`HC' = ~(~HC + ~m + m')`,
/// derived here independently of the program, which writes `ip_decrease_ttl`'s
/// arithmetic), the Ethernet padding after the datagram trimmed as the kernel trims
/// it; every other byte as it was.
pub fn rewritten(input: &[u8], host: &HostEntry) -> Vec<u8> {
    let total = usize::from(u16::from_be_bytes([
        input[ETH_HLEN + 2],
        input[ETH_HLEN + 3],
    ]));
    let mut out = input[..ETH_HLEN + total].to_vec();
    out[..6].copy_from_slice(&host.mac);
    out[6..12].copy_from_slice(&host.egress_mac);
    let ttl_at = ETH_HLEN + 8;
    let (ttl, protocol) = (out[ttl_at], out[ttl_at + 1]);
    out[ttl_at] = ttl - 1;
    let check_at = ETH_HLEN + 10;
    let check = u16::from_be_bytes([out[check_at], out[check_at + 1]]);
    let old = u16::from_be_bytes([ttl, protocol]);
    let new = u16::from_be_bytes([ttl - 1, protocol]);
    let words = [
        (!check).to_be_bytes(),
        (!old).to_be_bytes(),
        new.to_be_bytes(),
    ]
    .concat();
    let updated = !ones_complement_sum(&words);
    out[check_at..check_at + 2].copy_from_slice(&updated.to_be_bytes());
    out
}
