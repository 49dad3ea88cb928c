//! One pass of the corpus through the router: each frame sent by its side's client,
//! one at a time with a pause, while every station where a frame or an answer to it
//! can end up captures what it receives; then every captured frame is attributed to
//! the corpus entry it comes from (see `corpus.rs`), and everything else counted as
//! noise (ARP, neighbour discovery, health checks, answers of the web servers).
//!
//! Recorded per entry: the frames delivered to a station, and the ICMP errors the
//! router sends about it, every byte but these: the outer identification and header
//! checksum of an error (the kernel draws the identification afresh), and the
//! timestamps in IPv4 timestamp options with the checksum of their header (a router
//! writes its clock there). ICMP redirects are counted, not compared: see
//! `compare.rs`.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddrV4},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use ha_tests::{
    frames::{self, Ipv4Fields},
    lab::{Lab, Mac, Node},
    packet::{IPV4_HLEN, ipv4_header_verifies},
};

use crate::corpus::{Corpus, Entry, Key, Side};

/// Where frames are captured: the web servers and both clients.
pub const POINTS: [Node; 6] = [
    Node::Host(1),
    Node::Host(2),
    Node::Host(3),
    Node::Host(4),
    Node::LanClient,
    Node::WanClient,
];

/// ICMP types that report an error about a datagram (RFC 792): destination
/// unreachable, source quench, redirect, time exceeded, parameter problem.
const ICMP_ERRORS: [u8; 5] = [3, 4, 5, 11, 12];
const ICMP_REDIRECT: u8 = 5;

/// After the last frame, how long answers and queued frames may take to arrive.
const SETTLE: Duration = Duration::from_millis(500);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// The entry's datagram (or a fragment of it) arrived.
    Delivered,
    /// The router reported an error about it (type, code).
    IcmpError(u8, u8),
}

/// What one station saw of one entry.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Record {
    pub point: Node,
    pub kind: Kind,
    pub bytes: Vec<u8>,
    /// Whether the IPv4 header checksum of an untagged datagram verified as
    /// captured, before any masking (true for anything else).
    pub checksum_ok: bool,
}

/// Everything one pass saw.
pub struct Observation {
    /// Per corpus entry, its records, sorted.
    pub outcomes: Vec<Vec<Record>>,
    /// Per corpus entry, how many ICMP redirects the router sent about it.
    pub redirects: Vec<u32>,
    /// Captured frames of no entry, by kind.
    pub noise: BTreeMap<String, u64>,
    pub duration: Duration,
}

/// Sends the corpus through `lab`'s router with `gap` between frames.
pub fn observe(lab: &Lab, corpus: &Corpus, gap: Duration) -> anyhow::Result<Observation> {
    refresh(lab)?;
    let senders = [
        lab.raw_sender(Side::Lan.sender(), "eth0")?,
        lab.raw_sender(Side::Wan.sender(), "eth0")?,
    ];
    let mut captures = Vec::new();
    for point in POINTS {
        let (_, mac) = lab.station(point)?;
        captures.push((point, mac, lab.capture(point, "eth0")?));
    }
    let started = Instant::now();
    for entry in &corpus.entries {
        senders[usize::from(entry.side == Side::Wan)]
            .send(&entry.bytes)
            .with_context(|| format!("sending {}", entry.describe()))?;
        std::thread::sleep(gap);
    }
    std::thread::sleep(SETTLE);
    let duration = started.elapsed();

    let routers = lab.router_addresses();
    let mut observation = Observation {
        outcomes: vec![Vec::new(); corpus.entries.len()],
        redirects: vec![0; corpus.entries.len()],
        noise: BTreeMap::new(),
        duration,
    };
    for (point, mac, capture) in captures {
        for frame in capture.stop_raw() {
            match classify(corpus, &routers, point, mac, frame) {
                Class::Record(index, record) => observation.outcomes[index].push(record),
                Class::Redirect(index) => observation.redirects[index] += 1,
                Class::Noise(kind) => *observation.noise.entry(kind).or_default() += 1,
                Class::NotForThisStation => {}
            }
        }
    }
    for records in &mut observation.outcomes {
        records.sort();
    }
    Ok(observation)
}

/// Neighbour entries and the switch's MAC table fresh on every path the corpus
/// takes, so that no frame waits for ARP or is flooded to every port: the router and
/// both clients talk to a web server, the router to each.
fn refresh(lab: &Lab) -> anyhow::Result<()> {
    let port = lab.spec().udp_port;
    let timeout = Duration::from_secs(1);
    for n in 1..=4 {
        let (address, _) = lab.station(Node::Host(n))?;
        lab.udp_ask(
            Node::Router,
            SocketAddrV4::new(address, port),
            "refresh",
            timeout,
        )?;
    }
    let (host1, _) = lab.station(Node::Host(1))?;
    for client in [Node::LanClient, Node::WanClient] {
        lab.udp_ask(client, SocketAddrV4::new(host1, port), "refresh", timeout)?;
    }
    Ok(())
}

enum Class {
    Record(usize, Record),
    Redirect(usize),
    Noise(String),
    /// Addressed to another station's MAC (flooded by the switch).
    NotForThisStation,
}

fn classify(corpus: &Corpus, routers: &[Ipv4Addr], point: Node, mac: Mac, frame: Vec<u8>) -> Class {
    if frame.len() < 14 {
        return Class::Noise("runt".into());
    }
    if frame[..6] != mac.0 && frame[0] & 1 == 0 {
        return Class::NotForThisStation;
    }
    let checksum_ok = frames::ipv4_offset(&frame) != Some(14) || ipv4_header_verifies(&frame);
    if let Some(entry) = corpus.by_bytes(&frame) {
        let record = Record {
            point,
            kind: Kind::Delivered,
            bytes: frame,
            checksum_ok,
        };
        return Class::Record(entry.index, record);
    }
    let mut frame = frame;
    let Some(at) = frames::ipv4_offset(&frame) else {
        let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
        return Class::Noise(format!("ethertype {ethertype:#06x}"));
    };
    let Some(ip) = Ipv4Fields::read(&frame[at..]) else {
        return Class::Noise("IPv4 shorter than its header".into());
    };
    if let Some((entry, kind)) = router_error(corpus, routers, &ip, &frame[at..]) {
        if let Kind::IcmpError(ICMP_REDIRECT, _) = kind {
            return Class::Redirect(entry.index);
        }
        // The kernel picks the identification of its own datagrams afresh, and
        // echoes a timestamp option with its clock in it.
        frame[at + 4..at + 6].fill(0);
        frame[at + 10..at + 12].fill(0);
        let _ = mask_timestamps(&mut frame[at..]);
        // The quote is of the datagram as the router parsed it, its clock already
        // in the option; the ICMP checksum covers it.
        let icmp = at + usize::from(ip.ihl) * 4;
        if mask_timestamps(&mut frame[icmp + 8..]) {
            frame[icmp + 2..icmp + 4].fill(0);
        }
        let record = Record {
            point,
            kind,
            bytes: frame,
            checksum_ok,
        };
        return Class::Record(entry.index, record);
    }
    if let Some(entry) = corpus.by_key(&Key::of(&ip))
        && carries(entry, &frame[at..], true)
    {
        let _ = mask_timestamps(&mut frame[at..]);
        let record = Record {
            point,
            kind: Kind::Delivered,
            bytes: frame,
            checksum_ok,
        };
        return Class::Record(entry.index, record);
    }
    Class::Noise(format!(
        "IPv4 proto {} {} > {}",
        ip.protocol, ip.src, ip.dst
    ))
}

/// Zeroes the timestamps in the IPv4 timestamp options of the header at the start of
/// `datagram`, and then its checksum: a router writes its clock there (RFC 791), so
/// two runs never agree on them. Pointer, flags, overflow count and addresses stay,
/// so whether the router filled the option in is still compared. True if there was a
/// timestamp option.
fn mask_timestamps(datagram: &mut [u8]) -> bool {
    const TS: u8 = 68;
    let Some(&first) = datagram.first() else {
        return false;
    };
    let header_len = (usize::from(first & 0x0f) * 4).min(datagram.len());
    let mut at = IPV4_HLEN;
    let mut masked = false;
    while at < header_len {
        match datagram[at] {
            0 => break,
            1 => at += 1,
            kind => {
                let Some(&len) = datagram.get(at + 1) else {
                    break;
                };
                let end = at + usize::from(len);
                if len < 2 || end > header_len {
                    break;
                }
                if kind == TS && len >= 4 {
                    let entry = if datagram[at + 3] & 0x0f == 0 { 4 } else { 8 };
                    let mut slot = at + 4;
                    while slot + entry <= end {
                        datagram[slot + entry - 4..slot + entry].fill(0);
                        slot += entry;
                    }
                    masked = true;
                }
                at = end;
            }
        }
    }
    if masked {
        datagram[10..12].fill(0);
    }
    masked
}

/// The entry an ICMP error from the router is about, and the error's type and code.
fn router_error<'c>(
    corpus: &'c Corpus,
    routers: &[Ipv4Addr],
    ip: &Ipv4Fields,
    datagram: &[u8],
) -> Option<(&'c Entry, Kind)> {
    if ip.protocol != 1 || !routers.contains(&ip.src) {
        return None;
    }
    let icmp = datagram.get(usize::from(ip.ihl) * 4..)?;
    let (kind, code) = (*icmp.first()?, *icmp.get(1)?);
    if !ICMP_ERRORS.contains(&kind) {
        return None;
    }
    let quoted = icmp.get(8..)?;
    let entry = corpus.by_key(&Key::of(&Ipv4Fields::read(quoted)?))?;
    carries(entry, quoted, false).then_some((entry, Kind::IcmpError(kind, code)))
}

/// Whether `received` (a datagram from its IPv4 header on, its key the entry's)
/// carries the entry's payload: the bytes after its header are the entry's at the
/// same fragment offset. `whole`: a datagram as forwarded (its total length says
/// where it ends); else a quote in an ICMP error, cut wherever the quote ends.
fn carries(entry: &Entry, received: &[u8], whole: bool) -> bool {
    let Some((at, sent)) = entry.ipv4() else {
        return false;
    };
    let Some(got) = Ipv4Fields::read(received) else {
        return false;
    };
    let (sent_header, got_header) = (usize::from(sent.ihl) * 4, usize::from(got.ihl) * 4);
    if sent_header < IPV4_HLEN || got_header < IPV4_HLEN {
        return false;
    }
    let datagram = &entry.bytes[at..];
    let sent_end = usize::from(sent.total_len).clamp(sent_header, datagram.len().max(sent_header));
    let Some(sent_payload) = datagram.get(sent_header..sent_end.min(datagram.len())) else {
        return false;
    };
    let got_end = if whole {
        usize::from(got.total_len).min(received.len())
    } else {
        received.len()
    };
    let Some(got_payload) = received.get(got_header..got_end.max(got_header)) else {
        return false;
    };
    let offset = |ip: &Ipv4Fields| usize::from(ip.flags_fragment & 0x1fff) * 8;
    let Some(shift) = offset(&got).checked_sub(offset(&sent)) else {
        return false;
    };
    sent_payload.get(shift..shift + got_payload.len()) == Some(got_payload)
}
