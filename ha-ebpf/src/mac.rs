//! MAC addresses as three 16-bit words. Plain `[u8; 6]` assignment and comparison
//! compile to out-of-line byte loops (memcmp, bcmp) on the BPF target, and unaligned
//! reads to six byte loads each; three aligned word moves are three instructions.
//!
//! Alignment: map values are 8-byte aligned and MACs sit at even offsets in them;
//! frame data starts at least 2-byte aligned (the drivers' headroom, and nothing in
//! `ha` moves the start of a frame), so every MAC in a frame is 2-byte aligned too.

/// `a == b`.
#[inline(always)]
pub fn equal(a: &[u8; 6], b: &[u8; 6]) -> bool {
    let (a, b) = (a.as_ptr().cast::<u16>(), b.as_ptr().cast::<u16>());
    // SAFETY: both point to 6 readable, 2-byte aligned bytes (module docs).
    unsafe {
        (a.read() ^ b.read())
            | (a.add(1).read() ^ b.add(1).read())
            | (a.add(2).read() ^ b.add(2).read())
            == 0
    }
}

/// `*dst = *src`.
#[inline(always)]
pub fn copy(dst: &mut [u8; 6], src: &[u8; 6]) {
    let (d, s) = (dst.as_mut_ptr().cast::<u16>(), src.as_ptr().cast::<u16>());
    // SAFETY: both point to 6 bytes, 2-byte aligned (module docs), `dst` writable.
    unsafe {
        d.write(s.read());
        d.add(1).write(s.add(1).read());
        d.add(2).write(s.add(2).read());
    }
}
