//! rtnetlink datagrams (routes, links, neighbours, rules) as the project reads them:
//! split into messages by the forwarding checks' splitter, each decoded by
//! netlink-packet-route, then turned into the model: main-table routes
//! (`kernel::routes`) and the configuration adopted from them, the replay of a
//! snapshot route (re-encoded, as it is sent back), the routes of the forwarding
//! checks, neighbour entries, interfaces and VLANs, custom routing rules. Bytes after
//! a line `HOSTS` are the `/etc/hosts` the adopted configuration names hosts from.

#![no_main]

use std::ops::ControlFlow;

use ha_user::{
    config::adopt,
    fuzzing,
    kernel::{
        forwarding::routes::RouteKind,
        netdev::{self, NetdevError},
    },
};
use libfuzzer_sys::fuzz_target;
use rtnetlink::{
    packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload},
    packet_route::RouteNetlinkMessage,
};

const KINDS: [RouteKind; 6] = [
    RouteKind::Blackhole,
    RouteKind::Unreachable,
    RouteKind::Prohibit,
    RouteKind::Throw,
    RouteKind::Local,
    RouteKind::Broadcast,
];

/// Ends the datagram; what follows is the text of `/etc/hosts`.
const HOSTS: &[u8] = b"HOSTS\n";

fuzz_target!(|input: &[u8]| {
    let (data, hosts) = match input.windows(HOSTS.len()).position(|w| w == HOSTS) {
        Some(at) => (&input[..at], &input[at + HOSTS.len()..]),
        None => (input, &[][..]),
    };
    // The sequence number of the first message: a dump answers with one throughout.
    let sequence = data
        .get(8..12)
        .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    let mut routes = Vec::new();
    let mut rules = Vec::new();
    let split = fuzzing::datagram::<RouteNetlinkMessage>(data, sequence, |_, payload| {
        let NetlinkPayload::InnerMessage(message) = payload else {
            return Ok(ControlFlow::Continue(()));
        };
        for kind in KINDS {
            if let Some(route) = fuzzing::forwarding_route(&message, kind) {
                let _ = route.to_string();
            }
        }
        match message {
            RouteNetlinkMessage::NewRoute(route) => {
                if let Some((kernel, _)) = fuzzing::kernel_route(&route) {
                    let _ = kernel.to_string();
                    routes.push(kernel);
                }
                let replay = fuzzing::replayable_route(&route);
                let mut request = NetlinkMessage::new(
                    NetlinkHeader::default(),
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(replay)),
                );
                request.finalize();
                let mut bytes = vec![0; request.buffer_len()];
                request.serialize(&mut bytes);
            }
            RouteNetlinkMessage::NewNeighbour(neighbour) => {
                let _ = fuzzing::neighbour(&neighbour);
            }
            RouteNetlinkMessage::NewLink(link) => match netdev::interface_of("eth1", &link) {
                Ok(interface) => {
                    if let Err(err @ NetdevError::Vlan { .. }) =
                        netdev::refuse_vlan(&interface, "the LAN interface", None)
                    {
                        let _ = err.to_string();
                    }
                }
                Err(err) => {
                    let _ = err.to_string();
                }
            },
            RouteNetlinkMessage::NewRule(rule) => rules.push(rule),
            _ => {}
        }
        Ok(ControlFlow::Continue(()))
    });
    if let Err(err) = split {
        let _ = err.to_string();
        return;
    }
    for rule in fuzzing::custom_rules(&rules) {
        let _ = format!("{} {}", rule.priority, rule.text);
    }
    let hosts = std::str::from_utf8(hosts).unwrap_or_default();
    let lan_index = routes.iter().find_map(|route| route.oif).unwrap_or(2);
    match adopt::config_from_routes("eth1", lan_index, &routes, hosts) {
        Ok(config) => assert!(!config.prefixes.is_empty()),
        Err(err) => {
            let _ = err.to_string();
        }
    }
});
