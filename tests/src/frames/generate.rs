//! The frame generator: valid Ethernet/IPv4/TCP/UDP/ICMP frames, then mutated. What
//! it draws from (MACs, address classes, the longest frame) is a [`Profile`] of the
//! network the frames are sent into; every frame comes with labels saying what was
//! chosen, for statistics and difference tables.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::{options, rng::Rng};
use crate::packet::{
    ARP_REQUEST, BROADCAST, ETH_HLEN, ETH_MIN_FRAME, ETH_P_IPV4, IP_DF, IP_MF, IPPROTO_ICMP,
    IPPROTO_TCP, IPPROTO_UDP, IPV4_HLEN, Ipv4, Ipv4Frame, Mac, TCP_ACK, TCP_SYN, arp, ethernet,
    icmp_echo, ipv6_udp, lldp, tcp_segment, udp_segment, vlan,
};

/// 802.1ad service tag (QinQ outer tag).
const ETH_P_QINQ: u16 = 0x88a8;

/// Addresses to draw sources or destinations from, with the weight of the class.
#[derive(Clone, Debug)]
pub struct AddrClass {
    pub label: &'static str,
    pub weight: u32,
    pub nets: Vec<Ipv4Net>,
}

impl AddrClass {
    /// A class of the prefixes `nets` (`A.B.C.D/N`; a literal typo panics).
    pub fn new(label: &'static str, weight: u32, nets: &[&str]) -> Self {
        let nets = nets
            .iter()
            .map(|net| {
                net.parse()
                    .unwrap_or_else(|e| panic!("{label}: {net:?} is not a prefix: {e}"))
            })
            .collect();
        Self {
            label,
            weight,
            nets,
        }
    }

    /// A class of single addresses.
    pub fn hosts(label: &'static str, weight: u32, addrs: &[Ipv4Addr]) -> Self {
        let nets = addrs
            .iter()
            .map(|&addr| Ipv4Net::new(addr, 32).expect("/32 is a valid length"))
            .collect();
        Self {
            label,
            weight,
            nets,
        }
    }
}

/// Sources the kernel's forwarding refuses wherever a frame comes from (RFC 1812
/// 5.3.7 martians), plus the reserved 240/4, each class with `weight`.
pub fn martian_sources(weight: u32) -> Vec<AddrClass> {
    vec![
        AddrClass::new("src 0.0.0.0/8", weight, &["0.0.0.0/8"]),
        AddrClass::new("src 127.0.0.0/8 loopback", weight, &["127.0.0.0/8"]),
        AddrClass::new("src multicast", weight, &["224.0.0.0/4"]),
        AddrClass::new("src 255.255.255.255", weight, &["255.255.255.255/32"]),
        AddrClass::new("src 240.0.0.0/4 reserved", weight, &["240.0.0.0/5"]),
    ]
}

/// What the generator knows about the network its frames enter.
#[derive(Clone, Debug)]
pub struct Profile {
    /// The MAC of the interface the frames arrive on: most frames are addressed to it.
    pub router_mac: Mac,
    /// Source MAC of every frame: the sender's own, so that no switch learns a
    /// station's MAC on the wrong port.
    pub src_mac: Mac,
    /// The sender's own address: the sender of ARP requests, which must not teach the
    /// router anything false.
    pub src_ip: Ipv4Addr,
    /// Other unicast stations, for frames not addressed to the router.
    pub other_macs: Vec<Mac>,
    /// Servers' MACs: about one frame in 7 carries one as its source instead of
    /// `src_mac` (a server sending to a VIP through the router). Empty where a
    /// switch would then learn a server's MAC on the sender's port.
    pub server_macs: Vec<Mac>,
    pub destinations: Vec<AddrClass>,
    pub sources: Vec<AddrClass>,
    /// Longest frame (Ethernet header included).
    pub max_len: usize,
    /// IPv4 total lengths worth hitting exactly, e.g. an MTU and MTU + 1.
    pub boundary_lengths: Vec<usize>,
    /// Percentage of frames made as plain traffic: IPv4 to the router's MAC, no
    /// options, not a fragment, TTL ≥ 2, no mutation, no longer than `plain_max_len`
    /// (addresses still drawn from the classes). A corpus judged by what the fast path
    /// does needs enough frames it may steer.
    pub plain_percent: u64,
    pub plain_max_len: usize,
}

/// One generated frame and what went into it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generated {
    pub bytes: Vec<u8>,
    /// What was chosen, most significant first: addresses, protocol, options,
    /// mutations.
    pub labels: Vec<&'static str>,
}

#[derive(Clone, Copy)]
enum Shape {
    Ipv4,
    Vlan,
    QinQ,
    Other,
}

#[derive(Clone, Copy)]
enum DstMac {
    Router,
    Broadcast,
    Multicast,
    Other,
    RouterBitFlipped,
}

#[derive(Clone, Copy)]
enum Mutation {
    BadChecksum,
    Version,
    Ihl,
    TotalLength,
    Trailer,
    Truncate,
    PadToMinimum,
}

/// Generates one frame.
pub fn generate(rng: &mut Rng, profile: &Profile) -> Generated {
    let mut generated = generate_from_sender(rng, profile);
    if !profile.server_macs.is_empty() && rng.chance(15) && generated.bytes.len() >= ETH_HLEN {
        generated.labels.push("src MAC of a server");
        let mac = *rng.pick(&profile.server_macs);
        generated.bytes[6..12].copy_from_slice(&mac);
    }
    generated
}

/// One frame from `profile.src_mac`.
fn generate_from_sender(rng: &mut Rng, profile: &Profile) -> Generated {
    let mut labels = Vec::new();
    if rng.chance(profile.plain_percent) {
        labels.push("plain");
        let bytes = plain_ipv4(rng, profile, &mut labels);
        return Generated { bytes, labels };
    }
    let shape = *rng.weighted(&[
        (84, Shape::Ipv4),
        (5, Shape::Vlan),
        (2, Shape::QinQ),
        (9, Shape::Other),
    ]);
    let dst_mac = dst_mac(rng, profile, &mut labels);
    let bytes = match shape {
        Shape::Ipv4 => ipv4(rng, profile, dst_mac, 0, &mut labels),
        Shape::Vlan | Shape::QinQ => {
            let (tags, label) = match shape {
                Shape::Vlan => (1, "802.1Q tagged"),
                _ => (2, "802.1ad QinQ tagged"),
            };
            labels.push(label);
            let inner = ipv4(rng, profile, dst_mac, 4 * tags, &mut labels);
            let vid = rng.u16() & 0x0fff;
            let mut frame = vlan(
                dst_mac,
                profile.src_mac,
                vid,
                ETH_P_IPV4,
                &inner[ETH_HLEN..],
            );
            if tags == 2 {
                // The service tag goes in front of the customer tag.
                let outer = ETH_P_QINQ
                    .to_be_bytes()
                    .into_iter()
                    .chain(vid.to_be_bytes());
                frame.splice(12..12, outer);
            }
            frame
        }
        Shape::Other => other_ethertype(rng, profile, dst_mac, &mut labels),
    };
    Generated { bytes, labels }
}

fn dst_mac(rng: &mut Rng, profile: &Profile, labels: &mut Vec<&'static str>) -> Mac {
    let choice = if profile.other_macs.is_empty() {
        DstMac::Router
    } else {
        *rng.weighted(&[
            (88, DstMac::Router),
            (3, DstMac::Broadcast),
            (3, DstMac::Multicast),
            (3, DstMac::Other),
            (3, DstMac::RouterBitFlipped),
        ])
    };
    match choice {
        DstMac::Router => profile.router_mac,
        DstMac::Broadcast => {
            labels.push("dst MAC broadcast");
            BROADCAST
        }
        DstMac::Multicast => {
            labels.push("dst MAC multicast");
            [0x01, 0x00, 0x5e, rng.u8() & 0x7f, rng.u8(), rng.u8()]
        }
        DstMac::Other => {
            labels.push("dst MAC other station");
            *rng.pick(&profile.other_macs)
        }
        DstMac::RouterBitFlipped => {
            labels.push("dst MAC router's with one bit flipped");
            let mut mac = profile.router_mac;
            // Never bit 0 of byte 0: that would make it a multicast address.
            let bit = rng.between(1, 47);
            mac[bit / 8] ^= 1 << (bit % 8);
            mac
        }
    }
}

/// A random address of a random class of `classes`.
fn address(rng: &mut Rng, classes: &[AddrClass], labels: &mut Vec<&'static str>) -> Ipv4Addr {
    let weighted: Vec<(u32, &AddrClass)> = classes.iter().map(|c| (c.weight, c)).collect();
    let class = *rng.weighted(&weighted);
    labels.push(class.label);
    let net = rng.pick(&class.nets);
    let size = 1u64 << (32 - u32::from(net.prefix_len()));
    let offset = u32::try_from(rng.below(size)).expect("below 2^32");
    Ipv4Addr::from(u32::from(net.network()) | offset)
}

/// An IPv4 frame, maybe with options, maybe mutated, at most `profile.max_len - room`
/// bytes long (`room`: for VLAN tags added around it).
/// A frame of plain traffic (see [`Profile::plain_percent`]).
fn plain_ipv4(rng: &mut Rng, profile: &Profile, labels: &mut Vec<&'static str>) -> Vec<u8> {
    let dst = address(rng, &profile.destinations, labels);
    let src = address(rng, &profile.sources, labels);
    let (protocol, label) = *rng.weighted(&[
        (45, (IPPROTO_UDP, "udp")),
        (40, (IPPROTO_TCP, "tcp")),
        (15, (IPPROTO_ICMP, "icmp")),
    ]);
    labels.push(label);
    let mut ip = Ipv4::new(src, dst, protocol);
    ip.id = rng.u16();
    ip.ttl = rng.u8().max(2);
    ip.flags_fragment = if rng.chance(60) { IP_DF } else { 0 };
    let max_ip = profile.plain_max_len.min(profile.max_len) - ETH_HLEN;
    let total = IPV4_HLEN + rng.between(0, max_ip - IPV4_HLEN);
    let payload = l4(rng, &ip, total - IPV4_HLEN);
    Ipv4Frame::new(profile.router_mac, profile.src_mac, ip, payload).bytes()
}

fn ipv4(
    rng: &mut Rng,
    profile: &Profile,
    dst_mac: Mac,
    room: usize,
    labels: &mut Vec<&'static str>,
) -> Vec<u8> {
    let dst = address(rng, &profile.destinations, labels);
    let src = address(rng, &profile.sources, labels);
    let (protocol, label) = *rng.weighted(&[
        (40, (IPPROTO_UDP, "udp")),
        (28, (IPPROTO_TCP, "tcp")),
        (20, (IPPROTO_ICMP, "icmp")),
        (3, (0, "ip proto 0 (hop-by-hop)")),
        (3, (2, "igmp")),
        (3, (47, "gre")),
        (3, (253, "ip proto 253 (experimental)")),
    ]);
    labels.push(label);
    let mut ip = Ipv4::new(src, dst, protocol);
    ip.id = rng.u16();
    ip.ttl = if rng.chance(30) {
        let ttl = *rng.pick(&[0u8, 1, 2]);
        labels.push(["TTL 0", "TTL 1", "TTL 2"][usize::from(ttl)]);
        ttl
    } else {
        rng.u8()
    };
    if rng.chance(10) {
        ip.tos = rng.u8();
    }
    ip.flags_fragment = match rng.below(100) {
        0..55 => IP_DF,
        55..88 => 0,
        88..92 => {
            labels.push("first fragment");
            IP_MF
        }
        92..96 => {
            labels.push("middle fragment");
            IP_MF | (rng.u16() & 0x1fff).max(1)
        }
        _ => {
            labels.push("last fragment");
            (rng.u16() & 0x1fff).max(1)
        }
    };
    if rng.chance(20) {
        let (bytes, label) = options::random(rng);
        labels.push(label);
        ip.options = bytes;
    }

    let header_len = IPV4_HLEN + ip.options.len();
    let max_ip = profile.max_len - room - ETH_HLEN;
    let total = match rng.below(100) {
        0..50 => header_len + rng.between(0, 64),
        50..75 => header_len + rng.between(65, 600),
        75..87 => rng.between(header_len, max_ip),
        87..95 if !profile.boundary_lengths.is_empty() => {
            labels.push("IP length at an MTU boundary");
            *rng.pick(&profile.boundary_lengths)
        }
        _ => {
            labels.push("longest frame");
            max_ip
        }
    };
    let payload_len = total.clamp(header_len, max_ip) - header_len;
    let payload = l4(rng, &ip, payload_len);
    let mut frame = Ipv4Frame::new(dst_mac, profile.src_mac, ip, payload);
    if rng.chance(30) {
        mutate(rng, &mut frame, profile.max_len - room, labels)
    } else {
        frame.bytes()
    }
}

/// `len` bytes after the IPv4 header: a segment of `ip`'s protocol with a correct
/// checksum where it fits, random bytes otherwise.
fn l4(rng: &mut Rng, ip: &Ipv4, len: usize) -> Vec<u8> {
    let any_port = rng.u16();
    let ports = (rng.u16() | 1024, *rng.pick(&[80, 9000, 53, 443, any_port]));
    match ip.protocol {
        IPPROTO_UDP if len >= 8 => {
            udp_segment(ip.src, ip.dst, ports.0, ports.1, &rng.bytes(len - 8))
        }
        IPPROTO_TCP if len >= 20 => {
            let any_flags = rng.u8();
            let flags = *rng.pick(&[TCP_SYN, TCP_ACK, TCP_SYN | TCP_ACK, any_flags]);
            tcp_segment(
                ip.src,
                ip.dst,
                ports.0,
                ports.1,
                flags,
                &rng.bytes(len - 20),
            )
        }
        IPPROTO_ICMP if len >= 8 => icmp_echo(rng.u16(), rng.u16(), &rng.bytes(len - 8)),
        _ => rng.bytes(len),
    }
}

/// `frame` with one or two mutations, as bytes at most `max_len` long.
fn mutate(
    rng: &mut Rng,
    frame: &mut Ipv4Frame,
    max_len: usize,
    labels: &mut Vec<&'static str>,
) -> Vec<u8> {
    let count = if rng.chance(20) { 2 } else { 1 };
    let mut truncate = false;
    let mut bad_checksum = false;
    for _ in 0..count {
        let mutation = *rng.weighted(&[
            (22, Mutation::BadChecksum),
            (8, Mutation::Version),
            (12, Mutation::Ihl),
            (16, Mutation::TotalLength),
            (14, Mutation::Trailer),
            (18, Mutation::Truncate),
            (10, Mutation::PadToMinimum),
        ]);
        let datagram = IPV4_HLEN + frame.ip.options.len() + frame.payload.len();
        let room = max_len.saturating_sub(ETH_HLEN + datagram + frame.trailer.len());
        match mutation {
            Mutation::BadChecksum => bad_checksum = true,
            Mutation::Version => {
                labels.push("IP version not 4");
                frame.ip.version = *rng.pick(&[0, 5, 6, 15]);
            }
            Mutation::Ihl => {
                labels.push("IHL not matching the options");
                frame.ip.ihl = Some(rng.u8() & 0x0f);
            }
            Mutation::TotalLength => {
                let (len, label) = match rng.below(4) {
                    0 => (
                        datagram + rng.between(1, 64),
                        "IP length past the frame end",
                    ),
                    1 => (0xffff, "IP length 65535"),
                    2 => (rng.between(0, IPV4_HLEN - 1), "IP length below the header"),
                    _ => (
                        rng.between(IPV4_HLEN, datagram),
                        "IP length short of the payload",
                    ),
                };
                labels.push(label);
                frame.ip.total_len = Some(u16::try_from(len.min(0xffff)).expect("clamped"));
            }
            Mutation::Trailer if room > 0 => {
                labels.push("Ethernet trailer after the datagram");
                let len = if rng.chance(20) {
                    room
                } else {
                    rng.between(1, room.min(64))
                };
                frame.trailer.extend(rng.bytes(len));
            }
            Mutation::PadToMinimum => {
                let len = ETH_HLEN + datagram + frame.trailer.len();
                if len < ETH_MIN_FRAME {
                    labels.push("padded to 60 bytes");
                    frame
                        .trailer
                        .resize(frame.trailer.len() + ETH_MIN_FRAME - len, 0);
                }
            }
            Mutation::Truncate | Mutation::Trailer => truncate = true,
        }
    }
    if bad_checksum {
        // Last, over the header as mutated: the correct checksum with a few bits flipped.
        labels.push("bad IPv4 header checksum");
        let header = frame.ip.header(frame.payload.len());
        let good = u16::from_be_bytes([header[10], header[11]]);
        frame.ip.checksum = Some(good ^ rng.u16().max(1));
    }
    let mut bytes = frame.bytes();
    if truncate && bytes.len() > ETH_HLEN {
        labels.push("truncated");
        let cut = if rng.chance(50) {
            // Inside the IPv4 header, options included.
            rng.between(
                ETH_HLEN,
                (ETH_HLEN + IPV4_HLEN + frame.ip.options.len()).min(bytes.len() - 1),
            )
        } else {
            rng.between(ETH_HLEN, bytes.len() - 1)
        };
        bytes.truncate(cut);
    }
    bytes.truncate(max_len);
    bytes
}

/// A frame that is not plain IPv4: IPv6, ARP, LLDP, another EtherType, 802.3.
fn other_ethertype(
    rng: &mut Rng,
    profile: &Profile,
    dst_mac: Mac,
    labels: &mut Vec<&'static str>,
) -> Vec<u8> {
    let src_mac = profile.src_mac;
    let frame = match rng.below(6) {
        0 => {
            labels.push("IPv6");
            let src = std::net::Ipv6Addr::new(0xfd00, 0, 0, 1, 0, 0, 0, rng.u16());
            let dst = std::net::Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, rng.u16());
            let len = rng.between(0, 200);
            ipv6_udp(dst_mac, src_mac, src, dst, &rng.bytes(len))
        }
        1 => {
            // Asks about some address in the sender's own name: teaches nothing false.
            labels.push("ARP request");
            let mut discard = Vec::new();
            let target = address(rng, &profile.destinations, &mut discard);
            arp(
                dst_mac,
                ARP_REQUEST,
                (src_mac, profile.src_ip),
                ([0; 6], target),
            )
        }
        2 => {
            labels.push("LLDP");
            lldp(dst_mac, src_mac, "eth0")
        }
        3 => {
            labels.push("IPv4 body behind another EtherType");
            let mut discard = Vec::new();
            let inner = ipv4(rng, profile, dst_mac, 0, &mut discard);
            ethernet(
                dst_mac,
                src_mac,
                *rng.pick(&[0x86dd, 0x88b5, 0x0801, 0x22f0]),
                &inner[ETH_HLEN..],
            )
        }
        4 => {
            labels.push("802.3 length field");
            let len = rng.between(0, 100);
            ethernet(
                dst_mac,
                src_mac,
                u16::try_from(len).expect("small"),
                &rng.bytes(len),
            )
        }
        _ => {
            labels.push("other EtherType");
            let any = rng.u16() | 0x0600;
            let ethertype = *rng.pick(&[0x88b5, 0x9000, 0x8035, 0x88e5, any]);
            let len = rng.between(0, 200);
            ethernet(dst_mac, src_mac, ethertype, &rng.bytes(len))
        }
    };
    let mut frame = frame;
    frame.truncate(profile.max_len);
    frame
}
