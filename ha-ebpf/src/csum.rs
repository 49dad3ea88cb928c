//! Incremental IPv4 header checksum update (RFC 1624, eqn. 3).

/// The checksum after one 16-bit word of the header changed from `old` to `new`:
/// `HC' = ~(~HC + ~m + m')`, in one's complement arithmetic. All values are in
/// network byte order as read from the header; the arithmetic is order-independent.
#[inline(always)]
pub fn update(check: u16, old: u16, new: u16) -> u16 {
    let sum = u32::from(!check) + u32::from(!old) + u32::from(new);
    // Two folds bring any sum of three 16-bit words back to 16 bits.
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}
