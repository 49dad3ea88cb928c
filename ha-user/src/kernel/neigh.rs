//! Host MACs from the kernel's neighbour (ARP) table, through rtnetlink.
//!
//! - [`lookup`] reads one entry. An entry counts when the kernel has a link-layer
//!   address it would itself send to: `REACHABLE`, `STALE`, `DELAY`, `PROBE`,
//!   `PERMANENT` or `NOARP`, with a non-zero Ethernet address. `INCOMPLETE` (asked,
//!   no answer yet), `FAILED` (no answer) and `NONE` do not.
//! - [`resolve`] makes the kernel resolve an address now, without sending the host
//!   anything but ARP: it "uses" the neighbour entry (`RTM_NEWNEIGH` with `NTF_USE`
//!   and `NLM_F_CREATE | NLM_F_REPLACE`, what `ip neigh replace ADDR dev DEV use`
//!   sends). The kernel creates the entry if it is missing and runs the same state
//!   machine as for a packet waiting on it: a missing or `FAILED` entry is solicited
//!   (`INCOMPLETE`), a `STALE` one re-confirmed (`DELAY`, `PROBE`); the entry's address
//!   and state are not overwritten. The answer arrives asynchronously: read it with
//!   [`lookup`] or, better, [`watch`].
//! - [`watch`] follows the table through the `RTNLGRP_NEIGH` multicast group and
//!   reports every change of the usable MAC of any entry.
//!
//! The data path's own traffic never refreshes these entries (XDP bypasses the
//! kernel's neighbour code), so on an idle router an entry goes `STALE` and stays
//! there. The health checks (TCP, HTTP, ICMP sockets through the kernel) use the
//! entry on every probe, which keeps the kernel re-confirming it: a host whose MAC
//! changes or that stops answering ARP is noticed within the kernel's neighbour
//! timers (`base_reachable_time`, `delay_first_probe_time`, unicast probes: seconds
//! to tens of seconds with the defaults), and [`watch`] reports it the moment the
//! kernel changes the entry. (On a `REACHABLE` entry [`resolve`] does nothing.)

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, Ipv4Addr},
};

use futures::TryStreamExt as _;
use rtnetlink::{
    Handle, MulticastGroup,
    packet_route::{
        AddressFamily, RouteNetlinkMessage,
        neighbour::{
            NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
        },
    },
};
use tokio::sync::mpsc;

use super::watch::{self, Follower};
use crate::model::Mac;

/// Receive buffer of the watching socket: room for bursts of neighbour changes
/// (each notification is about 100 bytes). An overflow is survived by a re-read.
const WATCH_RX_BUFFER: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum NeighError {
    #[error("cannot open a netlink socket for the neighbour table")]
    Connect(#[source] std::io::Error),
    #[error("cannot read the kernel's neighbour table")]
    Dump {
        #[source]
        source: rtnetlink::Error,
    },
    #[error("cannot make the kernel resolve {addr} on interface #{ifindex}")]
    Resolve {
        addr: Ipv4Addr,
        ifindex: u32,
        #[source]
        source: rtnetlink::Error,
    },
}

/// A change of the usable MAC of a watched address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighEvent {
    pub addr: Ipv4Addr,
    pub ifindex: u32,
    /// The address's MAC now; `None`: not resolved, failed or deleted.
    pub mac: Option<Mac>,
}

/// The usable MAC of `addr` on interface `ifindex`, if the kernel has one.
pub async fn lookup(
    handle: &Handle,
    addr: Ipv4Addr,
    ifindex: u32,
) -> Result<Option<Mac>, NeighError> {
    Ok(lookup_all(handle, ifindex).await?.remove(&addr))
}

/// The usable MAC of every address on interface `ifindex`, from one read of the
/// table (one dump serves any number of hosts).
pub async fn lookup_all(
    handle: &Handle,
    ifindex: u32,
) -> Result<HashMap<Ipv4Addr, Mac>, NeighError> {
    let entries = dump(handle)
        .await
        .map_err(|source| NeighError::Dump { source })?;
    Ok(entries
        .into_iter()
        .filter(|entry| entry.ifindex == ifindex)
        .filter_map(|entry| Some((entry.addr, entry.mac?)))
        .collect())
}

/// Makes the kernel resolve `addr` on interface `ifindex` now (see the module
/// documentation); returns once the kernel accepted the request, not when the
/// answer arrives.
pub async fn resolve(handle: &Handle, addr: Ipv4Addr, ifindex: u32) -> Result<(), NeighError> {
    handle
        .neighbours()
        .add(ifindex, IpAddr::V4(addr))
        // NTF_USE with NUD_PERMANENT is refused; the state is not applied with NTF_USE.
        .state(NeighbourState::None)
        .flags(NeighbourFlags::Use)
        .replace()
        .execute()
        .await
        .map_err(|source| NeighError::Resolve {
            addr,
            ifindex,
            source,
        })
}

/// Watches the usable MAC of every IPv4 neighbour entry, on every interface (the
/// caller keeps those it cares about: hosts added or readdressed by a reload, and a
/// LAN interface created again under another ifindex, are covered without a new
/// watch).
///
/// The channel first carries one event per entry with a usable MAC, then an event
/// whenever an entry's usable MAC changes: learned, changed, lost (`FAILED`,
/// deleted). Transitions that keep the MAC (`REACHABLE` to `STALE` and back) are
/// not reported. If the kernel drops notifications (socket buffer overrun) the table
/// is read again and the differences reported, so the last event of an entry is
/// always its state. The watch ends when the receiver is dropped. Must be called
/// inside a tokio runtime.
pub fn watch(capacity: usize) -> Result<mpsc::Receiver<NeighEvent>, NeighError> {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let watcher = Watcher {
        macs: HashMap::new(),
        tx,
    };
    watch::spawn(&[MulticastGroup::Neigh], Some(WATCH_RX_BUFFER), watcher)
        .map_err(NeighError::Connect)?;
    Ok(rx)
}

struct Watcher {
    /// Every entry with a usable MAC, as last reported.
    macs: HashMap<(Ipv4Addr, u32), Mac>,
    tx: mpsc::Sender<NeighEvent>,
}

impl Follower for Watcher {
    type Table = Vec<Entry>;

    fn what(&self) -> &'static str {
        "the neighbour table"
    }

    async fn read(&self, handle: &Handle) -> Result<Vec<Entry>, rtnetlink::Error> {
        dump(handle).await
    }

    async fn resynced(&mut self, entries: Vec<Entry>, _first: bool) -> bool {
        self.apply_dump(&entries).await
    }

    async fn notified(&mut self, message: RouteNetlinkMessage) -> bool {
        let entry = match message {
            RouteNetlinkMessage::NewNeighbour(msg) => parse(&msg),
            RouteNetlinkMessage::DelNeighbour(msg) => {
                parse(&msg).map(|entry| Entry { mac: None, ..entry })
            }
            _ => None,
        };
        match entry {
            Some(entry) => self.update(entry).await,
            None => true,
        }
    }

    async fn closed(&self) {
        self.tx.closed().await;
    }
}

impl Watcher {
    /// Applies a full read of the table: reports what differs from what was last
    /// reported. False once the receiver is gone.
    async fn apply_dump(&mut self, entries: &[Entry]) -> bool {
        let present: HashSet<(Ipv4Addr, u32)> = entries
            .iter()
            .filter(|entry| entry.mac.is_some())
            .map(|entry| (entry.addr, entry.ifindex))
            .collect();
        let gone: Vec<(Ipv4Addr, u32)> = self
            .macs
            .keys()
            .filter(|key| !present.contains(key))
            .copied()
            .collect();
        for (addr, ifindex) in gone {
            let lost = Entry {
                addr,
                ifindex,
                mac: None,
            };
            if !self.update(lost).await {
                return false;
            }
        }
        for entry in entries {
            if !self.update(*entry).await {
                return false;
            }
        }
        true
    }

    /// Records `entry` and reports it if its MAC changed. False once the receiver
    /// is gone.
    async fn update(&mut self, entry: Entry) -> bool {
        let Entry { addr, ifindex, mac } = entry;
        let key = (addr, ifindex);
        let last = match mac {
            Some(mac) => self.macs.insert(key, mac),
            None => self.macs.remove(&key),
        };
        if last == mac {
            return true;
        }
        let event = NeighEvent { addr, ifindex, mac };
        self.tx.send(event).await.is_ok()
    }
}

/// An IPv4 neighbour entry as `ha` sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) addr: Ipv4Addr,
    pub(crate) ifindex: u32,
    /// The link-layer address if the entry is usable (see [`lookup`]).
    pub(crate) mac: Option<Mac>,
}

/// Every IPv4 neighbour entry of the kernel (proxy entries are a separate table).
async fn dump(handle: &Handle) -> Result<Vec<Entry>, rtnetlink::Error> {
    let mut messages = handle
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Inet)
        .execute();
    let mut entries = Vec::new();
    while let Some(message) = messages.try_next().await? {
        if let Some(entry) = parse(&message) {
            entries.push(entry);
        }
    }
    Ok(entries)
}

/// The entry `message` describes, if it is an IPv4 neighbour (not a proxy entry).
pub(crate) fn parse(message: &NeighbourMessage) -> Option<Entry> {
    let header = &message.header;
    if header.family != AddressFamily::Inet || header.flags.contains(NeighbourFlags::Proxy) {
        return None;
    }
    let mut addr = None;
    let mut lladdr = None;
    for attribute in &message.attributes {
        match attribute {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => addr = Some(*a),
            NeighbourAttribute::LinkLayerAddress(bytes) => {
                lladdr = <[u8; 6]>::try_from(bytes.as_slice()).ok();
            }
            _ => {}
        }
    }
    let usable = matches!(
        header.state,
        NeighbourState::Reachable
            | NeighbourState::Stale
            | NeighbourState::Delay
            | NeighbourState::Probe
            | NeighbourState::Permanent
            | NeighbourState::Noarp
    );
    let mac = lladdr.filter(|bytes| usable && *bytes != [0; 6]).map(Mac);
    Some(Entry {
        addr: addr?,
        ifindex: header.ifindex,
        mac,
    })
}

#[cfg(test)]
mod tests {
    use rtnetlink::packet_route::neighbour::NeighbourHeader;

    use super::*;

    fn message(state: NeighbourState, lladdr: Option<[u8; 6]>) -> NeighbourMessage {
        let mut message = NeighbourMessage::default();
        message.header = NeighbourHeader {
            family: AddressFamily::Inet,
            ifindex: 7,
            state,
            ..NeighbourHeader::default()
        };
        message
            .attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
                Ipv4Addr::new(192, 168, 1, 3),
            )));
        if let Some(lladdr) = lladdr {
            message
                .attributes
                .push(NeighbourAttribute::LinkLayerAddress(lladdr.to_vec()));
        }
        message
    }

    #[tokio::test]
    async fn a_re_read_reports_only_changes() {
        let (tx, mut rx) = mpsc::channel(8);
        let [a, b, c] = [3, 4, 5].map(|last| Ipv4Addr::new(192, 168, 1, last));
        let mut watcher = Watcher {
            macs: HashMap::new(),
            tx,
        };
        let entry = |addr, ifindex, last| Entry {
            addr,
            ifindex,
            mac: Some(Mac([2, 0, 0, 0, 0, last])),
        };
        let unresolved = Entry {
            addr: c,
            ifindex: 7,
            mac: None,
        };
        // The first read reports every entry with a MAC, on any interface.
        assert!(
            watcher
                .apply_dump(&[entry(a, 7, 1), entry(b, 8, 2), unresolved])
                .await
        );
        let mut first: Vec<NeighEvent> = (0..3).filter_map(|_| rx.try_recv().ok()).collect();
        first.sort_by_key(|e| e.addr);
        let seen: Vec<(Ipv4Addr, u32, Option<Mac>)> =
            first.iter().map(|e| (e.addr, e.ifindex, e.mac)).collect();
        assert_eq!(
            seen,
            [
                (a, 7, Some(Mac([2, 0, 0, 0, 0, 1]))),
                (b, 8, Some(Mac([2, 0, 0, 0, 0, 2])))
            ]
        );
        // A later read reports only the differences: c learned, b gone.
        assert!(watcher.apply_dump(&[entry(a, 7, 1), entry(c, 7, 3)]).await);
        let mut later: Vec<NeighEvent> = (0..3).filter_map(|_| rx.try_recv().ok()).collect();
        later.sort_by_key(|e| e.addr);
        let seen: Vec<(Ipv4Addr, Option<Mac>)> = later.iter().map(|e| (e.addr, e.mac)).collect();
        assert_eq!(seen, [(b, None), (c, Some(Mac([2, 0, 0, 0, 0, 3])))]);
        // The same MAC again is no news; a new one is.
        assert!(watcher.update(entry(c, 7, 3)).await);
        assert!(rx.try_recv().is_err(), "no change, no event");
        assert!(watcher.update(entry(c, 7, 9)).await);
        assert_eq!(
            rx.try_recv().expect("a change").mac,
            Some(Mac([2, 0, 0, 0, 0, 9]))
        );
        drop(rx);
        assert!(
            !watcher.update(entry(a, 7, 2)).await,
            "the receiver is gone"
        );
    }

    #[test]
    fn only_usable_states_give_a_mac() {
        let mac = [2, 0, 0, 0, 0, 3];
        for state in [
            NeighbourState::Reachable,
            NeighbourState::Stale,
            NeighbourState::Delay,
            NeighbourState::Probe,
            NeighbourState::Permanent,
            NeighbourState::Noarp,
        ] {
            let entry = parse(&message(state, Some(mac))).expect("an entry");
            assert_eq!(entry.mac, Some(Mac(mac)), "{state:?}");
            assert_eq!(entry.ifindex, 7);
        }
        for state in [
            NeighbourState::Incomplete,
            NeighbourState::Failed,
            NeighbourState::None,
        ] {
            let entry = parse(&message(state, Some(mac))).expect("an entry");
            assert_eq!(entry.mac, None, "{state:?}");
        }
        let entry = parse(&message(NeighbourState::Reachable, None)).expect("an entry");
        assert_eq!(entry.mac, None, "no lladdr");
        let entry = parse(&message(NeighbourState::Noarp, Some([0; 6]))).expect("an entry");
        assert_eq!(entry.mac, None, "all-zero lladdr");
    }
}
