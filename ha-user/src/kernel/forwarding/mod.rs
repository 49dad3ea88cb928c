//! Whether the fast path may steer on its own, per interface, or must verify flows.
//!
//! XDP runs before the kernel's forwarding. On an *open* interface the fast path
//! steers every frame for a steered prefix after cheap checks of its own (martian
//! sources, the router's own addresses, MTU, options, fragments); on a *verifying*
//! one ([`ha_common::IFACE_VERIFY`]) it steers only flows the kernel forwarded
//! recently, so the router's firewall, NAT, reverse-path filter, policy routing,
//! IPsec and tc filters keep deciding. An interface is open only where the facts
//! show the kernel would have forwarded the same frames the same way.
//!
//! [`Gatherer::gather`] reads the facts from the kernel (root, the calling thread's
//! network namespace); [`assess`] decides from them alone. The rules, in
//! [`VerifyMode::Auto`]:
//!
//! | fact | verifies |
//! |---|---|
//! | `net.ipv4.ip_forward` 0 | every interface |
//! | `conf/<iface>/forwarding` 0 | that interface |
//! | an nftables base chain (ip, inet: prerouting, forward, postrouting; inet or netdev ingress, netdev egress on a steered interface) with a rule or a drop policy | every interface |
//! | a legacy iptables PREROUTING, FORWARD or POSTROUTING chain with a rule or a DROP policy | every interface |
//! | a policy routing rule beyond the kernel's three | every interface |
//! | an IPsec forward policy, or a default forward policy of block | every interface |
//! | a `local` route wider than /32 outside 127.0.0.0/8 (AnyIP) | every interface |
//! | more own and broadcast addresses than [`ha_common::MAX_LOCAL_ADDRS`] | every interface |
//! | `rp_filter` 1 (the higher of `all` and the interface) | that interface |
//! | `rp_filter` 2, unless the main table has a unicast default route and no blackhole, unreachable, prohibit or throw route exists | that interface |
//! | `rp_filter` 0 and such a route exists | the LAN interface (it sends traffic back out of itself) |
//! | `accept_local` or `route_localnet` (`all` or the interface) | that interface |
//! | tc filters or TCX programs on the interface's ingress | that interface |
//!
//! Where an interface verifies and a chain's rules consult connection tracking (an
//! nftables `ct` or NAT expression, a `nat` chain; any rule of a legacy iptables
//! chain, whose matches are not read), the assessment also asks the controller to
//! keep the conntrack entries of steered flows ([`Assessment::conntrack`], see
//! [`crate::kernel::conntrack`]).
//!
//! [`VerifyMode::Always`] verifies every interface, [`VerifyMode::Never`] none; both
//! keep the reasons, so what is bypassed stays visible.
//!
//! Each fact source on a kernel without its feature: nf_tables, `ip_tables` and
//! `xfrm_user` missing mean no chain, table or policy (listed in [`Facts::absent`]);
//! a kernel without TCX has no TCX program; sysctls, rules, routes and tc filters are
//! in every kernel the fast path runs on, and an error reading them fails the
//! gathering.

mod assess;
pub mod conntrack;
pub(crate) mod netlink;
pub mod nftables;
mod reason;
pub mod routes;
pub mod rules;
pub mod sysctl;
pub mod tc;
pub mod xfrm;
pub mod xtables;

use rtnetlink::sys::protocols::NETLINK_ROUTE;

use self::conntrack::ConntrackFacts;
use serde::{Deserialize, Serialize};

pub use self::{
    assess::{Assessment, InterfaceAssessment, VerifyMode, assess},
    netlink::{NetlinkError, RawMessage, each_message},
    reason::Reason,
};
use self::{
    netlink::Channel,
    nftables::{NftChain, NftError},
    routes::RouteFacts,
    rules::PolicyRule,
    sysctl::{InterfaceSysctls, SysctlError},
    tc::{TcError, TcFilter, TcxProgram},
    xfrm::{XfrmError, XfrmFacts},
    xtables::{XtChain, XtablesError},
};

#[derive(Debug, thiserror::Error)]
pub enum GatherError {
    #[error("cannot open a route netlink socket")]
    RouteSocket {
        #[source]
        source: NetlinkError,
    },
    #[error("cannot read the IPv4 forwarding sysctls")]
    Sysctl {
        #[source]
        source: SysctlError,
    },
    #[error("cannot read the nftables rule set")]
    Nftables {
        #[source]
        source: NftError,
    },
    #[error("cannot read the iptables-legacy tables")]
    Xtables {
        #[source]
        source: XtablesError,
    },
    #[error("cannot read the policy routing rules")]
    Rules {
        #[source]
        source: NetlinkError,
    },
    #[error("cannot read the routes")]
    Routes {
        #[source]
        source: NetlinkError,
    },
    #[error("cannot read the IPsec policies")]
    Xfrm {
        #[source]
        source: XfrmError,
    },
    #[error("cannot read the connection tracking sysctls")]
    Conntrack {
        #[source]
        source: SysctlError,
    },
    #[error("cannot read a steered interface")]
    Interface {
        #[source]
        source: TcError,
    },
}

/// A kernel feature whose facts are empty because the kernel lacks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// nfnetlink or nf_tables.
    NfTables,
    /// Legacy `ip_tables` (no `/proc/net/ip_tables_names`).
    IptablesLegacy,
    /// `xfrm_user` (the netlink interface to IPsec).
    Xfrm,
    /// TCX (Linux 6.6).
    Tcx,
}

/// What the kernel says about one steered interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceFacts {
    pub name: String,
    pub index: u32,
    /// The LAN interface (the one facing the servers; traffic from it may go back out
    /// of it), as opposed to an extra ingress.
    pub lan: bool,
    pub sysctls: InterfaceSysctls,
    /// Filters on the ingress block of its `ingress` or `clsact` qdisc.
    pub tc_filters: Vec<TcFilter>,
    /// TCX ingress programs.
    pub tcx: Vec<TcxProgram>,
}

/// Everything [`assess`] decides from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// `net.ipv4.ip_forward`.
    pub ip_forward: bool,
    /// The steered interfaces, the LAN first.
    pub interfaces: Vec<InterfaceFacts>,
    /// nf_tables base chains on the forwarding path (every one, whether it matters).
    pub nftables: Vec<NftChain>,
    /// Legacy iptables chains on the forwarding path.
    pub xtables: Vec<XtChain>,
    /// Policy routing rules beyond the kernel's defaults.
    pub rules: Vec<PolicyRule>,
    pub routes: RouteFacts,
    pub xfrm: XfrmFacts,
    /// Connection tracking's sysctls; `None` while it is not loaded.
    #[serde(default)]
    pub conntrack: Option<ConntrackFacts>,
    /// Kernel features this kernel lacks (their facts are empty).
    pub absent: Vec<Feature>,
}

/// Reads [`Facts`] from the kernel, keeping its route socket between gatherings.
///
/// The route socket (rules, routes, tc filters) stays in the network namespace of
/// the thread that created the gatherer; everything else is read in the namespace
/// of the thread that gathers. Create and use it on one thread.
pub struct Gatherer {
    route: Channel,
}

impl Gatherer {
    pub fn new() -> Result<Self, GatherError> {
        let route = Channel::open(NETLINK_ROUTE, "route", true)
            .map_err(|source| GatherError::RouteSocket { source })?;
        Ok(Self { route })
    }

    /// The facts for LAN interface `lan` and extra ingress interfaces `ingress`, in
    /// the calling thread's network namespace.
    pub fn gather(&mut self, lan: &str, ingress: &[String]) -> Result<Facts, GatherError> {
        let routes = self.routes()?;
        self.gather_with_routes(lan, ingress, routes)
    }

    /// The route facts alone: the part of [`Self::gather`] whose cost grows with the
    /// routing tables (type-filtered dumps: the kernel still walks every table). A
    /// caller may read them at a slower pace, or when a route changes, and pass them
    /// to [`Self::gather_with_routes`].
    pub fn routes(&mut self) -> Result<RouteFacts, GatherError> {
        routes::facts(&mut self.route).map_err(|source| GatherError::Routes { source })
    }

    /// [`Self::gather`] with route facts read earlier by [`Self::routes`].
    pub fn gather_with_routes(
        &mut self,
        lan: &str,
        ingress: &[String],
        routes: RouteFacts,
    ) -> Result<Facts, GatherError> {
        let mut names = vec![lan];
        for name in ingress {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
        let mut absent = Vec::new();
        let ip_forward = sysctl::ip_forward().map_err(|source| GatherError::Sysctl { source })?;
        let mut interfaces = Vec::new();
        for name in names {
            interfaces.push(self.interface(name, name == lan, &mut absent)?);
        }
        let nftables = nftables::chains()
            .map_err(|source| GatherError::Nftables { source })?
            .unwrap_or_else(|| {
                absent.push(Feature::NfTables);
                Vec::new()
            });
        let xtables = xtables::chains()
            .map_err(|source| GatherError::Xtables { source })?
            .unwrap_or_else(|| {
                absent.push(Feature::IptablesLegacy);
                Vec::new()
            });
        let rules =
            rules::custom(&mut self.route).map_err(|source| GatherError::Rules { source })?;
        let xfrm = xfrm::facts()
            .map_err(|source| GatherError::Xfrm { source })?
            .unwrap_or_else(|| {
                absent.push(Feature::Xfrm);
                XfrmFacts::default()
            });
        let conntrack = conntrack::facts().map_err(|source| GatherError::Conntrack { source })?;
        Ok(Facts {
            ip_forward,
            interfaces,
            nftables,
            xtables,
            rules,
            routes,
            xfrm,
            conntrack,
            absent,
        })
    }

    fn interface(
        &mut self,
        name: &str,
        lan: bool,
        absent: &mut Vec<Feature>,
    ) -> Result<InterfaceFacts, GatherError> {
        let tc_error = |source| GatherError::Interface { source };
        let index = tc::ifindex(name).map_err(tc_error)?;
        let sysctls = sysctl::interface(name).map_err(|source| GatherError::Sysctl { source })?;
        let tc_filters = tc::ingress_filters(&mut self.route, name, index).map_err(tc_error)?;
        let tcx = tc::tcx_ingress(name).map_err(tc_error)?.unwrap_or_else(|| {
            if !absent.contains(&Feature::Tcx) {
                absent.push(Feature::Tcx);
            }
            Vec::new()
        });
        Ok(InterfaceFacts {
            name: name.to_owned(),
            index,
            lan,
            sysctls,
            tc_filters,
            tcx,
        })
    }
}
