//! MAC addresses as three 16-bit words. Plain `[u8; 6]` assignment and comparison
//! compile to out-of-line byte loops (memcpy, bcmp) on the BPF target; three word
//! moves are what the JIT turns into three instructions each way.

/// `a == b`.
#[inline(always)]
pub fn equal(a: &[u8; 6], b: &[u8; 6]) -> bool {
    let (a, b) = (a.as_ptr().cast::<u16>(), b.as_ptr().cast::<u16>());
    // SAFETY: both point to 6 readable bytes; unaligned reads are allowed.
    unsafe {
        (a.read_unaligned() ^ b.read_unaligned())
            | (a.add(1).read_unaligned() ^ b.add(1).read_unaligned())
            | (a.add(2).read_unaligned() ^ b.add(2).read_unaligned())
            == 0
    }
}

/// `*dst = *src`.
#[inline(always)]
pub fn copy(dst: &mut [u8; 6], src: &[u8; 6]) {
    let (d, s) = (dst.as_mut_ptr().cast::<u16>(), src.as_ptr().cast::<u16>());
    // SAFETY: both point to 6 bytes, `dst` writable; unaligned accesses are allowed.
    unsafe {
        d.write_unaligned(s.read_unaligned());
        d.add(1).write_unaligned(s.add(1).read_unaligned());
        d.add(2).write_unaligned(s.add(2).read_unaligned());
    }
}
