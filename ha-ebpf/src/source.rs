//! Sources the kernel's forwarding refuses (`ip_route_input_slow`'s martians, and
//! `fib_validate_source`'s own-address check): such a frame is the kernel's, which
//! drops it and counts it as a martian.

use ha_common::{MAX_LOCAL_ADDRS, Settings, local_filter_bit};

/// Whether the kernel would refuse to forward a datagram from `src` (network order):
/// 0.0.0.0/8, 127.0.0.0/8 (loopback; `route_localnet` makes the controller verify
/// every flow instead), 224.0.0.0/4 (multicast), 255.255.255.255, or one of the
/// addresses in `settings` (the router's own, and the broadcast addresses of its
/// subnets).
#[inline(always)]
pub fn refused(src: [u8; 4], settings: &Settings) -> bool {
    let first = src[0];
    if first == 0 || first == 127 || first & 0xf0 == 0xe0 || u32::from_ne_bytes(src) == u32::MAX {
        return true;
    }
    let src = u32::from_ne_bytes(src);
    // Most sources are none of the router's addresses: one bit says so.
    if settings.local_filter & local_filter_bit(src) == 0 {
        return false;
    }
    let count = (settings.local_count as usize).min(MAX_LOCAL_ADDRS);
    let mut i = 0;
    // A bounded `<` loop the verifier follows; `get` keeps every index in range.
    while i < count {
        match settings.local.get(i) {
            Some(&addr) if addr == src => return true,
            Some(_) => i += 1,
            None => return false,
        }
    }
    false
}
