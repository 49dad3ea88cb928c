//! The ABI of the benchmark programs (`ha-bench-ebpf`) shared with the benchmark
//! runner (`ha-bench` in `tests/`). None of this is in the production object or in
//! `ha-common`: the controller never loads these programs. The `user` feature adds
//! `aya::Pod` for the runner.
#![no_std]

/// Reference: swaps the Ethernet addresses and returns XDP_TX (the XDP_TX ceiling).
pub const PROG_REF_TX: &str = "ha_ref_tx";
/// Reference: swaps the Ethernet addresses and redirects through [`MAP_REF_PORTS`]
/// slot 0 (the DEVMAP redirect ceiling).
pub const PROG_REF_REDIR: &str = "ha_ref_redir";
/// Traffic generator for BPF_PROG_TEST_RUN live-frames mode: writes
/// [`GLOBAL_GEN_HEADER`] over the start of every frame, counts it, XDP_TX.
pub const PROG_GEN: &str = "ha_gen";
/// Receiver: counts every frame into [`MAP_BENCH_COUNT`] and drops it.
pub const PROG_COUNT: &str = "ha_count";
/// DEVMAP (array) of [`PROG_REF_REDIR`]: slot 0 holds the egress ifindex.
pub const MAP_REF_PORTS: &str = "HA_REF_PORTS";
/// Per-CPU `u64` counters of the benchmark programs, indexed by `BENCH_*`.
pub const MAP_BENCH_COUNT: &str = "HA_BENCH_COUNT";
/// [`GenHeader`] global read by [`PROG_GEN`]; set at load time.
pub const GLOBAL_GEN_HEADER: &str = "HA_GEN_HEADER";
/// [`MAP_BENCH_COUNT`] slot: frames counted (and dropped) by [`PROG_COUNT`].
pub const BENCH_RECEIVED: u32 = 0;
/// [`MAP_BENCH_COUNT`] slot: frames emitted by [`PROG_GEN`].
pub const BENCH_GENERATED: u32 = 1;
/// Number of [`MAP_BENCH_COUNT`] slots.
pub const BENCH_COUNTERS: u32 = 2;

/// Length of the Ethernet + IPv4 + UDP headers that [`PROG_GEN`] writes.
pub const GEN_HEADER_LEN: usize = 42;

/// The headers [`PROG_GEN`] writes over every frame, as 16-bit words in wire
/// order (Ethernet, IPv4 with its checksum, UDP), so the copy needs no byte stores.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GenHeader {
    pub words: [u16; GEN_HEADER_LEN / 2],
}

impl GenHeader {
    /// The header whose wire bytes are `bytes`.
    pub fn from_bytes(bytes: &[u8; GEN_HEADER_LEN]) -> Self {
        let mut words = [0; GEN_HEADER_LEN / 2];
        for (word, pair) in words.iter_mut().zip(bytes.chunks_exact(2)) {
            *word = u16::from_ne_bytes([pair[0], pair[1]]);
        }
        Self { words }
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C), a single array of integers, no padding.
unsafe impl aya::Pod for GenHeader {}

const _: () = assert!(core::mem::size_of::<GenHeader>() == GEN_HEADER_LEN);
