//! The validated hosts and prefixes.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::{HealthCheck, HostId, Mac};

/// A web server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    pub address: Ipv4Addr,
    /// Configured MAC; otherwise learned from the neighbour table.
    pub mac: Option<Mac>,
    pub health: HealthCheck,
}

/// A steered prefix (a VIP subnet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prefix {
    pub cidr: Ipv4Net,
    /// The host that owns it when healthy; its kernel route points there when no host
    /// holds the prefix.
    pub owner: HostId,
    /// The hosts it fails over to, in order.
    pub backups: Backups,
    /// The address its clients use, inside `cidr`: a host serves the prefix only if
    /// it answers there.
    pub vip: Ipv4Addr,
}

impl Prefix {
    /// Its backups among `hosts` hosts, in failover order.
    pub fn backup_hosts(&self, hosts: usize) -> impl Iterator<Item = HostId> + '_ {
        self.backups.hosts(self.owner, hosts)
    }
}

/// The hosts a prefix fails over to after its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backups {
    /// As listed in the configuration.
    Listed(Vec<HostId>),
    /// None listed: every other host, in configuration order. One word rather than a
    /// list: 65,536 prefixes of 1,024 hosts would otherwise hold 67 million ids.
    AllOthers,
}

impl Backups {
    /// The backups of a prefix owned by `owner` among `hosts` hosts, in order.
    pub fn hosts(&self, owner: HostId, hosts: usize) -> impl Iterator<Item = HostId> + '_ {
        let (listed, others) = match self {
            Backups::Listed(list) => (list.as_slice(), 0..0),
            Backups::AllOthers => (&[][..], 0..hosts),
        };
        listed
            .iter()
            .copied()
            .chain(others.map(HostId::new).filter(move |&host| host != owner))
    }
}
