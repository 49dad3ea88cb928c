//! Frames that are not plain IPv4: ARP, IPv6, LLDP, 802.1Q.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{
    ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6, ETH_P_LLDP, ETH_P_VLAN, IPPROTO_UDP, Mac, ethernet,
    pad_to_min,
};

/// ARP opcode of a request.
pub const ARP_REQUEST: u16 = 1;
/// ARP opcode of a reply.
pub const ARP_REPLY: u16 = 2;

/// An Ethernet/IPv4 ARP frame (`op` [`ARP_REQUEST`] or [`ARP_REPLY`]), padded to
/// the Ethernet minimum.
pub fn arp(eth_dst: Mac, op: u16, sender: (Mac, Ipv4Addr), target: (Mac, Ipv4Addr)) -> Vec<u8> {
    let mut body = Vec::with_capacity(28);
    body.extend_from_slice(&1_u16.to_be_bytes()); // hardware: Ethernet
    body.extend_from_slice(&ETH_P_IPV4.to_be_bytes());
    body.extend_from_slice(&[6, 4]);
    body.extend_from_slice(&op.to_be_bytes());
    body.extend_from_slice(&sender.0);
    body.extend_from_slice(&sender.1.octets());
    body.extend_from_slice(&target.0);
    body.extend_from_slice(&target.1.octets());
    pad_to_min(ethernet(eth_dst, sender.0, ETH_P_ARP, &body))
}

/// An IPv6 frame carrying a UDP datagram (hop limit 64, checksum left zero: the
/// program under test must never look past the EtherType).
pub fn ipv6_udp(dst_mac: Mac, src_mac: Mac, src: Ipv6Addr, dst: Ipv6Addr, data: &[u8]) -> Vec<u8> {
    let udp_len = u16::try_from(8 + data.len()).expect("UDP datagram longer than 65535");
    let mut l3 = vec![0x60, 0, 0, 0];
    l3.extend_from_slice(&udp_len.to_be_bytes());
    l3.extend_from_slice(&[IPPROTO_UDP, 64]);
    l3.extend_from_slice(&src.octets());
    l3.extend_from_slice(&dst.octets());
    l3.extend_from_slice(&40_000_u16.to_be_bytes());
    l3.extend_from_slice(&80_u16.to_be_bytes());
    l3.extend_from_slice(&udp_len.to_be_bytes());
    l3.extend_from_slice(&[0, 0]);
    l3.extend_from_slice(data);
    ethernet(dst_mac, src_mac, ETH_P_IPV6, &l3)
}

/// An LLDP frame: chassis id (MAC), port id (interface name), TTL 120, end.
pub fn lldp(dst_mac: Mac, src_mac: Mac, port: &str) -> Vec<u8> {
    fn tlv(body: &mut Vec<u8>, kind: u16, value: &[u8]) {
        let len = u16::try_from(value.len()).expect("LLDP TLV longer than 511 bytes");
        body.extend_from_slice(&(kind << 9 | len).to_be_bytes());
        body.extend_from_slice(value);
    }
    let mut body = Vec::new();
    tlv(&mut body, 1, &[[4].as_slice(), &src_mac].concat()); // chassis id: MAC address
    tlv(&mut body, 2, &[[5].as_slice(), port.as_bytes()].concat()); // port id: interface name
    tlv(&mut body, 3, &120_u16.to_be_bytes()); // time to live
    tlv(&mut body, 0, &[]); // end of LLDPDU
    pad_to_min(ethernet(dst_mac, src_mac, ETH_P_LLDP, &body))
}

/// An 802.1Q-tagged frame: VLAN `vid`, then `ethertype` and `payload`.
pub fn vlan(dst_mac: Mac, src_mac: Mac, vid: u16, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut tagged = Vec::with_capacity(4 + payload.len());
    tagged.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    tagged.extend_from_slice(&ethertype.to_be_bytes());
    tagged.extend_from_slice(payload);
    ethernet(dst_mac, src_mac, ETH_P_VLAN, &tagged)
}
