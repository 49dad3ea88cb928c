//! `ctnetlink` requests and answers (`NETLINK_NETFILTER`, subsystem
//! `NFNL_SUBSYS_CTNETLINK`): look one entry up by a tuple, and change an existing
//! one (`IPCTNL_MSG_CT_NEW` without `NLM_F_CREATE`: the kernel answers `ENOENT`
//! rather than create it). No crate of the workspace frames them; the attribute
//! framing is [`crate::kernel::forwarding::netlink`]'s.

use ha_common::FlowKey;

use crate::kernel::forwarding::netlink::{RawMessage, attributes, be_u32, push_attribute};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const AF_INET: u8 = 2;
const NLA_F_NESTED: u16 = 0x8000;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_STATUS: u16 = 3;
const CTA_PROTOINFO: u16 = 4;
const CTA_TIMEOUT: u16 = 7;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_PROTOINFO_TCP: u16 = 1;
const CTA_PROTOINFO_TCP_STATE: u16 = 1;
const CTA_PROTOINFO_TCP_FLAGS_ORIGINAL: u16 = 4;
const CTA_PROTOINFO_TCP_FLAGS_REPLY: u16 = 5;

/// `IP_CT_TCP_FLAG_BE_LIBERAL`: window tracking accepts what it did not see.
pub const TCP_FLAG_BE_LIBERAL: u8 = 0x08;
/// `IPS_SEEN_REPLY`: packets went both ways.
pub const IPS_SEEN_REPLY: u32 = 1 << 1;
/// `IPS_ASSURED`.
pub const IPS_ASSURED: u32 = 1 << 2;

/// The message type of a ctnetlink message.
fn kind(message: u16) -> u16 {
    NFNL_SUBSYS_CTNETLINK << 8 | message
}

/// A ctnetlink message for an IPv4 entry: `struct nfgenmsg`, then `attrs`.
fn message(message: u16, attrs: Vec<u8>) -> RawMessage {
    let mut body = vec![AF_INET, 0, 0, 0];
    body.extend(attrs);
    RawMessage {
        kind: kind(message),
        body,
    }
}

/// `CTA_TUPLE_ORIG` for the flow in its request direction (the kernel finds an entry
/// by either of its tuples, so this also finds one the server opened).
fn tuple(key: &FlowKey) -> Vec<u8> {
    let mut ip = Vec::new();
    push_attribute(&mut ip, CTA_IP_V4_SRC, &key.client);
    push_attribute(&mut ip, CTA_IP_V4_DST, &key.vip);
    let mut proto = Vec::new();
    push_attribute(&mut proto, CTA_PROTO_NUM, &[key.proto]);
    push_attribute(&mut proto, CTA_PROTO_SRC_PORT, &key.client_port);
    push_attribute(&mut proto, CTA_PROTO_DST_PORT, &key.vip_port);
    let mut tuple = Vec::new();
    push_attribute(&mut tuple, CTA_TUPLE_IP | NLA_F_NESTED, &ip);
    push_attribute(&mut tuple, CTA_TUPLE_PROTO | NLA_F_NESTED, &proto);
    let mut attrs = Vec::new();
    push_attribute(&mut attrs, CTA_TUPLE_ORIG | NLA_F_NESTED, &tuple);
    attrs
}

/// Asks for the entry of `key`'s flow.
pub fn get(key: &FlowKey) -> RawMessage {
    message(IPCTNL_MSG_CT_GET, tuple(key))
}

/// What to change in an existing entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// The entry expires this many seconds from now.
    pub timeout_s: Option<u32>,
    /// Set `IP_CT_TCP_FLAG_BE_LIBERAL` in both directions (TCP entries only).
    pub liberal: bool,
}

impl Change {
    pub fn is_empty(&self) -> bool {
        self.timeout_s.is_none() && !self.liberal
    }
}

/// Changes the existing entry of `key`'s flow (the kernel answers `ENOENT` when
/// there is none: the request has no `NLM_F_CREATE`).
pub fn update(key: &FlowKey, change: Change) -> RawMessage {
    let mut attrs = tuple(key);
    if let Some(timeout) = change.timeout_s {
        push_attribute(&mut attrs, CTA_TIMEOUT, &timeout.to_be_bytes());
    }
    if change.liberal {
        // struct nf_ct_tcp_flags { flags, mask }.
        let flags = [TCP_FLAG_BE_LIBERAL, TCP_FLAG_BE_LIBERAL];
        let mut tcp = Vec::new();
        push_attribute(&mut tcp, CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, &flags);
        push_attribute(&mut tcp, CTA_PROTOINFO_TCP_FLAGS_REPLY, &flags);
        let mut info = Vec::new();
        push_attribute(&mut info, CTA_PROTOINFO_TCP | NLA_F_NESTED, &tcp);
        push_attribute(&mut attrs, CTA_PROTOINFO | NLA_F_NESTED, &info);
    }
    message(IPCTNL_MSG_CT_NEW, attrs)
}

/// An entry as the kernel describes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    /// `IPS_*` bits.
    pub status: u32,
    /// Whole seconds until it expires (the kernel rounds down).
    pub timeout_s: u32,
    /// TCP: its `TCP_CONNTRACK_*` state.
    pub tcp_state: Option<u8>,
    /// TCP: both directions are already liberal.
    pub liberal: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("a ctnetlink answer of type {0:#06x}, not an entry")]
    Kind(u16),
    #[error("a ctnetlink entry with malformed attributes")]
    Attributes,
    #[error("a ctnetlink entry without {0}")]
    Missing(&'static str),
}

/// The entry in the kernel's answer to [`get`].
pub fn parse(reply: &RawMessage) -> Result<Entry, ParseError> {
    if reply.kind != kind(IPCTNL_MSG_CT_NEW) {
        return Err(ParseError::Kind(reply.kind));
    }
    let attrs = reply
        .body
        .get(4..)
        .map(attributes)
        .transpose()
        .map_err(|_| ParseError::Attributes)?
        .unwrap_or_default();
    let (mut status, mut timeout, mut entry) = (None, None, Entry::default());
    for (key, value) in attrs {
        match key {
            CTA_STATUS => status = be_u32(value),
            CTA_TIMEOUT => timeout = be_u32(value),
            CTA_PROTOINFO => {
                for (key, tcp) in attributes(value).map_err(|_| ParseError::Attributes)? {
                    if key == CTA_PROTOINFO_TCP {
                        tcp_info(tcp, &mut entry)?;
                    }
                }
            }
            _ => {}
        }
    }
    entry.status = status.ok_or(ParseError::Missing("status"))?;
    entry.timeout_s = timeout.ok_or(ParseError::Missing("timeout"))?;
    Ok(entry)
}

fn tcp_info(tcp: &[u8], entry: &mut Entry) -> Result<(), ParseError> {
    let (mut original, mut reply) = (false, false);
    for (key, value) in attributes(tcp).map_err(|_| ParseError::Attributes)? {
        let liberal = value.first().is_some_and(|f| f & TCP_FLAG_BE_LIBERAL != 0);
        match key {
            CTA_PROTOINFO_TCP_STATE => entry.tcp_state = value.first().copied(),
            CTA_PROTOINFO_TCP_FLAGS_ORIGINAL => original = liberal,
            CTA_PROTOINFO_TCP_FLAGS_REPLY => reply = liberal,
            _ => {}
        }
    }
    entry.liberal = original && reply;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> FlowKey {
        FlowKey {
            client: [10, 0, 0, 2],
            vip: [192, 168, 1, 65],
            client_port: 40000u16.to_be_bytes(),
            vip_port: 80u16.to_be_bytes(),
            proto: 6,
            _pad: [0; 3],
        }
    }

    /// The wire bytes of the tuple, written out by hand from the kernel's UAPI.
    const TUPLE: [u8; 52] = [
        52, 0, 1, 0x80, // CTA_TUPLE_ORIG, nested
        20, 0, 1, 0x80, // CTA_TUPLE_IP, nested
        8, 0, 1, 0, 10, 0, 0, 2, // CTA_IP_V4_SRC
        8, 0, 2, 0, 192, 168, 1, 65, // CTA_IP_V4_DST
        28, 0, 2, 0x80, // CTA_TUPLE_PROTO, nested
        5, 0, 1, 0, 6, 0, 0, 0, // CTA_PROTO_NUM, padded
        6, 0, 2, 0, 0x9c, 0x40, 0, 0, // CTA_PROTO_SRC_PORT 40000, padded
        6, 0, 3, 0, 0, 80, 0, 0, // CTA_PROTO_DST_PORT 80, padded
    ];

    #[test]
    fn get_asks_for_the_request_tuple() {
        let request = get(&key());
        assert_eq!(request.kind, 0x0101);
        assert_eq!(&request.body[..4], &[AF_INET, 0, 0, 0]);
        assert_eq!(&request.body[4..], &TUPLE);
    }

    #[test]
    fn update_sets_the_timeout_and_both_liberal_flags() {
        let change = Change {
            timeout_s: Some(300),
            liberal: true,
        };
        let request = update(&key(), change);
        assert_eq!(request.kind, 0x0100);
        let mut expected = vec![AF_INET, 0, 0, 0];
        expected.extend(TUPLE);
        expected.extend([8, 0, 7, 0, 0, 0, 1, 44]); // CTA_TIMEOUT 300, big-endian
        expected.extend([
            24, 0, 4, 0x80, // CTA_PROTOINFO, nested
            20, 0, 1, 0x80, // CTA_PROTOINFO_TCP, nested
            6, 0, 4, 0, 0x08, 0x08, 0, 0, // FLAGS_ORIGINAL {flags, mask}
            6, 0, 5, 0, 0x08, 0x08, 0, 0, // FLAGS_REPLY
        ]);
        assert_eq!(request.body, expected);
        let timeout_only = update(
            &key(),
            Change {
                timeout_s: Some(1),
                liberal: false,
            },
        );
        assert_eq!(timeout_only.body.len(), 4 + TUPLE.len() + 8);
    }

    fn answer(tcp: Option<(u8, u8, u8)>) -> RawMessage {
        let mut attrs = tuple(&key());
        push_attribute(
            &mut attrs,
            CTA_STATUS,
            &(IPS_SEEN_REPLY | IPS_ASSURED).to_be_bytes(),
        );
        push_attribute(&mut attrs, CTA_TIMEOUT, &431_999u32.to_be_bytes());
        if let Some((state, original, reply)) = tcp {
            let mut info = Vec::new();
            push_attribute(&mut info, CTA_PROTOINFO_TCP_STATE, &[state]);
            push_attribute(&mut info, CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, &[original, 0]);
            push_attribute(&mut info, CTA_PROTOINFO_TCP_FLAGS_REPLY, &[reply, 0]);
            let mut nest = Vec::new();
            push_attribute(&mut nest, CTA_PROTOINFO_TCP | NLA_F_NESTED, &info);
            push_attribute(&mut attrs, CTA_PROTOINFO | NLA_F_NESTED, &nest);
        }
        message(IPCTNL_MSG_CT_NEW, attrs)
    }

    #[test]
    fn parses_an_entry() {
        let entry = parse(&answer(Some((3, 0x0b, 0x0a)))).expect("an entry");
        assert_eq!(
            entry,
            Entry {
                status: IPS_SEEN_REPLY | IPS_ASSURED,
                timeout_s: 431_999,
                tcp_state: Some(3),
                liberal: true,
            }
        );
        let half = parse(&answer(Some((3, 0x08, 0x02)))).expect("an entry");
        assert!(!half.liberal);
        let udp = parse(&answer(None)).expect("an entry");
        assert_eq!((udp.tcp_state, udp.liberal), (None, false));
    }

    #[test]
    fn refuses_what_is_not_an_entry() {
        let mut other = answer(None);
        other.kind = 0x0a06;
        assert!(matches!(parse(&other), Err(ParseError::Kind(0x0a06))));
        let bare = message(IPCTNL_MSG_CT_NEW, tuple(&key()));
        assert!(matches!(parse(&bare), Err(ParseError::Missing("status"))));
    }
}
