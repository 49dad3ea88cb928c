//! The benchmark programs of `cargo xtask bench`, in an object of their own: the
//! production object (`ha-ebpf`) holds only what the controller loads. They are
//! built like it, by aya-build with the same toolchain and the same release profile
//! (`codegen-units = 1`, see the workspace's Cargo.toml), and embedded in the
//! benchmark runner `ha-bench` by `tests/build.rs`.
//!
//! - `ha_ref_tx`, `ha_ref_redir`: the ceilings `ha_steer` is compared with, the least
//!   work an XDP forwarder can do (swap the MACs, then XDP_TX or a DEVMAP redirect).
//! - `ha_gen`: the traffic generator, run by BPF_PROG_TEST_RUN in live-frames mode.
//!   The kernel recycles the frame buffers and a forwarding router rewrites them, so
//!   every frame gets its headers written again here before it is sent.
//! - `ha_count`: the receiver, counts and drops.
#![no_std]
#![no_main]

use aya_ebpf::{
    Global,
    bindings::xdp_action,
    btf_maps::{DevMap, PerCpuArray},
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use ha_bench_common::{BENCH_COUNTERS, BENCH_GENERATED, BENCH_RECEIVED, GEN_HEADER_LEN, GenHeader};
use network_types::eth::EthHdr;

/// Slot 0: the egress device of `ha_ref_redir`. Written by the benchmark.
#[btf_map]
static HA_REF_PORTS: DevMap<1> = DevMap::new();

/// Frames received by `ha_count` and sent by `ha_gen`, per CPU. Written by them.
#[btf_map]
static HA_BENCH_COUNT: PerCpuArray<u64, { BENCH_COUNTERS as usize }> = PerCpuArray::new();

/// Ethernet + IPv4 + UDP headers `ha_gen` writes over every frame; set at load time.
#[unsafe(no_mangle)]
static HA_GEN_HEADER: Global<GenHeader> = Global::new(GenHeader {
    words: [0; GEN_HEADER_LEN / 2],
});

#[inline(always)]
fn bump(slot: u32) {
    if let Some(count) = HA_BENCH_COUNT.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot, only this CPU's program instance touches it.
        unsafe { *count += 1 };
    }
}

/// Swaps source and destination MAC, as three 16-bit words each (like the kernel's
/// xdp_redirect_map sample); `false` if the frame has no Ethernet header.
#[inline(always)]
fn swap_macs(ctx: &XdpContext) -> bool {
    let start = ctx.data();
    if start + EthHdr::LEN > ctx.data_end() {
        return false;
    }
    let words = start as *mut u16;
    // SAFETY: the Ethernet header (words 0..7) is inside the frame (checked above)
    // and frame data is at least 2-byte aligned.
    unsafe {
        for i in 0..3 {
            let dst = words.add(i).read();
            words.add(i).write(words.add(i + 3).read());
            words.add(i + 3).write(dst);
        }
    }
    true
}

/// The XDP_TX ceiling: swap the MACs and send the frame back out.
#[xdp]
pub fn ha_ref_tx(ctx: XdpContext) -> u32 {
    if !swap_macs(&ctx) {
        return xdp_action::XDP_PASS;
    }
    xdp_action::XDP_TX
}

/// The DEVMAP redirect ceiling: swap the MACs and redirect to `HA_REF_PORTS[0]`
/// (XDP_PASS if the slot is empty).
#[xdp]
pub fn ha_ref_redir(ctx: XdpContext) -> u32 {
    if !swap_macs(&ctx) {
        return xdp_action::XDP_PASS;
    }
    match HA_REF_PORTS.redirect(0, u64::from(xdp_action::XDP_PASS)) {
        Ok(action) | Err(action) => action,
    }
}

/// The generator: writes the configured headers over the frame, counts it and sends
/// it out of the test run's ingress device (live frames turn XDP_TX into a redirect
/// to that device, whose veth peer is the router).
#[xdp]
pub fn ha_gen(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    if start + GEN_HEADER_LEN > ctx.data_end() {
        return xdp_action::XDP_ABORTED;
    }
    let header = HA_GEN_HEADER.load();
    // SAFETY: the headers fit in the frame (checked above); frame data starts at a
    // fixed headroom in the page, so it is at least 2-byte aligned.
    unsafe { (start as *mut [u16; GEN_HEADER_LEN / 2]).write(header.words) };
    bump(BENCH_GENERATED);
    xdp_action::XDP_TX
}

/// The receiver: counts the frame and drops it.
#[xdp]
pub fn ha_count(_ctx: XdpContext) -> u32 {
    bump(BENCH_RECEIVED);
    xdp_action::XDP_DROP
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
