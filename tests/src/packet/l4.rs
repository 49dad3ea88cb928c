//! L4 segments with their checksums over the IPv4 pseudo-header.

use std::net::Ipv4Addr;

use super::{IPPROTO_TCP, IPPROTO_UDP, internet_checksum};

/// TCP FIN flag.
pub const TCP_FIN: u8 = 0x01;
/// TCP SYN flag.
pub const TCP_SYN: u8 = 0x02;
/// TCP RST flag.
pub const TCP_RST: u8 = 0x04;
/// TCP ACK flag.
pub const TCP_ACK: u8 = 0x10;

/// Checksum of an L4 segment over the IPv4 pseudo-header and the segment.
fn l4_checksum(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, segment: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(12 + segment.len());
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, protocol]);
    let len = u16::try_from(segment.len()).expect("L4 segment longer than 65535");
    pseudo.extend_from_slice(&len.to_be_bytes());
    pseudo.extend_from_slice(segment);
    internet_checksum(&pseudo)
}

/// A UDP segment with its checksum.
pub fn udp_segment(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    src_port: u16,
    dst_port: u16,
    data: &[u8],
) -> Vec<u8> {
    let len = u16::try_from(8 + data.len()).expect("UDP datagram longer than 65535");
    let mut segment = Vec::with_capacity(usize::from(len));
    segment.extend_from_slice(&src_port.to_be_bytes());
    segment.extend_from_slice(&dst_port.to_be_bytes());
    segment.extend_from_slice(&len.to_be_bytes());
    segment.extend_from_slice(&[0, 0]);
    segment.extend_from_slice(data);
    // 0 means "no checksum" in UDP; a computed 0 is sent as 0xffff.
    let checksum = match l4_checksum(src, dst, IPPROTO_UDP, &segment) {
        0 => 0xffff,
        checksum => checksum,
    };
    segment[6..8].copy_from_slice(&checksum.to_be_bytes());
    segment
}

/// A TCP segment (20-byte header, window 64240) with its checksum.
pub fn tcp_segment(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    src_port: u16,
    dst_port: u16,
    flags: u8,
    data: &[u8],
) -> Vec<u8> {
    let mut segment = Vec::with_capacity(20 + data.len());
    segment.extend_from_slice(&src_port.to_be_bytes());
    segment.extend_from_slice(&dst_port.to_be_bytes());
    segment.extend_from_slice(&0x0bad_cafe_u32.to_be_bytes()); // sequence number
    let ack: u32 = if flags & TCP_ACK != 0 { 0x1234_5678 } else { 0 };
    segment.extend_from_slice(&ack.to_be_bytes());
    segment.extend_from_slice(&[5 << 4, flags]);
    segment.extend_from_slice(&64_240_u16.to_be_bytes());
    segment.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    segment.extend_from_slice(data);
    let checksum = l4_checksum(src, dst, IPPROTO_TCP, &segment);
    segment[16..18].copy_from_slice(&checksum.to_be_bytes());
    segment
}

/// An ICMP echo request with its checksum.
pub fn icmp_echo(id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut message = vec![8, 0, 0, 0];
    message.extend_from_slice(&id.to_be_bytes());
    message.extend_from_slice(&seq.to_be_bytes());
    message.extend_from_slice(data);
    let checksum = internet_checksum(&message);
    message[2..4].copy_from_slice(&checksum.to_be_bytes());
    message
}
