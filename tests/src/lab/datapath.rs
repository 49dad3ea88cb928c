//! The lab's view of the data path: the controller's pinned maps, read in-process,
//! and the pass-everything program the far ends of veth links need in native mode.

use std::{collections::BTreeMap, fmt, net::Ipv4Addr, path::Path};

use anyhow::{Context as _, bail};
use aya::{
    Ebpf,
    maps::{Map, MapData, PerCpuArray, lpm_trie::LpmTrie},
    programs::{Xdp, xdp::XdpMode as AyaXdpMode},
};
use ha_common::{
    Counter, FlowEntry, FlowKey, HostEntry, MAP_COUNTERS, MAP_FLOWS, MAP_HOST_STATS, MAP_HOSTS,
    MAP_PREFIXES, PROG_PASS, PrefixEntry, Traffic,
};
use ipnet::Ipv4Net;

use super::ns;

fn open(pin_dir: &Path, name: &str) -> anyhow::Result<Map> {
    let path = ha_user::kernel::datapath::map_pin_path(pin_dir, name);
    let data = MapData::from_pin(&path)
        .with_context(|| format!("opening the pinned map {}", path.display()))?;
    Map::from_map_data(data).with_context(|| format!("map {name}"))
}

/// Every entry of the pinned prefix table (`HA_PREFIXES`).
pub fn prefix_entries(pin_dir: &Path) -> anyhow::Result<BTreeMap<Ipv4Net, PrefixEntry>> {
    let trie: LpmTrie<MapData, [u8; 4], PrefixEntry> = open(pin_dir, MAP_PREFIXES)?
        .try_into()
        .with_context(|| format!("{MAP_PREFIXES} is not the expected LPM trie"))?;
    let mut entries = BTreeMap::new();
    for item in trie.iter() {
        let (key, value) = item.with_context(|| format!("reading {MAP_PREFIXES}"))?;
        let len = u8::try_from(key.prefix_len()).context("prefix length")?;
        let net = Ipv4Net::new(Ipv4Addr::from(key.data()), len).context("prefix length")?;
        entries.insert(net, value);
    }
    Ok(entries)
}

/// Every entry of the pinned flow table (`HA_FLOWS`).
pub fn flow_entries(pin_dir: &Path) -> anyhow::Result<Vec<(FlowKey, FlowEntry)>> {
    let flows: aya::maps::HashMap<MapData, FlowKey, FlowEntry> = open(pin_dir, MAP_FLOWS)?
        .try_into()
        .context("HA_FLOWS is not the expected hash map")?;
    let mut entries = Vec::new();
    for item in flows.iter() {
        match item {
            Ok(entry) => entries.push(entry),
            // Removed between its key and its value.
            Err(aya::maps::MapError::KeyNotFound) => {}
            Err(err) => return Err(err).context("reading HA_FLOWS"),
        }
    }
    Ok(entries)
}

/// Host table entry `id` (`HA_HOSTS`).
pub fn host_entry(pin_dir: &Path, id: u32) -> anyhow::Result<HostEntry> {
    let hosts: aya::maps::Array<MapData, HostEntry> = open(pin_dir, MAP_HOSTS)?
        .try_into()
        .with_context(|| format!("{MAP_HOSTS} is not the expected array"))?;
    hosts
        .get(&id, 0)
        .with_context(|| format!("reading {MAP_HOSTS}[{id}]"))
}

/// The data path's verdict counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpCounters {
    values: [u64; Counter::COUNT as usize],
}

impl XdpCounters {
    /// Reads `HA_COUNTERS` under `pin_dir`.
    pub fn read(pin_dir: &Path) -> anyhow::Result<XdpCounters> {
        let map: PerCpuArray<MapData, u64> = open(pin_dir, MAP_COUNTERS)?
            .try_into()
            .with_context(|| format!("{MAP_COUNTERS} is not the expected per-CPU array"))?;
        let mut values = [0; Counter::COUNT as usize];
        for (slot, counter) in values.iter_mut().zip(Counter::ALL) {
            *slot = map
                .get(&(counter as u32), 0)
                .with_context(|| format!("reading {MAP_COUNTERS}[{}]", counter.name()))?
                .iter()
                .sum();
        }
        Ok(XdpCounters { values })
    }

    pub fn get(&self, counter: Counter) -> u64 {
        self.values[counter as usize]
    }

    /// What moved since `earlier`.
    pub fn since(&self, earlier: &XdpCounters) -> XdpCounters {
        let mut values = self.values;
        for (value, before) in values.iter_mut().zip(earlier.values) {
            *value = value.wrapping_sub(before);
        }
        XdpCounters { values }
    }
}

impl fmt::Display for XdpCounters {
    /// The non-zero counters: `tx=10 pass_not_ipv4=2`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = Counter::ALL
            .iter()
            .filter(|&&c| self.get(c) != 0)
            .map(|&c| format!("{}={}", c.name(), self.get(c)))
            .collect();
        if parts.is_empty() {
            f.write_str("(all zero)")
        } else {
            f.write_str(&parts.join(" "))
        }
    }
}

/// Packets and bytes steered to host `id` (`HA_HOST_STATS`), summed over CPUs.
pub fn host_traffic(pin_dir: &Path, id: u32) -> anyhow::Result<Traffic> {
    let map: PerCpuArray<MapData, Traffic> = open(pin_dir, MAP_HOST_STATS)?
        .try_into()
        .with_context(|| format!("{MAP_HOST_STATS} is not the expected per-CPU array"))?;
    let per_cpu = map
        .get(&id, 0)
        .with_context(|| format!("reading {MAP_HOST_STATS}[{id}]"))?;
    Ok(per_cpu.iter().fold(Traffic::default(), |sum, t| Traffic {
        packets: sum.packets + t.packets,
        bytes: sum.bytes + t.bytes,
    }))
}

/// `ha_pass` attached to interfaces of the lab (in native mode, the receiving end of
/// every veth that XDP_TX or XDP_REDIRECT frames enter). Not pinned: the links go
/// away when this is dropped.
pub struct PassPrograms {
    ebpf: Ebpf,
}

impl PassPrograms {
    /// Loads `ha_pass` from the object `ha-user` embeds (fresh maps, no pinning).
    pub fn load() -> anyhow::Result<PassPrograms> {
        let mut ebpf = Ebpf::load(ha_user::EBPF_OBJECT).context("loading the ha eBPF object")?;
        let program: &mut Xdp = ebpf
            .program_mut(PROG_PASS)
            .with_context(|| format!("program {PROG_PASS} missing from the object"))?
            .try_into()
            .with_context(|| format!("program {PROG_PASS} is not XDP"))?;
        program
            .load()
            .with_context(|| format!("loading {PROG_PASS}"))?;
        Ok(PassPrograms { ebpf })
    }

    /// Attaches `ha_pass` in native (driver) mode to `iface` in namespace `netns`.
    pub fn attach(&mut self, netns: &str, iface: &str) -> anyhow::Result<()> {
        let program: &mut Xdp = self
            .ebpf
            .program_mut(PROG_PASS)
            .context("ha_pass vanished")?
            .try_into()
            .context("ha_pass is not XDP")?;
        // The interface name is resolved, and the link created, in the calling
        // thread's namespace.
        ns::in_netns(netns, || program.attach(iface, AyaXdpMode::Driver))?
            .with_context(|| format!("attaching {PROG_PASS} to {iface} in {netns}"))?;
        Ok(())
    }
}

/// Removes the pins under `pin_dir` with the controller's own pin remover (links
/// first, which detaches the programs behind them, then the maps), then checks that
/// the directory is gone: anything left in it is not ha's, and fails this rather than
/// be deleted.
pub fn remove_pins(pin_dir: &Path) -> anyhow::Result<()> {
    ha_user::kernel::datapath::detach_all(pin_dir)
        .with_context(|| format!("removing the pins under {}", pin_dir.display()))?;
    if let Ok(entries) = std::fs::read_dir(pin_dir) {
        let left: Vec<String> = entries
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        bail!(
            "{} still holds {}, which ha does not pin: not removing it",
            pin_dir.display(),
            left.join(", ")
        );
    }
    Ok(())
}
