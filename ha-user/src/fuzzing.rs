//! Entry points for the fuzz targets (`fuzz/`): the project's decoders of what the
//! kernel sends that are not public elsewhere, each a thin call of the code the
//! daemon runs. Not an API: nothing else should call these.

use std::{net::Ipv4Addr, ops::ControlFlow};

use rtnetlink::{
    packet_core::{NetlinkDeserializable, NetlinkHeader, NetlinkPayload},
    packet_route::{
        RouteNetlinkMessage, neighbour::NeighbourMessage, route::RouteMessage, route::RouteType,
        rule::RuleMessage,
    },
};

use crate::{
    kernel::{
        forwarding::{
            NetlinkError, RawMessage, each_message,
            nftables::{self, NftChain, NftError},
            routes::{self, KindedRoute, RouteKind},
            rules::{self, PolicyRule},
            tc::{self, TcFilter},
            xfrm::{self, XfrmPolicy},
            xtables::{self, XtChain, XtablesError},
        },
        neigh, route_snapshot,
        routes::KernelRoute,
    },
    model::Mac,
};

/// A main-table route as the route manager reads it (`kernel::routes`).
pub fn kernel_route(message: &RouteMessage) -> Option<(KernelRoute, RouteType)> {
    crate::kernel::routes::parse(message)
}

/// `message` as the start-up snapshot would replay it.
pub fn replayable_route(message: &RouteMessage) -> RouteMessage {
    route_snapshot::replayable(message)
}

/// A route of `kind` as the forwarding checks read it.
pub fn forwarding_route(reply: &RouteNetlinkMessage, kind: RouteKind) -> Option<KindedRoute> {
    routes::kinded(reply, kind)
}

/// A neighbour entry: address, ifindex, usable MAC.
pub fn neighbour(message: &NeighbourMessage) -> Option<(Ipv4Addr, u32, Option<Mac>)> {
    neigh::parse(message).map(|entry| (entry.addr, entry.ifindex, entry.mac))
}

/// The routing rules that are not the kernel's defaults.
pub fn custom_rules(rules: &[RuleMessage]) -> Vec<PolicyRule> {
    rules::custom_of(rules)
}

/// A base chain from the body of an `NFT_MSG_NEWCHAIN` message.
pub fn nft_chain(body: Vec<u8>) -> Result<Option<NftChain>, NftError> {
    nftables::parse_chain(&RawMessage { kind: 0, body })
}

/// A tc filter from the body of an `RTM_NEWTFILTER` message.
pub fn tc_filter(body: &[u8]) -> Option<TcFilter> {
    tc::parse_filter(body)
}

/// A forward policy from the body of an `XFRM_MSG_NEWPOLICY` message.
pub fn xfrm_policy(body: &[u8]) -> Option<XfrmPolicy> {
    xfrm::forward_policy(body)
}

/// The chains of an iptables table from its `IPT_SO_GET_INFO` answer and entries.
pub fn xt_chains(info: &[u8], entries: &[u8], table: &str) -> Result<Vec<XtChain>, XtablesError> {
    let (mut chains, _size) = xtables::hooks_of(info, table);
    xtables::policies_from(&mut chains, entries, table)?;
    Ok(chains.into_iter().map(|(chain, _)| chain).collect())
}

/// Each message of a netlink datagram as the forwarding checks' channel splits it.
pub fn datagram<I: NetlinkDeserializable>(
    buffer: &[u8],
    sequence: u32,
    each: impl FnMut(&NetlinkHeader, NetlinkPayload<I>) -> Result<ControlFlow<()>, NetlinkError>,
) -> Result<(), NetlinkError> {
    each_message(buffer, "fuzzed datagram", sequence, each)
}
