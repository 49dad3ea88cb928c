//! The IPv4 header checksum after the TTL drops by one, exactly as the kernel's
//! forwarding writes it (`ip_decrease_ttl`), so a steered frame is byte for byte
//! the frame the kernel would have sent.

/// The checksum (network order, as read from the header) after the TTL, the high
/// byte of its 16-bit word, drops by one: one's complement addition of 0x0100 with
/// the end-around carry, the same arithmetic and the same representation of zero as
/// `ip_decrease_ttl` on either byte order.
#[inline(always)]
pub fn ttl_decremented(check: u16) -> u16 {
    let sum = u32::from(check) + 0x0100;
    (sum + u32::from(sum >= 0xffff)) as u16
}
