//! Interfaces, through rtnetlink: index and MAC by name.

use futures::TryStreamExt as _;
use rtnetlink::{
    Handle,
    packet_route::link::{LinkAttribute, LinkXdp},
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
    })
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
