//! The data path as the controller sees it: load and attach the XDP program, and
//! typed handles to every map, opened once.
//!
//! Maps are pinned under the pin directory (`<pin_dir>/<MAP>`) and each attachment's
//! XDP link under `<pin_dir>/link_<iface>`, so the fast path outlives the controller
//! and a new controller adopts what it finds instead of flushing it, once [`layout`]
//! says the pins are of this build's layout.

pub mod attach_error;
pub mod layout;
pub mod learn;
pub mod pin_dir;
pub mod undo;

use std::{
    io,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{
        Array, DevMapHash, HashMap, Map, MapData, MapError, PerCpuArray,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{
        ProgramError, Xdp,
        links::{FdLink, LinkError, PinnedLink},
        xdp::{XdpLink, XdpMode as AyaXdpMode},
    },
};
use ha_common::{
    Counter, FlowCounter, FlowEntry, FlowKey, GLOBAL_LOG_PACKETS, HostEntry, IfaceEntry,
    MAP_COUNTERS, MAP_FLOW_COUNTERS, MAP_FLOWS, MAP_HOST_STATS, MAP_HOSTS, MAP_IFACES, MAP_META,
    MAP_PFX_STATS, MAP_PREFIXES, MAP_SETTINGS, MAP_TX_PORTS, PINNED_MAPS, PROG_STEER, PrefixEntry,
    Settings, TC_LINK_PREFIX, Traffic, XDP_LINK_PREFIX,
};
use ipnet::Ipv4Net;

use self::attach_error::AttachCause;
use crate::{kernel::netdev::Interface, model::XdpMode};

/// Filesystem magic of bpffs (`BPF_FS_MAGIC` in linux/magic.h).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("{} is not on a mounted bpffs; mount it with `mount -t bpf bpf /sys/fs/bpf`", path.display())]
    NotBpffs { path: PathBuf },
    #[error("cannot create the pin directory {}", path.display())]
    PinDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{} {why}: whoever controls it can unlink or rename the pins under {}; remove it \
         or choose another `pin_dir`",
        path.display(),
        pin_dir.display()
    )]
    PinDirUnsafe {
        path: PathBuf,
        pin_dir: PathBuf,
        why: String,
    },
    #[error("no ha data path is pinned at {} (is `ha-user run` up?)", path.display())]
    NotPinned { path: PathBuf },
    #[error("cannot load the eBPF object")]
    Load(#[source] aya::EbpfError),
    #[error("the XDP program `{PROG_STEER}` is missing from the object")]
    MissingProgram,
    #[error("cannot load the XDP program into the kernel")]
    Program(#[source] ProgramError),
    #[error("cannot attach XDP to {iface} in {mode} mode: {}", cause.explain(iface))]
    Attach {
        iface: String,
        mode: XdpMode,
        cause: AttachCause,
        #[source]
        source: ProgramError,
    },
    #[error("cannot attach the flow-learning TC program to the egress of {iface}")]
    Learn {
        iface: String,
        #[source]
        source: ProgramError,
    },
    #[error("cannot take over the pinned link {}", path.display())]
    Adopt {
        path: PathBuf,
        #[source]
        source: LinkError,
    },
    #[error("cannot replace the program behind the pinned link {}", path.display())]
    Replace {
        path: PathBuf,
        #[source]
        source: ProgramError,
    },
    #[error("cannot pin {}", path.display())]
    Pin {
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
    #[error("{} was pinned by a version of ha with another map layout ({found}; this version needs {expected}); `ha-user run --reset` starts afresh", path.display())]
    IncompatiblePin {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error(
        "the maps pinned in {} have no layout version (an older ha pinned them); this \
         version needs map layout {expected}: `ha-user run --reset` starts afresh (the \
         fast path is rebuilt from the configuration; saved pins and drains are dropped)",
        pin_dir.display()
    )]
    NoLayout { pin_dir: PathBuf, expected: u32 },
    #[error(
        "the maps pinned in {} have map layout {found}; this version needs map layout \
         {expected}: `ha-user run --reset` starts afresh (the fast path is rebuilt from \
         the configuration; saved pins and drains are dropped), or run the ha-user of \
         layout {found}",
        pin_dir.display()
    )]
    OtherLayout {
        pin_dir: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("cannot open map {name}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error(
        "cannot hold the program behind the pinned link {} (to put it back if the start-up fails)",
        path.display()
    )]
    Hold {
        path: PathBuf,
        #[source]
        source: ProgramError,
    },
    #[error("cannot write the redirect ports back")]
    Port {
        #[source]
        source: aya::maps::xdp::XdpMapError,
    },
    #[error("cannot remove {}", path.display())]
    Unpin {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Typed handles to every map of the data path.
pub struct Maps {
    pub prefixes: LpmTrie<MapData, [u8; 4], PrefixEntry>,
    pub hosts: Array<MapData, HostEntry>,
    pub ifaces: Array<MapData, IfaceEntry>,
    pub tx_ports: DevMapHash<MapData>,
    pub counters: PerCpuArray<MapData, u64>,
    pub host_stats: PerCpuArray<MapData, Traffic>,
    pub pfx_stats: PerCpuArray<MapData, Traffic>,
    /// The one flow table (an LRU hash; aya's `HashMap` handle covers both kinds).
    pub flows: HashMap<MapData, FlowKey, FlowEntry>,
    pub settings: Array<MapData, Settings>,
    pub flow_counters: PerCpuArray<MapData, u64>,
}

/// Where a pin lives.
pub fn map_pin_path(pin_dir: &Path, map: &str) -> PathBuf {
    pin_dir.join(map)
}

pub fn link_pin_path(pin_dir: &Path, iface: &str) -> PathBuf {
    pin_dir.join(format!("{XDP_LINK_PREFIX}{iface}"))
}

/// Fails unless `dir` is on a bpffs (the pins would be lost or fail otherwise).
pub fn ensure_bpffs(dir: &Path) -> Result<(), DatapathError> {
    let probe = if dir.exists() {
        dir
    } else {
        dir.parent().unwrap_or(dir)
    };
    let c_path = std::ffi::CString::new(probe.as_os_str().as_encoded_bytes()).map_err(|_| {
        DatapathError::NotBpffs {
            path: dir.to_owned(),
        }
    })?;
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` a valid out-pointer.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &mut stat) };
    if rc != 0 || stat.f_type as i64 != BPF_FS_MAGIC {
        return Err(DatapathError::NotBpffs {
            path: probe.to_owned(),
        });
    }
    Ok(())
}

impl Maps {
    /// Opens the maps pinned under `pin_dir` by a running (or crashed) controller.
    pub fn open_pinned(pin_dir: &Path) -> Result<Maps, DatapathError> {
        layout::check_pinned(pin_dir)?;
        let open = |name: &'static str| -> Result<Map, DatapathError> {
            let path = map_pin_path(pin_dir, name);
            if !path.exists() {
                return Err(DatapathError::NotPinned { path });
            }
            let data =
                MapData::from_pin(&path).map_err(|source| DatapathError::Map { name, source })?;
            Map::from_map_data(data).map_err(|source| DatapathError::Map { name, source })
        };
        Maps::from_maps(open)
    }

    /// Takes the maps out of a loaded object.
    fn take(ebpf: &mut Ebpf) -> Result<Maps, DatapathError> {
        Maps::from_maps(|name| {
            ebpf.take_map(name).ok_or(DatapathError::Map {
                name,
                source: MapError::InvalidName {
                    name: name.to_owned(),
                },
            })
        })
    }

    fn from_maps(
        mut get: impl FnMut(&'static str) -> Result<Map, DatapathError>,
    ) -> Result<Maps, DatapathError> {
        fn typed<T: TryFrom<Map, Error = MapError>>(
            name: &'static str,
            map: Map,
        ) -> Result<T, DatapathError> {
            T::try_from(map).map_err(|source| DatapathError::Map { name, source })
        }
        Ok(Maps {
            prefixes: typed(MAP_PREFIXES, get(MAP_PREFIXES)?)?,
            hosts: typed(MAP_HOSTS, get(MAP_HOSTS)?)?,
            ifaces: typed(MAP_IFACES, get(MAP_IFACES)?)?,
            tx_ports: typed(MAP_TX_PORTS, get(MAP_TX_PORTS)?)?,
            counters: typed(MAP_COUNTERS, get(MAP_COUNTERS)?)?,
            host_stats: typed(MAP_HOST_STATS, get(MAP_HOST_STATS)?)?,
            pfx_stats: typed(MAP_PFX_STATS, get(MAP_PFX_STATS)?)?,
            flows: typed(MAP_FLOWS, get(MAP_FLOWS)?)?,
            settings: typed(MAP_SETTINGS, get(MAP_SETTINGS)?)?,
            flow_counters: typed(MAP_FLOW_COUNTERS, get(MAP_FLOW_COUNTERS)?)?,
        })
    }

    /// Every prefix entry in the map, ordered by prefix.
    pub fn prefix_entries(&self) -> Result<Vec<(Ipv4Net, PrefixEntry)>, MapError> {
        let mut entries = Vec::new();
        for item in self.prefixes.iter() {
            let (key, value) = item?;
            entries.push((Self::key_net(&key)?, value));
        }
        entries.sort_by_key(|(net, _)| (u32::from(net.network()), net.prefix_len()));
        Ok(entries)
    }

    /// The prefixes of the prefix table, in the kernel's order (its keys only: one
    /// syscall per entry fewer than [`Maps::prefix_entries`]).
    pub fn prefix_nets(&self) -> Result<Vec<Ipv4Net>, MapError> {
        self.prefixes
            .keys()
            .map(|key| Self::key_net(&key?))
            .collect()
    }

    /// The prefix a key of the prefix table stands for.
    fn key_net(key: &Key<[u8; 4]>) -> Result<Ipv4Net, MapError> {
        // The kernel returns exactly the keys it was given; lengths are <= 32.
        Ipv4Net::new(key.data().into(), key.prefix_len() as u8).map_err(|_| MapError::KeyNotFound)
    }

    pub fn prefix_key(net: Ipv4Net) -> Key<[u8; 4]> {
        Key::new(u32::from(net.prefix_len()), net.network().octets())
    }

    /// Sum over CPUs of every verdict counter.
    pub fn counter_totals(&self) -> Result<Vec<(Counter, u64)>, MapError> {
        Counter::ALL
            .iter()
            .map(|&counter| {
                let per_cpu = self.counters.get(&(counter as u32), 0)?;
                Ok((counter, per_cpu.iter().sum()))
            })
            .collect()
    }

    /// Sum over CPUs of every flow-table counter.
    pub fn flow_counter_totals(&self) -> Result<Vec<(FlowCounter, u64)>, MapError> {
        FlowCounter::ALL
            .iter()
            .map(|&counter| {
                let per_cpu = self.flow_counters.get(&(counter as u32), 0)?;
                Ok((counter, per_cpu.iter().sum()))
            })
            .collect()
    }

    /// Sum over CPUs of one slot of a traffic map.
    pub fn traffic(map: &PerCpuArray<MapData, Traffic>, index: u32) -> Result<Traffic, MapError> {
        let per_cpu = map.get(&index, 0)?;
        Ok(per_cpu.iter().fold(Traffic::default(), |acc, t| Traffic {
            packets: acc.packets + t.packets,
            bytes: acc.bytes + t.bytes,
        }))
    }
}

/// The steering program of a loaded object.
pub fn steer_program(ebpf: &mut Ebpf) -> Result<&mut Xdp, DatapathError> {
    ebpf.program_mut(PROG_STEER)
        .ok_or(DatapathError::MissingProgram)?
        .try_into()
        .map_err(DatapathError::Program)
}

/// A loaded program with its pinned maps; attach it to interfaces with [`Loaded::attach`].
pub struct Loaded {
    ebpf: Ebpf,
    pin_dir: PathBuf,
}

impl Loaded {
    /// Loads the embedded object; maps already pinned under `pin_dir` are reused (their
    /// contents survive), missing ones are created and pinned.
    pub fn load(pin_dir: &Path, log_packets: bool) -> Result<Loaded, DatapathError> {
        ensure_bpffs(pin_dir.parent().unwrap_or(pin_dir))?;
        pin_dir::create(pin_dir)?;
        ensure_bpffs(pin_dir)?;
        layout::check_pinned(pin_dir)?;
        let pin_paths: Vec<(&str, PathBuf)> = PINNED_MAPS
            .iter()
            .map(|&name| (name, map_pin_path(pin_dir, name)))
            .collect();
        let mut loader = EbpfLoader::new();
        for (name, path) in &pin_paths {
            loader.map_pin_path(name, path.as_path());
        }
        let log_packets = u8::from(log_packets);
        loader.override_global(GLOBAL_LOG_PACKETS, &log_packets, true);
        let mut ebpf = loader
            .load(crate::EBPF_OBJECT)
            .map_err(DatapathError::Load)?;
        let meta = ebpf.map_mut(MAP_META).ok_or_else(|| DatapathError::Map {
            name: MAP_META,
            source: MapError::InvalidName {
                name: MAP_META.to_owned(),
            },
        })?;
        let mut meta = Array::try_from(meta).map_err(|source| DatapathError::Map {
            name: MAP_META,
            source,
        })?;
        layout::write_layout(&mut meta)?;
        let program = steer_program(&mut ebpf)?;
        program.load().map_err(DatapathError::Program)?;
        if let Ok(info) = program.info() {
            tracing::info!(
                verified_insns = info.verified_instruction_count(),
                xlated_bytes = info.size_translated(),
                jited_bytes = info.size_jitted(),
                "XDP program loaded"
            );
        }
        Ok(Loaded {
            ebpf,
            pin_dir: pin_dir.to_owned(),
        })
    }

    /// The aya-log receiver, when packet logging was switched on.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// Attaches the program to `interface`: atomically replaces the program behind an
    /// existing pinned link of ours, or attaches afresh and pins the new link. The link
    /// stays attached while its pin exists, whatever happens to this process.
    pub fn attach(
        &mut self,
        interface: &Interface,
        mode: XdpMode,
    ) -> Result<Attachment, DatapathError> {
        let iface = interface.name.as_str();
        let pin = link_pin_path(&self.pin_dir, iface);
        let program = steer_program(&mut self.ebpf)?;
        if pin.exists() {
            let adopt = |source| DatapathError::Adopt {
                path: pin.clone(),
                source,
            };
            let fd_link: FdLink = PinnedLink::from_pin(&pin).map_err(adopt)?.into();
            let link = XdpLink::try_from(fd_link).map_err(adopt)?;
            let id = program
                .attach_to_link(link)
                .map_err(|source| DatapathError::Replace {
                    path: pin.clone(),
                    source,
                })?;
            // Hand the link back to nobody: the pin keeps it attached.
            let link = program.take_link(id).map_err(DatapathError::Program)?;
            drop(link);
            return Ok(Attachment {
                iface: iface.to_owned(),
                pin,
                adopted: true,
            });
        }
        let aya_mode = match mode {
            XdpMode::Native => AyaXdpMode::Driver,
            XdpMode::Skb => AyaXdpMode::Skb,
        };
        let attach_err = |source| DatapathError::Attach {
            iface: iface.to_owned(),
            mode,
            cause: AttachCause::of(errno(&source), mode, interface.mtu),
            source,
        };
        let id = program.attach(iface, aya_mode).map_err(attach_err)?;
        let link = program.take_link(id).map_err(DatapathError::Program)?;
        let fd_link = FdLink::try_from(link).map_err(|source| DatapathError::Adopt {
            path: pin.clone(),
            source,
        })?;
        fd_link.pin(&pin).map_err(|source| DatapathError::Pin {
            path: pin.clone(),
            source,
        })?;
        Ok(Attachment {
            iface: iface.to_owned(),
            pin,
            adopted: false,
        })
    }

    /// Attaches `ha_learn` to `iface`'s egress (see [`learn`]); the LAN interface's.
    pub fn attach_learn(&mut self, iface: &str) -> Result<(learn::LearnHook, bool), DatapathError> {
        let program = learn::learn_program(&mut self.ebpf)?;
        learn::attach(program, &self.pin_dir, iface)
    }

    /// Typed handles to the maps (the pinned ones, shared with any other user).
    pub fn maps(&mut self) -> Result<Maps, DatapathError> {
        Maps::take(&mut self.ebpf)
    }
}

/// The errno behind an attach error: `bpf_link_create`'s, or that of aya's netlink
/// fallback (taken when the kernel has no XDP links).
fn errno(err: &ProgramError) -> Option<i32> {
    match err {
        ProgramError::SyscallError(err) => err.io_error.raw_os_error(),
        ProgramError::XdpError(aya::programs::xdp::XdpError::NetlinkError(err)) => {
            err.raw_os_error()
        }
        _ => None,
    }
}

/// One interface the program is attached to, through a pinned link.
#[derive(Debug)]
pub struct Attachment {
    pub iface: String,
    pub pin: PathBuf,
    /// True when an existing pinned link was taken over (restart or upgrade).
    pub adopted: bool,
}

/// Whether a pin of the pin directory is one of our links (XDP or TCX).
fn is_link_pin(name: &str) -> bool {
    name.starts_with(XDP_LINK_PREFIX) || name.starts_with(TC_LINK_PREFIX)
}

/// Removes the pins of `iface`'s links (XDP and TCX) if there are any: after the
/// interface was deleted they hold links the kernel has detached for good, which
/// no program can be attached through. Returns what it removed.
pub fn remove_link_pins(pin_dir: &Path, iface: &str) -> Result<Vec<PathBuf>, DatapathError> {
    let mut removed = Vec::new();
    for path in [
        link_pin_path(pin_dir, iface),
        learn::tc_link_pin_path(pin_dir, iface),
    ] {
        match std::fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(DatapathError::Unpin { path, source }),
        }
    }
    Ok(removed)
}

/// What is missing of the maps a running controller pinned under `pin_dir`: the
/// directory itself, or the first map pin gone (someone removed them by hand).
/// `None` while all are there.
pub fn missing_pins(pin_dir: &Path) -> Option<String> {
    if std::fs::symlink_metadata(pin_dir).is_err() {
        return Some(format!(
            "the pin directory {} was removed",
            pin_dir.display()
        ));
    }
    PINNED_MAPS
        .iter()
        .map(|name| pin_dir.join(name))
        .find(|path| std::fs::symlink_metadata(path).is_err())
        .map(|path| {
            format!(
                "the pin {} in the pin directory {} was removed",
                path.file_name().unwrap_or_default().to_string_lossy(),
                pin_dir.display()
            )
        })
}

/// Removes everything `ha` pinned under `pin_dir`: the links (which detaches the
/// program) and the maps. Returns what it removed.
pub fn detach_all(pin_dir: &Path) -> Result<Vec<PathBuf>, DatapathError> {
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(pin_dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(removed),
        Err(source) => {
            return Err(DatapathError::Unpin {
                path: pin_dir.to_owned(),
                source,
            });
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    // Links first, so the programs are detached before their maps disappear.
    paths.sort_by_key(|p| {
        !p.file_name()
            .is_some_and(|n| is_link_pin(&n.to_string_lossy()))
    });
    for path in paths {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ours = is_link_pin(&name) || PINNED_MAPS.contains(&name.as_str());
        if !ours {
            continue;
        }
        std::fs::remove_file(&path).map_err(|source| DatapathError::Unpin {
            path: path.clone(),
            source,
        })?;
        removed.push(path);
    }
    // Only succeeds when empty: anything else in there is not ours to delete.
    let _ = std::fs::remove_dir(pin_dir);
    Ok(removed)
}

#[cfg(test)]
mod tests {
    /// A pin directory that is not on bpffs is refused, naming the directory; one
    /// under the mounted bpffs passes.
    #[test]
    fn a_pin_directory_outside_bpffs_is_refused() {
        for dir in ["/tmp/ha-pins-not-bpffs", "/proc/ha", "/run/ha-pins"] {
            match super::ensure_bpffs(std::path::Path::new(dir)) {
                Err(err) if err.to_string().contains("is not on a mounted bpffs") => {}
                other => panic!("{dir}: expected a refusal, got {other:?}"),
            }
        }
        match super::ensure_bpffs(std::path::Path::new("/sys/fs/bpf/ha-test-absent")) {
            Ok(()) => {}
            Err(err) => eprintln!("SKIPPED (part): no bpffs at /sys/fs/bpf ({err})"),
        }
    }
}
