//! A kernel route as `ha` sees it, and the protocol number that marks `ha`'s own.

use std::{fmt, net::Ipv4Addr};

use ipnet::Ipv4Net;

/// The route protocol number `ha` marks its kernel routes with (`proto 165`).
pub const ROUTE_PROTO: u8 = 0xa5;

/// An IPv4 unicast route of the main table, as far as `ha` cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelRoute {
    /// Destination; `0.0.0.0/0` for a default route.
    pub prefix: Ipv4Net,
    /// Next hop; `None` for a device route (`dev eth1` only) or several next hops.
    pub gateway: Option<Ipv4Addr>,
    /// Output interface index; `None` with several next hops.
    pub oif: Option<u32>,
    /// Who installed it: 2 kernel, 3 boot (`route add`), 4 static (`ip route add`),
    /// [`ROUTE_PROTO`] `ha`, ...
    pub protocol: u8,
    /// Metric (`RTA_PRIORITY`); 0 unless given.
    pub metric: u32,
    /// The route's own path MTU (`mtu`, `RTAX_MTU`), if it sets one.
    pub mtu: Option<u32>,
    /// The route's advertised TCP MSS (`advmss`, `RTAX_ADVMSS`), if it sets one.
    pub advmss: Option<u32>,
}

impl KernelRoute {
    /// Whether `ha` installed (or adopted) this route.
    pub fn is_ours(&self) -> bool {
        self.protocol == ROUTE_PROTO
    }

    /// The attributes of this route that change how much a forwarded datagram may
    /// carry, as iproute2 names them (`mtu`, `advmss`): the fast path cannot honour
    /// them (it sends what fits the LAN interface's MTU), so `ha` does not take such
    /// a route over.
    pub fn size_attributes(&self) -> Vec<&'static str> {
        let mut found = Vec::new();
        if self.mtu.is_some() {
            found.push("mtu");
        }
        if self.advmss.is_some() {
            found.push("advmss");
        }
        found
    }
}

impl fmt::Display for KernelRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            prefix,
            gateway,
            oif,
            protocol,
            metric,
            mtu,
            advmss,
        } = self;
        write!(f, "{prefix}")?;
        if let Some(gateway) = gateway {
            write!(f, " via {gateway}")?;
        }
        if let Some(oif) = oif {
            write!(f, " dev #{oif}")?;
        }
        write!(f, " proto {}", protocol_name(*protocol))?;
        write!(f, " metric {metric}")?;
        if let Some(mtu) = mtu {
            write!(f, " mtu {mtu}")?;
        }
        if let Some(advmss) = advmss {
            write!(f, " advmss {advmss}")?;
        }
        Ok(())
    }
}

/// iproute2's name for the well-known protocols, else the number.
fn protocol_name(protocol: u8) -> String {
    match protocol {
        1 => "redirect".to_owned(),
        2 => "kernel".to_owned(),
        3 => "boot".to_owned(),
        4 => "static".to_owned(),
        16 => "dhcp".to_owned(),
        ROUTE_PROTO => format!("{ROUTE_PROTO} (ha)"),
        other => other.to_string(),
    }
}
