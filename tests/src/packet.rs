//! A small packet builder: Ethernet, IPv4 (options and deliberately malformed fields
//! included), UDP, TCP, ICMP, ARP, IPv6, VLAN and LLDP frames.
//!
//! Every checksum here is computed from scratch over the bytes it covers, never
//! updated incrementally: the tests compare the program's incremental update against
//! this independent result.

mod l4;
mod other;

use std::net::Ipv4Addr;

pub use l4::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, icmp_echo, tcp_segment, udp_segment};
pub use other::{ARP_REPLY, ARP_REQUEST, arp, ipv6_udp, lldp, vlan};

/// An Ethernet MAC address.
pub type Mac = [u8; 6];

/// The Ethernet broadcast address.
pub const BROADCAST: Mac = [0xff; 6];
/// The nearest-bridge group address LLDP is sent to.
pub const LLDP_MULTICAST: Mac = [0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e];

/// Length of an Ethernet header without VLAN tag.
pub const ETH_HLEN: usize = 14;
/// Shortest Ethernet frame on the wire, FCS excluded: shorter frames are padded.
pub const ETH_MIN_FRAME: usize = 60;
/// Length of an IPv4 header without options.
pub const IPV4_HLEN: usize = 20;

pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_VLAN: u16 = 0x8100;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_LLDP: u16 = 0x88cc;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// IPv4 "don't fragment" flag, in the flags/fragment-offset word.
pub const IP_DF: u16 = 0x4000;
/// IPv4 "more fragments" flag, in the flags/fragment-offset word.
pub const IP_MF: u16 = 0x2000;

/// One's complement sum of `bytes` as big-endian 16-bit words (an odd last byte is
/// padded with zero), folded to 16 bits.
pub fn ones_complement_sum(bytes: &[u8]) -> u16 {
    let mut sum: u64 = bytes
        .chunks(2)
        .map(|word| {
            u64::from(u16::from_be_bytes([
                word[0],
                word.get(1).copied().unwrap_or(0),
            ]))
        })
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    u16::try_from(sum).expect("a folded sum fits in 16 bits")
}

/// The Internet checksum (RFC 1071) of `bytes`, computed over all of them.
pub fn internet_checksum(bytes: &[u8]) -> u16 {
    !ones_complement_sum(bytes)
}

/// Whether the IPv4 header of an untagged Ethernet frame verifies: the one's
/// complement sum over the whole header (IHL words, checksum included) is 0xffff.
pub fn ipv4_header_verifies(frame: &[u8]) -> bool {
    let Some(&vihl) = frame.get(ETH_HLEN) else {
        return false;
    };
    let header_len = usize::from(vihl & 0x0f) * 4;
    frame
        .get(ETH_HLEN..ETH_HLEN + header_len)
        .is_some_and(|header| header_len >= IPV4_HLEN && ones_complement_sum(header) == 0xffff)
}

/// An Ethernet frame: header followed by `payload`.
pub fn ethernet(dst: Mac, src: Mac, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(ETH_HLEN + payload.len());
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// `frame` padded with zeros to the Ethernet minimum, as a NIC receives it.
pub fn pad_to_min(mut frame: Vec<u8>) -> Vec<u8> {
    if frame.len() < ETH_MIN_FRAME {
        frame.resize(ETH_MIN_FRAME, 0);
    }
    frame
}

/// An IPv4 header. `None` fields are derived (lengths, checksum); set them to build
/// malformed headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv4 {
    pub version: u8,
    /// Header length in 32-bit words; `None`: 5 + options.
    pub ihl: Option<u8>,
    pub tos: u8,
    /// Total length; `None`: header + payload.
    pub total_len: Option<u16>,
    pub id: u16,
    /// Flags ([`IP_DF`], [`IP_MF`]) and fragment offset in 8-byte units.
    pub flags_fragment: u16,
    pub ttl: u8,
    pub protocol: u8,
    /// Header checksum; `None`: computed over the header as built.
    pub checksum: Option<u16>,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// Options, already padded by the caller to a multiple of 4 bytes.
    pub options: Vec<u8>,
}

impl Ipv4 {
    /// A well-formed header: TTL 64, DF set, no options.
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8) -> Self {
        Self {
            version: 4,
            ihl: None,
            tos: 0,
            total_len: None,
            id: 0x1c46,
            flags_fragment: IP_DF,
            ttl: 64,
            protocol,
            checksum: None,
            src,
            dst,
            options: Vec::new(),
        }
    }

    /// The header bytes (options included) for a datagram carrying `payload_len`
    /// bytes after the header.
    pub fn header(&self, payload_len: usize) -> Vec<u8> {
        let Self {
            version,
            ihl,
            tos,
            total_len,
            id,
            flags_fragment,
            ttl,
            protocol,
            checksum,
            src,
            dst,
            options,
        } = self;
        let header_len = IPV4_HLEN + options.len();
        let ihl = ihl.unwrap_or_else(|| {
            u8::try_from(header_len / 4).expect("IPv4 options longer than 40 bytes")
        });
        let total_len = total_len.unwrap_or_else(|| {
            u16::try_from(header_len + payload_len).expect("IPv4 datagram longer than 65535")
        });
        let mut header = Vec::with_capacity(header_len);
        header.push(version << 4 | (ihl & 0x0f));
        header.push(*tos);
        header.extend_from_slice(&total_len.to_be_bytes());
        header.extend_from_slice(&id.to_be_bytes());
        header.extend_from_slice(&flags_fragment.to_be_bytes());
        header.push(*ttl);
        header.push(*protocol);
        header.extend_from_slice(&[0, 0]);
        header.extend_from_slice(&src.octets());
        header.extend_from_slice(&dst.octets());
        header.extend_from_slice(options);
        let checksum = checksum.unwrap_or_else(|| internet_checksum(&header));
        header[10..12].copy_from_slice(&checksum.to_be_bytes());
        header
    }
}

/// An untagged Ethernet frame carrying an IPv4 datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv4Frame {
    pub dst_mac: Mac,
    pub src_mac: Mac,
    pub ip: Ipv4,
    /// Everything after the IPv4 header: an L4 segment or raw bytes.
    pub payload: Vec<u8>,
    /// Bytes after the datagram: Ethernet padding.
    pub trailer: Vec<u8>,
}

impl Ipv4Frame {
    /// A frame carrying `payload` as protocol `protocol`.
    pub fn new(dst_mac: Mac, src_mac: Mac, ip: Ipv4, payload: Vec<u8>) -> Self {
        Self {
            dst_mac,
            src_mac,
            ip,
            payload,
            trailer: Vec::new(),
        }
    }

    /// A UDP datagram from `src`:40000 to `dst`:`dst_port`.
    pub fn udp(
        dst_mac: Mac,
        src_mac: Mac,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        dst_port: u16,
        data: &[u8],
    ) -> Self {
        let segment = udp_segment(src, dst, 40_000, dst_port, data);
        Self::new(dst_mac, src_mac, Ipv4::new(src, dst, IPPROTO_UDP), segment)
    }

    /// A TCP SYN from `src`:40000 to `dst`:`dst_port`.
    pub fn tcp_syn(
        dst_mac: Mac,
        src_mac: Mac,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        dst_port: u16,
    ) -> Self {
        Self::tcp(dst_mac, src_mac, src, dst, dst_port, TCP_SYN, &[])
    }

    /// A TCP segment with `flags` from `src`:40000 to `dst`:`dst_port`.
    pub fn tcp(
        dst_mac: Mac,
        src_mac: Mac,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        dst_port: u16,
        flags: u8,
        data: &[u8],
    ) -> Self {
        let segment = tcp_segment(src, dst, 40_000, dst_port, flags, data);
        Self::new(dst_mac, src_mac, Ipv4::new(src, dst, IPPROTO_TCP), segment)
    }

    /// An ICMP echo request.
    pub fn icmp_echo(
        dst_mac: Mac,
        src_mac: Mac,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        data: &[u8],
    ) -> Self {
        Self::new(
            dst_mac,
            src_mac,
            Ipv4::new(src, dst, IPPROTO_ICMP),
            icmp_echo(0x4242, 1, data),
        )
    }

    /// The frame's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let Self {
            dst_mac,
            src_mac,
            ip,
            payload,
            trailer,
        } = self;
        let mut l3 = ip.header(payload.len());
        l3.extend_from_slice(payload);
        l3.extend_from_slice(trailer);
        ethernet(*dst_mac, *src_mac, ETH_P_IPV4, &l3)
    }

    /// The same frame as a router forwards it: new MACs, TTL - 1 and the header
    /// checksum recomputed from scratch. Panics on TTL 0.
    pub fn forwarded(&self, dst_mac: Mac, src_mac: Mac) -> Self {
        let mut out = self.clone();
        out.dst_mac = dst_mac;
        out.src_mac = src_mac;
        out.ip.ttl = self
            .ip
            .ttl
            .checked_sub(1)
            .expect("forwarding a TTL 0 datagram");
        out.ip.checksum = None;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of RFC 1071 section 3 and a classic captured header.
    #[test]
    fn checksum_matches_known_values() {
        let rfc1071 = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(ones_complement_sum(&rfc1071), 0xddf2);
        let header = Ipv4 {
            id: 0x1c46,
            flags_fragment: IP_DF,
            ttl: 64,
            ..Ipv4::new(
                Ipv4Addr::new(172, 16, 10, 99),
                Ipv4Addr::new(172, 16, 10, 12),
                IPPROTO_TCP,
            )
        }
        .header(0x3c - 20);
        assert_eq!(
            header[10..12],
            [0xb1, 0xe6],
            "wikipedia's IPv4 checksum example"
        );
        let frame = ethernet(BROADCAST, BROADCAST, ETH_P_IPV4, &header);
        assert!(ipv4_header_verifies(&frame));
    }

    #[test]
    fn forwarded_recomputes_the_checksum() {
        let src = Ipv4Addr::new(192, 0, 2, 1);
        let frame = Ipv4Frame::udp([2; 6], [4; 6], src, Ipv4Addr::new(192, 0, 2, 2), 53, b"q");
        let out = frame.forwarded([6; 6], [8; 6]).bytes();
        assert_eq!(out[ETH_HLEN + 8], 63);
        assert!(ipv4_header_verifies(&out));
        assert_eq!(out[..6], [6; 6]);
        assert_eq!(out[6..12], [8; 6]);
    }
}
