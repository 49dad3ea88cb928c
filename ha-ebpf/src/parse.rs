//! Header parsing: each step checks bounds against the frame end and hands back the
//! header or the reason the frame is not a steering candidate.

use aya_ebpf::programs::XdpContext;
use ha_common::Counter;
use network_types::{eth::EthHdr, ip::Ipv4Hdr};

/// EtherType of IPv4, as it appears on the wire.
const ETH_P_IP_BE: u16 = 0x0800u16.to_be();

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

/// The IPv4 header after `eth`, validated: version 4, IHL >= 5, the whole header
/// (options included) inside the frame, total length covering the header and not
/// past the frame end. Anything else is `PassNotIpv4` or `PassBadIpv4`.
#[inline(always)]
pub fn ipv4(ctx: &XdpContext, eth: *const EthHdr) -> Result<*mut Ipv4Hdr, Counter> {
    // SAFETY: `eth` was bounds-checked by `ethernet`.
    if unsafe { (*eth).ether_type } != ETH_P_IP_BE {
        return Err(Counter::PassNotIpv4);
    }
    let ip = ptr_at::<Ipv4Hdr>(ctx, EthHdr::LEN).ok_or(Counter::PassBadIpv4)?;
    // SAFETY: the fixed 20-byte header is inside the frame (checked just above).
    let (vihl, tot_len) = unsafe { ((*ip).vihl, u16::from_be_bytes((*ip).tot_len)) };
    let header_len = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || header_len < Ipv4Hdr::LEN {
        return Err(Counter::PassBadIpv4);
    }
    let l3_len = ctx.data_end() - ctx.data() - EthHdr::LEN;
    let tot_len = usize::from(tot_len);
    // The frame may carry Ethernet padding after the datagram, never less than it.
    if header_len > l3_len || tot_len < header_len || tot_len > l3_len {
        return Err(Counter::PassBadIpv4);
    }
    Ok(ip)
}
