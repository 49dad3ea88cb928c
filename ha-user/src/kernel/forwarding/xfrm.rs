//! IPsec policies that apply to forwarded traffic, read over `NETLINK_XFRM`: every
//! policy of direction `fwd` (`XFRM_MSG_GETPOLICY` dump), and the default forward
//! policy (`XFRM_MSG_GETDEFAULT`, Linux 5.16): `block` drops whatever no policy
//! allows, even with no policy at all.
//!
//! A kernel without `xfrm_user` (no socket: `EPROTONOSUPPORT`) has no such policy;
//! one older than 5.16 has no default policy (always accept).

use std::{net::Ipv4Addr, ops::ControlFlow};

use rtnetlink::sys::protocols::NETLINK_XFRM;
use serde::{Deserialize, Serialize};

use super::netlink::{Channel, NetlinkError, RawMessage, retrying};

const XFRM_MSG_NEWPOLICY: u16 = 0x13;
const XFRM_MSG_GETPOLICY: u16 = 0x15;
const XFRM_MSG_GETDEFAULT: u16 = 0x28;
const XFRM_POLICY_FWD: u8 = 2;
const XFRM_POLICY_BLOCK: u8 = 1;
const XFRM_USERPOLICY_BLOCK: u8 = 1;
/// Offsets in `struct xfrm_userpolicy_info` (its selector first).
const SEL_DADDR: usize = 0;
const SEL_SADDR: usize = 16;
const SEL_FAMILY: usize = 40;
const SEL_PREFIXLEN_D: usize = 42;
const SEL_PREFIXLEN_S: usize = 43;
const POLICY_DIR: usize = 160;
const POLICY_ACTION: usize = 161;
const POLICY_INFO_LEN: usize = 168;
const AF_INET: u16 = 2;

#[derive(Debug, thiserror::Error)]
pub enum XfrmError {
    #[error("cannot read the IPsec policies")]
    Netlink(#[source] NetlinkError),
}

/// What IPsec does to forwarded traffic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct XfrmFacts {
    /// The forward-direction policies.
    pub forward: Vec<XfrmPolicy>,
    /// The default forward policy is `block`.
    pub default_block: bool,
}

/// A forward-direction policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct XfrmPolicy {
    /// The selector as `ip xfrm policy` shows it (`src 10.0.0.0/8 dst 0.0.0.0/0`).
    pub selector: String,
    /// The policy blocks what it selects (else it allows it through IPsec).
    pub block: bool,
}

/// The IPsec facts, or `None` when the kernel has no `xfrm_user`.
pub fn facts() -> Result<Option<XfrmFacts>, XfrmError> {
    let mut channel = match Channel::open(NETLINK_XFRM, "xfrm", false) {
        Ok(channel) => channel,
        Err(err) if err.errno() == Some(libc::EPROTONOSUPPORT) => return Ok(None),
        Err(err) => return Err(XfrmError::Netlink(err)),
    };
    let forward = retrying(|| {
        let mut policies = Vec::new();
        let request = RawMessage {
            kind: XFRM_MSG_GETPOLICY,
            body: Vec::new(),
        };
        channel.dump("xfrm policy", request, |reply| {
            if reply.kind == XFRM_MSG_NEWPOLICY {
                policies.extend(forward_policy(&reply.body));
            }
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(policies)
    })
    .map_err(XfrmError::Netlink)?;
    let request = RawMessage {
        kind: XFRM_MSG_GETDEFAULT,
        body: vec![0; 4],
    };
    let default_block = match channel.request("xfrm default policy", request) {
        // struct xfrm_userpolicy_default { in, fwd, out }.
        Ok(reply) => reply.body.get(1) == Some(&XFRM_USERPOLICY_BLOCK),
        // Before Linux 5.16: no default policy, everything is accepted.
        Err(err) if matches!(err.errno(), Some(libc::EINVAL | libc::EOPNOTSUPP)) => false,
        Err(err) => return Err(XfrmError::Netlink(err)),
    };
    Ok(Some(XfrmFacts {
        forward,
        default_block,
    }))
}

/// The policy in a `XFRM_MSG_NEWPOLICY` body if it is a forward one.
pub(crate) fn forward_policy(body: &[u8]) -> Option<XfrmPolicy> {
    if body.len() < POLICY_INFO_LEN || body[POLICY_DIR] != XFRM_POLICY_FWD {
        return None;
    }
    let family = u16::from_ne_bytes([body[SEL_FAMILY], body[SEL_FAMILY + 1]]);
    let selector = if family == AF_INET {
        let addr = |at: usize| Ipv4Addr::new(body[at], body[at + 1], body[at + 2], body[at + 3]);
        format!(
            "src {}/{} dst {}/{}",
            addr(SEL_SADDR),
            body[SEL_PREFIXLEN_S],
            addr(SEL_DADDR),
            body[SEL_PREFIXLEN_D]
        )
    } else if family == 0 {
        // Family 0: the selector matches every address family.
        "src any dst any".to_owned()
    } else {
        // An IPv6 policy: forwarded IPv4 never meets it.
        return None;
    };
    Some(XfrmPolicy {
        selector,
        block: body[POLICY_ACTION] == XFRM_POLICY_BLOCK,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(dir: u8, family: u16) -> Vec<u8> {
        let mut body = vec![0u8; POLICY_INFO_LEN];
        body[SEL_SADDR..SEL_SADDR + 4].copy_from_slice(&[10, 0, 0, 0]);
        body[SEL_PREFIXLEN_S] = 8;
        body[SEL_FAMILY..SEL_FAMILY + 2].copy_from_slice(&family.to_ne_bytes());
        body[POLICY_DIR] = dir;
        body
    }

    #[test]
    fn only_forward_ipv4_policies_count() {
        let fwd = forward_policy(&body(XFRM_POLICY_FWD, AF_INET)).expect("a forward policy");
        assert_eq!(fwd.selector, "src 10.0.0.0/8 dst 0.0.0.0/0");
        assert!(!fwd.block);
        assert_eq!(forward_policy(&body(0, AF_INET)), None);
        assert_eq!(forward_policy(&body(XFRM_POLICY_FWD, 10)), None);
        assert_eq!(forward_policy(&[0; 12]), None);
    }
}
