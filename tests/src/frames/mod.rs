//! Seeded random and mutated frames, shared by the suites that judge the data path
//! against references: the random-frame run through the real program
//! (`tests/tests/random_frames`) and the differential test against the kernel's
//! forwarding (`tests/tests/oracle`).
//!
//! [`generate`] draws a frame from a [`Profile`] (the network it is sent into):
//! valid Ethernet/IPv4/TCP/UDP/ICMP, destinations and sources by weighted class
//! (the caller's prefixes, martians, broadcasts, ...), every TTL, IPv4 options (IHL
//! 5..15), fragments, then mutations (bad checksums, IHL and length lies, trailers,
//! truncations), VLAN tags, other EtherTypes, other destination MACs. [`Rng`] is
//! seeded per frame, so a failure reproduces from the seed and the frame's index.

mod generate;
pub mod options;
mod rng;

use std::{fmt::Write as _, net::Ipv4Addr};

pub use generate::{AddrClass, Generated, Profile, generate, martian_sources};
pub use rng::{FRAME_ENV, Rng, SEED_ENV, only_frame, seed};

use crate::packet::{ETH_HLEN, ETH_P_IPV4, ETH_P_VLAN, IPV4_HLEN, ones_complement_sum};

/// 802.1ad service tag.
const ETH_P_QINQ: u16 = 0x88a8;

/// Offset of the IPv4 header of `frame`, behind up to two VLAN tags, if its
/// EtherType says IPv4.
pub fn ipv4_offset(frame: &[u8]) -> Option<usize> {
    let mut at = 12;
    for _ in 0..3 {
        let ethertype = u16::from_be_bytes(frame.get(at..at + 2)?.try_into().ok()?);
        match ethertype {
            ETH_P_IPV4 => return Some(at + 2),
            ETH_P_VLAN | ETH_P_QINQ => at += 4,
            _ => return None,
        }
    }
    None
}

/// The fields of a fixed IPv4 header, read without judging them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Fields {
    pub version: u8,
    pub ihl: u8,
    pub total_len: u16,
    pub id: u16,
    pub flags_fragment: u16,
    pub ttl: u8,
    pub protocol: u8,
    pub checksum: u16,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
}

impl Ipv4Fields {
    /// The fixed header at the start of `header`, if 20 bytes are there.
    pub fn read(header: &[u8]) -> Option<Self> {
        let h: &[u8; IPV4_HLEN] = header.get(..IPV4_HLEN)?.try_into().ok()?;
        let word = |at: usize| u16::from_be_bytes([h[at], h[at + 1]]);
        let addr = |at: usize| Ipv4Addr::new(h[at], h[at + 1], h[at + 2], h[at + 3]);
        Some(Self {
            version: h[0] >> 4,
            ihl: h[0] & 0x0f,
            total_len: word(2),
            id: word(4),
            flags_fragment: word(6),
            ttl: h[8],
            protocol: h[9],
            checksum: word(10),
            src: addr(12),
            dst: addr(16),
        })
    }
}

/// Sets the IPv4 identification of `frame` to `id` and updates the header checksum
/// by the same difference (RFC 1624), so a correct checksum stays correct and a
/// wrong one stays wrong by as much. False when `frame` has no 20-byte IPv4 header.
pub fn stamp_ipv4_id(frame: &mut [u8], id: u16) -> bool {
    let Some(at) = ipv4_offset(frame) else {
        return false;
    };
    if frame.len() < at + IPV4_HLEN {
        return false;
    }
    let old = u16::from_be_bytes([frame[at + 4], frame[at + 5]]);
    let check = u16::from_be_bytes([frame[at + 10], frame[at + 11]]);
    // HC' = ~(~HC + ~m + m')
    let sum = ones_complement_sum(
        &[
            (!check).to_be_bytes(),
            (!old).to_be_bytes(),
            id.to_be_bytes(),
        ]
        .concat(),
    );
    frame[at + 4..at + 6].copy_from_slice(&id.to_be_bytes());
    frame[at + 10..at + 12].copy_from_slice(&(!sum).to_be_bytes());
    true
}

/// One line about `frame`: length, MACs, VLAN tags, and the IPv4 header's fields
/// or the EtherType.
pub fn describe(frame: &[u8]) -> String {
    let mut out = format!("{} bytes", frame.len());
    if frame.len() < ETH_HLEN {
        return out;
    }
    let mac = |m: &[u8]| {
        m.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    let _ = write!(out, " {} > {}", mac(&frame[6..12]), mac(&frame[..6]));
    let mut at = 12;
    loop {
        let ethertype = u16::from_be_bytes([frame[at], frame[at + 1]]);
        match ethertype {
            ETH_P_VLAN | ETH_P_QINQ if frame.len() >= at + 6 => {
                let vid = u16::from_be_bytes([frame[at + 2], frame[at + 3]]) & 0x0fff;
                let _ = write!(out, " vlan {vid}");
                at += 4;
            }
            ETH_P_IPV4 => {
                let header = &frame[at + 2..];
                match Ipv4Fields::read(header) {
                    Some(ip) => {
                        let Ipv4Fields {
                            version,
                            ihl,
                            total_len,
                            id,
                            flags_fragment,
                            ttl,
                            protocol,
                            checksum: _,
                            src,
                            dst,
                        } = ip;
                        let _ = write!(
                            out,
                            " IPv{version} {src} > {dst} proto {protocol} ttl {ttl} ihl {ihl} \
                             id {id:#06x} len {total_len}/{}",
                            header.len()
                        );
                        if flags_fragment & crate::packet::IP_DF != 0 {
                            out.push_str(" DF");
                        }
                        if flags_fragment & crate::packet::IP_MF != 0 {
                            out.push_str(" MF");
                        }
                        if flags_fragment & 0x1fff != 0 {
                            let _ = write!(out, " offset {}", (flags_fragment & 0x1fff) * 8);
                        }
                    }
                    None => {
                        let _ = write!(out, " IPv4 cut after {} bytes", header.len());
                    }
                }
                return out;
            }
            _ if ethertype < 0x0600 => {
                let _ = write!(out, " 802.3 length {ethertype}");
                return out;
            }
            _ => {
                let _ = write!(out, " ethertype {ethertype:#06x}");
                return out;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Ipv4Frame, ipv4_header_verifies, vlan};

    fn sample() -> Ipv4Frame {
        Ipv4Frame::udp(
            [2; 6],
            [4; 6],
            Ipv4Addr::new(10, 0, 0, 2),
            Ipv4Addr::new(192, 168, 1, 65),
            9000,
            b"x",
        )
    }

    #[test]
    fn stamping_keeps_the_checksum_state() {
        // The header's one's complement sum is 0xffff when the checksum is right; a
        // stamp leaves the sum, right or wrong, exactly as it was.
        let sum = |frame: &[u8]| ones_complement_sum(&frame[14..34]);
        let mut frame = sample().bytes();
        assert!(stamp_ipv4_id(&mut frame, 0xbeef));
        assert!(ipv4_header_verifies(&frame));
        assert_eq!(frame[18..20], [0xbe, 0xef]);
        let mut bad = sample();
        bad.ip.checksum = Some(0x1234);
        let mut bad = bad.bytes();
        let before = sum(&bad);
        assert_ne!(before, 0xffff);
        for id in [0, 7, 0xffff, 0x8000] {
            assert!(stamp_ipv4_id(&mut bad, id));
            assert_eq!(sum(&bad), before, "id {id:#x}");
        }
        let mut short = sample().bytes();
        short.truncate(30);
        assert!(!stamp_ipv4_id(&mut short, 1));
    }

    #[test]
    fn tagged_headers_are_found_and_described() {
        let inner = sample().bytes();
        let tagged = vlan([2; 6], [4; 6], 10, ETH_P_IPV4, &inner[ETH_HLEN..]);
        assert_eq!(ipv4_offset(&inner), Some(14));
        assert_eq!(ipv4_offset(&tagged), Some(18));
        let text = describe(&tagged);
        assert!(
            text.contains("vlan 10") && text.contains("10.0.0.2 > 192.168.1.65"),
            "{text}"
        );
    }

    #[test]
    fn generated_frames_respect_the_profile() {
        let profile = Profile {
            router_mac: [2, 0, 0, 0, 0, 1],
            src_mac: [2, 0, 0, 0, 0, 9],
            src_ip: Ipv4Addr::new(10, 0, 0, 2),
            other_macs: vec![[2, 0, 0, 0, 0, 5]],
            server_macs: Vec::new(),
            destinations: vec![AddrClass::new("dst vip", 1, &["192.168.1.64/27"])],
            sources: martian_sources(1),
            max_len: 1514,
            boundary_lengths: vec![1500, 1501],
            plain_percent: 10,
            plain_max_len: 1514,
        };
        let mut labels = std::collections::BTreeSet::new();
        for index in 0..20_000 {
            let frame = generate(&mut Rng::for_frame(5, index), &profile);
            assert!(
                (ETH_HLEN..=1514).contains(&frame.bytes.len()),
                "frame {index}: {}",
                describe(&frame.bytes)
            );
            assert_eq!(frame.bytes[6..12], profile.src_mac, "frame {index}");
            labels.extend(frame.labels);
        }
        for wanted in [
            "dst vip",
            "src 0.0.0.0/8",
            "TTL 1",
            "802.1Q tagged",
            "bad IPv4 header checksum",
            "truncated",
            "IP length at an MTU boundary",
            "options: record route",
            "middle fragment",
        ] {
            assert!(labels.contains(wanted), "no {wanted:?} in {labels:?}");
        }
    }
}
