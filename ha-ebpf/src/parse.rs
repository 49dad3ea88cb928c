//! Header parsing: each step checks bounds against the end of the frame's first
//! buffer and hands back the header or the reason the frame is not a steering
//! candidate. Headers must lie in the first buffer of a multi-buffer frame.

use aya_ebpf::{helpers::generated::bpf_xdp_get_buff_len, programs::XdpContext};
use ha_common::Counter;
use network_types::{eth::EthHdr, ip::Ipv4Hdr};

/// EtherType of IPv4, as it appears on the wire.
const ETH_P_IP_BE: u16 = 0x0800u16.to_be();
/// IPv4 `frag_off`: more-fragments flag and fragment offset (network order).
const IP_MF_OFFSET_BE: u16 = 0x3fffu16.to_be();
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// TCP flags byte (offset 13 of the TCP header).
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// A pointer to a `T` at `offset` in the frame, if the whole `T` is inside it.
#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// The Ethernet header, or `PassShortFrame`.
#[inline(always)]
pub fn ethernet(ctx: &XdpContext) -> Result<*mut EthHdr, Counter> {
    ptr_at::<EthHdr>(ctx, 0).ok_or(Counter::PassShortFrame)
}

/// A validated IPv4 header without options, of a datagram that is not a fragment,
/// as its ten 16-bit words (2-byte aligned: see `mac.rs`), read where they are used.
pub struct Ipv4 {
    words: *mut [u16; 10],
    /// Total length of the datagram (from the header).
    pub len: usize,
    /// Length of the whole frame, every buffer of it (Ethernet padding included).
    pub frame_len: usize,
}

/// Four bytes of an address from its two words, in wire order.
#[inline(always)]
fn addr(words: &[u16; 10], first: usize) -> [u8; 4] {
    let (hi, lo) = (words[first].to_ne_bytes(), words[first + 1].to_ne_bytes());
    [hi[0], hi[1], lo[0], lo[1]]
}

impl Ipv4 {
    #[inline(always)]
    fn words(&self) -> &[u16; 10] {
        // SAFETY: the header is inside the frame (checked by `ipv4`).
        unsafe { &*self.words }
    }

    pub fn src(&self) -> [u8; 4] {
        addr(self.words(), 6)
    }

    pub fn dst(&self) -> [u8; 4] {
        addr(self.words(), 8)
    }

    pub fn ttl(&self) -> u8 {
        self.words()[4].to_ne_bytes()[0]
    }

    pub fn proto(&self) -> u8 {
        self.words()[4].to_ne_bytes()[1]
    }

    /// TTL − 1 and the checksum the kernel's forwarding writes with it.
    #[inline(always)]
    pub fn decrement_ttl(&mut self) {
        // SAFETY: the header is inside the frame (checked by `ipv4`), writable.
        let words = unsafe { &mut *self.words };
        let [ttl, proto] = words[4].to_ne_bytes();
        words[4] = u16::from_ne_bytes([ttl.wrapping_sub(1), proto]);
        let check = u16::from_be(words[5]);
        words[5] = crate::csum::ttl_decremented(check).to_be();
    }
}

/// The IPv4 header after `eth`, validated as the kernel's `ip_rcv` does: version 4,
/// IHL >= 5, the header checksum right, total length covering the header and not past
/// the frame's end (`PassNotIpv4`, `PassBadIpv4`). Then what the kernel's forwarding
/// treats specially passes to it: options (`PassIpOptions`), fragments
/// (`PassFragment`).
#[inline(always)]
pub fn ipv4(ctx: &XdpContext, eth: *const EthHdr) -> Result<Ipv4, Counter> {
    // SAFETY: `eth` was bounds-checked by `ethernet`.
    if unsafe { (*eth).ether_type } != ETH_P_IP_BE {
        return Err(Counter::PassNotIpv4);
    }
    let words = ptr_at::<[u16; 10]>(ctx, EthHdr::LEN).ok_or(Counter::PassBadIpv4)?;
    // SAFETY: the fixed 20-byte header is inside the frame (checked just above), and
    // 2-byte aligned (see `mac.rs`).
    let header = unsafe { &*words };
    let [vihl, _tos] = header[0].to_ne_bytes();
    let header_len = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || header_len < Ipv4Hdr::LEN {
        return Err(Counter::PassBadIpv4);
    }
    let tot_len = usize::from(u16::from_be(header[1]));
    if tot_len < header_len {
        return Err(Counter::PassBadIpv4);
    }
    // The frame may carry Ethernet padding after the datagram, never less than it.
    // The common frame is exactly the datagram in one buffer; anything else (padding,
    // a datagram longer than the first buffer of a multi-buffer frame) is measured
    // whole. (A trailer wholly in later buffers behind a datagram that exactly fills
    // the first one would go unseen; no driver splits a frame that way.)
    let linear = ctx.data_end() - ctx.data();
    let datagram = EthHdr::LEN + tot_len;
    let frame_len = if datagram == linear {
        linear
    } else {
        // SAFETY: the helper only reads the context it is given.
        let whole = unsafe { bpf_xdp_get_buff_len(ctx.ctx) } as usize;
        if datagram > whole {
            return Err(Counter::PassBadIpv4);
        }
        whole
    };
    if header_len != Ipv4Hdr::LEN {
        // Options are the kernel's whatever they hold. Checked after the length, so a
        // header cut short by the end of the frame is counted as malformed.
        if EthHdr::LEN + header_len > linear {
            return Err(Counter::PassBadIpv4);
        }
        return Err(Counter::PassIpOptions);
    }
    if !checksum_ok(header) {
        return Err(Counter::PassBadIpv4);
    }
    if header[3] & IP_MF_OFFSET_BE != 0 {
        return Err(Counter::PassFragment);
    }
    Ok(Ipv4 {
        words,
        len: tot_len,
        frame_len,
    })
}

/// Whether the 20-byte header's checksum is right: its one's complement sum, the
/// checksum field included, is 0xffff (in either byte order). The kernel drops a
/// header that fails this.
#[inline(always)]
fn checksum_ok(words: &[u16; 10]) -> bool {
    let mut sum = 0u32;
    for word in words {
        sum += u32::from(*word);
    }
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    sum == 0xffff
}

/// The transport ports and TCP flags of a datagram without IP options.
pub struct Ports {
    /// Source and destination port, network order, as on the wire.
    pub src: [u8; 2],
    pub dst: [u8; 2],
    /// The TCP flags byte; 0 for UDP.
    pub tcp_flags: u8,
}

/// Ports (and TCP flags) of a TCP or UDP datagram whose IPv4 header (20 bytes) starts
/// at `EthHdr::LEN`; `None` for other protocols or a transport header that is not in
/// the first buffer.
#[inline(always)]
pub fn ports(ctx: &XdpContext, proto: u8) -> Option<Ports> {
    const L4: usize = EthHdr::LEN + Ipv4Hdr::LEN;
    match proto {
        IPPROTO_TCP => {
            let tcp = ptr_at::<[u8; 14]>(ctx, L4)?;
            // SAFETY: 14 bytes of the TCP header are inside the frame.
            let tcp = unsafe { &*tcp };
            Some(Ports {
                src: [tcp[0], tcp[1]],
                dst: [tcp[2], tcp[3]],
                tcp_flags: tcp[13],
            })
        }
        IPPROTO_UDP => {
            let udp = ptr_at::<[u8; 4]>(ctx, L4)?;
            // SAFETY: the UDP ports are inside the frame.
            let udp = unsafe { &*udp };
            Some(Ports {
                src: [udp[0], udp[1]],
                dst: [udp[2], udp[3]],
                tcp_flags: 0,
            })
        }
        _ => None,
    }
}
