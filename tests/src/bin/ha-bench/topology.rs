//! The veth topology of the forwarding benchmark, in three namespaces:
//!
//! ```text
//!  ha-b-gen                 ha-b-rtr                      ha-b-rcv
//!  hbg0 ─────────────────── hbr0 (router ingress)
//!  (ha_gen sends here;      hbr1 ───────────────────────── hbc0 (ha_count)
//!   ha_count receives what  (XDP_REDIRECT and kernel
//!   XDP_TX sends back)       forwarding leave here)
//! ```
//!
//! XDP_TX sends a frame back out of the interface it came in on, so on the TX path
//! the "web server" sits on the generator's segment (a one-armed router) and the
//! generator's own veth end counts the forwarded frames. The REDIRECT path and the
//! kernel's routing forward to hbr1, and the receiver namespace counts them.

use std::{collections::BTreeMap, ffi::CString, fs, net::Ipv4Addr};

use anyhow::{Context as _, bail};
use ha_tests::{lab::ns::Netns, packet::Mac};

use crate::sched;

pub const GEN_DEV: &str = "hbg0";
pub const RTR_IN: &str = "hbr0";
pub const RTR_OUT: &str = "hbr1";
pub const RCV_DEV: &str = "hbc0";

pub const GEN_MAC: Mac = [0x02, 0x48, 0x42, 0, 0x01, 0x02];
pub const RTR_IN_MAC: Mac = [0x02, 0x48, 0x42, 0, 0x01, 0x01];
pub const RTR_OUT_MAC: Mac = [0x02, 0x48, 0x42, 0, 0x02, 0x01];
pub const RCV_MAC: Mac = [0x02, 0x48, 0x42, 0, 0x02, 0x02];

pub const GEN_IP: Ipv4Addr = Ipv4Addr::new(10, 11, 1, 2);
const RTR_IN_IP: &str = "10.11.1.1/24";
const GEN_CIDR: &str = "10.11.1.2/24";
const RTR_OUT_IP: &str = "10.11.2.1/24";
const RCV_CIDR: &str = "10.11.2.2/24";
const RCV_IP: &str = "10.11.2.2";
/// The steered VIP subnet (the lab's first) and the VIP the generator sends to.
pub const VIP_NET: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 32);
pub const VIP_LEN: u32 = 27;
pub const VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 33);

/// CPU of the generator (and of everything not the router).
pub const GEN_CPU: usize = 0;
/// CPU of the router's receive processing (threaded NAPI of hbr0).
pub const ROUTER_CPU: usize = 1;
/// SCHED_FIFO priority of the router's NAPI thread (the kernel's own threaded
/// interrupt handlers run at 50).
pub const ROUTER_PRIORITY: i32 = 50;

/// The three namespaces (deleted with their links on drop) and the interface
/// indices, each in its own namespace.
pub struct Topology {
    pub generator: Netns,
    pub router: Netns,
    pub receiver: Netns,
    pub gen_ifindex: u32,
    pub rtr_in_ifindex: u32,
    pub rtr_out_ifindex: u32,
    pub rcv_ifindex: u32,
}

fn mac_text(mac: Mac) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

impl Topology {
    pub fn build() -> anyhow::Result<Self> {
        let generator = Netns::create("ha-b-gen")?;
        let router = Netns::create("ha-b-rtr")?;
        let receiver = Netns::create("ha-b-rcv")?;
        // No IPv6 chatter (router solicitations, MLD) in the counts.
        for ns in [&generator, &router, &receiver] {
            ns.exec(
                "sysctl",
                &[
                    "-qw",
                    "net.ipv6.conf.all.disable_ipv6=1",
                    "net.ipv6.conf.default.disable_ipv6=1",
                ],
            )?;
        }
        generator.ip(&[
            "link",
            "add",
            GEN_DEV,
            "address",
            &mac_text(GEN_MAC),
            "type",
            "veth",
            "peer",
            "name",
            RTR_IN,
            "address",
            &mac_text(RTR_IN_MAC),
            "netns",
            router.name(),
        ])?;
        router.ip(&[
            "link",
            "add",
            RTR_OUT,
            "address",
            &mac_text(RTR_OUT_MAC),
            "type",
            "veth",
            "peer",
            "name",
            RCV_DEV,
            "address",
            &mac_text(RCV_MAC),
            "netns",
            receiver.name(),
        ])?;
        generator.ip(&["addr", "add", GEN_CIDR, "dev", GEN_DEV])?;
        router.ip(&["addr", "add", RTR_IN_IP, "dev", RTR_IN])?;
        router.ip(&["addr", "add", RTR_OUT_IP, "dev", RTR_OUT])?;
        receiver.ip(&["addr", "add", RCV_CIDR, "dev", RCV_DEV])?;
        generator.ip(&["link", "set", GEN_DEV, "up"])?;
        router.ip(&["link", "set", RTR_IN, "up"])?;
        router.ip(&["link", "set", RTR_OUT, "up"])?;
        receiver.ip(&["link", "set", RCV_DEV, "up"])?;

        // The kernel's slow path: a static route to the VIP subnet and a permanent
        // neighbour, so forwarding never waits for ARP.
        router.exec(
            "sysctl",
            &[
                "-qw",
                "net.ipv4.ip_forward=1",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
                "net.ipv4.conf.hbr0.rp_filter=0",
            ],
        )?;
        let vip_net = format!("{VIP_NET}/{VIP_LEN}");
        router.ip(&["route", "add", &vip_net, "via", RCV_IP, "dev", RTR_OUT])?;
        router.ip(&[
            "neigh",
            "replace",
            RCV_IP,
            "lladdr",
            &mac_text(RCV_MAC),
            "nud",
            "permanent",
            "dev",
            RTR_OUT,
        ])?;

        // Frames sent by XDP into hbr0 are only received when hbr0 has NAPI: an XDP
        // program, or GRO for the kernel-forwarding case. GRO stays on throughout, so
        // the NAPI instance (and its thread) survives attaching and detaching.
        router.exec("ethtool", &["-K", RTR_IN, "gro", "on"])?;
        router.write_sysfs(&format!("/sys/class/net/{RTR_IN}/threaded"), "1")?;

        let gen_ifindex = ifindex_in(&generator, GEN_DEV)?;
        let rtr_in_ifindex = ifindex_in(&router, RTR_IN)?;
        let rtr_out_ifindex = ifindex_in(&router, RTR_OUT)?;
        let rcv_ifindex = ifindex_in(&receiver, RCV_DEV)?;
        let topology = Self {
            generator,
            router,
            receiver,
            gen_ifindex,
            rtr_in_ifindex,
            rtr_out_ifindex,
            rcv_ifindex,
        };
        topology.pin_router_napi()?;
        Ok(topology)
    }

    /// Pins the NAPI thread(s) of the router's ingress veth to [`ROUTER_CPU`] and makes
    /// them SCHED_FIFO, so other work on the machine (builds, other tests) moves to
    /// the other CPU instead of taking turns with the router; their pids. Called
    /// again after every change of program (cheap).
    pub fn pin_router_napi(&self) -> anyhow::Result<Vec<i32>> {
        let pids = napi_threads(RTR_IN)?;
        if pids.is_empty() {
            bail!("no napi/{RTR_IN}-* kernel thread: threaded NAPI is not on");
        }
        for &pid in &pids {
            sched::pin_to_cpu(pid, ROUTER_CPU)
                .with_context(|| format!("pinning napi/{RTR_IN} (pid {pid})"))?;
            sched::make_fifo(pid, ROUTER_PRIORITY)
                .with_context(|| format!("napi/{RTR_IN} (pid {pid}) to SCHED_FIFO"))?;
        }
        Ok(pids)
    }

    /// `ethtool -S` of `dev` in `ns`, as name → value.
    pub fn veth_stats(ns: &Netns, dev: &str) -> anyhow::Result<BTreeMap<String, u64>> {
        let text = ns.exec("ethtool", &["-S", dev])?;
        Ok(text
            .lines()
            .filter_map(|line| {
                let (key, value) = line.split_once(':')?;
                Some((key.trim().to_owned(), value.trim().parse().ok()?))
            })
            .collect())
    }
}

/// Creates the idle veth pair `hbi0`/`hbi1` in `ns` (no address, no traffic) and
/// returns the index of `hbi0`, to keep a test-run program attached.
pub fn idle_pair(ns: &Netns) -> anyhow::Result<u32> {
    ns.ip(&[
        "link", "add", "hbi0", "type", "veth", "peer", "name", "hbi1",
    ])?;
    ifindex_in(ns, "hbi0")
}

/// Index of `dev` inside `ns`.
fn ifindex_in(ns: &Netns, dev: &str) -> anyhow::Result<u32> {
    let _inside = ns.enter()?;
    ifindex(dev)
}

/// Index of `dev` in the calling thread's namespace.
pub fn ifindex(dev: &str) -> anyhow::Result<u32> {
    let name = CString::new(dev)?;
    // SAFETY: `name` is a valid NUL-terminated string for the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        bail!("if_nametoindex({dev}): {}", std::io::Error::last_os_error());
    }
    Ok(index)
}

/// Pids of the kernel threads `napi/DEV-ID`.
pub fn napi_threads(dev: &str) -> anyhow::Result<Vec<i32>> {
    let prefix = format!("napi/{dev}-");
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").context("listing /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        // A task may exit between the listing and the read.
        let Ok(comm) = fs::read_to_string(entry.path().join("comm")) else {
            continue;
        };
        if comm.trim_end().starts_with(&prefix) {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// Time task `pid` has spent on a CPU, in ns (first field of /proc/PID/schedstat).
pub fn task_cpu_ns(pid: i32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/schedstat");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    text.split_whitespace()
        .next()
        .and_then(|field| field.parse().ok())
        .with_context(|| format!("malformed {path}: {text:?}"))
}

/// Jiffies one CPU spent, from /proc/stat.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTimes {
    /// Not idle (user, system, irq, softirq, steal).
    pub busy: u64,
    /// User and nice: processes, never the router (whose work is all in the kernel).
    pub user: u64,
    pub total: u64,
}

/// [`CpuTimes`] of every CPU.
pub fn cpu_times() -> anyhow::Result<Vec<CpuTimes>> {
    let text = fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let mut cpus = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(label) = fields.next() else { continue };
        if !label.starts_with("cpu") || label == "cpu" {
            continue;
        }
        let values: Vec<u64> = fields.filter_map(|f| f.parse().ok()).collect();
        let field = |i: usize| values.get(i).copied().unwrap_or(0);
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        let total: u64 = (0..8).map(field).sum();
        cpus.push(CpuTimes {
            busy: total - field(3) - field(4),
            user: field(0) + field(1),
            total,
        });
    }
    Ok(cpus)
}
