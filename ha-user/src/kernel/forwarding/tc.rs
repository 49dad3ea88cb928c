//! Traffic control on the ingress side of an interface, which runs after XDP and
//! before the kernel's routing: filters of an `ingress` or `clsact` qdisc (an
//! rtnetlink filter dump of parent `ffff:fff2`, which names the ingress block of
//! either), and TCX ingress programs (`BPF_PROG_QUERY`).
//!
//! An interface without such a qdisc answers with no filter. A kernel without TCX
//! (before 6.6: it does not know the attach type, `EINVAL`) has no TCX program.

use std::{ffi::CString, ops::ControlFlow};

use aya::programs::{ProgramError, SchedClassifier, TcAttachType};
use serde::{Deserialize, Serialize};

use super::netlink::{Channel, NetlinkError, RawMessage, attributes, retrying, string};

const RTM_NEWTFILTER: u16 = 44;
const RTM_GETTFILTER: u16 = 46;
/// `TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS)`: the ingress block of an `ingress` or
/// `clsact` qdisc.
const INGRESS_PARENT: u32 = 0xffff_fff2;
const TCA_KIND: u16 = 1;
const TCA_CHAIN: u16 = 11;
/// `struct tcmsg`: family, padding, ifindex, handle, parent, info.
const TCMSG_LEN: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum TcError {
    #[error("no interface named `{name}`")]
    NoInterface { name: String },
    #[error("cannot read the tc filters on the ingress of {name}")]
    Filters {
        name: String,
        #[source]
        source: NetlinkError,
    },
    #[error("cannot list the TCX ingress programs of {name}")]
    Tcx {
        name: String,
        #[source]
        source: Box<ProgramError>,
    },
}

/// A tc filter (one classifier instance: its chain, priority and protocol).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcFilter {
    /// The classifier: `u32`, `bpf`, `flower`, ...
    pub kind: String,
    pub chain: u32,
    pub priority: u16,
    /// The EtherType it matches, in host order (0x0003: all).
    pub protocol: u16,
}

/// A TCX program, by id and name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcxProgram {
    pub id: u32,
    pub name: String,
}

/// The ifindex of interface `name` in the thread's network namespace.
pub fn ifindex(name: &str) -> Result<u32, TcError> {
    let missing = || TcError::NoInterface {
        name: name.to_owned(),
    };
    let c_name = CString::new(name).map_err(|_| missing())?;
    // SAFETY: `c_name` is a valid NUL-terminated string that outlives the call.
    match unsafe { libc::if_nametoindex(c_name.as_ptr()) } {
        0 => Err(missing()),
        index => Ok(index),
    }
}

/// The filters on the ingress block of interface `index` (`name` for messages).
pub fn ingress_filters(
    channel: &mut Channel,
    name: &str,
    index: u32,
) -> Result<Vec<TcFilter>, TcError> {
    let mut body = vec![0u8; TCMSG_LEN];
    body[4..8].copy_from_slice(&index.to_ne_bytes());
    body[12..16].copy_from_slice(&INGRESS_PARENT.to_ne_bytes());
    let listed = retrying(|| {
        let mut filters: Vec<TcFilter> = Vec::new();
        let request = RawMessage {
            kind: RTM_GETTFILTER,
            body: body.clone(),
        };
        channel.dump("tc filter", request, |reply| {
            if reply.kind != RTM_NEWTFILTER {
                return Ok(ControlFlow::Continue(()));
            }
            let filter = parse_filter(&reply.body).ok_or(NetlinkError::Malformed {
                what: "tc filter",
                detail: "a filter message without its header or kind".into(),
            })?;
            // A classifier answers with one message for itself and one per element
            // (hash tables, keys): count it once.
            if !filters.contains(&filter) {
                filters.push(filter);
            }
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(filters)
    });
    listed.map_err(|source| TcError::Filters {
        name: name.to_owned(),
        source,
    })
}

pub(crate) fn parse_filter(body: &[u8]) -> Option<TcFilter> {
    let info = u32::from_ne_bytes(body.get(16..20)?.try_into().ok()?);
    let mut kind = None;
    let mut chain = 0;
    for (key, value) in attributes(body.get(TCMSG_LEN..)?).ok()? {
        match key {
            TCA_KIND => kind = Some(string(value)),
            TCA_CHAIN => chain = u32::from_ne_bytes(value.get(..4)?.try_into().ok()?),
            _ => {}
        }
    }
    Some(TcFilter {
        kind: kind?,
        chain,
        priority: (info >> 16) as u16,
        protocol: u16::from_be(info as u16),
    })
}

/// The TCX ingress programs of interface `name`, or `None` on a kernel without TCX.
pub fn tcx_ingress(name: &str) -> Result<Option<Vec<TcxProgram>>, TcError> {
    match SchedClassifier::query_tcx(name, TcAttachType::Ingress) {
        Ok((_, programs)) => Ok(Some(
            programs
                .iter()
                .map(|program| TcxProgram {
                    id: program.id(),
                    name: program.name_as_str().unwrap_or("").to_owned(),
                })
                .collect(),
        )),
        Err(ProgramError::SyscallError(err))
            if err.io_error.raw_os_error() == Some(libc::EINVAL) =>
        {
            Ok(None)
        }
        Err(source) => Err(TcError::Tcx {
            name: name.to_owned(),
            source: Box::new(source),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::forwarding::netlink::push_attribute;

    #[test]
    fn parses_a_filter_message() {
        let mut body = vec![0u8; TCMSG_LEN];
        let info = (49152u32 << 16) | u32::from(0x0800u16.to_be());
        body[16..20].copy_from_slice(&info.to_ne_bytes());
        push_attribute(&mut body, TCA_KIND, b"u32\0");
        push_attribute(&mut body, TCA_CHAIN, &0u32.to_ne_bytes());
        let filter = parse_filter(&body).expect("a filter");
        assert_eq!(filter.kind, "u32");
        assert_eq!(filter.priority, 49152);
        assert_eq!(filter.protocol, 0x0800);
        assert_eq!(parse_filter(&body[..10]), None);
    }
}
