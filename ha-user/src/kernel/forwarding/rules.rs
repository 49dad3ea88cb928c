//! IPv4 policy routing rules (rtnetlink rule dump): every rule but the kernel's
//! default three (`0: lookup local`, `32766: lookup main`, `32767: lookup default`).
//! Any other rule, or a default one changed or missing, can send a flow somewhere
//! the prefix table does not (and makes the kernel check every source in full).

use std::{fmt::Write as _, ops::ControlFlow};

use rtnetlink::packet_route::{
    AddressFamily, RouteNetlinkMessage,
    rule::{RuleAction, RuleAttribute, RuleFlags, RuleMessage},
};
use serde::{Deserialize, Serialize};

use super::netlink::{Channel, NetlinkError, retrying};

const RT_TABLE_DEFAULT: u32 = 253;
const RT_TABLE_MAIN: u32 = 254;
const RT_TABLE_LOCAL: u32 = 255;
/// `FRA_SUPPRESS_PREFIXLEN` of a rule without it (-1): the kernel always sends it.
const NO_SUPPRESS: u32 = u32::MAX;
/// The kernel's own rules: (priority, table).
const DEFAULT_RULES: [(u32, u32); 3] = [
    (0, RT_TABLE_LOCAL),
    (32766, RT_TABLE_MAIN),
    (32767, RT_TABLE_DEFAULT),
];

/// A policy routing rule beyond the kernel's defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRule {
    pub priority: u32,
    /// The rule as `ip rule` shows it, after the priority (`from 10.0.0.0/8 lookup 100`).
    pub text: String,
}

/// The differences from the default rules: each rule that is not one of them, and
/// each default rule that is missing (its text says so).
pub fn custom(channel: &mut Channel) -> Result<Vec<PolicyRule>, NetlinkError> {
    let rules = retrying(|| {
        let mut rules = Vec::new();
        let mut request = RuleMessage::default();
        request.header.family = AddressFamily::Inet;
        channel.dump(
            "routing rule",
            RouteNetlinkMessage::GetRule(request),
            |reply| {
                if let RouteNetlinkMessage::NewRule(rule) = reply {
                    rules.push(rule);
                }
                Ok(ControlFlow::Continue(()))
            },
        )?;
        Ok(rules)
    })?;
    Ok(custom_of(&rules))
}

/// The rules of `rules` that are not the kernel's defaults, then the defaults missing.
pub(crate) fn custom_of(rules: &[RuleMessage]) -> Vec<PolicyRule> {
    let mut custom = Vec::new();
    let mut seen = [false; DEFAULT_RULES.len()];
    for rule in rules {
        match default_index(rule) {
            Some(index) if !seen[index] => seen[index] = true,
            _ => custom.push(PolicyRule {
                priority: priority(rule),
                text: describe(rule),
            }),
        }
    }
    for ((priority, table), seen) in DEFAULT_RULES.iter().zip(seen) {
        if !seen {
            custom.push(PolicyRule {
                priority: *priority,
                text: format!("lookup {} is missing", table_name(*table)),
            });
        }
    }
    custom
}

fn priority(rule: &RuleMessage) -> u32 {
    rule.attributes
        .iter()
        .find_map(|attr| match attr {
            RuleAttribute::Priority(p) => Some(*p),
            _ => None,
        })
        .unwrap_or(0)
}

fn table(rule: &RuleMessage) -> u32 {
    rule.attributes
        .iter()
        .find_map(|attr| match attr {
            RuleAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(rule.header.table))
}

/// Which default rule `rule` is, if it is one exactly: no selector, a plain lookup.
fn default_index(rule: &RuleMessage) -> Option<usize> {
    let header = &rule.header;
    let plain = header.src_len == 0
        && header.dst_len == 0
        && header.tos == 0
        && header.flags == RuleFlags::empty()
        && header.action == RuleAction::ToTable
        && rule.attributes.iter().all(|attr| {
            matches!(
                attr,
                RuleAttribute::Table(_) | RuleAttribute::Priority(_) | RuleAttribute::Protocol(_)
            ) || *attr == RuleAttribute::SuppressPrefixLen(NO_SUPPRESS)
        });
    if !plain {
        return None;
    }
    let key = (priority(rule), table(rule));
    DEFAULT_RULES.iter().position(|default| *default == key)
}

fn table_name(table: u32) -> String {
    match table {
        RT_TABLE_LOCAL => "local".into(),
        RT_TABLE_MAIN => "main".into(),
        RT_TABLE_DEFAULT => "default".into(),
        other => other.to_string(),
    }
}

/// The rule in `ip rule`'s words, after its priority.
fn describe(rule: &RuleMessage) -> String {
    let header = &rule.header;
    let mut text = String::new();
    if header.flags.contains(RuleFlags::Invert) {
        text.push_str("not ");
    }
    let mut from = "all".to_owned();
    let mut to = None;
    let mut rest = String::new();
    for attr in &rule.attributes {
        match attr {
            RuleAttribute::Source(addr) => from = format!("{addr}/{}", header.src_len),
            RuleAttribute::Destination(addr) => to = Some(format!("{addr}/{}", header.dst_len)),
            RuleAttribute::Iifname(name) => {
                let _ = write!(rest, " iif {name}");
            }
            RuleAttribute::Oifname(name) => {
                let _ = write!(rest, " oif {name}");
            }
            RuleAttribute::FwMark(mark) => {
                let _ = write!(rest, " fwmark {mark:#x}");
            }
            RuleAttribute::L3MDev(true) => rest.push_str(" l3mdev"),
            RuleAttribute::SuppressPrefixLen(len) if *len != NO_SUPPRESS => {
                let _ = write!(rest, " suppress_prefixlength {len}");
            }
            RuleAttribute::UidRange(range) => {
                let _ = write!(rest, " uidrange {}-{}", range.start, range.end);
            }
            RuleAttribute::IpProtocol(proto) => {
                let _ = write!(rest, " ipproto {proto:?}");
            }
            RuleAttribute::SourcePortRange(range) => {
                let _ = write!(rest, " sport {}-{}", range.start, range.end);
            }
            RuleAttribute::DestinationPortRange(range) => {
                let _ = write!(rest, " dport {}-{}", range.start, range.end);
            }
            _ => {}
        }
    }
    let _ = write!(text, "from {from}");
    if let Some(to) = to {
        let _ = write!(text, " to {to}");
    }
    if header.tos != 0 {
        let _ = write!(text, " tos {:#x}", header.tos);
    }
    text.push_str(&rest);
    match header.action {
        RuleAction::ToTable => {
            let _ = write!(text, " lookup {}", table_name(table(rule)));
        }
        RuleAction::Goto => {
            let target = rule.attributes.iter().find_map(|attr| match attr {
                RuleAttribute::Goto(p) => Some(*p),
                _ => None,
            });
            let _ = write!(text, " goto {}", target.unwrap_or(0));
        }
        RuleAction::Nop => text.push_str(" nop"),
        RuleAction::Blackhole => text.push_str(" blackhole"),
        RuleAction::Unreachable => text.push_str(" unreachable"),
        RuleAction::Prohibit => text.push_str(" prohibit"),
        other => {
            let _ = write!(text, " action {other:?}");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use rtnetlink::packet_route::route::RouteProtocol;

    use super::*;

    fn rule(priority: u32, table: u32) -> RuleMessage {
        let mut rule = RuleMessage::default();
        rule.header.family = AddressFamily::Inet;
        rule.header.action = RuleAction::ToTable;
        rule.attributes.push(RuleAttribute::Table(table));
        // As the kernel sends them.
        rule.attributes
            .push(RuleAttribute::SuppressPrefixLen(NO_SUPPRESS));
        rule.attributes
            .push(RuleAttribute::Protocol(RouteProtocol::Kernel));
        if priority != 0 {
            rule.attributes.push(RuleAttribute::Priority(priority));
        }
        rule
    }

    #[test]
    fn the_kernel_rules_are_defaults() {
        assert_eq!(default_index(&rule(0, 255)), Some(0));
        assert_eq!(default_index(&rule(32766, 254)), Some(1));
        assert_eq!(default_index(&rule(32767, 253)), Some(2));
        assert_eq!(default_index(&rule(100, 254)), None);
    }

    #[test]
    fn a_selector_makes_a_default_looking_rule_custom() {
        let mut from = rule(32766, 254);
        from.header.src_len = 8;
        from.attributes
            .push(RuleAttribute::Source(IpAddr::V4(Ipv4Addr::new(
                10, 0, 0, 0,
            ))));
        assert_eq!(default_index(&from), None);
        assert_eq!(describe(&from), "from 10.0.0.0/8 lookup main");
    }
}
