//! The corpus: every fixture frame (the packet fixtures' own table, `../fixtures`)
//! and seeded random frames, sent from the LAN client or the WAN client to the
//! router, each one identifiable wherever it or a quote of it shows up.
//!
//! Identification: every IPv4 frame gets a unique identification field (its index
//! plus one), its checksum updated by the same difference, so that a wrong checksum
//! stays wrong; forwarding, fragmentation and ICMP quotes keep the field. With the
//! addresses and protocol it is the frame's [`Key`]; a captured frame counts as the
//! entry's only if its payload is also a slice of the entry's. Frames without an IPv4
//! header (other EtherTypes, truncations) are identified by their exact bytes.

use std::{
    collections::{HashMap, HashSet},
    net::Ipv4Addr,
};

use ha_tests::{
    frames::{self, AddrClass, Generated, Ipv4Fields, Profile, Rng, generate, martian_sources},
    lab::{Lab, Node},
    netns::in_private_netns,
    packet::Mac,
};

use crate::{passed, table, world};

/// The side of the router a frame enters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// Sent by the LAN client to the router's LAN interface (the fast path: XDP_TX).
    Lan,
    /// Sent by the WAN client to the router's WAN interface (XDP_REDIRECT).
    Wan,
}

impl Side {
    pub const ALL: [Side; 2] = [Side::Lan, Side::Wan];

    pub fn sender(self) -> Node {
        match self {
            Side::Lan => Node::LanClient,
            Side::Wan => Node::WanClient,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Side::Lan => "LAN",
            Side::Wan => "WAN",
        }
    }
}

/// What identifies an IPv4 datagram across forwarding, fragmentation and quoting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub id: u16,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
}

impl Key {
    pub fn of(ip: &Ipv4Fields) -> Key {
        Key {
            id: ip.id,
            src: ip.src,
            dst: ip.dst,
            protocol: ip.protocol,
        }
    }
}

/// One frame of the corpus.
pub struct Entry {
    pub index: usize,
    pub side: Side,
    pub bytes: Vec<u8>,
    /// The fixture's name, or `random #N` (the generator's frame index).
    pub origin: String,
    pub labels: Vec<&'static str>,
}

impl Entry {
    /// The IPv4 header of the frame (behind VLAN tags too), if 20 bytes of it are there.
    pub fn ipv4(&self) -> Option<(usize, Ipv4Fields)> {
        let at = frames::ipv4_offset(&self.bytes)?;
        Some((at, Ipv4Fields::read(&self.bytes[at..])?))
    }

    /// One line: side, origin, what the frame is.
    pub fn describe(&self) -> String {
        let labels = if self.labels.is_empty() {
            String::new()
        } else {
            format!(" [{}]", self.labels.join(", "))
        };
        format!(
            "#{} {} {}: {}{labels}",
            self.index,
            self.side.name(),
            self.origin,
            frames::describe(&self.bytes)
        )
    }
}

/// The corpus and how to find an entry from what was captured.
pub struct Corpus {
    pub entries: Vec<Entry>,
    by_key: HashMap<Key, usize>,
    by_bytes: HashMap<Vec<u8>, usize>,
}

impl Corpus {
    pub fn by_key(&self, key: &Key) -> Option<&Entry> {
        self.by_key.get(key).map(|&i| &self.entries[i])
    }

    pub fn by_bytes(&self, bytes: &[u8]) -> Option<&Entry> {
        self.by_bytes.get(bytes).map(|&i| &self.entries[i])
    }
}

/// MACs of the fixture world, as the fixtures address frames.
const FIXTURE_ROUTER_MACS: [Mac; 2] = [world::ROUTER_MAC, world::PORT_MAC];

/// The fixture table's input frames, with their names.
fn fixture_frames() -> Vec<(&'static str, Vec<u8>)> {
    in_private_netns(|| {
        let world = world::World::new();
        table::steered(&world)
            .into_iter()
            .chain(passed::passed(&world))
            .map(|fixture| (fixture.name, fixture.input))
            .collect()
    })
}

/// A fixture frame as `side`'s client sends it: addressed to the router's MAC there
/// where the fixture addresses the router, from the client's own MAC.
fn readdress(mut frame: Vec<u8>, router: Mac, client: Mac) -> Vec<u8> {
    if FIXTURE_ROUTER_MACS.iter().any(|mac| frame[..6] == *mac) {
        frame[..6].copy_from_slice(&router);
    }
    frame[6..12].copy_from_slice(&client);
    frame
}

/// The generator's view of `side` in `lab`.
pub fn profile(lab: &Lab, side: Side) -> Profile {
    let (self_ip, self_mac) = lab
        .station(side.sender())
        .unwrap_or_else(|e| panic!("{e:#}"));
    let other = match side {
        Side::Lan => Node::WanClient,
        Side::Wan => Node::LanClient,
    };
    let (other_ip, _) = lab.station(other).unwrap_or_else(|e| panic!("{e:#}"));
    let hosts: Vec<(Ipv4Addr, ha_tests::lab::Mac)> = (1..=4)
        .map(|n| {
            lab.station(Node::Host(n))
                .unwrap_or_else(|e| panic!("{e:#}"))
        })
        .collect();
    let vips: Vec<String> = lab
        .spec()
        .prefixes
        .iter()
        .map(|p| p.cidr.to_string())
        .collect();
    let vips: Vec<&str> = vips.iter().map(String::as_str).collect();
    let vip_addrs: Vec<Ipv4Addr> = lab
        .spec()
        .prefixes
        .iter()
        .map(|p| ha_tests::lab::vip(p.cidr))
        .collect();
    let host_addrs: Vec<Ipv4Addr> = hosts.iter().map(|(ip, _)| *ip).collect();
    let router = lab.router_addresses();
    let (router_mac, max_len) = match side {
        Side::Lan => (lab.router_lan_mac(), crate::LAN_MTU + 14),
        Side::Wan => (lab.router_wan_mac(), crate::WAN_MTU + 14),
    };
    let mut sources = vec![
        AddrClass::hosts("src the sender", 60, &[self_ip]),
        AddrClass::new("src a LAN neighbour", 4, &["192.168.1.16/28"]),
        AddrClass::new("src a WAN address", 4, &["10.0.0.0/24"]),
        AddrClass::new("src anywhere", 8, &["0.0.0.0/0"]),
        AddrClass::hosts("src a VIP", 2, &vip_addrs),
        AddrClass::hosts("src the router's own address", 3, &router),
        AddrClass::hosts(
            "src a subnet broadcast",
            3,
            &[Ipv4Addr::new(192, 168, 1, 31), Ipv4Addr::new(10, 0, 0, 255)],
        ),
    ];
    sources.extend(martian_sources(2));
    Profile {
        router_mac: router_mac.0,
        src_mac: self_mac.0,
        src_ip: self_ip,
        other_macs: hosts
            .iter()
            .map(|(_, mac)| mac.0)
            .chain([world::STRANGER_MAC])
            .collect(),
        // Frames from a server's MAC would teach the lab's switch that MAC on the
        // client's port.
        server_macs: Vec::new(),
        destinations: vec![
            AddrClass::new("dst VIP prefix", 60, &vips),
            AddrClass::hosts("dst a web server's own address", 6, &host_addrs),
            AddrClass::hosts("dst the router", 4, &router),
            AddrClass::hosts("dst the other client", 5, &[other_ip]),
            AddrClass::hosts("dst the sender itself", 2, &[self_ip]),
            AddrClass::hosts(
                "dst a broadcast address",
                2,
                &[Ipv4Addr::new(192, 168, 1, 31), Ipv4Addr::BROADCAST],
            ),
            AddrClass::new("dst elsewhere (the default route)", 6, &["0.0.0.0/0"]),
            AddrClass::new(
                "dst next to a VIP prefix",
                3,
                &["192.168.1.0/27", "192.168.1.160/27"],
            ),
        ],
        sources,
        max_len: max_len as usize,
        // A third of the corpus plain traffic, so that enough of it is steered.
        plain_percent: 35,
        plain_max_len: crate::LAN_MTU as usize + 14,
        boundary_lengths: vec![
            crate::LAN_MTU as usize,
            crate::LAN_MTU as usize + 1,
            crate::WAN_MTU as usize,
        ],
    }
}

/// Whether `frame` has the 20-byte IPv4 header its identification is stamped into.
fn stampable(frame: &[u8]) -> bool {
    frames::ipv4_offset(frame).is_some_and(|at| Ipv4Fields::read(&frame[at..]).is_some())
}

/// The corpus: the fixtures from both sides, then `random` generated frames (or only
/// generated frame `only`), alternating sides.
pub fn build(lab: &Lab, seed: u64, random: u64, only: Option<u64>) -> Corpus {
    let mut raw: Vec<(Side, String, Vec<u8>, Vec<&'static str>)> = Vec::new();
    if only.is_none() {
        let fixtures = fixture_frames();
        for side in Side::ALL {
            let (_, client) = lab
                .station(side.sender())
                .unwrap_or_else(|e| panic!("{e:#}"));
            let router = match side {
                Side::Lan => lab.router_lan_mac(),
                Side::Wan => lab.router_wan_mac(),
            };
            // A frame longer than the sender's own link carries cannot be sent there
            // (the fixtures' jumbo frames): it is not part of that side's corpus.
            let longest = match side {
                Side::Lan => crate::LAN_MTU,
                Side::Wan => crate::WAN_MTU,
            } as usize
                + 14;
            for (name, frame) in fixtures.iter().filter(|(_, f)| f.len() <= longest) {
                let frame = readdress(frame.clone(), router.0, client.0);
                raw.push((side, format!("fixture {name:?}"), frame, Vec::new()));
            }
        }
    }
    let profiles = [profile(lab, Side::Lan), profile(lab, Side::Wan)];
    let indices: Vec<u64> = match only {
        Some(index) => vec![index],
        None => (0..random).collect(),
    };
    let mut seen: HashSet<Vec<u8>> = raw.iter().map(|(_, _, bytes, _)| bytes.clone()).collect();
    for index in indices {
        let side = Side::ALL[usize::from(index % 2 == 1)];
        let mut rng = Rng::for_frame(seed, index);
        // Frames without an IPv4 header are told apart by their bytes: draw again
        // (from the same stream) until this one is new.
        let frame: Generated = loop {
            let frame = generate(&mut rng, &profiles[usize::from(side == Side::Wan)]);
            if seen.insert(frame.bytes.clone()) || stampable(&frame.bytes) {
                break frame;
            }
        };
        raw.push((side, format!("random #{index}"), frame.bytes, frame.labels));
    }
    assert!(
        raw.len() < usize::from(u16::MAX),
        "{} frames: more than the IPv4 identification field can tell apart",
        raw.len()
    );

    let mut corpus = Corpus {
        entries: Vec::new(),
        by_key: HashMap::new(),
        by_bytes: HashMap::new(),
    };
    for (index, (side, origin, mut bytes, labels)) in raw.into_iter().enumerate() {
        let id = u16::try_from(index + 1).expect("checked above");
        frames::stamp_ipv4_id(&mut bytes, id);
        let entry = Entry {
            index,
            side,
            bytes,
            origin,
            labels,
        };
        if let Some((_, ip)) = entry.ipv4() {
            let previous = corpus.by_key.insert(Key::of(&ip), index);
            assert!(
                previous.is_none(),
                "two corpus frames with key {:?}",
                Key::of(&ip)
            );
        }
        if let Some(previous) = corpus.by_bytes.insert(entry.bytes.clone(), index) {
            panic!(
                "corpus frames #{previous} and #{index} are the same bytes: {}",
                entry.describe()
            );
        }
        corpus.entries.push(entry);
    }
    corpus
}
