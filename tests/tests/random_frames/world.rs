//! The network the random frames run in, as data: the links (which run the
//! program, which are redirect targets, their MACs and MTUs), the host table and the
//! prefix table. The same description fills the program's maps and feeds the
//! reference model, so the two cannot drift apart.

use std::{collections::BTreeMap, net::Ipv4Addr};

use ha_common::{
    HOST_READY, HOST_UP, HostEntry, IFACE_ACTIVE, IFACE_VERIFY, MAX_HOSTS, MAX_LOCAL_ADDRS,
    PrefixEntry, Settings, local_filter_bit,
};
use ha_tests::{
    frames::{AddrClass, Profile, martian_sources},
    netns::Veth,
    packet::Mac,
    steer::Steer,
};
use ipnet::Ipv4Net;

/// One interface of the router.
#[derive(Clone, Debug)]
pub struct Link {
    pub name: &'static str,
    pub ifindex: u32,
    pub mac: Mac,
    pub mtu: u32,
    /// In `HA_IFACES`: the program runs on it.
    pub runs_program: bool,
    /// In `HA_TX_PORTS`: a redirect target.
    pub tx_port: bool,
    /// Flagged `IFACE_VERIFY`: steers only flows the kernel forwarded (none here).
    pub verifies: bool,
}

/// The maps' contents.
pub struct World {
    pub links: Vec<Link>,
    /// Host id → entry; ids not here are all zeros in the map.
    pub hosts: BTreeMap<u32, HostEntry>,
    pub prefixes: Vec<(Ipv4Net, PrefixEntry)>,
    /// The router's own and broadcast addresses (`HA_SETTINGS`): refused sources.
    pub local: Vec<Ipv4Addr>,
}

/// Every host's egress MTU.
const HOST_MTU: u16 = 1500;

pub const LAN_MAC: Mac = [0x02, 0, 0, 0, 0, 0x01];
pub const PORT_MAC: Mac = [0x02, 0, 0, 0, 0, 0x02];
const CLIENT_MAC: Mac = [0x02, 0, 0, 0, 0x0c, 0x01];
const STRANGER_MAC: Mac = [0x02, 0, 0, 0, 0x0e, 0x01];
/// An interface index that exists nowhere: the egress of a host with no tx port.
const MISSING_IFINDEX: u32 = 4_000;

/// Host ids, one per state the data path distinguishes.
mod host {
    pub const WEB1: u32 = 1;
    pub const WEB2: u32 = 2;
    /// Behind the second port.
    pub const FAR: u32 = 3;
    pub const DISABLED: u32 = 4;
    /// Never written.
    pub const ZEROED: u32 = 5;
    pub const NO_PORT: u32 = 6;
    pub const OUT_OF_RANGE: u32 = super::MAX_HOSTS + 5;
}

fn host_mac(id: u32) -> Mac {
    [0x02, 0, 0, 0, 0x10, id.to_be_bytes()[3]]
}

fn net(text: &str) -> Ipv4Net {
    text.parse()
        .unwrap_or_else(|e| panic!("{text:?} is not a prefix: {e}"))
}

/// The prefix table: prefix, owner, prefix id.
const PREFIXES: [(&str, u32, u32); 11] = [
    ("192.168.1.32/27", host::WEB1, 10),
    ("192.168.1.64/27", host::WEB2, 11),
    ("192.168.1.96/27", host::FAR, 12),
    ("192.168.1.128/27", host::DISABLED, 13),
    ("192.168.1.160/27", host::ZEROED, 14),
    ("192.168.1.192/27", host::NO_PORT, 15),
    ("192.168.1.224/27", host::OUT_OF_RANGE, 16),
    ("10.20.0.0/16", host::WEB1, 20),
    ("10.20.5.0/24", host::WEB2, 21),
    ("10.20.5.7/32", host::FAR, 22),
    ("203.0.113.0/24", host::FAR, 65_535),
];

impl World {
    /// The description, for a second port `port` (whose peer does not run the
    /// program).
    pub fn new(port: &Veth) -> Self {
        let links = vec![
            Link {
                name: "lo",
                ifindex: 1,
                mac: LAN_MAC,
                mtu: 65_536,
                runs_program: true,
                tx_port: false,
                verifies: false,
            },
            Link {
                name: "port",
                ifindex: port.ifindex,
                mac: PORT_MAC,
                mtu: 1500,
                runs_program: true,
                tx_port: true,
                verifies: true,
            },
            Link {
                name: "port peer",
                ifindex: port.peer_ifindex,
                mac: STRANGER_MAC,
                mtu: 1500,
                runs_program: false,
                tx_port: false,
                verifies: false,
            },
        ];
        let ready = |id: u32, egress_ifindex: u32, egress_mac: Mac| HostEntry {
            mac: host_mac(id),
            egress_mac,
            mtu: HOST_MTU,
            _pad: [0; 2],
            egress_ifindex,
            flags: HOST_READY | HOST_UP,
        };
        let mut hosts = BTreeMap::new();
        hosts.insert(host::WEB1, ready(host::WEB1, 1, LAN_MAC));
        hosts.insert(host::WEB2, ready(host::WEB2, 1, LAN_MAC));
        hosts.insert(host::FAR, ready(host::FAR, port.ifindex, PORT_MAC));
        hosts.insert(
            host::DISABLED,
            HostEntry {
                flags: 0,
                ..ready(host::DISABLED, 1, LAN_MAC)
            },
        );
        hosts.insert(
            host::NO_PORT,
            ready(host::NO_PORT, MISSING_IFINDEX, PORT_MAC),
        );
        let prefixes = PREFIXES
            .iter()
            .map(|&(cidr, host, prefix_id)| (net(cidr), PrefixEntry::owned(host, prefix_id)))
            .collect();
        let local = vec![
            Ipv4Addr::new(192, 168, 1, 1),
            Ipv4Addr::new(192, 168, 1, 31),
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 255),
        ];
        Self {
            links,
            hosts,
            prefixes,
            local,
        }
    }

    /// Writes the description into the program's maps.
    pub fn load_into(&self, steer: &mut Steer) {
        let mut local = [0; MAX_LOCAL_ADDRS];
        for (slot, addr) in local.iter_mut().zip(&self.local) {
            *slot = u32::from_ne_bytes(addr.octets());
        }
        steer.set_settings(Settings {
            refresh_ns: 1_000_000_000,
            local_filter: local
                .iter()
                .fold(0, |filter, &addr| filter | local_filter_bit(addr)),
            local_count: u32::try_from(self.local.len()).expect("a few addresses"),
            flags: 0,
            local,
        });
        for link in &self.links {
            if link.runs_program {
                let verify = if link.verifies { IFACE_VERIFY } else { 0 };
                steer.set_iface_flags(link.ifindex, link.mac, IFACE_ACTIVE | verify);
            }
            if link.tx_port {
                steer.set_tx_port(link.ifindex);
            }
        }
        for (&id, &entry) in &self.hosts {
            steer.set_host(id, entry);
        }
        for (net, entry) in &self.prefixes {
            steer.set_prefix(net.network(), u32::from(net.prefix_len()), *entry);
        }
    }

    pub fn link(&self, ifindex: u32) -> Option<&Link> {
        self.links.iter().find(|link| link.ifindex == ifindex)
    }

    /// Host ids whose traffic statistics the run checks: every id the prefixes
    /// name inside the table, and 0, which none does.
    pub fn host_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.prefixes.iter().map(|(_, p)| p.host).collect();
        ids.retain(|&id| id < MAX_HOSTS);
        ids.push(0);
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Prefix ids whose traffic statistics the run checks: every prefix's, and 0.
    pub fn prefix_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.prefixes.iter().map(|(_, p)| p.prefix_id).collect();
        ids.push(0);
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// What the generator draws from for frames arriving on `link`, at most
    /// `max_len` bytes long.
    pub fn profile(&self, link: &Link, max_len: usize) -> Profile {
        let client = Ipv4Addr::new(192, 168, 1, 20);
        let mut sources = vec![
            AddrClass::hosts("src client", 60, &[client, Ipv4Addr::new(10, 0, 0, 2)]),
            AddrClass::new("src anywhere", 20, &["0.0.0.0/0"]),
            AddrClass::hosts(
                "src subnet broadcast",
                3,
                &[Ipv4Addr::new(192, 168, 1, 31), Ipv4Addr::new(10, 0, 0, 255)],
            ),
        ];
        sources.extend(martian_sources(3));
        Profile {
            router_mac: link.mac,
            src_mac: CLIENT_MAC,
            src_ip: client,
            other_macs: vec![STRANGER_MAC, host_mac(host::WEB1), PORT_MAC, LAN_MAC],
            server_macs: self.hosts.values().map(|host| host.mac).collect(),
            destinations: vec![
                AddrClass::new(
                    "dst prefix of a LAN host",
                    30,
                    &["192.168.1.32/27", "192.168.1.64/27"],
                ),
                AddrClass::new(
                    "dst nested prefixes",
                    10,
                    &["10.20.0.0/16", "10.20.5.0/24", "10.20.5.7/32"],
                ),
                AddrClass::new(
                    "dst prefix of the host behind the port",
                    18,
                    &["192.168.1.96/27", "203.0.113.0/24"],
                ),
                AddrClass::new(
                    "dst prefix of a host not ready",
                    8,
                    &["192.168.1.128/27", "192.168.1.160/27", "192.168.1.224/27"],
                ),
                AddrClass::new(
                    "dst prefix of a host without tx port",
                    6,
                    &["192.168.1.192/27"],
                ),
                AddrClass::new("dst anywhere", 14, &["0.0.0.0/0"]),
                AddrClass::new(
                    "dst next to a prefix",
                    4,
                    &["192.168.1.0/27", "192.168.2.0/24", "10.21.0.0/16"],
                ),
            ],
            sources,
            max_len,
            boundary_lengths: self
                .links
                .iter()
                .filter(|link| link.mtu < 65_536)
                .flat_map(|link| [link.mtu as usize, link.mtu as usize + 1])
                .collect(),
            plain_percent: 0,
            plain_max_len: max_len,
        }
    }
}
