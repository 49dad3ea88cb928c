//! The IPv4 routes that decide which sources the kernel refuses, read with route
//! dumps filtered by type (and table) in the kernel (`NETLINK_GET_STRICT_CHK`), so a
//! main table of 65,536 unicast routes is never copied out:
//! - blackhole, unreachable, prohibit and throw routes in any table;
//! - whether the main table has a unicast default route: the first answers of a
//!   main-table unicast dump, which the kernel walks in address order, so a default
//!   route (address 0.0.0.0) comes first; the rest of the dump is dropped;
//! - `local` routes: the /32 ones are the router's own addresses, the wider ones
//!   (outside 127.0.0.0/8) make a whole range local (AnyIP);
//! - `broadcast` routes: the broadcast addresses of the router's subnets.
//!
//! The filters are also applied here, so a kernel that ignores them (before 4.20)
//! gives the same facts at the cost of the whole table.

use std::{net::Ipv4Addr, ops::ControlFlow};

use rtnetlink::packet_route::{
    AddressFamily, RouteNetlinkMessage,
    route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType},
};
use serde::{Deserialize, Serialize};

use super::netlink::{Channel, NetlinkError, retrying};

const RT_TABLE_MAIN: u32 = 254;

/// An IPv4 prefix as a route has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Prefix {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// The route types that matter to the source checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    Blackhole,
    Unreachable,
    Prohibit,
    Throw,
    Local,
    Broadcast,
}

impl RouteKind {
    /// The route types that refuse traffic to what they cover.
    pub const REFUSING: [RouteKind; 4] = [
        RouteKind::Blackhole,
        RouteKind::Unreachable,
        RouteKind::Prohibit,
        RouteKind::Throw,
    ];

    fn netlink(self) -> RouteType {
        match self {
            Self::Blackhole => RouteType::BlackHole,
            Self::Unreachable => RouteType::Unreachable,
            Self::Prohibit => RouteType::Prohibit,
            Self::Throw => RouteType::Throw,
            Self::Local => RouteType::Local,
            Self::Broadcast => RouteType::Broadcast,
        }
    }
}

impl std::fmt::Display for RouteKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Blackhole => "blackhole",
            Self::Unreachable => "unreachable",
            Self::Prohibit => "prohibit",
            Self::Throw => "throw",
            Self::Local => "local",
            Self::Broadcast => "broadcast",
        })
    }
}

/// A route of one of the [`RouteKind`]s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindedRoute {
    pub kind: RouteKind,
    pub prefix: Prefix,
    pub table: u32,
}

impl std::fmt::Display for KindedRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind, self.prefix)?;
        match self.table {
            RT_TABLE_MAIN => Ok(()),
            255 => f.write_str(" table local"),
            table => write!(f, " table {table}"),
        }
    }
}

/// What the routes say about sources.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteFacts {
    /// Blackhole, unreachable, prohibit and throw routes, in any table.
    pub refusing: Vec<KindedRoute>,
    /// The main table has a unicast default route.
    pub main_default: bool,
    /// `local` routes wider than /32, outside 127.0.0.0/8 (AnyIP).
    pub anyip: Vec<KindedRoute>,
    /// The router's own addresses and its subnets' broadcast addresses (/32 `local`
    /// and `broadcast` routes outside 127.0.0.0/8), sorted, without duplicates.
    pub local: Vec<Ipv4Addr>,
}

/// Reads the [`RouteFacts`] on a route socket opened with strict checking.
pub fn facts(channel: &mut Channel) -> Result<RouteFacts, NetlinkError> {
    let mut facts = RouteFacts::default();
    for kind in RouteKind::REFUSING {
        facts.refusing.extend(of_kind(channel, kind)?);
    }
    for kind in [RouteKind::Local, RouteKind::Broadcast] {
        for route in of_kind(channel, kind)? {
            if route.prefix.addr.octets()[0] == 127 {
                continue;
            }
            if route.prefix.len == 32 {
                facts.local.push(route.prefix.addr);
            } else if kind == RouteKind::Local {
                facts.anyip.push(route);
            }
        }
    }
    facts.local.sort();
    facts.local.dedup();
    facts.main_default = main_default(channel)?;
    Ok(facts)
}

/// A dump request for IPv4 routes of `kind` (any table) or, with `table`, of type
/// unicast in that table.
fn request(kind: RouteType, table: Option<u32>) -> RouteNetlinkMessage {
    let mut message = RouteMessage::default();
    message.header.address_family = AddressFamily::Inet;
    message.header.kind = kind;
    if let Some(table) = table {
        message.header.table = u8::try_from(table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
        message.attributes.push(RouteAttribute::Table(table));
    }
    RouteNetlinkMessage::GetRoute(message)
}

/// The IPv4 routes of `kind` in every table.
fn of_kind(channel: &mut Channel, kind: RouteKind) -> Result<Vec<KindedRoute>, NetlinkError> {
    retrying(|| {
        let mut routes = Vec::new();
        channel.dump("route", request(kind.netlink(), None), |reply| {
            routes.extend(kinded(&reply, kind));
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(routes)
    })
}

/// Whether the main table has a unicast default route. Reads the main table's
/// unicast routes in address order up to the first that is not at 0.0.0.0.
fn main_default(channel: &mut Channel) -> Result<bool, NetlinkError> {
    retrying(|| {
        let mut found = false;
        channel.dump(
            "route",
            request(RouteType::Unicast, Some(RT_TABLE_MAIN)),
            |reply| {
                let Some(route) = ipv4_route(&reply) else {
                    return Ok(ControlFlow::Continue(()));
                };
                if route.header.kind != RouteType::Unicast || table(route) != RT_TABLE_MAIN {
                    return Ok(ControlFlow::Continue(()));
                }
                let prefix = prefix(route);
                if prefix.len == 0 {
                    found = true;
                    return Ok(ControlFlow::Break(()));
                }
                Ok(if prefix.addr.is_unspecified() {
                    ControlFlow::Continue(())
                } else {
                    // Past address 0.0.0.0: no default route can follow.
                    ControlFlow::Break(())
                })
            },
        )?;
        Ok(found)
    })
}

/// The route `reply` carries if it is an IPv4 route of `kind`.
pub(crate) fn kinded(reply: &RouteNetlinkMessage, kind: RouteKind) -> Option<KindedRoute> {
    let route = ipv4_route(reply).filter(|r| r.header.kind == kind.netlink())?;
    Some(KindedRoute {
        kind,
        prefix: prefix(route),
        table: table(route),
    })
}

fn ipv4_route(reply: &RouteNetlinkMessage) -> Option<&RouteMessage> {
    match reply {
        RouteNetlinkMessage::NewRoute(route)
            if route.header.address_family == AddressFamily::Inet =>
        {
            Some(route)
        }
        _ => None,
    }
}

fn prefix(route: &RouteMessage) -> Prefix {
    let addr = route
        .attributes
        .iter()
        .find_map(|attr| match attr {
            RouteAttribute::Destination(RouteAddress::Inet(addr)) => Some(*addr),
            _ => None,
        })
        .unwrap_or(Ipv4Addr::UNSPECIFIED);
    Prefix {
        addr,
        len: route.header.destination_prefix_length,
    }
}

/// The route's table: the attribute (tables above 255 need it), else the header.
fn table(route: &RouteMessage) -> u32 {
    route
        .attributes
        .iter()
        .find_map(|attr| match attr {
            RouteAttribute::Table(table) => Some(*table),
            _ => None,
        })
        .unwrap_or(u32::from(route.header.table))
}
