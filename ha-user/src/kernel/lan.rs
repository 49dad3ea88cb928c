//! The LAN interface and `ha`'s kernel routes, followed through rtnetlink's
//! `RTNLGRP_LINK` and `RTNLGRP_IPV4_ROUTE` groups.
//!
//! The controller needs to know, without polling:
//!
//! - a change of the interface's MTU: every host entry carries the egress MTU, so
//!   `ip link set LAN mtu N` rewrites them;
//! - the interface going down and up: the kernel deletes every route through an
//!   interface that goes down (`ha`'s `proto 165` routes with them) without a
//!   notification per route, so the routes are put back when it is up again;
//! - the interface deleted, and an interface of that name created again (a driver
//!   reload, a hot-plugged NIC, a recreated veth): a new ifindex, with no XDP on it;
//! - one of `ha`'s routes deleted by someone else (`ip route del ... proto 165`).
//!
//! [`watch`] follows the interface **by name**: it reports the interface's state
//! ([`LanLink`]) whenever its ifindex, MTU, MAC or up flag changes, [`LanEvent::Gone`]
//! when no interface has the name any more (deleted, or renamed away), and
//! [`LanEvent::RouteDeleted`] for every main-table `proto 165` route deleted. After
//! lost notifications (socket buffer overrun: the controller's own bulk route
//! changes can cause one) the link is read again and [`LanEvent::Resynced`] says
//! that route deletions may have gone unseen.

use futures::TryStreamExt as _;
use ipnet::Ipv4Net;
use rtnetlink::{
    Handle, MulticastGroup,
    packet_route::{
        RouteNetlinkMessage,
        link::{LinkAttribute, LinkFlags, LinkMessage},
        route::RouteType,
    },
};
use tokio::sync::mpsc;

use super::{
    routes,
    watch::{self, Follower},
};
use crate::model::Mac;

/// Receive buffer of the watching socket: the routes of a bulk ownership change
/// (each notification is about 100 bytes) fit; an overrun is survived anyway.
const WATCH_RX_BUFFER: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LanError {
    #[error("cannot open a netlink socket to follow the LAN interface and the routes")]
    Connect(#[source] std::io::Error),
}

/// The LAN interface as the controller follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LanLink {
    pub index: u32,
    pub mtu: u32,
    /// Its Ethernet address; `None` if it has none (then it cannot be steered on).
    pub mac: Option<Mac>,
    /// Administratively up (`IFF_UP`): routes through it can be installed.
    pub up: bool,
}

/// What [`watch`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LanEvent {
    /// The interface of the watched name is now `link` (it appeared, changed, or is
    /// another interface than before: see [`LanLink::index`]).
    Link(LanLink),
    /// No interface has the watched name any more; `index` was its ifindex.
    Gone { index: u32 },
    /// A main-table route of `ha`'s (`proto 165`) was deleted.
    RouteDeleted { prefix: Ipv4Net, oif: Option<u32> },
    /// Notifications were lost and the link read again: route deletions may have
    /// gone unseen.
    Resynced,
}

/// Watches the interface named `name`, which the caller last saw as `known`
/// (`None`: missing), and `ha`'s routes: the channel carries an event whenever
/// either changes (including between the caller's read and this call). The watch
/// ends when the receiver is dropped. Must be called inside a tokio runtime.
pub fn watch(
    name: &str,
    known: Option<LanLink>,
    capacity: usize,
) -> Result<mpsc::Receiver<LanEvent>, LanError> {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let watcher = Watcher {
        name: name.to_owned(),
        last: known,
        tx,
    };
    watch::spawn(
        &[MulticastGroup::Link, MulticastGroup::Ipv4Route],
        Some(WATCH_RX_BUFFER),
        watcher,
    )
    .map_err(LanError::Connect)?;
    Ok(rx)
}

struct Watcher {
    name: String,
    /// The interface as last reported (or known to the caller).
    last: Option<LanLink>,
    tx: mpsc::Sender<LanEvent>,
}

impl Follower for Watcher {
    type Table = Option<LanLink>;

    fn what(&self) -> &'static str {
        "the LAN interface"
    }

    async fn read(&self, handle: &Handle) -> Result<Option<LanLink>, rtnetlink::Error> {
        read(handle, &self.name).await
    }

    async fn resynced(&mut self, link: Option<LanLink>, first: bool) -> bool {
        if !self.update(link).await {
            return false;
        }
        first || self.tx.send(LanEvent::Resynced).await.is_ok()
    }

    async fn notified(&mut self, message: RouteNetlinkMessage) -> bool {
        match message {
            RouteNetlinkMessage::NewLink(link) => match self.judge(&link) {
                Some(now) => self.update(now).await,
                None => true,
            },
            RouteNetlinkMessage::DelLink(link)
                if self
                    .last
                    .is_some_and(|last| last.index == link.header.index) =>
            {
                self.update(None).await
            }
            RouteNetlinkMessage::DelRoute(route) => match routes::parse(&route) {
                Some((route, RouteType::Unicast)) if route.is_ours() && route.metric == 0 => {
                    let event = LanEvent::RouteDeleted {
                        prefix: route.prefix,
                        oif: route.oif,
                    };
                    self.tx.send(event).await.is_ok()
                }
                _ => true,
            },
            _ => true,
        }
    }

    async fn closed(&self) {
        self.tx.closed().await;
    }
}

impl Watcher {
    /// What a `RTM_NEWLINK` about `link` means for the watched name: `Some(state)`
    /// when it is (or no longer is) the watched interface, `None` when it is about
    /// another one.
    fn judge(&self, link: &LinkMessage) -> Option<Option<LanLink>> {
        if name_of(link) == Some(self.name.as_str()) {
            return Some(Some(lan_link(link)));
        }
        // The watched interface renamed away.
        let ours = self
            .last
            .is_some_and(|last| last.index == link.header.index);
        ours.then_some(None)
    }

    /// Reports `now` if it differs from the last report. False once the receiver
    /// is gone.
    async fn update(&mut self, now: Option<LanLink>) -> bool {
        if now == self.last {
            return true;
        }
        let event = match (self.last, now) {
            (_, Some(link)) => LanEvent::Link(link),
            (Some(last), None) => LanEvent::Gone { index: last.index },
            (None, None) => return true,
        };
        self.last = now;
        self.tx.send(event).await.is_ok()
    }
}

/// The interface named `name` now (`None`: there is none).
pub async fn read(handle: &Handle, name: &str) -> Result<Option<LanLink>, rtnetlink::Error> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(Some(lan_link(&link))),
        Ok(None) => Ok(None),
        Err(rtnetlink::Error::NetlinkError(err)) if err.raw_code() == -libc::ENODEV => Ok(None),
        Err(err) => Err(err),
    }
}

fn name_of(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|attr| match attr {
        LinkAttribute::IfName(name) => Some(name.as_str()),
        _ => None,
    })
}

/// What the controller follows of `link`.
fn lan_link(link: &LinkMessage) -> LanLink {
    let mut mtu = 1500;
    let mut mac = None;
    for attr in &link.attributes {
        match attr {
            LinkAttribute::Mtu(value) => mtu = *value,
            LinkAttribute::Address(bytes) => {
                mac = <[u8; 6]>::try_from(bytes.as_slice()).ok().map(Mac);
            }
            _ => {}
        }
    }
    LanLink {
        index: link.header.index,
        mtu,
        mac,
        up: link.header.flags.contains(LinkFlags::Up),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use rtnetlink::packet_route::{
        AddressFamily,
        route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol},
    };

    use super::*;
    use crate::kernel::routes::ROUTE_PROTO;

    fn link(index: u32, name: &str, mtu: u32, up: bool) -> LinkMessage {
        let mut message = LinkMessage::default();
        message.header.index = index;
        if up {
            message.header.flags = LinkFlags::Up;
        }
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_owned()));
        message.attributes.push(LinkAttribute::Mtu(mtu));
        message
            .attributes
            .push(LinkAttribute::Address(vec![2, 0, 0, 0, 0, 1]));
        message
    }

    fn state(index: u32, mtu: u32, up: bool) -> LanLink {
        LanLink {
            index,
            mtu,
            mac: Some(Mac([2, 0, 0, 0, 0, 1])),
            up,
        }
    }

    fn watcher(last: Option<LanLink>) -> (Watcher, mpsc::Receiver<LanEvent>) {
        let (tx, rx) = mpsc::channel(8);
        let watcher = Watcher {
            name: "eth1".to_owned(),
            last,
            tx,
        };
        (watcher, rx)
    }

    #[tokio::test]
    async fn the_interface_is_followed_by_name() {
        let (mut w, mut rx) = watcher(Some(state(4, 1500, true)));
        // Another interface: no news. The same state again: no news.
        assert!(
            w.notified(RouteNetlinkMessage::NewLink(link(5, "eth0", 9000, true)))
                .await
        );
        assert!(
            w.notified(RouteNetlinkMessage::NewLink(link(4, "eth1", 1500, true)))
                .await
        );
        assert!(rx.try_recv().is_err());
        // Down, MTU, deleted, created again under another ifindex.
        assert!(
            w.notified(RouteNetlinkMessage::NewLink(link(4, "eth1", 1500, false)))
                .await
        );
        assert!(
            w.notified(RouteNetlinkMessage::NewLink(link(4, "eth1", 9000, false)))
                .await
        );
        assert!(
            w.notified(RouteNetlinkMessage::DelLink(link(4, "eth1", 9000, false)))
                .await
        );
        assert!(
            w.notified(RouteNetlinkMessage::NewLink(link(9, "eth1", 1500, true)))
                .await
        );
        let events: Vec<LanEvent> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(
            events,
            [
                LanEvent::Link(state(4, 1500, false)),
                LanEvent::Link(state(4, 9000, false)),
                LanEvent::Gone { index: 4 },
                LanEvent::Link(state(9, 1500, true)),
            ]
        );
        // Renamed away: gone.
        assert!(
            w.notified(RouteNetlinkMessage::NewLink(link(9, "old", 1500, true)))
                .await
        );
        assert_eq!(rx.try_recv().ok(), Some(LanEvent::Gone { index: 9 }));
    }

    fn route(protocol: u8) -> RouteMessage {
        let mut message = RouteMessage::default();
        message.header.address_family = AddressFamily::Inet;
        message.header.destination_prefix_length = 27;
        message.header.table = 254;
        message.header.kind = RouteType::Unicast;
        message.header.protocol = RouteProtocol::from(protocol);
        message
            .attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(
                Ipv4Addr::new(192, 168, 1, 64),
            )));
        message.attributes.push(RouteAttribute::Oif(4));
        message
    }

    #[tokio::test]
    async fn only_our_deleted_routes_are_reported() {
        let (mut w, mut rx) = watcher(Some(state(4, 1500, true)));
        assert!(w.notified(RouteNetlinkMessage::DelRoute(route(4))).await);
        assert!(
            w.notified(RouteNetlinkMessage::NewRoute(route(ROUTE_PROTO)))
                .await
        );
        assert!(rx.try_recv().is_err(), "not ours, or not a deletion");
        assert!(
            w.notified(RouteNetlinkMessage::DelRoute(route(ROUTE_PROTO)))
                .await
        );
        assert_eq!(
            rx.try_recv().ok(),
            Some(LanEvent::RouteDeleted {
                prefix: "192.168.1.64/27".parse().expect("prefix"),
                oif: Some(4),
            })
        );
        // A re-read after lost notifications says so.
        assert!(w.resynced(Some(state(4, 1500, true)), false).await);
        assert_eq!(rx.try_recv().ok(), Some(LanEvent::Resynced));
    }
}
