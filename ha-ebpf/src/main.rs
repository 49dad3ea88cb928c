//! The `ha` steering XDP program: frames for a steered prefix are rewritten to the
//! owning web server's MAC and sent straight back out (XDP_TX) or to the LAN
//! interface (XDP_REDIRECT). Everything else is XDP_PASS: the kernel's routes decide.
#![no_std]
#![no_main]

mod bench;
mod csum;
mod mac;
mod maps;
mod parse;

use aya_ebpf::{Global, bindings::xdp_action, macros::xdp, programs::XdpContext};
use aya_log_ebpf::debug;
use ha_common::Counter;
use maps::{HA_HOST_STATS, HA_HOSTS, HA_IFACES, HA_PFX_STATS, HA_TX_PORTS};

/// Non-zero switches on per-packet aya-log lines; set at load time only, so the
/// verifier prunes the logging code when it is off.
#[unsafe(no_mangle)]
static HA_LOG_PACKETS: Global<u8> = Global::new(0);

/// What happens to a frame.
enum Verdict {
    Tx,
    Redirect,
    Pass(Counter),
}

#[xdp]
pub fn ha_steer(ctx: XdpContext) -> u32 {
    let (counter, action) = match steer(&ctx) {
        Verdict::Tx => (Counter::Tx, xdp_action::XDP_TX),
        Verdict::Redirect => (Counter::Redirect, xdp_action::XDP_REDIRECT),
        Verdict::Pass(reason) => (reason, xdp_action::XDP_PASS),
    };
    maps::count(counter);
    action
}

#[inline(always)]
fn steer(ctx: &XdpContext) -> Verdict {
    match try_steer(ctx) {
        Ok(verdict) => verdict,
        Err(reason) => Verdict::Pass(reason),
    }
}

#[inline(always)]
fn try_steer(ctx: &XdpContext) -> Result<Verdict, Counter> {
    // 1. Only frames addressed to the ingress interface's own MAC: a promiscuous or
    //    bridged port must not duplicate traffic meant for someone else.
    let ingress = ctx.ingress_ifindex() as u32;
    let iface = HA_IFACES
        .get(ingress)
        .filter(|iface| iface.is_active())
        .ok_or(Counter::PassUnknownIface)?;
    let eth = parse::ethernet(ctx)?;
    // SAFETY: `eth` is inside the frame.
    if !mac::equal(unsafe { &(*eth).dst_addr }, &iface.mac) {
        return Err(Counter::PassNotOurMac);
    }

    // 2. A well-formed IPv4 header.
    let ip = parse::ipv4(ctx, eth)?;
    // SAFETY: the fixed IPv4 header is inside the frame.
    let dst = unsafe { (*ip).dst_addr };

    // 3. Longest-prefix match of the destination.
    let prefix = maps::lookup_prefix(dst).ok_or(Counter::PassNoPrefix)?;

    // 4. The owner must be ready (MAC known, not disabled).
    let host = HA_HOSTS
        .get(prefix.host)
        .filter(|host| host.is_ready())
        .ok_or(Counter::PassHostNotReady)?;

    // 5. TTL 0 or 1: let the kernel send ICMP time exceeded.
    // SAFETY: the fixed IPv4 header is inside the frame.
    let (ttl, proto) = unsafe { ((*ip).ttl, (*ip).proto) };
    if ttl <= 1 {
        return Err(Counter::PassTtl);
    }

    // 7 (decided before rewriting, so a missing port leaves the frame untouched
    //    for the kernel). The redirect helper only records the target; the frame is
    //    sent after the program returns. Flag XDP_PASS: a missing entry passes.
    let verdict = if host.egress_ifindex == ingress {
        Verdict::Tx
    } else {
        HA_TX_PORTS
            .redirect(host.egress_ifindex, u64::from(xdp_action::XDP_PASS))
            .map_err(|_| Counter::PassNoTxPort)?;
        Verdict::Redirect
    };

    // 6. Rewrite: MACs, TTL - 1, incremental checksum. L4 checksums do not cover
    //    these fields and stay as they are.
    // SAFETY: `eth` and `ip` are inside the frame (checked by the parsers).
    unsafe {
        mac::copy(&mut (*eth).dst_addr, &host.mac);
        mac::copy(&mut (*eth).src_addr, &host.egress_mac);
        (*ip).ttl = ttl - 1;
        let check = u16::from_be_bytes((*ip).check);
        let old = u16::from_be_bytes([ttl, proto]);
        let new = u16::from_be_bytes([ttl - 1, proto]);
        (*ip).check = csum::update(check, old, new).to_be_bytes();
    }

    // 8. Traffic per host and per prefix.
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    maps::add_traffic(&HA_HOST_STATS, prefix.host, bytes);
    maps::add_traffic(&HA_PFX_STATS, prefix.prefix_id, bytes);

    if HA_LOG_PACKETS.load() != 0 {
        debug!(
            ctx,
            "steer {:i} -> host {} ({:mac})",
            u32::from_be_bytes(dst),
            prefix.host,
            host.mac
        );
    }
    Ok(verdict)
}

/// Passes everything. Attached to the far end of a veth that receives native XDP_TX
/// or XDP_REDIRECT frames: the kernel only delivers those when the receiving veth
/// runs an XDP program (see the README's notes on veth).
#[xdp]
pub fn ha_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
