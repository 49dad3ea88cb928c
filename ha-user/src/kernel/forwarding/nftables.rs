//! The nf_tables base chains that see forwarded IPv4 traffic, read over
//! `NETLINK_NETFILTER` (the `nft` binary is not needed): chains of families `ip` and
//! `inet` hooked at prerouting, forward or postrouting, `inet` chains hooked at
//! ingress, and `netdev` chains hooked at ingress or egress, each with its rule count
//! (one rule dump filtered by table and chain).
//!
//! A kernel without nfnetlink (no socket) or without nf_tables (the kernel answers
//! `EINVAL` for a subsystem it does not have) has no such chain: [`chains`] returns
//! `None`.

use std::ops::ControlFlow;

use rtnetlink::sys::protocols::NETLINK_NETFILTER;
use serde::{Deserialize, Serialize};

use super::netlink::{
    Channel, NetlinkError, RawMessage, attributes, be_u32, push_attribute, retrying, string,
};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;

const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_HOOK_DEV: u16 = 3;
const NFTA_HOOK_DEVS: u16 = 4;
const NFTA_DEVICE_NAME: u16 = 1;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;

/// Expressions that consult or create connection tracking state: `ct` (state, mark,
/// status, ...), NAT of every kind, `connlimit`, `notrack`, flowtable offload, and
/// stateful objects referenced by name (a `ct helper`, `ct timeout` or `ct expectation`
/// object, or a counter: assumed to be conntrack's, the safe side).
const CONNTRACK_EXPRESSIONS: [&str; 8] = [
    "ct",
    "nat",
    "masq",
    "redir",
    "connlimit",
    "notrack",
    "flow_offload",
    "objref",
];

const NFPROTO_UNSPEC: u8 = 0;
const NFPROTO_INET: u8 = 1;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_NETDEV: u8 = 5;

/// `NF_DROP`, the other verdict a base chain's policy can have being `NF_ACCEPT`.
const NF_DROP: u32 = 0;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot read the nf_tables chains")]
    Netlink(#[source] NetlinkError),
    #[error("cannot count the rules of nftables chain {family} {table} {chain}")]
    Rules {
        family: NftFamily,
        table: String,
        chain: String,
        #[source]
        source: NetlinkError,
    },
    #[error("nftables chain message without {what}")]
    Incomplete { what: &'static str },
}

/// The families whose chains see forwarded IPv4 frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NftFamily {
    Ip,
    Inet,
    Netdev,
}

impl NftFamily {
    fn from_raw(raw: u8) -> Option<Self> {
        match raw {
            NFPROTO_IPV4 => Some(Self::Ip),
            NFPROTO_INET => Some(Self::Inet),
            NFPROTO_NETDEV => Some(Self::Netdev),
            _ => None,
        }
    }

    fn raw(self) -> u8 {
        match self {
            Self::Ip => NFPROTO_IPV4,
            Self::Inet => NFPROTO_INET,
            Self::Netdev => NFPROTO_NETDEV,
        }
    }
}

impl std::fmt::Display for NftFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Ip => "ip",
            Self::Inet => "inet",
            Self::Netdev => "netdev",
        })
    }
}

/// The hooks on the path of a forwarded frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NftHook {
    Ingress,
    Prerouting,
    Forward,
    Postrouting,
    Egress,
}

impl NftHook {
    /// Whether the hook runs on named devices only (`NFTA_HOOK_DEV(S)`).
    pub fn per_device(self) -> bool {
        matches!(self, Self::Ingress | Self::Egress)
    }

    fn from_raw(family: NftFamily, raw: u32) -> Option<Self> {
        match (family, raw) {
            (NftFamily::Ip | NftFamily::Inet, 0) => Some(Self::Prerouting),
            (NftFamily::Ip | NftFamily::Inet, 2) => Some(Self::Forward),
            (NftFamily::Ip | NftFamily::Inet, 4) => Some(Self::Postrouting),
            (NftFamily::Inet, 5) | (NftFamily::Netdev, 0) => Some(Self::Ingress),
            (NftFamily::Netdev, 1) => Some(Self::Egress),
            // input and output: local traffic only.
            _ => None,
        }
    }
}

impl std::fmt::Display for NftHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Ingress => "ingress",
            Self::Prerouting => "prerouting",
            Self::Forward => "forward",
            Self::Postrouting => "postrouting",
            Self::Egress => "egress",
        })
    }
}

/// A base chain's policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    Accept,
    Drop,
}

/// A base chain on the path of forwarded IPv4 frames.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NftChain {
    pub family: NftFamily,
    pub table: String,
    pub name: String,
    pub hook: NftHook,
    /// The chain type: `filter`, `nat` or `route`.
    pub kind: String,
    pub priority: i32,
    pub policy: Policy,
    /// The devices of an ingress or egress hook (a name ending in `*` is a prefix).
    pub devices: Vec<String>,
    pub rules: usize,
    /// A rule consults connection tracking ([`CONNTRACK_EXPRESSIONS`]), or the chain
    /// is a `nat` chain (NAT is conntrack's).
    #[serde(default)]
    pub conntrack: bool,
}

impl NftChain {
    /// Whether the chain can change what the kernel does with a frame: it has a rule,
    /// or its policy drops. (An empty chain with an accept policy, like Debian's
    /// default `inet filter`, changes nothing.)
    pub fn matters(&self) -> bool {
        self.rules > 0 || self.policy == Policy::Drop
    }

    /// Whether the chain's verdicts depend on connection tracking.
    pub fn consults_conntrack(&self) -> bool {
        self.rules > 0 && (self.conntrack || self.kind == "nat")
    }

    /// Whether the chain runs for frames on interface `name`: every chain of the
    /// prerouting, forward and postrouting hooks does; an ingress or egress chain
    /// only on its devices.
    pub fn runs_on(&self, name: &str) -> bool {
        !self.hook.per_device()
            || self
                .devices
                .iter()
                .any(|device| match device.strip_suffix('*') {
                    Some(prefix) => name.starts_with(prefix),
                    None => device == name,
                })
    }
}

/// The base chains on the forwarding path with their rule counts, or `None` when the
/// kernel has no nf_tables.
pub fn chains() -> Result<Option<Vec<NftChain>>, NftError> {
    let mut channel = match Channel::open(NETLINK_NETFILTER, "netfilter", false) {
        Ok(channel) => channel,
        Err(err) if err.errno() == Some(libc::EPROTONOSUPPORT) => return Ok(None),
        Err(err) => return Err(NftError::Netlink(err)),
    };
    let listed = retrying(|| {
        let mut chains = Vec::new();
        let request = message(NFT_MSG_GETCHAIN, NFPROTO_UNSPEC, Vec::new());
        channel.dump("nf_tables chain", request, |reply| {
            if reply.kind == kind(NFT_MSG_NEWCHAIN) {
                chains.push(reply);
            }
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(chains)
    });
    let replies = match listed {
        Ok(replies) => replies,
        Err(err) if err.errno() == Some(libc::EINVAL) => return Ok(None),
        Err(err) => return Err(NftError::Netlink(err)),
    };
    let mut chains = Vec::new();
    for reply in replies {
        let Some(mut chain) = parse_chain(&reply)? else {
            continue;
        };
        (chain.rules, chain.conntrack) =
            count_rules(&mut channel, &chain).map_err(|source| NftError::Rules {
                family: chain.family,
                table: chain.table.clone(),
                chain: chain.name.clone(),
                source,
            })?;
        chains.push(chain);
    }
    Ok(Some(chains))
}

fn kind(message: u16) -> u16 {
    NFNL_SUBSYS_NFTABLES << 8 | message
}

/// An nf_tables message: `struct nfgenmsg` (family, version 0, resource id 0), then
/// the attributes.
fn message(message: u16, family: u8, attributes: Vec<u8>) -> RawMessage {
    let mut body = vec![family, 0, 0, 0];
    body.extend(attributes);
    RawMessage {
        kind: kind(message),
        body,
    }
}

/// A chain of interest from a `NFT_MSG_NEWCHAIN` message; `None` for any other
/// family, a regular (non-base) chain, or a hook off the forwarding path.
pub(crate) fn parse_chain(reply: &RawMessage) -> Result<Option<NftChain>, NftError> {
    let Some(family) = reply.body.first().copied().and_then(NftFamily::from_raw) else {
        return Ok(None);
    };
    let attrs = reply
        .body
        .get(4..)
        .map(attributes)
        .transpose()
        .map_err(|_| NftError::Incomplete { what: "attributes" })?
        .unwrap_or_default();
    let (mut table, mut name, mut kind, mut policy, mut hook) = (None, None, None, None, None);
    for (key, value) in attrs {
        match key {
            NFTA_CHAIN_TABLE => table = Some(string(value)),
            NFTA_CHAIN_NAME => name = Some(string(value)),
            NFTA_CHAIN_TYPE => kind = Some(string(value)),
            NFTA_CHAIN_POLICY => policy = be_u32(value),
            NFTA_CHAIN_HOOK => hook = Some(value),
            _ => {}
        }
    }
    // Only base chains have a hook.
    let Some(hook) = hook else {
        return Ok(None);
    };
    let (mut number, mut priority, mut devices) = (None, 0, Vec::new());
    for (key, value) in attributes(hook).map_err(|_| NftError::Incomplete { what: "hook" })? {
        match key {
            NFTA_HOOK_HOOKNUM => number = be_u32(value),
            NFTA_HOOK_PRIORITY => priority = be_u32(value).map_or(0, |p| p as i32),
            // The kernel sends a single device both ways.
            NFTA_HOOK_DEV => devices.push(string(value)),
            NFTA_HOOK_DEVS => {
                let names =
                    attributes(value).map_err(|_| NftError::Incomplete { what: "devices" })?;
                devices.extend(
                    names
                        .into_iter()
                        .filter(|(key, _)| *key == NFTA_DEVICE_NAME)
                        .map(|(_, value)| string(value)),
                );
            }
            _ => {}
        }
    }
    devices.sort();
    devices.dedup();
    let number = number.ok_or(NftError::Incomplete {
        what: "hook number",
    })?;
    let Some(hook) = NftHook::from_raw(family, number) else {
        return Ok(None);
    };
    Ok(Some(NftChain {
        family,
        table: table.ok_or(NftError::Incomplete { what: "table" })?,
        name: name.ok_or(NftError::Incomplete { what: "name" })?,
        hook,
        kind: kind.unwrap_or_else(|| "filter".into()),
        priority,
        // A base chain always has one; without it the kernel accepts.
        policy: if policy == Some(NF_DROP) {
            Policy::Drop
        } else {
            Policy::Accept
        },
        devices,
        rules: 0,
        conntrack: false,
    }))
}

/// The number of rules in `chain` (a rule dump filtered by its table and name), and
/// whether one of them consults connection tracking.
fn count_rules(channel: &mut Channel, chain: &NftChain) -> Result<(usize, bool), NetlinkError> {
    retrying(|| {
        let mut filter = Vec::new();
        push_attribute(
            &mut filter,
            NFTA_RULE_TABLE,
            nul_terminated(&chain.table).as_slice(),
        );
        push_attribute(
            &mut filter,
            NFTA_RULE_CHAIN,
            nul_terminated(&chain.name).as_slice(),
        );
        let request = message(NFT_MSG_GETRULE, chain.family.raw(), filter);
        let (mut rules, mut conntrack) = (0, false);
        channel.dump("nf_tables rule", request, |reply| {
            if reply.kind == kind(NFT_MSG_NEWRULE) {
                rules += 1;
                conntrack |= rule_consults_conntrack(&reply);
            }
            Ok(ControlFlow::Continue(()))
        })?;
        Ok((rules, conntrack))
    })
}

/// Whether a `NFT_MSG_NEWRULE` message has an expression of
/// [`CONNTRACK_EXPRESSIONS`]; a rule whose expressions cannot be read counts as one
/// that does (the safe side).
fn rule_consults_conntrack(reply: &RawMessage) -> bool {
    let Some(Ok(attrs)) = reply.body.get(4..).map(attributes) else {
        return true;
    };
    let Some((_, list)) = attrs.iter().find(|(key, _)| *key == NFTA_RULE_EXPRESSIONS) else {
        return false;
    };
    let Ok(elements) = attributes(list) else {
        return true;
    };
    elements
        .iter()
        .filter(|(key, _)| *key == NFTA_LIST_ELEM)
        .any(|(_, element)| match attributes(element) {
            Ok(fields) => fields.iter().any(|(key, value)| {
                *key == NFTA_EXPR_NAME && CONNTRACK_EXPRESSIONS.contains(&string(value).as_str())
            }),
            Err(_) => true,
        })
}

fn nul_terminated(text: &str) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    bytes.push(0);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(hook: NftHook, devices: &[&str], rules: usize, policy: Policy) -> NftChain {
        NftChain {
            family: NftFamily::Netdev,
            table: "t".into(),
            name: "c".into(),
            hook,
            kind: "filter".into(),
            priority: 0,
            policy,
            devices: devices.iter().map(|d| (*d).to_owned()).collect(),
            rules,
            conntrack: false,
        }
    }

    fn rule(expressions: &[&str]) -> RawMessage {
        let mut list = Vec::new();
        for name in expressions {
            let mut element = Vec::new();
            push_attribute(
                &mut element,
                NFTA_EXPR_NAME,
                nul_terminated(name).as_slice(),
            );
            push_attribute(&mut list, NFTA_LIST_ELEM | 0x8000, &element);
        }
        let mut attrs = Vec::new();
        push_attribute(&mut attrs, NFTA_RULE_TABLE, b"filter\0");
        push_attribute(&mut attrs, NFTA_RULE_CHAIN, b"forward\0");
        push_attribute(&mut attrs, NFTA_RULE_EXPRESSIONS | 0x8000, &list);
        message(NFT_MSG_NEWRULE, NFPROTO_INET, attrs)
    }

    #[test]
    fn a_rule_with_a_ct_or_nat_expression_consults_conntrack() {
        assert!(rule_consults_conntrack(&rule(&[
            "ct",
            "bitwise",
            "cmp",
            "immediate"
        ])));
        assert!(rule_consults_conntrack(&rule(&["meta", "cmp", "masq"])));
        assert!(!rule_consults_conntrack(&rule(&[
            "payload",
            "cmp",
            "immediate"
        ])));
        assert!(!rule_consults_conntrack(&rule(&[])));
    }

    #[test]
    fn a_nat_chain_with_rules_consults_conntrack() {
        let mut nat = chain(NftHook::Prerouting, &[], 1, Policy::Accept);
        nat.kind = "nat".into();
        assert!(nat.consults_conntrack());
        nat.rules = 0;
        assert!(!nat.consults_conntrack());
        let mut filter = chain(NftHook::Forward, &[], 2, Policy::Drop);
        assert!(!filter.consults_conntrack());
        filter.conntrack = true;
        assert!(filter.consults_conntrack());
    }

    #[test]
    fn a_chain_matters_with_a_rule_or_a_drop_policy() {
        assert!(!chain(NftHook::Forward, &[], 0, Policy::Accept).matters());
        assert!(chain(NftHook::Forward, &[], 1, Policy::Accept).matters());
        assert!(chain(NftHook::Forward, &[], 0, Policy::Drop).matters());
    }

    #[test]
    fn device_hooks_run_on_their_devices_and_prefixes() {
        let ingress = chain(NftHook::Ingress, &["eth0", "wan*"], 1, Policy::Accept);
        assert!(ingress.runs_on("eth0"));
        assert!(ingress.runs_on("wan7"));
        assert!(!ingress.runs_on("eth1"));
        assert!(chain(NftHook::Forward, &[], 1, Policy::Accept).runs_on("eth1"));
    }

    #[test]
    fn parses_a_base_chain_message() {
        let mut hook = Vec::new();
        push_attribute(&mut hook, NFTA_HOOK_HOOKNUM, &2u32.to_be_bytes());
        push_attribute(&mut hook, NFTA_HOOK_PRIORITY, &0u32.to_be_bytes());
        let mut attrs = Vec::new();
        push_attribute(&mut attrs, NFTA_CHAIN_TABLE, b"filter\0");
        push_attribute(&mut attrs, NFTA_CHAIN_NAME, b"forward\0");
        push_attribute(&mut attrs, NFTA_CHAIN_HOOK | 0x8000, &hook);
        push_attribute(&mut attrs, NFTA_CHAIN_POLICY, &NF_DROP.to_be_bytes());
        push_attribute(&mut attrs, NFTA_CHAIN_TYPE, b"filter\0");
        let reply = message(NFT_MSG_NEWCHAIN, NFPROTO_INET, attrs);
        let parsed = parse_chain(&reply).expect("a chain").expect("of interest");
        assert_eq!(parsed.family, NftFamily::Inet);
        assert_eq!(
            (parsed.table.as_str(), parsed.name.as_str()),
            ("filter", "forward")
        );
        assert_eq!(parsed.hook, NftHook::Forward);
        assert_eq!(parsed.policy, Policy::Drop);
    }

    #[test]
    fn input_chains_and_other_families_are_not_of_interest() {
        let mut hook = Vec::new();
        push_attribute(&mut hook, NFTA_HOOK_HOOKNUM, &1u32.to_be_bytes());
        let mut attrs = Vec::new();
        push_attribute(&mut attrs, NFTA_CHAIN_TABLE, b"filter\0");
        push_attribute(&mut attrs, NFTA_CHAIN_NAME, b"input\0");
        push_attribute(&mut attrs, NFTA_CHAIN_HOOK | 0x8000, &hook);
        let input = message(NFT_MSG_NEWCHAIN, NFPROTO_IPV4, attrs.clone());
        assert_eq!(parse_chain(&input).expect("parsed"), None);
        let ip6 = message(NFT_MSG_NEWCHAIN, 10, attrs);
        assert_eq!(parse_chain(&ip6).expect("parsed"), None);
    }
}
