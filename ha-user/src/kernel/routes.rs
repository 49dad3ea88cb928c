//! Kernel static routes for the steered prefixes: the slow path beside the XDP map.
//!
//! Every steered prefix has one IPv4 route in the main table, metric 0, through the
//! prefix's current owner: the route `ip route replace 192.168.1.64/27 via
//! 192.168.1.3 dev eth1 proto 165` would install. Traffic the data path passes
//! (unknown host MAC, TTL 1, all hosts down, XDP detached) follows it.
//!
//! # Ownership of kernel routes
//!
//! `ha` marks its routes with its own route protocol, [`ROUTE_PROTO`] (165, `0xa5`;
//! not reserved in the kernel's `RTPROT_*` list, iproute2's `rt_protos`, nor by
//! FRR, which uses 186-198). Add `165 ha` to `/etc/iproute2/rt_protos.d/ha.conf` and
//! `ip route` shows `proto ha`; `ip route flush proto 165` removes everything `ha` left.
//!
//! The rule: **`ha` touches exactly one kernel route per configured prefix, the
//! main-table, metric-0, TOS-0 route whose destination is exactly that prefix; it
//! never touches any other route.** In detail:
//!
//! - A route for a prefix that is not in the configuration is never replaced or
//!   removed, whatever its protocol: `ha` only ever names configured prefixes (the
//!   caller's duty: [`replace`] and [`adopt`] do not see the configuration).
//! - At start-up the controller calls [`adopt_all`] with every configured prefix
//!   ([`adopt`] for one); for each prefix:
//!   - no route for the prefix: `ha` installs one through the prefix's configured
//!     owner;
//!   - a route already carries [`ROUTE_PROTO`] (a previous controller's): kept as it
//!     is; the reconciliation that follows points it at the current owner;
//!   - a unicast route through a gateway installed by someone else (`proto boot`
//!     from `route add ... gw ...` in a boot script, `proto static` from `ip route
//!     add`, dhcp, a routing daemon, ...): `ha` *adopts* it: replaces it with a
//!     route through the **same gateway and interface**, protocol [`ROUTE_PROTO`].
//!     Forwarding does not change; from then on the route is `ha`'s;
//!   - anything else with that destination is refused with
//!     [`RouteError::Foreign`] and left alone: a connected route (`proto kernel`,
//!     the prefix is a LAN subnet), an ICMP-redirect route, a route without a
//!     gateway (`dev eth1` only) or with several next hops, or a non-unicast route
//!     (`blackhole`, `unreachable`, `local`, ...). Each means the configuration and
//!     the router disagree on what the prefix is; the administrator decides.
//!   - a route with an `mtu` or `advmss` attribute (ours or not) is refused with
//!     [`RouteError::SizeAttribute`]: the fast path sends what fits the LAN
//!     interface's MTU and cannot honour a route's own, and `ha`'s routes carry none.
//! - [`adopt_all`] ([`plan_all`]) decides about every prefix before it changes any
//!   route: one refused prefix stops the start-up with the routing table untouched.
//!   A reload decides about every prefix of the new file with [`plan_all`] too: one
//!   refused prefix refuses the whole reload.
//!   - routes for the same destination with another metric, a TOS or in another
//!     table are never touched (the metric-0 route wins over other metrics).
//! - Ownership changes use [`replace`]; a prefix leaving the configuration uses
//!   [`remove`], which deletes only a route carrying [`ROUTE_PROTO`] (the kernel does
//!   the matching, so a route someone re-installed meanwhile survives).
//! - A recorded prefix the configuration no longer names (a kill during a reload)
//!   loses its route through [`remove_ours`], only while that route is still ours
//!   through the LAN (`ha` records the prefixes whose routes it may have installed:
//!   `daemon::route_record`).
//! - The routes outlive the controller: a restart, a crash or `ha-user` being stopped
//!   leaves the slow path pointing where it pointed.
//!
//! # All hosts down
//!
//! When every host of a prefix is down, the policy removes the prefix's fast-path
//! entry and traffic falls to the kernel route, which must therefore stay. It should
//! point at the prefix's **configured owner** (its `owner` in the configuration),
//! not at the last owner: that is where the classic static setup pointed, what an
//! administrator reading the configuration expects, and the host the policy returns
//! the prefix to first when hosts recover (a recovering backup moves it again).

use std::{collections::HashMap, net::Ipv4Addr};

use futures::{StreamExt as _, TryStreamExt as _};
use ipnet::Ipv4Net;
use rtnetlink::{
    Handle, RouteMessageBuilder,
    packet_route::route::{
        RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteProtocol,
        RouteType,
    },
};

pub use crate::model::{KernelRoute, ROUTE_PROTO};

/// The main routing table's id (`RT_TABLE_MAIN`).
const MAIN_TABLE: u32 = RouteHeader::RT_TABLE_MAIN as u32;

/// What [`adopt`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Adoption {
    /// There was no route for the prefix; `ha` installed one through `gateway`.
    Installed { gateway: Ipv4Addr },
    /// The route already carried [`ROUTE_PROTO`]; nothing was changed.
    AlreadyOurs { route: KernelRoute },
    /// Someone else's route was replaced by the same route with [`ROUTE_PROTO`].
    Adopted { previous: KernelRoute },
}

impl Adoption {
    /// The gateway of the route `ha` owns after this adoption if that route goes
    /// through `oif` (an adopted route keeps its own interface).
    pub fn ours_via(&self, oif: u32) -> Option<Ipv4Addr> {
        match self {
            Adoption::Installed { gateway } => Some(*gateway),
            Adoption::AlreadyOurs { route } | Adoption::Adopted { previous: route } => {
                route.gateway.filter(|_| route.oif == Some(oif))
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("{prefix} has host bits set (the network is {}); a route needs the network address", prefix.trunc())]
    HostBits { prefix: Ipv4Net },
    #[error(
        "cannot install the kernel route `{prefix} via {gateway} dev #{oif} proto {ROUTE_PROTO}`"
    )]
    Replace {
        prefix: Ipv4Net,
        gateway: Ipv4Addr,
        oif: u32,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("cannot put the kernel route for {prefix} back as it was")]
    PutBack {
        prefix: Ipv4Net,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("cannot remove ha's kernel route for {prefix}")]
    Remove {
        prefix: Ipv4Net,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("cannot list the kernel's IPv4 routes")]
    List {
        #[source]
        source: rtnetlink::Error,
    },
    #[error(
        "will not take over the kernel route for {prefix} ({existing}): it is {reason}; \
         check the prefix in the configuration, or replace the route yourself \
         (`ip route replace {prefix} via OWNER dev LAN`) and start or reload again"
    )]
    Foreign {
        prefix: Ipv4Net,
        existing: String,
        reason: &'static str,
    },
    #[error(
        "will not take over the kernel route for {prefix} ({existing}): it sets {}, \
         which the fast path cannot honour (it sends whatever fits the LAN interface's \
         MTU, and ha's routes carry no MTU of their own); remove the attribute \
         (`ip route replace {prefix} via GATEWAY dev LAN` without it) or set the MTU \
         on the interface instead (`ip link set LAN mtu N`), and start or reload again",
        attributes.join(" and ")
    )]
    SizeAttribute {
        prefix: Ipv4Net,
        existing: String,
        attributes: Vec<&'static str>,
    },
    #[error("{}", refusals_text(.0))]
    Refused(Vec<RouteError>),
}

/// The most refusals [`RouteError::Refused`] spells out; the rest are counted.
const REFUSALS_SHOWN: usize = 8;

fn refusals_text(refusals: &[RouteError]) -> String {
    let mut text = String::new();
    for (i, refusal) in refusals.iter().take(REFUSALS_SHOWN).enumerate() {
        if i > 0 {
            text.push('\n');
        }
        text.push_str(&refusal.to_string());
    }
    if refusals.len() > REFUSALS_SHOWN {
        text.push_str(&format!(
            "\n(and {} more prefixes refused)",
            refusals.len() - REFUSALS_SHOWN
        ));
    }
    text
}

/// Installs or replaces the main-table, metric-0 route for `prefix` with one through
/// `gateway` on interface `oif`, protocol [`ROUTE_PROTO`]: `ip route replace PREFIX
/// via GATEWAY dev OIF proto 165`. Whatever route had that destination and metric is
/// replaced, whoever installed it: call it only for configured prefixes.
pub async fn replace(
    handle: &Handle,
    prefix: Ipv4Net,
    gateway: Ipv4Addr,
    oif: u32,
) -> Result<(), RouteError> {
    check_prefix(prefix)?;
    handle
        .route()
        .add(ours_through(prefix, gateway, oif))
        .replace()
        .execute()
        .await
        .map_err(|source| RouteError::Replace {
            prefix,
            gateway,
            oif,
            source,
        })
}

/// Removes the main-table, metric-0 route for `prefix` if it carries
/// [`ROUTE_PROTO`]; any other route for it stays. Returns whether a route was removed.
pub async fn remove(handle: &Handle, prefix: Ipv4Net) -> Result<bool, RouteError> {
    check_prefix(prefix)?;
    // The kernel deletes only a route whose protocol matches a non-zero protocol in
    // the request (fib_table_delete), so the check and the delete are one step.
    let message = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(prefix.network(), prefix.prefix_len())
        .protocol(RouteProtocol::from(ROUTE_PROTO))
        .build();
    delete(handle, prefix, message).await
}

/// Deletes the route `message` matches: whether there was one (ESRCH: none).
async fn delete(
    handle: &Handle,
    prefix: Ipv4Net,
    message: RouteMessage,
) -> Result<bool, RouteError> {
    match handle.route().del(message).execute().await {
        Ok(()) => Ok(true),
        Err(rtnetlink::Error::NetlinkError(err)) if err.raw_code() == -libc::ESRCH => Ok(false),
        Err(source) => Err(RouteError::Remove { prefix, source }),
    }
}

/// The main-table, metric-0 route `prefix via gateway dev oif proto 165`.
fn ours_through(prefix: Ipv4Net, gateway: Ipv4Addr, oif: u32) -> RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(prefix.network(), prefix.prefix_len())
        .gateway(gateway)
        .output_interface(oif)
        .protocol(RouteProtocol::from(ROUTE_PROTO))
        .build()
}

/// Removes `ha`'s route of each of `prefixes` that still looks like one: main
/// table, metric 0, protocol [`ROUTE_PROTO`], through `oif` (up to [`IN_FLIGHT`]
/// at a time). A prefix whose route is someone else's, goes through another
/// interface or is gone is left alone and not reported. Returns, for each route of
/// ours, its prefix, its gateway and whether it could be removed.
pub async fn remove_ours(
    handle: &Handle,
    prefixes: impl IntoIterator<Item = Ipv4Net>,
    oif: u32,
) -> Result<Vec<(Ipv4Net, Ipv4Addr, Result<(), RouteError>)>, RouteError> {
    let ours = our_routes(handle, oif).await?;
    let targets: Vec<(Ipv4Net, Ipv4Addr)> = prefixes
        .into_iter()
        .filter_map(|prefix| Some((prefix, *ours.get(&prefix)?)))
        .collect();
    Ok(futures::stream::iter(targets)
        .map(|(prefix, gateway)| async move {
            let removed = remove_through(handle, prefix, gateway, oif).await;
            (prefix, gateway, removed)
        })
        .buffered(IN_FLIGHT)
        .collect()
        .await)
}

/// Removes the main-table, metric-0 route `prefix via gateway dev oif proto 165`:
/// the kernel matches every one of those, so a route someone changed meanwhile
/// stays. A route already gone is not an error.
async fn remove_through(
    handle: &Handle,
    prefix: Ipv4Net,
    gateway: Ipv4Addr,
    oif: u32,
) -> Result<(), RouteError> {
    check_prefix(prefix)?;
    delete(handle, prefix, ours_through(prefix, gateway, oif))
        .await
        .map(|_| ())
}

/// The IPv4 unicast routes of the main table with TOS 0, in the kernel's order
/// (by destination).
pub async fn list(handle: &Handle) -> Result<Vec<KernelRoute>, RouteError> {
    Ok(dump(handle)
        .await?
        .into_iter()
        .filter(|(_, kind)| *kind == RouteType::Unicast)
        .map(|(route, _)| route)
        .collect())
}

/// Takes over the kernel route for the configured prefix `prefix` at start-up, by
/// the rule of the module documentation; `owner` is the prefix's configured owner,
/// used when there is no route yet, `oif` the LAN interface. For many prefixes use
/// [`adopt_all`], which reads the routing table once.
pub async fn adopt(
    handle: &Handle,
    prefix: Ipv4Net,
    owner: Ipv4Addr,
    oif: u32,
) -> Result<Adoption, RouteError> {
    check_prefix(prefix)?;
    let existing = metric_zero_routes(handle).await?;
    carry_out(
        handle,
        prefix,
        owner,
        oif,
        decide(prefix, existing.get(&prefix)),
    )
    .await
}

/// [`adopt`] for every `(prefix, configured owner)` of `wanted`, reading the routing
/// table once: [`plan_all`], then [`AdoptPlan::carry_out`].
pub async fn adopt_all(
    handle: &Handle,
    wanted: &[(Ipv4Net, Ipv4Addr)],
    oif: u32,
) -> Result<Vec<Adoption>, RouteError> {
    let adoptions = plan_all(handle, wanted, oif)
        .await?
        .carry_out(handle)
        .await?;
    Ok(adoptions
        .into_iter()
        .map(|(_, adoption)| adoption)
        .collect())
}

/// What [`adopt_all`] will do about every prefix, decided before any route changes.
#[derive(Debug)]
pub struct AdoptPlan {
    decisions: Vec<(Ipv4Net, Ipv4Addr, Decision)>,
    oif: u32,
}

/// Decides, by the adoption rule, about every `(prefix, configured owner)` of
/// `wanted` (`oif`: the LAN interface), reading the routing table once and changing
/// nothing: a refused prefix, one or several ([`RouteError::Refused`] lists them
/// all), is refused before any route has changed.
pub async fn plan_all(
    handle: &Handle,
    wanted: &[(Ipv4Net, Ipv4Addr)],
    oif: u32,
) -> Result<AdoptPlan, RouteError> {
    let existing = metric_zero_routes(handle).await?;
    let mut decisions = Vec::with_capacity(wanted.len());
    let mut refused = Vec::new();
    for &(prefix, owner) in wanted {
        match decide(prefix, existing.get(&prefix)) {
            Ok(decision) => decisions.push((prefix, owner, decision)),
            Err(refusal) => refused.push(refusal),
        }
    }
    match refused.len() {
        0 => Ok(AdoptPlan { decisions, oif }),
        1 => Err(refused.remove(0)),
        _ => Err(RouteError::Refused(refused)),
    }
}

impl AdoptPlan {
    /// Writes the routes, up to [`IN_FLIGHT`] at a time; each prefix with its
    /// adoption, in order. A write that fails after others succeeded is the error; the
    /// other writes stand (a start-up puts them back: see [`super::route_snapshot`]).
    pub async fn carry_out(self, handle: &Handle) -> Result<Vec<(Ipv4Net, Adoption)>, RouteError> {
        let AdoptPlan { decisions, oif } = self;
        futures::stream::iter(decisions)
            .map(|(prefix, owner, decision)| async move {
                let adoption = carry_out(handle, prefix, owner, oif, Ok(decision)).await?;
                Ok((prefix, adoption))
            })
            .buffered(IN_FLIGHT)
            .try_collect()
            .await
    }
}

/// Carries out the adoption rule's `decision` for `prefix` (configured owner `owner`,
/// LAN interface `oif`).
async fn carry_out(
    handle: &Handle,
    prefix: Ipv4Net,
    owner: Ipv4Addr,
    oif: u32,
    decision: Result<Decision, RouteError>,
) -> Result<Adoption, RouteError> {
    match decision? {
        Decision::Install => {
            replace(handle, prefix, owner, oif).await?;
            Ok(Adoption::Installed { gateway: owner })
        }
        Decision::Keep(route) => Ok(Adoption::AlreadyOurs { route }),
        Decision::Adopt {
            gateway,
            oif: route_oif,
            route,
        } => {
            replace(handle, prefix, gateway, route_oif).await?;
            Ok(Adoption::Adopted { previous: route })
        }
    }
}

/// The gateways of `ha`'s routes through one interface, by prefix: what the kernel
/// has, as [`our_routes`] read it or as [`Adoption::ours_via`] left it.
pub type OurRoutes = HashMap<Ipv4Net, Ipv4Addr>;

/// The gateways of the main-table, metric-0 routes carrying [`ROUTE_PROTO`] through
/// `oif`, by prefix.
pub async fn our_routes(handle: &Handle, oif: u32) -> Result<OurRoutes, RouteError> {
    Ok(metric_zero_routes(handle)
        .await?
        .into_values()
        .filter(|(route, kind)| *kind == RouteType::Unicast && route.is_ours())
        .filter(|(route, _)| route.oif == Some(oif))
        .filter_map(|(route, _)| Some((route.prefix, route.gateway?)))
        .collect())
}

/// Points the route of every `(prefix, gateway)` of `wanted` through `gateway` on
/// `oif` with [`ROUTE_PROTO`], replacing only those `current` (our routes through
/// `oif`, see [`our_routes`]) does not already have (up to [`IN_FLIGHT`] at a time):
/// the agreement pass after start-up and reloads. Returns how many routes were
/// replaced; the error of the first route that could not be (the others are still
/// tried).
pub async fn agree_all(
    handle: &Handle,
    wanted: &[(Ipv4Net, Ipv4Addr)],
    oif: u32,
    current: &OurRoutes,
) -> Result<usize, RouteError> {
    let writes: Vec<(Ipv4Net, Ipv4Addr)> = wanted
        .iter()
        .filter(|(prefix, gateway)| current.get(prefix) != Some(gateway))
        .copied()
        .collect();
    let results = replace_each(handle, &writes, oif).await;
    let replaced = results.len();
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    Ok(replaced)
}

/// What [`restore`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// Prefixes that had no route: installed again.
    pub installed: usize,
    /// Routes of ours through another gateway or interface: re-pointed.
    pub repointed: usize,
    /// Prefixes whose route someone else replaced meanwhile: left alone.
    pub foreign: Vec<KernelRoute>,
}

/// Puts back what the kernel lost of `wanted` (every configured `(prefix,
/// gateway)`, through `oif`): a prefix without a metric-0 main-table route gets ours
/// again (a flap of the interface or someone deleted it), one of ours pointing
/// elsewhere is re-pointed; a route someone else installed meanwhile is left alone
/// and reported (the ownership rule: it is no longer ours). Every write is tried;
/// the error of the first that failed is returned.
pub async fn restore(
    handle: &Handle,
    wanted: &[(Ipv4Net, Ipv4Addr)],
    oif: u32,
) -> Result<Restored, RouteError> {
    let existing = metric_zero_routes(handle).await?;
    let mut restored = Restored::default();
    let mut writes = Vec::new();
    for &(prefix, gateway) in wanted {
        match existing.get(&prefix) {
            None => {
                restored.installed += 1;
                writes.push((prefix, gateway));
            }
            Some((route, RouteType::Unicast)) if route.is_ours() => {
                if route.gateway != Some(gateway) || route.oif != Some(oif) {
                    restored.repointed += 1;
                    writes.push((prefix, gateway));
                }
            }
            Some((route, _)) => restored.foreign.push(route.clone()),
        }
    }
    replace_each(handle, &writes, oif)
        .await
        .into_iter()
        .collect::<Result<Vec<()>, _>>()?;
    Ok(restored)
}

/// [`replace`] for every `(prefix, gateway)` on `oif`, up to [`IN_FLIGHT`] requests
/// in flight on the one netlink socket; one result per route, in order. `routes` must
/// not name a prefix twice (their order in the kernel would be unspecified).
pub async fn replace_each(
    handle: &Handle,
    routes: &[(Ipv4Net, Ipv4Addr)],
    oif: u32,
) -> Vec<Result<(), RouteError>> {
    futures::stream::iter(routes)
        .map(|&(prefix, gateway)| replace(handle, prefix, gateway, oif))
        .buffered(IN_FLIGHT)
        .collect()
        .await
}

/// The most route requests [`replace_each`] keeps in flight. The kernel applies them
/// one at a time (under the RTNL lock); keeping the socket busy removes the round
/// trip per route, not the kernel's own cost.
const IN_FLIGHT: usize = 64;

/// The main-table, metric-0 routes by destination: the ones a replace would hit.
async fn metric_zero_routes(
    handle: &Handle,
) -> Result<HashMap<Ipv4Net, (KernelRoute, RouteType)>, RouteError> {
    Ok(dump(handle)
        .await?
        .into_iter()
        .filter(|(route, _)| route.metric == 0)
        .map(|(route, kind)| (route.prefix, (route, kind)))
        .collect())
}

/// What [`adopt_all`] does about one prefix.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Install,
    Keep(KernelRoute),
    Adopt {
        gateway: Ipv4Addr,
        oif: u32,
        route: KernelRoute,
    },
}

/// The adoption rule for `prefix`, whose metric-0 main-table route is `existing`.
fn decide(
    prefix: Ipv4Net,
    existing: Option<&(KernelRoute, RouteType)>,
) -> Result<Decision, RouteError> {
    check_prefix(prefix)?;
    let Some((route, kind)) = existing else {
        return Ok(Decision::Install);
    };
    let refuse = |reason| RouteError::Foreign {
        prefix,
        existing: route.to_string(),
        reason,
    };
    if *kind != RouteType::Unicast {
        return Err(refuse(
            "not a unicast route (blackhole, unreachable, prohibit, local, ...)",
        ));
    }
    let attributes = route.size_attributes();
    if !attributes.is_empty() {
        return Err(RouteError::SizeAttribute {
            prefix,
            existing: route.to_string(),
            attributes,
        });
    }
    if route.is_ours() {
        return Ok(Decision::Keep(route.clone()));
    }
    match RouteProtocol::from(route.protocol) {
        RouteProtocol::Kernel => {
            return Err(refuse(
                "the kernel's route for a connected subnet, not a steered prefix",
            ));
        }
        RouteProtocol::IcmpRedirect => return Err(refuse("learned from an ICMP redirect")),
        _ => {}
    }
    let (Some(gateway), Some(oif)) = (route.gateway, route.oif) else {
        return Err(refuse(
            "a route without a single gateway (device route or several next hops)",
        ));
    };
    Ok(Decision::Adopt {
        gateway,
        oif,
        route: route.clone(),
    })
}

fn check_prefix(prefix: Ipv4Net) -> Result<(), RouteError> {
    if prefix.trunc() == prefix {
        Ok(())
    } else {
        Err(RouteError::HostBits { prefix })
    }
}

/// Every IPv4 main-table route with TOS 0, with its type.
async fn dump(handle: &Handle) -> Result<Vec<(KernelRoute, RouteType)>, RouteError> {
    Ok(dump_messages(handle)
        .await?
        .into_iter()
        .map(|(route, kind, _)| (route, kind))
        .collect())
}

/// Every IPv4 main-table route with TOS 0, with its type and the message exactly as
/// the kernel sent it.
pub(super) async fn dump_messages(
    handle: &Handle,
) -> Result<Vec<(KernelRoute, RouteType, RouteMessage)>, RouteError> {
    let request = RouteMessageBuilder::<Ipv4Addr>::new().build();
    let mut messages = handle.route().get(request).execute();
    let mut routes = Vec::new();
    while let Some(message) = messages
        .try_next()
        .await
        .map_err(|source| RouteError::List { source })?
    {
        if let Some((route, kind)) = parse(&message) {
            routes.push((route, kind, message));
        }
    }
    Ok(routes)
}

/// The route `message` describes, if it is an IPv4 main-table route with TOS 0.
pub(crate) fn parse(message: &RouteMessage) -> Option<(KernelRoute, RouteType)> {
    let header = &message.header;
    if header.address_family != rtnetlink::packet_route::AddressFamily::Inet || header.tos != 0 {
        return None;
    }
    let mut table = u32::from(header.table);
    let mut destination = Ipv4Addr::UNSPECIFIED;
    let mut gateway = None;
    let mut oif = None;
    let mut metric = 0;
    let (mut mtu, mut advmss) = (None, None);
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Table(id) => table = *id,
            RouteAttribute::Destination(RouteAddress::Inet(addr)) => destination = *addr,
            RouteAttribute::Gateway(RouteAddress::Inet(addr)) => gateway = Some(*addr),
            RouteAttribute::Oif(index) => oif = Some(*index),
            RouteAttribute::Priority(priority) => metric = *priority,
            RouteAttribute::Metrics(metrics) => {
                for route_metric in metrics {
                    match route_metric {
                        RouteMetric::Mtu(value) => mtu = Some(*value),
                        RouteMetric::Advmss(value) => advmss = Some(*value),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if table != MAIN_TABLE {
        return None;
    }
    // A malformed length is the kernel's bug, not ours to crash on: skip the route.
    let prefix = Ipv4Net::new(destination, header.destination_prefix_length).ok()?;
    let route = KernelRoute {
        prefix,
        gateway,
        oif,
        protocol: header.protocol.into(),
        metric,
        mtu,
        advmss,
    };
    Some((route, header.kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_reads_like_iproute2() {
        let route = KernelRoute {
            prefix: "192.168.1.64/27".parse().expect("prefix"),
            gateway: Some(Ipv4Addr::new(192, 168, 1, 3)),
            oif: Some(4),
            protocol: 3,
            metric: 0,
            mtu: None,
            advmss: None,
        };
        assert_eq!(
            route.to_string(),
            "192.168.1.64/27 via 192.168.1.3 dev #4 proto boot metric 0"
        );
        assert!(!route.is_ours());
        let sized = KernelRoute {
            mtu: Some(1400),
            advmss: Some(1360),
            ..route
        };
        assert_eq!(
            sized.to_string(),
            "192.168.1.64/27 via 192.168.1.3 dev #4 proto boot metric 0 mtu 1400 advmss 1360"
        );
    }

    fn route(prefix: &str, gateway: Option<[u8; 4]>, protocol: u8) -> KernelRoute {
        KernelRoute {
            prefix: prefix.parse().expect("prefix"),
            gateway: gateway.map(Ipv4Addr::from),
            oif: Some(4),
            protocol,
            metric: 0,
            mtu: None,
            advmss: None,
        }
    }

    #[test]
    fn the_adoption_rule() {
        let prefix: Ipv4Net = "192.168.1.64/27".parse().expect("prefix");
        let unicast = |route| Some((route, RouteType::Unicast));
        assert_eq!(decide(prefix, None).expect("install"), Decision::Install);
        for protocol in [3, 4, 16, 186] {
            let foreign = route("192.168.1.64/27", Some([192, 168, 1, 3]), protocol);
            assert_eq!(
                decide(prefix, unicast(foreign.clone()).as_ref()).expect("adopt"),
                Decision::Adopt {
                    gateway: Ipv4Addr::new(192, 168, 1, 3),
                    oif: 4,
                    route: foreign,
                },
                "proto {protocol}"
            );
        }
        let ours = route("192.168.1.64/27", Some([192, 168, 1, 4]), ROUTE_PROTO);
        assert_eq!(
            decide(prefix, unicast(ours.clone()).as_ref()).expect("keep"),
            Decision::Keep(ours)
        );
        let refused = [
            unicast(route("192.168.1.64/27", None, 4)),
            unicast(route("192.168.1.64/27", None, 2)),
            unicast(route("192.168.1.64/27", Some([192, 168, 1, 9]), 1)),
            Some((route("192.168.1.64/27", None, 3), RouteType::BlackHole)),
        ];
        for existing in refused {
            let result = decide(prefix, existing.as_ref());
            assert!(
                matches!(result, Err(RouteError::Foreign { .. })),
                "{result:?}"
            );
        }
    }

    #[test]
    fn a_route_with_its_own_mtu_or_advmss_is_refused_even_if_ours() {
        let prefix: Ipv4Net = "192.168.1.64/27".parse().expect("prefix");
        for protocol in [3, ROUTE_PROTO] {
            for (mtu, advmss, named) in [
                (Some(1400), None, "mtu"),
                (None, Some(1360), "advmss"),
                (Some(1400), Some(1360), "mtu and advmss"),
            ] {
                let sized = KernelRoute {
                    mtu,
                    advmss,
                    ..route("192.168.1.64/27", Some([192, 168, 1, 3]), protocol)
                };
                let err = decide(prefix, Some(&(sized, RouteType::Unicast)))
                    .expect_err("a route with a size attribute");
                assert!(matches!(err, RouteError::SizeAttribute { .. }), "{err:?}");
                let message = err.to_string();
                assert!(
                    message.contains(&format!("it sets {named}, which"))
                        && message.contains("LAN interface's MTU")
                        && message.contains("ip link set LAN mtu"),
                    "{message}"
                );
            }
        }
    }

    #[test]
    fn several_refusals_are_listed_and_capped() {
        let refusal = |i: usize| RouteError::Foreign {
            prefix: Ipv4Net::new(Ipv4Addr::new(10, 0, i as u8, 0), 24).expect("prefix"),
            existing: "x".to_owned(),
            reason: "a test",
        };
        let two = RouteError::Refused((0..2).map(refusal).collect()).to_string();
        assert_eq!(two.lines().count(), 2, "{two}");
        assert!(
            two.contains("10.0.0.0/24") && two.contains("10.0.1.0/24"),
            "{two}"
        );
        let many = RouteError::Refused((0..12).map(refusal).collect()).to_string();
        assert_eq!(many.lines().count(), REFUSALS_SHOWN + 1, "{many}");
        assert!(many.ends_with("(and 4 more prefixes refused)"), "{many}");
    }

    #[test]
    fn host_bits_are_refused_before_any_syscall() {
        let prefix: Ipv4Net = "192.168.1.65/27".parse().expect("prefix");
        assert!(matches!(
            check_prefix(prefix),
            Err(RouteError::HostBits { .. })
        ));
    }
}
