//! The objects loaded once per benchmark family: the production object with the real
//! `ha_steer` (and `ha_pass`), its maps filled directly (as the packet fixtures do),
//! and the benchmark object (`ha-bench-ebpf`, embedded by `tests/build.rs`) with the
//! reference programs, the generator and the counter. Programs are named, whichever
//! object holds them.

use std::net::Ipv4Addr;

use anyhow::{Context as _, ensure};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, DevMap, DevMapHash, HashMap, LpmTrie, PerCpuArray, lpm_trie::Key},
    programs::{TestRun as _, TestRunOptions, Xdp, XdpMode, xdp::XdpLinkId},
};
use ha_bench_common::{
    BENCH_COUNTERS, GLOBAL_GEN_HEADER, GenHeader, MAP_BENCH_COUNT, MAP_REF_PORTS,
};
use ha_common::{
    Counter, FlowEntry, FlowKey, HOST_READY, HostEntry, IFACE_ACTIVE, IfaceEntry, MAP_COUNTERS,
    MAP_FLOWS, MAP_HOSTS, MAP_IFACES, MAP_PREFIXES, MAP_SETTINGS, MAP_TX_PORTS, PrefixEntry,
    Settings,
};
use ha_tests::packet::Mac;

/// The benchmark programs (`ha-bench-ebpf`), built by `tests/build.rs`.
static BENCH_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ha-bench"));

/// Size of `struct xdp_md`, the XDP test-run context.
const XDP_MD_LEN: usize = 24;

pub struct Object {
    /// The production object (`ha_user::EBPF_OBJECT`).
    ha: Ebpf,
    /// The benchmark object.
    bench: Ebpf,
}

impl Object {
    /// Loads both objects; `ha_gen` writes `header` over its frames.
    pub fn load(header: &GenHeader) -> anyhow::Result<Self> {
        let ha = Ebpf::load(ha_user::EBPF_OBJECT).context("loading the ha eBPF object")?;
        let bench = EbpfLoader::new()
            .override_global(GLOBAL_GEN_HEADER, header, true)
            .load(BENCH_OBJECT)
            .context("loading the benchmark eBPF object")?;
        Ok(Self { ha, bench })
    }

    /// The object that holds program `name`.
    fn holder(&self, name: &str) -> anyhow::Result<&Ebpf> {
        [&self.ha, &self.bench]
            .into_iter()
            .find(|ebpf| ebpf.program(name).is_some())
            .with_context(|| format!("program {name} is in neither object"))
    }

    /// Program `name`, loaded into the kernel on first use.
    pub fn program(&mut self, name: &str) -> anyhow::Result<&mut Xdp> {
        let ebpf = if self.ha.program(name).is_some() {
            &mut self.ha
        } else {
            &mut self.bench
        };
        let program: &mut Xdp = ebpf
            .program_mut(name)
            .with_context(|| format!("program {name} is in neither object"))?
            .try_into()
            .with_context(|| format!("program {name} is not XDP"))?;
        if program.fd().is_err() {
            program
                .load()
                .with_context(|| format!("loading {name} into the kernel"))?;
        }
        Ok(program)
    }

    /// Program `name`, which must have been loaded already (shared, for threads).
    pub fn loaded(&self, name: &str) -> anyhow::Result<&Xdp> {
        let program: &Xdp = self
            .holder(name)?
            .program(name)
            .with_context(|| format!("program {name} is in neither object"))?
            .try_into()
            .with_context(|| format!("program {name} is not XDP"))?;
        ensure!(program.fd().is_ok(), "program {name} is not loaded");
        Ok(program)
    }

    /// Attaches `name` in native (driver) mode to `ifindex` of the calling thread's
    /// network namespace.
    pub fn attach(&mut self, name: &str, ifindex: u32) -> anyhow::Result<XdpLinkId> {
        self.program(name)?
            .attach_to_if_index(ifindex, XdpMode::Driver)
            .with_context(|| format!("attaching {name} to ifindex {ifindex} (native mode)"))
    }

    pub fn detach(&mut self, name: &str, link: XdpLinkId) -> anyhow::Result<()> {
        self.program(name)?
            .detach(link)
            .with_context(|| format!("detaching {name}"))
    }

    /// Declares `ifindex` a steering interface with MAC `mac`.
    pub fn set_iface(&mut self, ifindex: u32, mac: Mac) -> anyhow::Result<()> {
        self.set_iface_flags(ifindex, mac, IFACE_ACTIVE)
    }

    /// The same with `flags` (`IFACE_VERIFY`: the interface verifies flows).
    pub fn set_iface_flags(&mut self, ifindex: u32, mac: Mac, flags: u16) -> anyhow::Result<()> {
        let mut ifaces: Array<_, IfaceEntry> = map(&mut self.ha, MAP_IFACES)?;
        ifaces
            .set(ifindex, IfaceEntry { mac, flags }, 0)
            .with_context(|| format!("{MAP_IFACES}[{ifindex}]"))
    }

    /// Writes the router-wide settings.
    pub fn set_settings(&mut self, settings: Settings) -> anyhow::Result<()> {
        let mut table: Array<_, Settings> = map(&mut self.ha, MAP_SETTINGS)?;
        table
            .set(0, settings, 0)
            .with_context(|| format!("{MAP_SETTINGS}[0]"))
    }

    /// Writes a flow entry.
    pub fn set_flow(&mut self, key: FlowKey, entry: FlowEntry) -> anyhow::Result<()> {
        let mut flows: HashMap<_, FlowKey, FlowEntry> = map(&mut self.ha, MAP_FLOWS)?;
        flows
            .insert(key, entry, 0)
            .with_context(|| format!("{MAP_FLOWS}[{key:?}]"))
    }

    /// Host `id` is ready at `mac`, behind `egress_ifindex` whose MAC is `egress_mac`.
    pub fn set_host(
        &mut self,
        id: u32,
        mac: Mac,
        egress_mac: Mac,
        egress_ifindex: u32,
    ) -> anyhow::Result<()> {
        let mut hosts: Array<_, HostEntry> = map(&mut self.ha, MAP_HOSTS)?;
        let entry = HostEntry {
            mac,
            egress_mac,
            mtu: 1500,
            _pad: [0; 2],
            egress_ifindex,
            flags: HOST_READY,
        };
        hosts
            .set(id, entry, 0)
            .with_context(|| format!("{MAP_HOSTS}[{id}]"))
    }

    /// Steers `addr/len` to host `host`.
    pub fn set_prefix(&mut self, addr: Ipv4Addr, len: u32, host: u32) -> anyhow::Result<()> {
        let mut prefixes: LpmTrie<_, [u8; 4], PrefixEntry> = map(&mut self.ha, MAP_PREFIXES)?;
        let entry = PrefixEntry::owned(host, host);
        prefixes
            .insert(&Key::new(len, addr.octets()), entry, 0)
            .with_context(|| format!("{MAP_PREFIXES}[{addr}/{len}]"))
    }

    /// Points `addr/len` at `host`, moving from `prev` (`PFX_MOVING`: every packet
    /// of the prefix looks its flow up); the prefix id is `host`'s, as above.
    pub fn set_moving_prefix(
        &mut self,
        addr: Ipv4Addr,
        len: u32,
        host: u32,
        prev: u32,
    ) -> anyhow::Result<()> {
        let mut prefixes: LpmTrie<_, [u8; 4], PrefixEntry> = map(&mut self.ha, MAP_PREFIXES)?;
        let entry = PrefixEntry::moving(host, prev, prev);
        prefixes
            .insert(&Key::new(len, addr.octets()), entry, 0)
            .with_context(|| format!("{MAP_PREFIXES}[{addr}/{len}]"))
    }

    /// Makes `ifindex` (in the calling thread's namespace) a redirect target of
    /// `ha_steer`.
    pub fn set_tx_port(&mut self, ifindex: u32) -> anyhow::Result<()> {
        let mut ports: DevMapHash<_> = map(&mut self.ha, MAP_TX_PORTS)?;
        ports
            .insert(ifindex, ifindex, None, 0)
            .with_context(|| format!("{MAP_TX_PORTS}[{ifindex}]"))
    }

    /// Sets the egress of `ha_ref_redir` (in the calling thread's namespace).
    pub fn set_ref_port(&mut self, ifindex: u32) -> anyhow::Result<()> {
        let mut ports: DevMap<_> = map(&mut self.bench, MAP_REF_PORTS)?;
        ports
            .set(0, ifindex, None, 0)
            .with_context(|| format!("{MAP_REF_PORTS}[0] = {ifindex}"))
    }

    /// `ha_steer` verdict counter `counter`, summed over CPUs.
    pub fn counter(&self, counter: Counter) -> anyhow::Result<u64> {
        let map: PerCpuArray<_, u64> = map_ref(&self.ha, MAP_COUNTERS)?;
        let values = map
            .get(&(counter as u32), 0)
            .with_context(|| format!("reading {MAP_COUNTERS}[{}]", counter.name()))?;
        Ok(values.iter().sum())
    }

    /// Benchmark counter `slot` (`BENCH_*`), summed over CPUs.
    pub fn bench_count(&self, slot: u32) -> anyhow::Result<u64> {
        ensure!(slot < BENCH_COUNTERS, "no benchmark counter {slot}");
        let map: PerCpuArray<_, u64> = map_ref(&self.bench, MAP_BENCH_COUNT)?;
        let values = map
            .get(&slot, 0)
            .with_context(|| format!("reading {MAP_BENCH_COUNT}[{slot}]"))?;
        Ok(values.iter().sum())
    }
}

fn map<'a, M>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<M>
where
    M: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .map_mut(name)
        .with_context(|| format!("map {name} missing from the object"))?;
    M::try_from(map).with_context(|| format!("map {name} has an unexpected type"))
}

fn map_ref<'a, M>(ebpf: &'a Ebpf, name: &str) -> anyhow::Result<M>
where
    M: TryFrom<&'a aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .map(name)
        .with_context(|| format!("map {name} missing from the object"))?;
    M::try_from(map).with_context(|| format!("map {name} has an unexpected type"))
}

/// One BPF_PROG_TEST_RUN of `program` on `frame`, `repeat` times on one buffer,
/// without copying the frame back; the program's verdict and the kernel's average
/// time per run.
pub fn test_run(program: &Xdp, frame: &[u8], repeat: u32) -> anyhow::Result<(u32, u64)> {
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..TestRunOptions::default()
        })
        .context("BPF_PROG_TEST_RUN")?;
    Ok((
        result.return_value,
        u64::try_from(result.duration.as_nanos())?,
    ))
}

/// `struct xdp_md` for a test run of `frame_len` bytes arriving on `ifindex`.
pub fn xdp_md(frame_len: usize, ifindex: u32) -> anyhow::Result<Vec<u8>> {
    let data_end = u32::try_from(frame_len)?;
    // data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex
    let fields = [0, data_end, 0, ifindex, 0, 0];
    let ctx: Vec<u8> = fields.iter().flat_map(|f: &u32| f.to_ne_bytes()).collect();
    ensure!(ctx.len() == XDP_MD_LEN);
    Ok(ctx)
}
