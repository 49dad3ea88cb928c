//! Why an interface verifies: one [`Reason`] per rule of [`super::assess`] that
//! applies, each shown as one sentence naming the setting and its effect.

use std::fmt;

use ha_common::MAX_LOCAL_ADDRS;
use serde::{Deserialize, Serialize};

use super::{
    nftables::{NftChain, Policy},
    routes::KindedRoute,
    rules::PolicyRule,
    tc::{TcFilter, TcxProgram},
    xfrm::XfrmPolicy,
    xtables::XtChain,
};

/// Something that makes the kernel's forwarding differ from the fast path's, so the
/// kernel must see each flow first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// `net.ipv4.ip_forward` is 0.
    IpForwardOff,
    /// `conf/<interface>/forwarding` is 0.
    InterfaceForwardingOff { interface: String },
    /// An nf_tables base chain on the forwarding path with a rule or a drop policy.
    NftChain { chain: NftChain },
    /// A legacy iptables chain on the forwarding path with a rule or a DROP policy.
    XtChain { chain: XtChain },
    /// A policy routing rule beyond the kernel's defaults.
    PolicyRule { rule: PolicyRule },
    /// An IPsec forward policy.
    XfrmPolicy { policy: XfrmPolicy },
    /// The IPsec default forward policy is block.
    XfrmDefaultBlock,
    /// A `local` route wider than /32 (AnyIP).
    AnyIp { route: KindedRoute },
    /// More own and broadcast addresses than [`ha_common::Settings::local`] holds.
    TooManyLocal { count: usize },
    /// Strict reverse-path filtering on the interface.
    RpFilterStrict { interface: String },
    /// Loose reverse-path filtering and no unicast default route in the main table.
    RpFilterLooseNoDefault { interface: String },
    /// Loose reverse-path filtering and routes that refuse some sources.
    RpFilterLooseRefusing {
        interface: String,
        routes: Vec<KindedRoute>,
    },
    /// No reverse-path filtering, but the LAN interface sends traffic back out of
    /// itself, which the kernel checks against the routes that refuse sources.
    RefusingRoutesLan {
        interface: String,
        routes: Vec<KindedRoute>,
    },
    /// `accept_local` on the interface.
    AcceptLocal { interface: String },
    /// `route_localnet` on the interface.
    RouteLocalnet { interface: String },
    /// tc filters on the interface's ingress.
    TcFilters {
        interface: String,
        filters: Vec<TcFilter>,
    },
    /// TCX programs on the interface's ingress.
    TcxPrograms {
        interface: String,
        programs: Vec<TcxProgram>,
    },
    /// The configuration says to verify every interface.
    Forced,
}

/// The first few items of a list, and how many more there are.
fn some<T: fmt::Display>(items: &[T]) -> String {
    const SHOWN: usize = 3;
    let mut text = items
        .iter()
        .take(SHOWN)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        text.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    text
}

fn plural(count: usize, one: &str, many: &str) -> String {
    if count == 1 {
        format!("1 {one}")
    } else {
        format!("{count} {many}")
    }
}

const FIRST: &str = "the kernel must see each flow first";

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IpForwardOff => write!(
                f,
                "net.ipv4.ip_forward is 0: the kernel forwards nothing, so the fast path \
                 steers only what it forwards"
            ),
            Self::InterfaceForwardingOff { interface } => write!(
                f,
                "net.ipv4.conf.{interface}.forwarding is 0: the kernel forwards nothing that \
                 arrives on {interface}, so the fast path steers only what it forwards"
            ),
            Self::NftChain { chain } => {
                let on = if chain.hook.per_device() {
                    format!(" on {}", chain.devices.join(", "))
                } else {
                    String::new()
                };
                let policy = if chain.policy == Policy::Drop {
                    ", policy drop"
                } else {
                    ""
                };
                write!(
                    f,
                    "nftables chain {} {} {} (hook {}{on}{policy}, {}): {FIRST}",
                    chain.family,
                    chain.table,
                    chain.name,
                    chain.hook,
                    plural(chain.rules, "rule", "rules")
                )
            }
            Self::XtChain { chain } => {
                let what = if chain.has_rules {
                    "has rules"
                } else {
                    "policy DROP"
                };
                write!(
                    f,
                    "iptables-legacy chain {} {} ({what}): {FIRST}",
                    chain.table, chain.hook
                )
            }
            Self::PolicyRule { rule } => write!(
                f,
                "policy routing rule {}: {} may route a flow elsewhere, so {FIRST}",
                rule.priority, rule.text
            ),
            Self::XfrmPolicy { policy } => write!(
                f,
                "IPsec forward policy {} ({}): {FIRST}",
                policy.selector,
                if policy.block { "block" } else { "allow" }
            ),
            Self::XfrmDefaultBlock => write!(
                f,
                "the IPsec default forward policy is block: the kernel drops forwarded traffic \
                 no policy allows, so {FIRST}"
            ),
            Self::AnyIp { route } => write!(
                f,
                "route {route} makes a whole range the router's own: the kernel refuses sources \
                 in it, so {FIRST}"
            ),
            Self::TooManyLocal { count } => write!(
                f,
                "the router has {count} own and broadcast addresses, more than the \
                 {MAX_LOCAL_ADDRS} the fast path checks sources against: {FIRST}"
            ),
            Self::RpFilterStrict { interface } => write!(
                f,
                "rp_filter is 1 (strict) on {interface}: the kernel refuses a source whose route \
                 back is not through {interface}, so {FIRST}"
            ),
            Self::RpFilterLooseNoDefault { interface } => write!(
                f,
                "rp_filter is 2 (loose) on {interface} and the main table has no default route: \
                 the kernel refuses sources it has no route to, so {FIRST}"
            ),
            Self::RpFilterLooseRefusing { interface, routes } => write!(
                f,
                "rp_filter is 2 (loose) on {interface} and {} refuse traffic ({}): the kernel \
                 refuses sources they cover, so {FIRST}",
                plural(routes.len(), "route", "routes"),
                some(routes)
            ),
            Self::RefusingRoutesLan { interface, routes } => write!(
                f,
                "{} refuse traffic ({}): the kernel checks the sources of what {interface} sends \
                 back out of itself against them, so {FIRST}",
                plural(routes.len(), "route", "routes"),
                some(routes)
            ),
            Self::AcceptLocal { interface } => write!(
                f,
                "accept_local is on for {interface}: the kernel accepts the router's own \
                 addresses as sources there, so {FIRST}"
            ),
            Self::RouteLocalnet { interface } => write!(
                f,
                "route_localnet is on for {interface}: the kernel routes 127.0.0.0/8 there, so \
                 {FIRST}"
            ),
            Self::TcFilters { interface, filters } => {
                let kinds: Vec<&str> = filters.iter().map(|filter| filter.kind.as_str()).collect();
                write!(
                    f,
                    "{} on the ingress of {interface} ({}): they run after XDP, so {FIRST}",
                    plural(filters.len(), "tc filter", "tc filters"),
                    some(&kinds)
                )
            }
            Self::TcxPrograms {
                interface,
                programs,
            } => {
                let names: Vec<String> = programs
                    .iter()
                    .map(|program| format!("{} (id {})", program.name, program.id))
                    .collect();
                write!(
                    f,
                    "{} on the ingress of {interface} ({}): they run after XDP, so {FIRST}",
                    plural(programs.len(), "TCX program", "TCX programs"),
                    some(&names)
                )
            }
            Self::Forced => write!(
                f,
                "verification is set to always: the kernel sees each flow first"
            ),
        }
    }
}
