//! The judgement: per corpus entry, what the stations saw with the kernel's
//! forwarding alone against what they saw with the fast path. Equal records (every
//! delivered byte, every ICMP error from the router) are the same outcome; anything
//! else is a difference, and fails the test unless it is one of the [`Accepted`]
//! cases, each of which is written down here with why it does no harm.
//!
//! Not compared at all: ICMP redirects. The router sends one when it forwards a
//! frame back out of the interface it came in on (a LAN client's frame to a web
//! server on the same LAN), at most 9 per peer and then nothing until the peer has
//! been quiet for a while (`ip_rt_redirect_number`, `ip_rt_redirect_silence`, not
//! settable per namespace), so whether one is sent depends on timing, not on the
//! frame. They are advice; the datagram is delivered either way. The counts are
//! printed.

use crate::{
    corpus::Corpus,
    observe::{Kind, Observation, Record},
};

/// Differences that do no harm, accepted with their reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Accepted {
    /// The kernel dropped a frame whose IPv4 header checksum is wrong (RFC 1812
    /// 5.2.2); the fast path, which does not verify it, delivered it to a web server,
    /// whose own IP layer drops it (RFC 1122 3.2.1.2). Only when every delivered copy
    /// went to a web server and fails its checksum, and the servers' `InCsumErrors`
    /// grew by at least as many (checked by the suite).
    ServerDropsBadChecksum,
    /// Both delivered the same datagrams to the same stations; the fast path's
    /// copies still carry the bytes after the IPv4 total length (Ethernet padding or
    /// a trailer), which the kernel trims when it forwards and every receiver
    /// ignores (RFC 894).
    EthernetTrailer,
}

impl Accepted {
    pub fn describe(self) -> &'static str {
        match self {
            Accepted::ServerDropsBadChecksum => {
                "bad header checksum: kernel drops, fast path delivers, the server drops"
            }
            Accepted::EthernetTrailer => {
                "Ethernet trailer kept by the fast path, trimmed by the kernel"
            }
        }
    }
}

/// One entry whose outcomes differ.
pub struct Difference {
    pub index: usize,
    pub kernel: Vec<Record>,
    pub fast: Vec<Record>,
    pub accepted: Option<Accepted>,
}

/// Every entry whose outcomes differ, in corpus order.
pub fn differences(corpus: &Corpus, kernel: &Observation, fast: &Observation) -> Vec<Difference> {
    corpus
        .entries
        .iter()
        .filter_map(|entry| {
            let (k, f) = (&kernel.outcomes[entry.index], &fast.outcomes[entry.index]);
            (k != f).then(|| Difference {
                index: entry.index,
                kernel: k.clone(),
                fast: f.clone(),
                accepted: accepted(k, f),
            })
        })
        .collect()
}

/// The accepted case `kernel` → `fast` is, if any.
fn accepted(kernel: &[Record], fast: &[Record]) -> Option<Accepted> {
    let at_server = |r: &Record| matches!(r.point, ha_tests::lab::Node::Host(_));
    if kernel.is_empty()
        && !fast.is_empty()
        && fast
            .iter()
            .all(|r| r.kind == Kind::Delivered && at_server(r) && !r.checksum_ok)
    {
        return Some(Accepted::ServerDropsBadChecksum);
    }
    if kernel.len() == fast.len()
        && kernel.iter().zip(fast).all(|(k, f)| {
            k.point == f.point
                && k.kind == Kind::Delivered
                && f.kind == Kind::Delivered
                && datagram_end(&k.bytes) == Some(k.bytes.len())
                && f.bytes.len() > k.bytes.len()
                && f.bytes.starts_with(&k.bytes)
        })
    {
        return Some(Accepted::EthernetTrailer);
    }
    None
}

/// Where the IPv4 datagram of an untagged frame ends: 14 + its total length.
fn datagram_end(frame: &[u8]) -> Option<usize> {
    (ha_tests::frames::ipv4_offset(frame) == Some(14))
        .then(|| frame.get(16..18))
        .flatten()
        .map(|len| 14 + usize::from(u16::from_be_bytes([len[0], len[1]])))
}

/// How many delivered frames the accepted bad-checksum differences count.
pub fn bad_checksum_deliveries(differences: &[Difference]) -> usize {
    differences
        .iter()
        .filter(|d| d.accepted == Some(Accepted::ServerDropsBadChecksum))
        .map(|d| d.fast.len())
        .sum()
}

/// A short account of `records`: where what went, e.g. `host2 ×3, ICMP 3/4 → wanclient`.
pub fn summary(records: &[Record]) -> String {
    if records.is_empty() {
        return "not delivered".into();
    }
    let mut parts: Vec<(String, usize)> = Vec::new();
    for record in records {
        let text = match record.kind {
            Kind::Delivered => format!("{} ({} B)", record.point, record.bytes.len()),
            Kind::IcmpError(kind, code) => format!("ICMP {kind}/{code} to {}", record.point),
        };
        match parts.last_mut() {
            Some((last, count)) if *last == text => *count += 1,
            _ => parts.push((text, 1)),
        }
    }
    parts
        .into_iter()
        .map(|(text, count)| {
            if count > 1 {
                format!("{text} x{count}")
            } else {
                text
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}
