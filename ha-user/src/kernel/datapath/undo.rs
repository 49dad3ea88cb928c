//! What a start-up found in the pin directory and on the interfaces, kept so that a
//! failed start-up can put it back (the daemon's undo log holds these):
//!
//! - [`PinsBefore`]: which of `ha`'s pins existed. The others are removed, links
//!   first (which detaches their programs), then maps, then the pin directory if the
//!   start-up created it.
//! - [`MapsBefore`]: the contents of the maps the controller writes (prefixes,
//!   hosts, interfaces, redirect ports, settings) where they were adopted from a
//!   running fast path, written back. The maps the programs write (counters,
//!   statistics, the flow table) are theirs and go on changing.
//! - [`XdpBefore`] and [`LearnBefore`]: the program behind a pinned link that the
//!   start-up is about to replace, held open (a program lives while something holds
//!   it) so it can be put back behind the link; or, with no pin, the knowledge that a
//!   pin found later is new and goes.
//!
//! Each is taken before its step runs, so a step that fails half-way is undone too.

use std::{
    borrow::Cow,
    collections::{HashMap, HashSet},
    io,
    path::{Path, PathBuf},
};

use aya::{
    maps::{
        Array, DevMapHash, Map, MapData, MapError,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{
        ProgramError, ProgramInfo, SchedClassifier, Xdp,
        links::{FdLink, PinnedLink},
        tc::SchedClassifierLink,
        xdp::XdpLink,
    },
};
use aya_obj::programs::XdpAttachType;
use ha_common::{
    HostEntry, IfaceEntry, MAP_HOSTS, MAP_IFACES, MAP_PREFIXES, MAP_SETTINGS, MAP_TX_PORTS,
    PINNED_MAPS, PROG_LEARN, PROG_STEER, PrefixEntry, Settings,
};

use super::{DatapathError, is_link_pin, learn, link_pin_path, map_pin_path};

/// Which of `ha`'s pins a pin directory held.
#[derive(Debug)]
pub struct PinsBefore {
    dir: PathBuf,
    dir_existed: bool,
    existing: HashSet<String>,
}

impl PinsBefore {
    /// What `pin_dir` holds now.
    pub fn capture(pin_dir: &Path) -> Result<PinsBefore, DatapathError> {
        let mut existing = HashSet::new();
        let dir_existed = match std::fs::read_dir(pin_dir) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if is_ours(&name) {
                        existing.insert(name);
                    }
                }
                true
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => false,
            Err(source) => {
                return Err(DatapathError::PinDir {
                    path: pin_dir.to_owned(),
                    source,
                });
            }
        };
        Ok(PinsBefore {
            dir: pin_dir.to_owned(),
            dir_existed,
            existing,
        })
    }

    /// Whether map `name` was pinned.
    pub fn had(&self, name: &str) -> bool {
        self.existing.contains(name)
    }

    /// Removes every pin of ours that was not there (links first), and the directory
    /// if it was not there and is empty. Returns the pins removed.
    pub fn restore(&self) -> Result<Vec<PathBuf>, DatapathError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(DatapathError::Unpin {
                    path: self.dir.clone(),
                    source,
                });
            }
        };
        let mut new: Vec<(bool, PathBuf)> = entries
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| is_ours(name) && !self.existing.contains(name))
            .map(|name| (!is_link_pin(&name), self.dir.join(name)))
            .collect();
        new.sort();
        let mut removed = Vec::with_capacity(new.len());
        for (_, path) in new {
            std::fs::remove_file(&path).map_err(|source| DatapathError::Unpin {
                path: path.clone(),
                source,
            })?;
            removed.push(path);
        }
        if !self.dir_existed {
            // Only succeeds when empty: anything else in there is not ours to delete.
            let _ = std::fs::remove_dir(&self.dir);
        }
        Ok(removed)
    }
}

fn is_ours(name: &str) -> bool {
    is_link_pin(name) || PINNED_MAPS.contains(&name)
}

/// The contents of the controller's adopted maps (`None`: the map was not pinned
/// before, so its pin is removed instead).
#[derive(Debug)]
pub struct MapsBefore {
    pin_dir: PathBuf,
    /// (prefix length, network, entry).
    prefixes: Option<Vec<(u32, [u8; 4], PrefixEntry)>>,
    hosts: Option<Vec<HostEntry>>,
    ifaces: Option<Vec<IfaceEntry>>,
    tx_ports: Option<Vec<(u32, u32)>>,
    settings: Option<Vec<Settings>>,
}

impl MapsBefore {
    /// Reads the controller's maps among the pins `pins` found (before anything
    /// writes them).
    pub fn capture(pin_dir: &Path, pins: &PinsBefore) -> Result<MapsBefore, DatapathError> {
        let had = |name| pins.had(name);
        Ok(MapsBefore {
            pin_dir: pin_dir.to_owned(),
            prefixes: had(MAP_PREFIXES)
                .then(|| read_prefixes(pin_dir))
                .transpose()?,
            hosts: had(MAP_HOSTS)
                .then(|| read_array(pin_dir, MAP_HOSTS))
                .transpose()?,
            ifaces: had(MAP_IFACES)
                .then(|| read_array(pin_dir, MAP_IFACES))
                .transpose()?,
            tx_ports: had(MAP_TX_PORTS).then(|| read_ports(pin_dir)).transpose()?,
            settings: had(MAP_SETTINGS)
                .then(|| read_array(pin_dir, MAP_SETTINGS))
                .transpose()?,
        })
    }

    /// Whether any map was adopted (and so has contents to put back).
    pub fn any(&self) -> bool {
        let MapsBefore {
            pin_dir: _,
            prefixes,
            hosts,
            ifaces,
            tx_ports,
            settings,
        } = self;
        prefixes.is_some()
            || hosts.is_some()
            || ifaces.is_some()
            || tx_ports.is_some()
            || settings.is_some()
    }

    /// Writes the contents back; returns the names of the maps that had changed.
    pub fn restore(&self) -> Result<Vec<&'static str>, DatapathError> {
        let MapsBefore {
            pin_dir,
            prefixes,
            hosts,
            ifaces,
            tx_ports,
            settings,
        } = self;
        let mut restored = Vec::new();
        let mut note = |name, changed: bool| {
            if changed {
                restored.push(name);
            }
        };
        if let Some(entries) = prefixes {
            note(MAP_PREFIXES, restore_prefixes(pin_dir, entries)?);
        }
        if let Some(values) = hosts {
            note(MAP_HOSTS, write_array(pin_dir, MAP_HOSTS, values)?);
        }
        if let Some(values) = ifaces {
            note(MAP_IFACES, write_array(pin_dir, MAP_IFACES, values)?);
        }
        if let Some(ports) = tx_ports {
            note(MAP_TX_PORTS, restore_ports(pin_dir, ports)?);
        }
        if let Some(values) = settings {
            note(MAP_SETTINGS, write_array(pin_dir, MAP_SETTINGS, values)?);
        }
        Ok(restored)
    }
}

fn open(pin_dir: &Path, name: &'static str) -> Result<Map, DatapathError> {
    let data = MapData::from_pin(map_pin_path(pin_dir, name))
        .map_err(|source| DatapathError::Map { name, source })?;
    Map::from_map_data(data).map_err(|source| DatapathError::Map { name, source })
}

fn map_err(name: &'static str) -> impl Fn(MapError) -> DatapathError {
    move |source| DatapathError::Map { name, source }
}

fn read_array<V: aya::Pod>(pin_dir: &Path, name: &'static str) -> Result<Vec<V>, DatapathError> {
    let array: Array<MapData, V> = open(pin_dir, name)?.try_into().map_err(map_err(name))?;
    (0..array.len())
        .map(|index| array.get(&index, 0).map_err(map_err(name)))
        .collect()
}

/// Writes `values` into the array `name` where they differ; whether any did.
fn write_array<V: aya::Pod + PartialEq>(
    pin_dir: &Path,
    name: &'static str,
    values: &[V],
) -> Result<bool, DatapathError> {
    let mut array: Array<MapData, V> = open(pin_dir, name)?.try_into().map_err(map_err(name))?;
    let mut changed = false;
    for (index, value) in (0..).zip(values) {
        if array.get(&index, 0).map_err(map_err(name))? != *value {
            array.set(index, *value, 0).map_err(map_err(name))?;
            changed = true;
        }
    }
    Ok(changed)
}

type Prefixes = LpmTrie<MapData, [u8; 4], PrefixEntry>;

fn read_prefixes(pin_dir: &Path) -> Result<Vec<(u32, [u8; 4], PrefixEntry)>, DatapathError> {
    let trie: Prefixes = open(pin_dir, MAP_PREFIXES)?
        .try_into()
        .map_err(map_err(MAP_PREFIXES))?;
    trie.iter()
        .map(|item| {
            item.map(|(key, value)| (key.prefix_len(), key.data(), value))
                .map_err(map_err(MAP_PREFIXES))
        })
        .collect()
}

/// Makes the prefix table hold exactly `entries`; whether it had to change.
fn restore_prefixes(
    pin_dir: &Path,
    entries: &[(u32, [u8; 4], PrefixEntry)],
) -> Result<bool, DatapathError> {
    let by_key = |entries: &[(u32, [u8; 4], PrefixEntry)]| -> HashMap<(u32, [u8; 4]), PrefixEntry> {
        entries
            .iter()
            .map(|&(len, net, value)| ((len, net), value))
            .collect()
    };
    if by_key(&read_prefixes(pin_dir)?) == by_key(entries) {
        return Ok(false);
    }
    let name = MAP_PREFIXES;
    let mut trie: Prefixes = open(pin_dir, name)?.try_into().map_err(map_err(name))?;
    let wanted: HashSet<(u32, [u8; 4])> = entries.iter().map(|&(len, net, _)| (len, net)).collect();
    let current: Vec<Key<[u8; 4]>> = trie
        .keys()
        .collect::<Result<_, _>>()
        .map_err(map_err(name))?;
    for key in current
        .iter()
        .filter(|key| !wanted.contains(&(key.prefix_len(), key.data())))
    {
        trie.remove(key).map_err(map_err(name))?;
    }
    for &(len, net, value) in entries {
        trie.insert(&Key::new(len, net), value, 0)
            .map_err(map_err(name))?;
    }
    Ok(true)
}

fn read_ports(pin_dir: &Path) -> Result<Vec<(u32, u32)>, DatapathError> {
    let name = MAP_TX_PORTS;
    let ports: DevMapHash<MapData> = open(pin_dir, name)?.try_into().map_err(map_err(name))?;
    ports
        .iter()
        .map(|item| {
            item.map(|(key, value)| (key, value.if_index))
                .map_err(map_err(name))
        })
        .collect()
}

/// Makes the redirect ports exactly `entries`; whether they had to change.
fn restore_ports(pin_dir: &Path, entries: &[(u32, u32)]) -> Result<bool, DatapathError> {
    let mut current = read_ports(pin_dir)?;
    current.sort_unstable();
    let mut wanted = entries.to_vec();
    wanted.sort_unstable();
    if current == wanted {
        return Ok(false);
    }
    let name = MAP_TX_PORTS;
    let mut ports: DevMapHash<MapData> = open(pin_dir, name)?.try_into().map_err(map_err(name))?;
    for (key, _) in current
        .iter()
        .filter(|(key, _)| !wanted.iter().any(|(k, _)| k == key))
    {
        ports.remove(*key).map_err(map_err(name))?;
    }
    for &(key, target) in &wanted {
        ports
            .insert(key, target, None, 0)
            .map_err(|source| DatapathError::Port { source })?;
    }
    Ok(true)
}

/// What putting a link back did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkRestored {
    /// The link was as it was found.
    Unchanged,
    /// A link (or filter) the start-up made was removed: its program is detached.
    Detached,
    /// The program the link ran before, id `program`, is behind it again.
    Reverted { program: u32 },
}

/// The XDP link of one interface before a start-up attached to it.
#[derive(Debug)]
pub struct XdpBefore {
    pin: PathBuf,
    /// The id of the program behind the pinned link, and that program, held open.
    held: Option<(u32, Xdp)>,
}

impl XdpBefore {
    /// The link pinned for `iface` under `pin_dir`, if any, and its program.
    pub fn capture(pin_dir: &Path, iface: &str) -> Result<XdpBefore, DatapathError> {
        let pin = link_pin_path(pin_dir, iface);
        let held = match pinned_program(&pin)? {
            Some(info) => {
                let id = info.id();
                let program = Xdp::from_program_info(
                    info,
                    Cow::Borrowed(PROG_STEER),
                    XdpAttachType::Interface,
                )
                .map_err(|source| DatapathError::Hold {
                    path: pin.clone(),
                    source,
                })?;
                Some((id, program))
            }
            None => None,
        };
        Ok(XdpBefore { pin, held })
    }

    /// Puts the link back as it was: removes a pin that was not there, or puts the
    /// program that was there back behind the link.
    pub fn restore(self) -> Result<LinkRestored, DatapathError> {
        let XdpBefore { pin, held } = self;
        let Some((id, mut program)) = held else {
            return remove_new_pin(&pin);
        };
        let Some(fd_link) = link_on_another_program(&pin, id)? else {
            return Ok(LinkRestored::Unchanged);
        };
        let link = XdpLink::try_from(fd_link).map_err(|source| DatapathError::Adopt {
            path: pin.clone(),
            source,
        })?;
        let replace = |source| DatapathError::Replace {
            path: pin.clone(),
            source,
        };
        let link_id = program.attach_to_link(link).map_err(replace)?;
        // The pin keeps the link; dropping our handle closes only a descriptor.
        drop(program.take_link(link_id).map_err(replace)?);
        Ok(LinkRestored::Reverted { program: id })
    }
}

/// `ha_learn`'s attachment to one interface before a start-up attached it.
#[derive(Debug)]
pub struct LearnBefore {
    iface: String,
    pin: PathBuf,
    held: Option<(u32, SchedClassifier)>,
    /// A clsact filter (kernels without TCX) this start-up added.
    filter_added: bool,
}

impl LearnBefore {
    /// The TCX link pinned for `iface` under `pin_dir`, if any, and its program.
    pub fn capture(pin_dir: &Path, iface: &str) -> Result<LearnBefore, DatapathError> {
        let pin = learn::tc_link_pin_path(pin_dir, iface);
        let held = match pinned_program(&pin)? {
            Some(info) => {
                let id = info.id();
                let program = SchedClassifier::from_program_info(info, Cow::Borrowed(PROG_LEARN))
                    .map_err(|source| DatapathError::Hold {
                    path: pin.clone(),
                    source,
                })?;
                Some((id, program))
            }
            None => None,
        };
        Ok(LearnBefore {
            iface: iface.to_owned(),
            pin,
            held,
            filter_added: false,
        })
    }

    /// Records how the attach went: a clsact filter it added is removed by
    /// [`LearnBefore::restore`]. (A filter of ours it replaced keeps the new program:
    /// the old one cannot be read back from a filter.)
    pub fn attached(&mut self, hook: learn::LearnHook, adopted: bool) {
        self.filter_added = hook == learn::LearnHook::Netlink && !adopted;
    }

    /// Puts the attachment back as it was.
    pub fn restore(self) -> Result<LinkRestored, DatapathError> {
        let LearnBefore {
            iface,
            pin,
            held,
            filter_added,
        } = self;
        if filter_added {
            return Ok(if learn::detach_filter(&iface)? {
                LinkRestored::Detached
            } else {
                LinkRestored::Unchanged
            });
        }
        let Some((id, mut program)) = held else {
            return remove_new_pin(&pin);
        };
        let Some(fd_link) = link_on_another_program(&pin, id)? else {
            return Ok(LinkRestored::Unchanged);
        };
        let link =
            SchedClassifierLink::try_from(fd_link).map_err(|source| DatapathError::Adopt {
                path: pin.clone(),
                source,
            })?;
        let learn_err = |source| DatapathError::Learn {
            iface: iface.clone(),
            source,
        };
        let link_id = program.attach_to_link(link).map_err(learn_err)?;
        drop(program.take_link(link_id).map_err(learn_err)?);
        Ok(LinkRestored::Reverted { program: id })
    }
}

/// The program behind the link pinned at `pin`, if there is a pin.
fn pinned_program(pin: &Path) -> Result<Option<ProgramInfo>, DatapathError> {
    if !pin.exists() {
        return Ok(None);
    }
    let hold = |source| DatapathError::Hold {
        path: pin.to_owned(),
        source,
    };
    let id = pinned_link(pin)?
        .info()
        .map_err(|source| DatapathError::Adopt {
            path: pin.to_owned(),
            source,
        })?
        .program_id();
    // A program's descriptor by id is only reachable through the list of programs
    // in aya; one that vanished meanwhile is skipped.
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|info| info.id() == id)
        .map(Some)
        .ok_or_else(|| hold(ProgramError::NotLoaded))
}

fn pinned_link(pin: &Path) -> Result<FdLink, DatapathError> {
    PinnedLink::from_pin(pin)
        .map(FdLink::from)
        .map_err(|source| DatapathError::Adopt {
            path: pin.to_owned(),
            source,
        })
}

/// The link pinned at `pin` unless it runs program `id` (or is gone).
fn link_on_another_program(pin: &Path, id: u32) -> Result<Option<FdLink>, DatapathError> {
    if !pin.exists() {
        return Ok(None);
    }
    let link = pinned_link(pin)?;
    let now = link
        .info()
        .map_err(|source| DatapathError::Adopt {
            path: pin.to_owned(),
            source,
        })?
        .program_id();
    Ok((now != id).then_some(link))
}

/// Removes `pin` if it exists (it was not there before): the link goes with it.
fn remove_new_pin(pin: &Path) -> Result<LinkRestored, DatapathError> {
    match std::fs::remove_file(pin) {
        Ok(()) => Ok(LinkRestored::Detached),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(LinkRestored::Unchanged),
        Err(source) => Err(DatapathError::Unpin {
            path: pin.to_owned(),
            source,
        }),
    }
}
