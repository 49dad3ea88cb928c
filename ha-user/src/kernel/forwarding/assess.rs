//! The decision: which steered interfaces must verify flows ([`ha_common::IFACE_VERIFY`])
//! and which addresses the fast path refuses as sources ([`ha_common::Settings::local`]).
//! Pure: it reads [`Facts`] and nothing else. The rules are in the module
//! documentation of [`super`].

use std::net::Ipv4Addr;

use ha_common::{IFACE_VERIFY, MAX_LOCAL_ADDRS, SETTINGS_CT_SYNC, Settings, local_filter_bit};
use serde::{Deserialize, Serialize};

use super::{Facts, InterfaceFacts, conntrack::ConntrackSync, reason::Reason};
pub use crate::model::VerifyMode;

/// The decision for one steered interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceAssessment {
    pub name: String,
    pub index: u32,
    /// The interface steers only flows the kernel forwarded recently.
    pub verify: bool,
    /// Everything that makes the kernel differ from the fast path here (with
    /// [`VerifyMode::Never`], what the fast path bypasses on an open interface).
    pub reasons: Vec<Reason>,
}

impl InterfaceAssessment {
    /// The interface's [`IFACE_VERIFY`] bit for [`ha_common::IfaceEntry::flags`].
    pub fn flag(&self) -> u16 {
        if self.verify { IFACE_VERIFY } else { 0 }
    }
}

/// The decision for every steered interface, and the router's own addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assessment {
    pub mode: VerifyMode,
    pub interfaces: Vec<InterfaceAssessment>,
    /// The router's own addresses and its subnets' broadcast addresses: sources the
    /// kernel's forwarding refuses. [`Self::settings`] keeps the first
    /// [`MAX_LOCAL_ADDRS`]; with more, every interface verifies (in auto mode).
    pub local: Vec<Ipv4Addr>,
    /// The rules consult connection tracking and an interface verifies: the
    /// controller keeps the conntrack entries of the flows it lets the data path steer
    /// ([`SETTINGS_CT_SYNC`]). `None` otherwise, and while conntrack is not loaded.
    #[serde(default)]
    pub conntrack: Option<ConntrackSync>,
}

impl Assessment {
    /// The data path's settings: `refresh_ns` and the first [`MAX_LOCAL_ADDRS`]
    /// addresses of [`Self::local`].
    pub fn settings(&self, refresh_ns: u64) -> Settings {
        let mut settings = Settings {
            refresh_ns,
            flags: if self.conntrack.is_some() {
                SETTINGS_CT_SYNC
            } else {
                0
            },
            ..Settings::default()
        };
        for (slot, addr) in settings.local.iter_mut().zip(&self.local) {
            *slot = u32::from_ne_bytes(addr.octets());
            settings.local_filter |= local_filter_bit(*slot);
            settings.local_count += 1;
        }
        settings
    }

    /// The decision for interface `name`.
    pub fn interface(&self, name: &str) -> Option<&InterfaceAssessment> {
        self.interfaces.iter().find(|iface| iface.name == name)
    }

    /// The [`IFACE_VERIFY`] bit of interface `index` (0 for an interface not assessed).
    pub fn flag(&self, index: u32) -> u16 {
        self.interfaces
            .iter()
            .find(|iface| iface.index == index)
            .map_or(0, InterfaceAssessment::flag)
    }

    /// What the fast path bypasses: the reasons of the interfaces that do not verify.
    pub fn bypassed(&self) -> impl Iterator<Item = (&str, &Reason)> {
        self.interfaces
            .iter()
            .filter(|iface| !iface.verify)
            .flat_map(|iface| iface.reasons.iter().map(|r| (iface.name.as_str(), r)))
    }
}

/// Decides, from `facts`, which interfaces verify under `mode`.
pub fn assess(facts: &Facts, mode: VerifyMode) -> Assessment {
    let global = global_reasons(facts);
    let interfaces: Vec<InterfaceAssessment> = facts
        .interfaces
        .iter()
        .map(|iface| {
            let mut reasons = global.clone();
            reasons.extend(interface_reasons(facts, iface));
            if mode == VerifyMode::Always {
                reasons.push(Reason::Forced);
            }
            let verify = match mode {
                VerifyMode::Auto => !reasons.is_empty(),
                VerifyMode::Always => true,
                VerifyMode::Never => false,
            };
            InterfaceAssessment {
                name: iface.name.clone(),
                index: iface.index,
                verify,
                reasons,
            }
        })
        .collect();
    let verifies = interfaces.iter().any(|iface| iface.verify);
    let conntrack = facts
        .conntrack
        .filter(|_| verifies && consults_conntrack(facts))
        .map(|ct| ConntrackSync {
            liberal: !ct.tcp_be_liberal,
            timeouts: ct.timeouts,
        });
    Assessment {
        mode,
        interfaces,
        local: facts.routes.local.clone(),
        conntrack,
    }
}

/// Whether a rule on the forwarding path of a steered interface consults connection
/// tracking (every rule of a legacy iptables chain may: their matches are not read).
fn consults_conntrack(facts: &Facts) -> bool {
    let nft = facts.nftables.iter().any(|chain| {
        chain.consults_conntrack() && facts.interfaces.iter().any(|i| chain.runs_on(&i.name))
    });
    nft || facts.xtables.iter().any(|chain| chain.has_rules)
}

/// The reasons that make every steered interface verify.
fn global_reasons(facts: &Facts) -> Vec<Reason> {
    let Facts {
        ip_forward,
        interfaces,
        nftables,
        xtables,
        rules,
        routes,
        xfrm,
        conntrack: _,
        absent: _,
    } = facts;
    let mut reasons = Vec::new();
    if !ip_forward {
        reasons.push(Reason::IpForwardOff);
    }
    for chain in nftables {
        if chain.matters() && interfaces.iter().any(|iface| chain.runs_on(&iface.name)) {
            reasons.push(Reason::NftChain {
                chain: chain.clone(),
            });
        }
    }
    for chain in xtables.iter().filter(|chain| chain.matters()) {
        reasons.push(Reason::XtChain {
            chain: chain.clone(),
        });
    }
    for rule in rules {
        reasons.push(Reason::PolicyRule { rule: rule.clone() });
    }
    for policy in &xfrm.forward {
        reasons.push(Reason::XfrmPolicy {
            policy: policy.clone(),
        });
    }
    if xfrm.default_block {
        reasons.push(Reason::XfrmDefaultBlock);
    }
    for route in &routes.anyip {
        reasons.push(Reason::AnyIp { route: *route });
    }
    if routes.local.len() > MAX_LOCAL_ADDRS {
        reasons.push(Reason::TooManyLocal {
            count: routes.local.len(),
        });
    }
    reasons
}

/// The reasons that make interface `iface` verify.
fn interface_reasons(facts: &Facts, iface: &InterfaceFacts) -> Vec<Reason> {
    let InterfaceFacts {
        name,
        index: _,
        lan,
        sysctls,
        tc_filters,
        tcx,
    } = iface;
    let interface = || name.clone();
    let refusing = &facts.routes.refusing;
    let mut reasons = Vec::new();
    if !sysctls.forwarding {
        reasons.push(Reason::InterfaceForwardingOff {
            interface: interface(),
        });
    }
    match sysctls.rp_filter {
        0 => {
            if *lan && !refusing.is_empty() {
                reasons.push(Reason::RefusingRoutesLan {
                    interface: interface(),
                    routes: refusing.clone(),
                });
            }
        }
        1 => reasons.push(Reason::RpFilterStrict {
            interface: interface(),
        }),
        // The kernel treats every other value as loose.
        _ => {
            if !facts.routes.main_default {
                reasons.push(Reason::RpFilterLooseNoDefault {
                    interface: interface(),
                });
            }
            if !refusing.is_empty() {
                reasons.push(Reason::RpFilterLooseRefusing {
                    interface: interface(),
                    routes: refusing.clone(),
                });
            }
        }
    }
    if sysctls.accept_local {
        reasons.push(Reason::AcceptLocal {
            interface: interface(),
        });
    }
    if sysctls.route_localnet {
        reasons.push(Reason::RouteLocalnet {
            interface: interface(),
        });
    }
    if !tc_filters.is_empty() {
        reasons.push(Reason::TcFilters {
            interface: interface(),
            filters: tc_filters.clone(),
        });
    }
    if !tcx.is_empty() {
        reasons.push(Reason::TcxPrograms {
            interface: interface(),
            programs: tcx.clone(),
        });
    }
    reasons
}

#[cfg(test)]
mod tests;
