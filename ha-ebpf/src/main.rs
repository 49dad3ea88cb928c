//! The `ha` programs: `ha_steer` (XDP, on every ingress interface) rewrites frames
//! for a steered prefix to the serving web server's MAC and sends them straight back
//! out (XDP_TX) or to the LAN interface (XDP_REDIRECT); everything else is XDP_PASS:
//! the kernel's routes decide. `ha_learn` (TC egress, on the LAN interface) records
//! the flows the kernel forwarded. `ha_pass` passes everything (veth peers).
#![no_std]
#![no_main]

mod csum;
mod flow;
mod learn;
mod mac;
mod maps;
mod parse;
mod source;

use aya_ebpf::{
    Global,
    bindings::xdp_action,
    helpers::generated::bpf_xdp_adjust_tail,
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use aya_log_ebpf::debug;
use ha_common::{
    Counter, FLOW_CT_SYNCED, FlowCounter, IfaceEntry, PrefixEntry, SETTINGS_CT_SYNC, Settings,
    is_sample,
};
use maps::{HA_FLOWS, HA_HOST_STATS, HA_HOSTS, HA_IFACES, HA_PFX_STATS, HA_SETTINGS, HA_TX_PORTS};
use network_types::eth::EthHdr;

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

/// Frames of any size: headers come from the first buffer, the rest is not touched.
#[xdp(frags)]
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

    // 2. A well-formed IPv4 header the kernel would forward as it is: no options,
    //    not a fragment.
    let mut ip = parse::ipv4(ctx, eth)?;

    // 3. A source the kernel's forwarding accepts.
    let settings = HA_SETTINGS.get(0).ok_or(Counter::PassBadSource)?;
    if source::refused(ip.src(), settings) {
        return Err(Counter::PassBadSource);
    }

    // 4. Longest-prefix match of the destination.
    let prefix = maps::lookup_prefix(ip.dst()).ok_or(Counter::PassNoPrefix)?;

    // 5. The host serving this packet's flow: the prefix's owner, or the host an
    //    established flow stays with; on a verifying interface, only a flow the
    //    kernel forwarded recently.
    let prefix_stats = HA_PFX_STATS.get_ptr_mut(prefix.prefix_id);
    let sample = prefix_stats.is_some_and(|slot| {
        // SAFETY: per-CPU slot, only this CPU's program instance touches it.
        is_sample(unsafe { (*slot).packets })
    });
    let host_id = flow_host(ctx, &ip, prefix, iface, ingress, settings, sample)?;

    // 6. That host must be ready (MAC known, not disabled).
    let host = HA_HOSTS
        .get(host_id)
        .filter(|host| host.is_ready())
        .ok_or(Counter::PassHostNotReady)?;
    //    And the frame must not come from it (a server sending to a VIP it holds):
    //    steering would send the server its own frame back.
    // SAFETY: `eth` is inside the frame (checked by the parser).
    if mac::equal(unsafe { &(*eth).src_addr }, &host.mac) {
        return Err(Counter::PassFromHost);
    }

    // 7. TTL 0 or 1: let the kernel send ICMP time exceeded.
    if ip.ttl() <= 1 {
        return Err(Counter::PassTtl);
    }

    // 8. Longer than the egress MTU: the kernel fragments it or, with DF, answers
    //    "fragmentation needed".
    if ip.len > usize::from(host.mtu) {
        return Err(Counter::PassTooBig);
    }

    // 9 (decided before rewriting, so a missing port leaves the frame untouched
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

    // 10. Rewrite as the kernel's forwarding does: MACs, TTL - 1 with its checksum
    //     arithmetic. L4 checksums do not cover these fields and stay as they are.
    // SAFETY: `eth` is inside the frame (checked by the parser).
    unsafe {
        mac::copy(&mut (*eth).dst_addr, &host.mac);
        mac::copy(&mut (*eth).src_addr, &host.egress_mac);
    }
    ip.decrement_ttl();

    // 11. Traffic per host and per prefix (the frame as it arrived).
    let bytes = ip.frame_len as u64;
    maps::add_traffic(&HA_HOST_STATS, host_id, bytes);
    if let Some(slot) = prefix_stats {
        // SAFETY: per-CPU slot, only this CPU's program instance touches it.
        unsafe {
            (*slot).packets += 1;
            (*slot).bytes += bytes;
        }
    }

    if HA_LOG_PACKETS.load() != 0 {
        debug!(
            ctx,
            "steer {:i} -> host {} ({:mac})",
            u32::from_be_bytes(ip.dst()),
            host_id,
            host.mac
        );
    }

    // 12. The kernel trims Ethernet padding off a datagram it forwards; so do we.
    //     Last: the helper invalidates every pointer into the frame.
    let datagram = EthHdr::LEN + ip.len;
    if ip.frame_len > datagram {
        let excess = (ip.frame_len - datagram) as i32;
        // SAFETY: shrinking the frame's tail by less than its length (a multi-buffer
        // frame shrinks from its last buffer). A failure (not expected) leaves the
        // padding in place, which is still a valid frame.
        let _ = unsafe { bpf_xdp_adjust_tail(ctx.ctx, -excess) };
    }
    Ok(verdict)
}

/// The host serving the packet's flow (see `flow.rs`). The flow is looked up when
/// the interface verifies flows, the prefix is moving, or the packet is a sample;
/// otherwise the prefix's owner serves it, without a lookup.
#[inline(always)]
fn flow_host(
    ctx: &XdpContext,
    ip: &parse::Ipv4,
    prefix: &PrefixEntry,
    iface: &IfaceEntry,
    ingress: u32,
    settings: &Settings,
    sample: bool,
) -> Result<u32, Counter> {
    let verify = iface.verifies();
    if !(verify || prefix.is_moving() || sample) {
        return Ok(prefix.host);
    }
    let proto = ip.proto();
    let Some(ports) = parse::ports(ctx, proto) else {
        // Not TCP or UDP: no flow. Verified interfaces leave it to the kernel.
        return if verify {
            Err(Counter::PassUnverified)
        } else {
            Ok(prefix.host)
        };
    };
    let flow = flow::Flow::new(ip.src(), ip.dst(), proto, &ports);
    maps::count_flow(FlowCounter::Lookup);
    let now = flow::now();
    match HA_FLOWS.get_ptr_mut(flow.key) {
        Some(entry) => {
            if verify {
                // SAFETY: `entry` points at a live value of the flow table.
                let (verified, from, flags) =
                    unsafe { ((*entry).verified_ns, (*entry).ingress, (*entry).flags) };
                // A new connection always asks the kernel; so does a flow whose
                // verification is due. Where the rules consult conntrack, so does a
                // flow whose entry the controller does not keep yet, and the end of a
                // TCP connection (conntrack follows it).
                if from != ingress
                    || verified == 0
                    || now.wrapping_sub(verified) >= settings.refresh_ns
                    || flow.is_syn()
                    || (settings.flags & SETTINGS_CT_SYNC != 0
                        && (flags & FLOW_CT_SYNCED == 0 || flow.ends()))
                {
                    return Err(Counter::PassUnverified);
                }
            }
            Ok(flow::known_flow_host(entry, &flow, prefix, now))
        }
        None if verify => Err(Counter::PassUnverified),
        None => {
            let host = flow::unknown_flow_host(prefix, &flow);
            // While the prefix moves, every flow is recorded, a new connection at its
            // SYN; a sample records what is past its SYN (a spoofed SYN proves nothing).
            if prefix.is_moving() || !flow.is_syn() {
                flow::record(&flow, host, prefix, 0, 0, now, FlowCounter::RecordedFast);
            }
            Ok(host)
        }
    }
}

/// Records the flows of the frames the kernel forwarded to the servers (after its
/// firewall), and keeps established flows with their host on the kernel path too.
/// Never drops: TC_ACT_OK whatever happens.
#[classifier]
pub fn ha_learn(ctx: TcContext) -> i32 {
    learn::learn(&ctx);
    aya_ebpf::bindings::TC_ACT_OK
}

/// Passes everything. Attached to the far end of a veth that receives native XDP_TX
/// or XDP_REDIRECT frames: the kernel only delivers those when the receiving veth
/// runs an XDP program (see the README's notes on veth). Frames of any size.
#[xdp(frags)]
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
