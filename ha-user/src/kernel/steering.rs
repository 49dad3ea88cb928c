//! Writes the desired steering state into the data-path maps and reconciles what a
//! previous controller left there: nothing that is still wanted is removed first, so
//! traffic keeps flowing while a new controller takes over.

use std::collections::HashSet;

use aya::maps::{MapError, xdp::XdpMapError};
use ha_common::{
    HOST_READY, HOST_UP, HostEntry, IFACE_ACTIVE, IfaceEntry, MAX_HOSTS, MAX_IFINDEX, PrefixEntry,
    Settings,
};
use ipnet::Ipv4Net;

use crate::{
    kernel::{datapath::Maps, netdev::Interface},
    model::{HostId, Mac},
};

#[derive(Debug, thiserror::Error)]
pub enum SteeringError {
    #[error("cannot write {what} into the data path")]
    Write {
        what: String,
        #[source]
        source: MapError,
    },
    #[error(
        "{iface} has ifindex {index}; the fast path runs on interfaces with an ifindex below {MAX_IFINDEX}"
    )]
    IfindexTooLarge { iface: String, index: u32 },
    #[error("cannot add {iface} to the redirect ports")]
    Port {
        iface: String,
        #[source]
        source: XdpMapError,
    },
}

fn write_err(what: impl Into<String>) -> impl FnOnce(MapError) -> SteeringError {
    let what = what.into();
    move |source| SteeringError::Write { what, source }
}

/// The host-table entry for a host behind `lan` with `mac`, if known; `up`: the
/// health checks say it is up (its flows may stay with it).
pub fn host_entry(mac: Option<Mac>, lan: &Interface, up: bool) -> HostEntry {
    let mut flags = if mac.is_some() { HOST_READY } else { 0 };
    if up {
        flags |= HOST_UP;
    }
    HostEntry {
        mac: mac.map_or([0; 6], |m| m.0),
        egress_mac: lan.mac.0,
        // An MTU above 65,535 cannot be exceeded by an IPv4 datagram.
        mtu: u16::try_from(lan.mtu).unwrap_or(u16::MAX),
        _pad: [0; 2],
        egress_ifindex: lan.index,
        flags,
    }
}

/// Writes host `id`. A ready entry whose MAC changes is first marked not ready, so
/// the data path never reads half an old and half a new address.
pub fn write_host(maps: &mut Maps, host: HostId, entry: HostEntry) -> Result<(), SteeringError> {
    let id = host.raw();
    let what = || format!("host {id}");
    let current = maps.hosts.get(&id, 0).map_err(write_err(what()))?;
    if current == entry {
        return Ok(());
    }
    if current.is_ready() && current.mac != entry.mac {
        let parked = HostEntry {
            flags: current.flags & !HOST_READY,
            ..current
        };
        maps.hosts.set(id, parked, 0).map_err(write_err(what()))?;
    }
    maps.hosts.set(id, entry, 0).map_err(write_err(what()))
}

/// Points `prefix` at `host` (an atomic replace of one LPM entry).
pub fn write_prefix(
    maps: &mut Maps,
    prefix: Ipv4Net,
    entry: PrefixEntry,
) -> Result<(), SteeringError> {
    maps.prefixes
        .insert(&Maps::prefix_key(prefix), entry, 0)
        .map_err(write_err(format!("prefix {prefix}")))
}

/// Removes the map entry of `prefix`, if there is one.
pub fn remove_prefix(maps: &mut Maps, prefix: Ipv4Net) -> Result<(), SteeringError> {
    match maps.prefixes.remove(&Maps::prefix_key(prefix)) {
        Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
        // aya reports a delete of a missing key as the syscall's ENOENT.
        Err(MapError::SyscallError(err)) if err.io_error.raw_os_error() == Some(libc::ENOENT) => {
            Ok(())
        }
        Err(source) => Err(SteeringError::Write {
            what: format!("prefix {prefix}"),
            source,
        }),
    }
}

/// Writes the router-wide settings (entry 0 of `HA_SETTINGS`).
pub fn write_settings(maps: &mut Maps, settings: Settings) -> Result<(), SteeringError> {
    maps.settings
        .set(0, settings, 0)
        .map_err(write_err("the settings"))
}

/// Registers the interfaces the program runs on (their own MACs) and the redirect
/// port, and forgets interfaces a previous run used that are not among them.
/// `flags`: each interface's flags besides `IFACE_ACTIVE` (`IFACE_VERIFY`).
pub fn install_interfaces(
    maps: &mut Maps,
    lan: &Interface,
    ingress: &[Interface],
    flags: impl Fn(&Interface) -> u16,
) -> Result<(), SteeringError> {
    let interfaces: Vec<&Interface> = std::iter::once(lan).chain(ingress).collect();
    for iface in &interfaces {
        if iface.index >= MAX_IFINDEX {
            return Err(SteeringError::IfindexTooLarge {
                iface: iface.name.clone(),
                index: iface.index,
            });
        }
        let entry = IfaceEntry {
            mac: iface.mac.0,
            flags: IFACE_ACTIVE | flags(iface),
        };
        maps.ifaces
            .set(iface.index, entry, 0)
            .map_err(write_err(format!("interface {}", iface.name)))?;
    }
    maps.tx_ports
        .insert(lan.index, lan.index, None, 0)
        .map_err(|source| SteeringError::Port {
            iface: lan.name.clone(),
            source,
        })?;
    for index in 0..MAX_IFINDEX {
        if interfaces.iter().any(|i| i.index == index) {
            continue;
        }
        let what = || format!("interface {index}");
        if maps
            .ifaces
            .get(&index, 0)
            .map_err(write_err(what()))?
            .is_active()
        {
            maps.ifaces
                .set(index, IfaceEntry::default(), 0)
                .map_err(write_err(what()))?;
        }
    }
    Ok(())
}

/// Clears host entries from `first` up: hosts a previous configuration had.
pub fn clear_hosts_from(maps: &mut Maps, first: HostId) -> Result<(), SteeringError> {
    for id in first.raw()..MAX_HOSTS {
        if maps
            .hosts
            .get(&id, 0)
            .map_err(write_err(format!("host {id}")))?
            != HostEntry::default()
        {
            maps.hosts
                .set(id, HostEntry::default(), 0)
                .map_err(write_err(format!("host {id}")))?;
        }
    }
    Ok(())
}

/// Removes the map entries of prefixes not among `configured`; returns them.
pub fn remove_stale_prefixes(
    maps: &mut Maps,
    configured: impl IntoIterator<Item = Ipv4Net>,
) -> Result<Vec<Ipv4Net>, SteeringError> {
    let configured: HashSet<Ipv4Net> = configured.into_iter().collect();
    let stale: Vec<Ipv4Net> = maps
        .prefix_nets()
        .map_err(write_err("the prefix table"))?
        .into_iter()
        .filter(|net| !configured.contains(net))
        .collect();
    for net in &stale {
        remove_prefix(maps, *net)?;
    }
    Ok(stale)
}
