//! The steering program under test: the real object, loaded fresh (no pinning), with
//! typed handles to all of its maps and a BPF_PROG_TEST_RUN wrapper.

use std::{fmt, net::Ipv4Addr, time::Duration};

use aya::{
    Ebpf,
    maps::{
        Array, DevMapHash, HashMap, MapData, PerCpuArray,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{ProgramError, SchedClassifier, TestRun as _, TestRunOptions, Xdp},
};
use ha_common::{
    Counter, FlowCounter, FlowEntry, FlowKey, HostEntry, IFACE_ACTIVE, IfaceEntry, MAP_COUNTERS,
    MAP_FLOW_COUNTERS, MAP_FLOWS, MAP_HOST_STATS, MAP_HOSTS, MAP_IFACES, MAP_PFX_STATS,
    MAP_PREFIXES, MAP_SETTINGS, MAP_TX_PORTS, PROG_LEARN, PROG_STEER, PrefixEntry, Settings,
    Traffic,
};

use crate::packet::Mac;

/// An XDP verdict (`enum xdp_action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Aborted,
    Drop,
    Pass,
    Tx,
    Redirect,
    /// Anything else the program returned.
    Other(u32),
}

impl From<u32> for Action {
    fn from(code: u32) -> Self {
        match code {
            0 => Self::Aborted,
            1 => Self::Drop,
            2 => Self::Pass,
            3 => Self::Tx,
            4 => Self::Redirect,
            other => Self::Other(other),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Aborted => f.write_str("XDP_ABORTED"),
            Self::Drop => f.write_str("XDP_DROP"),
            Self::Pass => f.write_str("XDP_PASS"),
            Self::Tx => f.write_str("XDP_TX"),
            Self::Redirect => f.write_str("XDP_REDIRECT"),
            Self::Other(code) => write!(f, "unknown XDP action {code}"),
        }
    }
}

/// How to present a frame to the program.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Ingress interface; `None`: the namespace's loopback (ifindex 1).
    pub ingress_ifindex: Option<u32>,
    /// Bytes at the start of the input that become XDP metadata (`data_meta`) in
    /// front of the frame: a multiple of 4, at most 32.
    pub meta_len: u32,
    /// How many times the kernel runs the program on the same buffer (0 or 1: once).
    pub repeat: u32,
}

/// What one BPF_PROG_TEST_RUN call returned.
#[derive(Debug)]
pub struct RunResult {
    pub action: Action,
    /// The frame after the program (metadata stripped).
    pub output: Vec<u8>,
    /// Average time per run, as measured by the kernel.
    pub duration: Duration,
}

/// The loaded steering program and its maps.
pub struct Steer {
    ebpf: Ebpf,
    prefixes: LpmTrie<MapData, [u8; 4], PrefixEntry>,
    hosts: Array<MapData, HostEntry>,
    ifaces: Array<MapData, IfaceEntry>,
    tx_ports: DevMapHash<MapData>,
    counters: PerCpuArray<MapData, u64>,
    host_stats: PerCpuArray<MapData, Traffic>,
    pfx_stats: PerCpuArray<MapData, Traffic>,
    flows: HashMap<MapData, FlowKey, FlowEntry>,
    settings: Array<MapData, Settings>,
    flow_counters: PerCpuArray<MapData, u64>,
}

/// Size of `struct xdp_md` (six u32 fields), the XDP test-run context.
const XDP_MD_LEN: usize = 24;
/// Headroom for anything the program could add in front of the frame.
const OUTPUT_SLACK: usize = 256;
/// Size of `struct __sk_buff`, the TC test-run context, and the offsets of its
/// `ingress_ifindex` and `mark` fields (include/uapi/linux/bpf.h).
const SK_BUFF_LEN: usize = 192;
const SK_BUFF_INGRESS_IFINDEX: usize = 36;
const SK_BUFF_MARK: usize = 8;

impl Steer {
    /// Loads the embedded object and the `ha_steer` program, with empty maps of its own.
    pub fn load() -> Self {
        let mut ebpf = Ebpf::load(ha_user::EBPF_OBJECT).expect("loading the ha eBPF object");
        let program: &mut Xdp = ebpf
            .program_mut(PROG_STEER)
            .unwrap_or_else(|| panic!("program {PROG_STEER} missing from the object"))
            .try_into()
            .unwrap_or_else(|e| panic!("program {PROG_STEER} is not XDP: {e}"));
        program
            .load()
            .unwrap_or_else(|e| panic!("loading {PROG_STEER} into the kernel: {e:?}"));
        let learn: &mut SchedClassifier = ebpf
            .program_mut(PROG_LEARN)
            .unwrap_or_else(|| panic!("program {PROG_LEARN} missing from the object"))
            .try_into()
            .unwrap_or_else(|e| panic!("program {PROG_LEARN} is not a classifier: {e}"));
        learn
            .load()
            .unwrap_or_else(|e| panic!("loading {PROG_LEARN} into the kernel: {e:?}"));
        macro_rules! take {
            ($name:expr) => {{
                let map = ebpf
                    .take_map($name)
                    .unwrap_or_else(|| panic!("map {} missing from the object", $name));
                map.try_into()
                    .unwrap_or_else(|e| panic!("map {} has an unexpected type: {e}", $name))
            }};
        }
        Self {
            prefixes: take!(MAP_PREFIXES),
            hosts: take!(MAP_HOSTS),
            ifaces: take!(MAP_IFACES),
            tx_ports: take!(MAP_TX_PORTS),
            counters: take!(MAP_COUNTERS),
            host_stats: take!(MAP_HOST_STATS),
            pfx_stats: take!(MAP_PFX_STATS),
            flows: take!(MAP_FLOWS),
            settings: take!(MAP_SETTINGS),
            flow_counters: take!(MAP_FLOW_COUNTERS),
            ebpf,
        }
    }

    fn program(&self) -> &Xdp {
        self.ebpf
            .program(PROG_STEER)
            .and_then(|program| program.try_into().ok())
            .expect("the program was loaded as XDP by Steer::load")
    }

    /// Declares `ifindex` an interface the program runs on, with its own MAC.
    pub fn set_iface(&mut self, ifindex: u32, mac: Mac) {
        let entry = IfaceEntry {
            mac,
            flags: IFACE_ACTIVE,
        };
        self.ifaces
            .set(ifindex, entry, 0)
            .unwrap_or_else(|e| panic!("{MAP_IFACES}[{ifindex}] = {entry:?}: {e}"));
    }

    /// Writes host `id`.
    pub fn set_host(&mut self, id: u32, entry: HostEntry) {
        self.hosts
            .set(id, entry, 0)
            .unwrap_or_else(|e| panic!("{MAP_HOSTS}[{id}] = {entry:?}: {e}"));
    }

    /// Maps `addr/len` to `entry`.
    pub fn set_prefix(&mut self, addr: Ipv4Addr, len: u32, entry: PrefixEntry) {
        self.prefixes
            .insert(&Key::new(len, addr.octets()), entry, 0)
            .unwrap_or_else(|e| panic!("{MAP_PREFIXES}[{addr}/{len}] = {entry:?}: {e}"));
    }

    /// Declares `ifindex` an interface the program runs on, with its own MAC and
    /// `flags` (`IFACE_ACTIVE`, `IFACE_VERIFY`).
    pub fn set_iface_flags(&mut self, ifindex: u32, mac: Mac, flags: u16) {
        let entry = IfaceEntry { mac, flags };
        self.ifaces
            .set(ifindex, entry, 0)
            .unwrap_or_else(|e| panic!("{MAP_IFACES}[{ifindex}] = {entry:?}: {e}"));
    }

    /// Writes the router-wide settings.
    pub fn set_settings(&mut self, settings: Settings) {
        self.settings
            .set(0, settings, 0)
            .unwrap_or_else(|e| panic!("{MAP_SETTINGS}[0] = {settings:?}: {e}"));
    }

    /// Writes a flow entry.
    pub fn set_flow(&mut self, key: FlowKey, entry: FlowEntry) {
        self.flows
            .insert(key, entry, 0)
            .unwrap_or_else(|e| panic!("{MAP_FLOWS}[{key:?}] = {entry:?}: {e}"));
    }

    /// The flow entry of `key`, if any.
    pub fn flow(&self, key: &FlowKey) -> Option<FlowEntry> {
        self.flows.get(key, 0).ok()
    }

    /// Every flow of the table.
    pub fn flows(&self) -> Vec<(FlowKey, FlowEntry)> {
        self.flows
            .iter()
            .map(|item| item.unwrap_or_else(|e| panic!("reading {MAP_FLOWS}: {e}")))
            .collect()
    }

    /// Removes every flow.
    pub fn clear_flows(&mut self) {
        for (key, _) in self.flows() {
            let _ = self.flows.remove(&key);
        }
    }

    /// The `ha_learn`/`ha_steer` flow counters, summed over CPUs.
    pub fn flow_counters(&self) -> [u64; FlowCounter::COUNT as usize] {
        FlowCounter::ALL.map(|counter| {
            let index = counter as u32;
            self.flow_counters
                .get(&index, 0)
                .unwrap_or_else(|e| panic!("reading {MAP_FLOW_COUNTERS}[{}]: {e}", counter.name()))
                .iter()
                .sum()
        })
    }

    /// Makes `ifindex` a redirect target (the device must exist in this namespace).
    pub fn set_tx_port(&mut self, ifindex: u32) {
        self.tx_ports
            .insert(ifindex, ifindex, None, 0)
            .unwrap_or_else(|e| panic!("{MAP_TX_PORTS}[{ifindex}] = {ifindex}: {e}"));
    }

    /// Runs `frame` once through the program, arriving on the loopback.
    pub fn run(&self, frame: &[u8]) -> RunResult {
        self.run_with(frame, RunOptions::default())
    }

    /// Runs `frame` through the program as `options` say.
    pub fn run_with(&self, frame: &[u8], options: RunOptions) -> RunResult {
        self.try_run_with(frame, options).unwrap_or_else(|e| {
            panic!(
                "BPF_PROG_TEST_RUN of {PROG_STEER} ({options:?}, {} bytes): {e:?}",
                frame.len()
            )
        })
    }

    /// Runs `frame` through the program as `options` say; the kernel's refusal as
    /// an error.
    pub fn try_run_with(
        &self,
        frame: &[u8],
        options: RunOptions,
    ) -> Result<RunResult, ProgramError> {
        let RunOptions {
            ingress_ifindex,
            meta_len,
            repeat,
        } = options;
        let meta = usize::try_from(meta_len).expect("u32 fits in usize");
        let mut data_in = vec![0; meta];
        data_in.extend_from_slice(frame);
        let mut data_out = vec![0; data_in.len() + OUTPUT_SLACK];
        // struct xdp_md { data, data_end, data_meta, ingress_ifindex, rx_queue_index,
        // egress_ifindex }: data is the metadata length, data_end the input length.
        let ctx = (meta_len != 0 || ingress_ifindex.is_some()).then(|| {
            let data_end = u32::try_from(data_in.len()).expect("frame length fits in u32");
            let fields = [meta_len, data_end, 0, ingress_ifindex.unwrap_or(0), 0, 0];
            let ctx: Vec<u8> = fields.iter().flat_map(|f| f.to_ne_bytes()).collect();
            assert_eq!(ctx.len(), XDP_MD_LEN);
            ctx
        });
        let result = self.program().test_run(TestRunOptions {
            data_in: Some(&data_in),
            data_out: Some(&mut data_out),
            ctx_in: ctx.as_deref(),
            repeat,
            ..TestRunOptions::default()
        })?;
        let out_len = usize::try_from(result.data_size_out).expect("u32 fits in usize");
        data_out.truncate(out_len);
        Ok(RunResult {
            action: Action::from(result.return_value),
            output: data_out.split_off(meta.min(out_len)),
            duration: result.duration,
        })
    }

    /// Runs `frame` once through `ha_learn` (TC egress) as if the kernel had
    /// forwarded it from `ingress_ifindex` (0: sent by the router itself). Returns
    /// the TC verdict and the frame as it leaves.
    pub fn run_learn(&self, frame: &[u8], ingress_ifindex: u32) -> (i32, Vec<u8>) {
        self.run_learn_marked(frame, ingress_ifindex, 0)
    }

    /// [`Steer::run_learn`] with `skb->mark` set to `mark`.
    pub fn run_learn_marked(
        &self,
        frame: &[u8],
        ingress_ifindex: u32,
        mark: u32,
    ) -> (i32, Vec<u8>) {
        let program: &SchedClassifier = self
            .ebpf
            .program(PROG_LEARN)
            .and_then(|program| program.try_into().ok())
            .expect("the program was loaded as a classifier by Steer::load");
        // struct __sk_buff (192 bytes on 6.x): only `mark` (offset 8) and
        // `ingress_ifindex` (offset 36) are set; the kernel refuses other non-zero
        // fields it does not accept as input.
        let mut ctx = vec![0u8; SK_BUFF_LEN];
        ctx[SK_BUFF_MARK..SK_BUFF_MARK + 4].copy_from_slice(&mark.to_ne_bytes());
        ctx[SK_BUFF_INGRESS_IFINDEX..SK_BUFF_INGRESS_IFINDEX + 4]
            .copy_from_slice(&ingress_ifindex.to_ne_bytes());
        let mut data_out = vec![0; frame.len() + OUTPUT_SLACK];
        let result = program
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut data_out),
                ctx_in: Some(&ctx),
                ..TestRunOptions::default()
            })
            .unwrap_or_else(|e| {
                panic!(
                    "BPF_PROG_TEST_RUN of {PROG_LEARN} ({} bytes): {e:?}",
                    frame.len()
                )
            });
        let out_len = usize::try_from(result.data_size_out).expect("u32 fits in usize");
        data_out.truncate(out_len);
        (result.return_value as i32, data_out)
    }

    /// Every verdict counter, summed over CPUs, indexed by [`Counter`].
    pub fn counters(&self) -> [u64; Counter::COUNT as usize] {
        Counter::ALL.map(|counter| {
            let index = counter as u32;
            self.counters
                .get(&index, 0)
                .unwrap_or_else(|e| panic!("reading {MAP_COUNTERS}[{}]: {e}", counter.name()))
                .iter()
                .sum()
        })
    }

    /// Traffic steered to host `id`, summed over CPUs.
    pub fn host_traffic(&self, id: u32) -> Traffic {
        sum_traffic(&self.host_stats, MAP_HOST_STATS, id)
    }

    /// Traffic steered for prefix `id`, summed over CPUs.
    pub fn prefix_traffic(&self, id: u32) -> Traffic {
        sum_traffic(&self.pfx_stats, MAP_PFX_STATS, id)
    }
}

fn sum_traffic(map: &PerCpuArray<MapData, Traffic>, name: &str, id: u32) -> Traffic {
    let per_cpu = map
        .get(&id, 0)
        .unwrap_or_else(|e| panic!("reading {name}[{id}]: {e}"));
    per_cpu
        .iter()
        .fold(Traffic::default(), |total, cpu| Traffic {
            packets: total.packets + cpu.packets,
            bytes: total.bytes + cpu.bytes,
        })
}

/// CLOCK_MONOTONIC_COARSE, the clock of `bpf_ktime_get_coarse_ns`.
pub fn coarse_now() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and out-pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC_COARSE)");
    let secs = u64::try_from(ts.tv_sec).expect("the clock is past zero");
    let nanos = u64::try_from(ts.tv_nsec).expect("nanoseconds are positive");
    secs * 1_000_000_000 + nanos
}
