//! Interfaces, through rtnetlink: index, MAC, MTU and kind by name; IPv4 addresses.
//!
//! The fast path runs only on interfaces that carry untagged Ethernet: a VLAN
//! sub-interface (link kind `vlan`, 802.1Q or 802.1ad) is refused ([`refuse_vlan`])
//! before anything changes. XDP on a VLAN device runs only in generic mode, and the
//! frames the parent receives are tagged, which the fast path passes to the kernel.

use std::net::IpAddr;

use futures::TryStreamExt as _;
use ipnet::Ipv4Net;
use rtnetlink::{
    Handle,
    packet_route::{
        AddressFamily,
        address::AddressAttribute,
        link::{
            InfoData, InfoKind, InfoVlan, LinkAttribute, LinkInfo, LinkMessage, LinkXdp,
            VlanProtocol,
        },
    },
};

use crate::model::Mac;

#[derive(Debug, thiserror::Error)]
pub enum NetdevError {
    #[error("cannot open a netlink socket")]
    Connect(#[source] std::io::Error),
    #[error("no interface named `{name}` (see `ip link`)")]
    Unknown { name: String },
    #[error("interface `{name}` has no Ethernet address; XDP steering needs an Ethernet interface")]
    NoMac { name: String },
    #[error("netlink request about `{name}` failed")]
    Netlink {
        name: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error(
        "`{name}` ({role}) is an {} VLAN sub-interface{}: ha does not run on VLAN \
         devices (XDP runs natively only on physical and veth devices, and the fast path \
         passes VLAN-tagged frames to the kernel). Name an interface that carries the \
         traffic untagged instead: steer on the parent interface{} if the web servers \
         are reached untagged through it, or give them an untagged port",
        vlan.protocol_name(),
        vlan.describe(parent.as_deref()),
        parent.as_ref().map(|p| format!(" (`{p}`)")).unwrap_or_default()
    )]
    Vlan {
        name: String,
        role: &'static str,
        vlan: Vlan,
        /// The parent interface's name, when it could be read.
        parent: Option<String>,
    },
}

/// What makes an interface a VLAN sub-interface, from its link info.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vlan {
    /// The VLAN id (`IFLA_VLAN_ID`).
    pub id: Option<u16>,
    /// 802.1ad (a service tag, QinQ) rather than 802.1Q.
    pub ad: bool,
    /// The ifindex of the parent interface (`IFLA_LINK`).
    pub parent: Option<u32>,
}

impl Vlan {
    fn protocol_name(&self) -> &'static str {
        if self.ad { "802.1ad" } else { "802.1Q" }
    }

    /// ` (VLAN 10 on eth1)`, as far as it is known.
    fn describe(&self, parent: Option<&str>) -> String {
        match (self.id, parent) {
            (Some(id), Some(parent)) => format!(" (VLAN {id} on `{parent}`)"),
            (Some(id), None) => format!(" (VLAN {id})"),
            (None, Some(parent)) => format!(" (on `{parent}`)"),
            (None, None) => String::new(),
        }
    }
}

/// The VLAN a link is, if its link info says `kind vlan`.
pub fn vlan_of(attributes: &[LinkAttribute]) -> Option<Vlan> {
    let info = attributes.iter().find_map(|attr| match attr {
        LinkAttribute::LinkInfo(info) => Some(info),
        _ => None,
    })?;
    if !info
        .iter()
        .any(|item| matches!(item, LinkInfo::Kind(InfoKind::Vlan)))
    {
        return None;
    }
    let mut vlan = Vlan {
        id: None,
        ad: false,
        parent: attributes.iter().find_map(|attr| match attr {
            LinkAttribute::Link(index) => Some(*index),
            _ => None,
        }),
    };
    for item in info {
        if let LinkInfo::Data(InfoData::Vlan(data)) = item {
            for field in data {
                match field {
                    InfoVlan::Id(id) => vlan.id = Some(*id),
                    InfoVlan::Protocol(protocol) => {
                        vlan.ad = *protocol == VlanProtocol::Ieee8021Ad;
                    }
                    _ => {}
                }
            }
        }
    }
    Some(vlan)
}

/// Refuses `iface` as an interface of the fast path (`role`: "the LAN interface",
/// "an ingress interface") if it is a VLAN sub-interface; `parent`: the name of its
/// parent, when known.
pub fn refuse_vlan(
    iface: &Interface,
    role: &'static str,
    parent: Option<String>,
) -> Result<(), NetdevError> {
    match iface.vlan {
        Some(vlan) => Err(NetdevError::Vlan {
            name: iface.name.clone(),
            role,
            vlan,
            parent,
        }),
        None => Ok(()),
    }
}

/// An interface as the data path needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    pub mac: Mac,
    /// The interface's MTU: the longest datagram the fast path sends out of it.
    pub mtu: u32,
    /// Id of the XDP program attached to the interface, if any (any mode).
    pub xdp_prog: Option<u32>,
    /// Set when the interface is a VLAN sub-interface (which the fast path refuses).
    pub vlan: Option<Vlan>,
}

/// A netlink handle whose connection task runs on the current tokio runtime.
pub fn connect() -> Result<Handle, NetdevError> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(NetdevError::Connect)?;
    tokio::spawn(connection);
    Ok(handle)
}

/// Looks up `name`: its index and Ethernet address.
pub async fn interface(handle: &Handle, name: &str) -> Result<Interface, NetdevError> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    let link = match links.try_next().await {
        Ok(Some(link)) => link,
        Ok(None) => {
            return Err(NetdevError::Unknown {
                name: name.to_owned(),
            });
        }
        // The kernel answers ENODEV for a name it does not know.
        Err(rtnetlink::Error::NetlinkError(err)) if err.raw_code() == -libc::ENODEV => {
            return Err(NetdevError::Unknown {
                name: name.to_owned(),
            });
        }
        Err(source) => {
            return Err(NetdevError::Netlink {
                name: name.to_owned(),
                source,
            });
        }
    };
    interface_of(name, &link)
}

/// The interface `link` (a `RTM_NEWLINK` message about `name`) describes.
pub fn interface_of(name: &str, link: &LinkMessage) -> Result<Interface, NetdevError> {
    let mac = link.attributes.iter().find_map(|attr| match attr {
        LinkAttribute::Address(bytes) => <[u8; 6]>::try_from(bytes.as_slice()).ok(),
        _ => None,
    });
    let mac = mac.ok_or_else(|| NetdevError::NoMac {
        name: name.to_owned(),
    })?;
    // Every link has one; 1500 (Ethernet's) is what a link without one would carry.
    let mtu = link
        .attributes
        .iter()
        .find_map(|attr| match attr {
            LinkAttribute::Mtu(mtu) => Some(*mtu),
            _ => None,
        })
        .unwrap_or(1500);
    let xdp_prog = link.attributes.iter().find_map(|attr| match attr {
        LinkAttribute::Xdp(xdp) => xdp.iter().find_map(|x| match x {
            LinkXdp::ProgId(id) if *id != 0 => Some(*id),
            _ => None,
        }),
        _ => None,
    });
    Ok(Interface {
        name: name.to_owned(),
        index: link.header.index,
        mac: Mac(mac),
        mtu,
        xdp_prog,
        vlan: vlan_of(&link.attributes),
    })
}

/// The name of interface `index`, if it exists.
pub async fn name_of(handle: &Handle, index: u32) -> Result<Option<String>, NetdevError> {
    let mut links = handle.link().get().match_index(index).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(link.attributes.iter().find_map(|attr| match attr {
            LinkAttribute::IfName(name) => Some(name.clone()),
            _ => None,
        })),
        Ok(None) => Ok(None),
        Err(rtnetlink::Error::NetlinkError(err)) if err.raw_code() == -libc::ENODEV => Ok(None),
        Err(source) => Err(NetdevError::Netlink {
            name: format!("#{index}"),
            source,
        }),
    }
}

/// The IPv4 addresses of interface `index` (named `name` in errors), each with its
/// subnet.
pub async fn ipv4_addresses(
    handle: &Handle,
    index: u32,
    name: &str,
) -> Result<Vec<Ipv4Net>, NetdevError> {
    let mut messages = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute();
    let mut addresses = Vec::new();
    loop {
        let message = match messages.try_next().await {
            Ok(Some(message)) => message,
            Ok(None) => return Ok(addresses),
            Err(source) => {
                return Err(NetdevError::Netlink {
                    name: name.to_owned(),
                    source,
                });
            }
        };
        if message.header.family != AddressFamily::Inet || message.header.index != index {
            continue;
        }
        // IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer's on a
        // point-to-point link).
        let local = message.attributes.iter().find_map(|attr| match attr {
            AddressAttribute::Local(IpAddr::V4(addr)) => Some(*addr),
            _ => None,
        });
        let address = local.or_else(|| {
            message.attributes.iter().find_map(|attr| match attr {
                AddressAttribute::Address(IpAddr::V4(addr)) => Some(*addr),
                _ => None,
            })
        });
        if let Some(address) = address
            && let Ok(net) = Ipv4Net::new(address, message.header.prefix_len)
        {
            addresses.push(net);
        }
    }
}

/// The names of every interface in the namespace.
pub async fn names(handle: &Handle) -> Result<Vec<String>, NetdevError> {
    let mut links = handle.link().get().execute();
    let mut names = Vec::new();
    loop {
        match links.try_next().await {
            Ok(Some(link)) => names.extend(link.attributes.iter().find_map(|attr| match attr {
                LinkAttribute::IfName(name) => Some(name.clone()),
                _ => None,
            })),
            Ok(None) => return Ok(names),
            Err(source) => {
                return Err(NetdevError::Netlink {
                    name: "(all interfaces)".to_owned(),
                    source,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vlan_link(protocol: Option<VlanProtocol>) -> Vec<LinkAttribute> {
        let mut data = vec![InfoVlan::Id(10)];
        data.extend(protocol.map(InfoVlan::Protocol));
        vec![
            LinkAttribute::IfName("eth1.10".to_owned()),
            LinkAttribute::Link(4),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Vlan),
                LinkInfo::Data(InfoData::Vlan(data)),
            ]),
        ]
    }

    #[test]
    fn vlan_sub_interfaces_are_recognised_by_their_link_info() {
        assert_eq!(
            vlan_of(&vlan_link(Some(VlanProtocol::Ieee8021Q))),
            Some(Vlan {
                id: Some(10),
                ad: false,
                parent: Some(4),
            })
        );
        let qinq = vlan_of(&vlan_link(Some(VlanProtocol::Ieee8021Ad))).expect("a VLAN");
        assert!(qinq.ad);
        // No protocol attribute: 802.1Q, the kernel's default.
        assert!(!vlan_of(&vlan_link(None)).expect("a VLAN").ad);
        for kind in [InfoKind::Veth, InfoKind::Bridge, InfoKind::MacVlan] {
            let attributes = vec![LinkAttribute::LinkInfo(vec![LinkInfo::Kind(kind)])];
            assert_eq!(vlan_of(&attributes), None);
        }
        // A physical device has no link info at all.
        assert_eq!(vlan_of(&[LinkAttribute::Mtu(1500)]), None);
    }

    #[test]
    fn a_vlan_refusal_says_what_to_do() {
        let iface = Interface {
            name: "eth1.10".to_owned(),
            index: 7,
            mac: Mac([2, 0, 0, 0, 0, 1]),
            mtu: 1500,
            xdp_prog: None,
            vlan: vlan_of(&vlan_link(Some(VlanProtocol::Ieee8021Ad))),
        };
        let message = refuse_vlan(&iface, "the LAN interface", Some("eth1".to_owned()))
            .expect_err("a VLAN is refused")
            .to_string();
        assert!(
            message.starts_with(
                "`eth1.10` (the LAN interface) is an 802.1ad VLAN sub-interface (VLAN 10 on `eth1`)"
            ) && message.contains("steer on the parent interface (`eth1`)")
                && message.contains("physical and veth devices"),
            "{message}"
        );
        let plain = Interface {
            vlan: None,
            ..iface
        };
        assert!(refuse_vlan(&plain, "the LAN interface", None).is_ok());
    }
}
