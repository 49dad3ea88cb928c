//! Zero-configuration start: a configuration read from the static routes already in
//! place, for `ha-user run --iface eth1` without a configuration file.
//!
//! The router of the classic setup already says which server owns which VIP subnet:
//!
//! ```text
//! 192.168.1.32/27 via 192.168.1.2 dev eth1
//! 192.168.1.64/27 via 192.168.1.3 dev eth1
//! ...
//! ```
//!
//! [`config_from_routes`] writes the configuration file those routes describe and
//! validates it like any other file ([`Config::parse`]: the same checks, the same
//! messages). The rules:
//!
//! - Considered: the main-table unicast routes through a gateway whose output
//!   interface is the LAN, of any prefix length but 0 (a default route is the way
//!   out, not a VIP subnet), whoever installed them (boot scripts, `ip route`, or
//!   `ha` itself on an earlier run: its routes carry [`ROUTE_PROTO`]).
//!   Skipped: routes on other interfaces, device routes without a gateway, routes
//!   with several next hops. Of several routes for the same prefix (other metrics),
//!   the lowest metric counts: it is the one the kernel uses.
//! - Each distinct gateway is a host, in order of first appearance (the kernel lists
//!   routes by destination), named by its first name in `/etc/hosts` or, without
//!   one, by its address.
//! - Each route is a prefix owned by its gateway, with no `backups` list: every other
//!   host, in host order.
//! - `[health]`: `kind = "tcp"`, `port = 80`; every other setting the documented
//!   default. `lan` is the interface; nothing else is set, so everything else is the
//!   default of the configuration file (`pin_dir` `/sys/fs/bpf/ha`, `control_socket`
//!   `/run/ha/ha.sock`, `state_file` `/var/lib/ha/state.json`, native XDP).
//!
//! Routes the validator refuses (overlapping prefixes, a gateway inside a steered
//! prefix, more hosts or prefixes than the data path holds) stop the adoption with
//! the validator's problems and the file they were found in. So does a route with
//! its own `mtu` or `advmss` ([`AdoptError::SizeAttribute`]): the fast path sends
//! what fits the LAN interface's MTU, and cannot honour a route's.
//!
//! It assumes every gateway route on the LAN leads to a web server holding the VIPs:
//! a route to another network through another router on the same LAN would be
//! steered too. Such setups need a configuration file.

use std::{
    collections::{HashMap, hash_map::Entry},
    fmt::Write as _,
    net::Ipv4Addr,
    path::Path,
};

use ipnet::Ipv4Net;
use serde::Serialize;

use super::{Config, ConfigError};
#[cfg(doc)]
use crate::model::ROUTE_PROTO;
use crate::model::{CheckKind, KernelRoute};

/// Where host names come from.
pub const ETC_HOSTS: &str = "/etc/hosts";

#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    #[error(
        "no configuration, and no static route through a gateway on `{lan}` to adopt \
         (looked in the main table for routes like `192.168.1.64/27 via 192.168.1.3 \
         dev {lan}`); write a configuration file (`ha-user plan` prints one, the README \
         explains it) and pass it with --config"
    )]
    NothingFound { lan: String },
    #[error(
        "the static route `{route}` through `{lan}` sets {}, which the fast path cannot \
         honour (it sends whatever fits the MTU of `{lan}`, and ha's routes carry no MTU \
         of their own); remove the attribute (`ip route replace {prefix} via GATEWAY dev \
         {lan}` without it) or set the MTU on the interface instead (`ip link set {lan} \
         mtu N`), and start again",
        attributes.join(" and ")
    )]
    SizeAttribute {
        lan: String,
        prefix: Ipv4Net,
        route: String,
        attributes: Vec<&'static str>,
    },
    #[error("cannot write the configuration the static routes through `{lan}` describe")]
    Serialize {
        lan: String,
        #[source]
        source: toml::ser::Error,
    },
    #[error(
        "the static routes through `{lan}` do not make a valid configuration:\n{problems}\n\
         The configuration they describe:\n{numbered}\n\
         Write a configuration file (see `ha-user plan` and the README) and pass it with --config",
        numbered = numbered(text)
    )]
    Invalid {
        lan: String,
        /// The configuration file the routes describe.
        text: String,
        #[source]
        problems: ConfigError,
    },
}

/// The file the routes describe: the keys of the configuration file it sets.
#[derive(Serialize)]
struct File<'a> {
    lan: &'a str,
    health: Health,
    host: Vec<Host>,
    prefix: Vec<Prefix>,
}

#[derive(Serialize)]
struct Health {
    kind: CheckKind,
    port: u16,
}

#[derive(Serialize)]
struct Host {
    name: String,
    address: Ipv4Addr,
}

#[derive(Serialize)]
struct Prefix {
    cidr: Ipv4Net,
    owner: String,
}

/// The configuration the routes through `lan` (index `lan_index`) describe; see the
/// module documentation for the rules. `etc_hosts` is the text of `/etc/hosts`.
pub fn config_from_routes(
    lan: &str,
    lan_index: u32,
    routes: &[KernelRoute],
    etc_hosts: &str,
) -> Result<Config, AdoptError> {
    let text = file_from_routes(lan, lan_index, routes, etc_hosts)?;
    let origin = format!("(the static routes through {lan})");
    Config::parse(Path::new(&origin), &text).map_err(|problems| AdoptError::Invalid {
        lan: lan.to_owned(),
        text,
        problems,
    })
}

/// The configuration file (TOML) the routes through `lan` describe.
pub fn file_from_routes(
    lan: &str,
    lan_index: u32,
    routes: &[KernelRoute],
    etc_hosts: &str,
) -> Result<String, AdoptError> {
    // The route the kernel uses for each prefix: the lowest metric; first appearance
    // keeps the kernel's order.
    let mut chosen: Vec<(Ipv4Net, Ipv4Addr, &KernelRoute)> = Vec::new();
    let mut by_prefix: HashMap<Ipv4Net, usize> = HashMap::new();
    for route in routes {
        let KernelRoute {
            prefix,
            gateway,
            oif,
            protocol: _,
            metric,
            mtu: _,
            advmss: _,
        } = route;
        let Some(gateway) = *gateway else { continue };
        if *oif != Some(lan_index) || prefix.prefix_len() == 0 {
            continue;
        }
        match by_prefix.entry(*prefix) {
            Entry::Occupied(at) => {
                let existing = &mut chosen[*at.get()];
                if existing.2.metric > *metric {
                    *existing = (*prefix, gateway, route);
                }
            }
            Entry::Vacant(at) => {
                at.insert(chosen.len());
                chosen.push((*prefix, gateway, route));
            }
        }
    }
    if chosen.is_empty() {
        return Err(AdoptError::NothingFound {
            lan: lan.to_owned(),
        });
    }
    if let Some((prefix, _, route)) = chosen
        .iter()
        .find(|(_, _, route)| !route.size_attributes().is_empty())
    {
        return Err(AdoptError::SizeAttribute {
            lan: lan.to_owned(),
            prefix: *prefix,
            route: route.to_string(),
            attributes: route.size_attributes(),
        });
    }

    let names = host_names(etc_hosts);
    let mut hosts: Vec<Host> = Vec::new();
    let mut name_of: HashMap<Ipv4Addr, String> = HashMap::new();
    let mut prefixes = Vec::with_capacity(chosen.len());
    for (cidr, gateway, _) in chosen {
        let owner = match name_of.entry(gateway) {
            Entry::Occupied(name) => name.get().clone(),
            Entry::Vacant(slot) => {
                let name = match names.get(&gateway) {
                    // Two addresses under one name would make host names ambiguous.
                    Some(name) if !hosts.iter().any(|h| h.name == *name) => name.clone(),
                    _ => gateway.to_string(),
                };
                hosts.push(Host {
                    name: name.clone(),
                    address: gateway,
                });
                slot.insert(name).clone()
            }
        };
        prefixes.push(Prefix { cidr, owner });
    }
    let file = File {
        lan,
        health: Health {
            kind: CheckKind::Tcp,
            port: 80,
        },
        host: hosts,
        prefix: prefixes,
    };
    let mut text = format!("# The static routes through {lan}, as `ha` adopts them.\n");
    let body = toml::to_string(&file).map_err(|source| AdoptError::Serialize {
        lan: lan.to_owned(),
        source,
    })?;
    text.push_str(&body);
    Ok(text)
}

/// `text` with line numbers, as problems name them.
fn numbered(text: &str) -> String {
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        let _ = writeln!(out, "{:>5} | {line}", i + 1);
    }
    out
}

/// The first name of each IPv4 address in an `/etc/hosts` text (`ADDRESS NAME
/// [ALIAS...]`, `#` starts a comment); the first line for an address wins, as in
/// the resolver.
fn host_names(text: &str) -> HashMap<Ipv4Addr, String> {
    let mut names = HashMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        let (Some(address), Some(name)) = (fields.next(), fields.next()) else {
            continue;
        };
        if let Ok(address) = address.parse::<Ipv4Addr>() {
            names.entry(address).or_insert_with(|| name.to_owned());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HealthCheck, HostId, XdpMode};

    const LAN: u32 = 4;
    const OTHER: u32 = 5;

    const ETC_HOSTS_TEXT: &str = "\
127.0.0.1\tlocalhost
# The web servers
192.168.1.2   host1.example.net host1
192.168.1.3   host2   # second
192.168.1.4\thost3
192.168.1.5 host4
192.168.1.4 not-this-one
::1 localhost ip6-localhost
";

    fn route(prefix: &str, gateway: Option<&str>, oif: u32) -> KernelRoute {
        KernelRoute {
            prefix: prefix.parse().expect("prefix"),
            gateway: gateway.map(|g| g.parse().expect("gateway")),
            oif: Some(oif),
            protocol: 3,
            metric: 0,
            mtu: None,
            advmss: None,
        }
    }

    fn classic() -> Vec<KernelRoute> {
        vec![
            route("0.0.0.0/0", Some("10.0.0.1"), OTHER),
            route("192.168.1.0/27", None, LAN),
            route("192.168.1.32/27", Some("192.168.1.2"), LAN),
            route("192.168.1.64/27", Some("192.168.1.3"), LAN),
            route("192.168.1.96/27", Some("192.168.1.4"), LAN),
            route("192.168.1.128/27", Some("192.168.1.5"), LAN),
        ]
    }

    fn summary(config: &Config) -> Vec<(String, String, Vec<String>)> {
        config
            .prefixes
            .iter()
            .map(|p| {
                (
                    p.cidr.to_string(),
                    config.host(p.owner).name.clone(),
                    p.backup_hosts(config.hosts.len())
                        .map(|b| config.host(b).name.clone())
                        .collect(),
                )
            })
            .collect()
    }

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn classic_routes_become_four_hosts_named_from_etc_hosts() {
        let config = config_from_routes("eth1", LAN, &classic(), ETC_HOSTS_TEXT).expect("a config");
        let hosts: Vec<(&str, String)> = config
            .hosts
            .iter()
            .map(|h| (h.name.as_str(), h.address.to_string()))
            .collect();
        assert_eq!(
            hosts,
            [
                ("host1.example.net", "192.168.1.2".to_owned()),
                ("host2", "192.168.1.3".to_owned()),
                ("host3", "192.168.1.4".to_owned()),
                ("host4", "192.168.1.5".to_owned()),
            ]
        );
        assert_eq!(
            summary(&config),
            [
                (
                    "192.168.1.32/27".to_owned(),
                    "host1.example.net".to_owned(),
                    strings(&["host2", "host3", "host4"])
                ),
                (
                    "192.168.1.64/27".to_owned(),
                    "host2".to_owned(),
                    strings(&["host1.example.net", "host3", "host4"])
                ),
                (
                    "192.168.1.96/27".to_owned(),
                    "host3".to_owned(),
                    strings(&["host1.example.net", "host2", "host4"])
                ),
                (
                    "192.168.1.128/27".to_owned(),
                    "host4".to_owned(),
                    strings(&["host1.example.net", "host2", "host3"])
                ),
            ]
        );
        let health = HealthCheck {
            kind: CheckKind::Tcp,
            port: 80,
            ..HealthCheck::default()
        };
        for host in &config.hosts {
            assert_eq!(host.mac, None);
            assert_eq!(host.health, health);
        }
        assert_eq!(config.lan.as_deref(), Some("eth1"));
        assert!(config.ingress.is_empty());
        assert_eq!(config.xdp_mode, XdpMode::Native);
        assert_eq!(config.pin_dir, Path::new("/sys/fs/bpf/ha"));
        assert_eq!(config.control_socket, Path::new("/run/ha/ha.sock"));
        assert_eq!(config.state_file, Path::new("/var/lib/ha/state.json"));
        assert_eq!(config.metrics, None);
    }

    #[test]
    fn hosts_without_a_name_are_named_by_address() {
        let config = config_from_routes("eth1", LAN, &classic(), "").expect("a config");
        let names: Vec<&str> = config.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            ["192.168.1.2", "192.168.1.3", "192.168.1.4", "192.168.1.5"]
        );
        // The names work where the configuration takes a host.
        assert_eq!(config.host_id("192.168.1.4"), Some(HostId::new(2)));
    }

    #[test]
    fn routes_on_other_interfaces_and_default_routes_are_ignored() {
        let routes = vec![
            route("0.0.0.0/0", Some("192.168.1.9"), LAN),
            route("10.0.0.0/8", Some("10.0.0.1"), OTHER),
            route("192.168.1.64/27", Some("192.168.1.3"), LAN),
            route("192.168.1.96/27", Some("172.16.0.1"), OTHER),
            route("192.168.1.200/32", Some("192.168.1.4"), LAN),
        ];
        let config = config_from_routes("eth1", LAN, &routes, ETC_HOSTS_TEXT).expect("a config");
        let hosts: Vec<&str> = config.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(hosts, ["host2", "host3"]);
        assert_eq!(
            summary(&config),
            [
                (
                    "192.168.1.64/27".to_owned(),
                    "host2".to_owned(),
                    strings(&["host3"])
                ),
                (
                    "192.168.1.200/32".to_owned(),
                    "host3".to_owned(),
                    strings(&["host2"])
                ),
            ]
        );
    }

    #[test]
    fn a_gateway_of_several_routes_is_one_host() {
        let routes = vec![
            route("192.168.1.32/27", Some("192.168.1.3"), LAN),
            route("192.168.1.64/27", Some("192.168.1.2"), LAN),
            route("192.168.1.96/27", Some("192.168.1.3"), LAN),
            route("192.168.1.128/27", Some("192.168.1.2"), LAN),
        ];
        let config = config_from_routes("eth1", LAN, &routes, ETC_HOSTS_TEXT).expect("a config");
        let hosts: Vec<&str> = config.hosts.iter().map(|h| h.name.as_str()).collect();
        // Order of first appearance, not of address.
        assert_eq!(hosts, ["host2", "host1.example.net"]);
        let owners: Vec<usize> = config.prefixes.iter().map(|p| p.owner.index()).collect();
        assert_eq!(owners, [0, 1, 0, 1]);
        let backups: Vec<Vec<usize>> = (config.prefixes.iter())
            .map(|p| {
                p.backup_hosts(config.hosts.len())
                    .map(HostId::index)
                    .collect()
            })
            .collect();
        assert_eq!(backups, [vec![1], vec![0], vec![1], vec![0]]);
    }

    #[test]
    fn the_lowest_metric_wins_for_a_prefix() {
        let mut worse = route("192.168.1.64/27", Some("192.168.1.4"), LAN);
        worse.metric = 100;
        let routes = vec![worse, route("192.168.1.64/27", Some("192.168.1.3"), LAN)];
        let config = config_from_routes("eth1", LAN, &routes, ETC_HOSTS_TEXT).expect("a config");
        assert_eq!(config.hosts.len(), 1);
        assert_eq!(config.hosts[0].name, "host2");
        assert_eq!(config.prefixes.len(), 1);
    }

    #[test]
    fn a_route_with_its_own_mtu_or_advmss_stops_the_adoption() {
        for (mtu, advmss, named) in [
            (Some(1400), None, "sets mtu, which"),
            (None, Some(1360), "sets advmss, which"),
        ] {
            let mut routes = classic();
            routes[3].mtu = mtu;
            routes[3].advmss = advmss;
            let err = config_from_routes("eth1", LAN, &routes, "").expect_err("refused");
            assert!(matches!(err, AdoptError::SizeAttribute { .. }), "{err:?}");
            let message = err.to_string();
            assert!(
                message.contains("`192.168.1.64/27 via 192.168.1.3 dev #4 proto boot metric 0")
                    && message.contains(named)
                    && message.contains("ip link set eth1 mtu N"),
                "{message}"
            );
        }
        // A route of another interface is not adopted, so its MTU does not matter.
        let mut routes = classic();
        routes[0].mtu = Some(1400);
        assert!(config_from_routes("eth1", LAN, &routes, "").is_ok());
    }

    #[test]
    fn one_name_for_two_gateways_falls_back_to_the_address() {
        let text = "192.168.1.2 web\n192.168.1.3 web\n";
        let config = config_from_routes("eth1", LAN, &classic(), text).expect("a config");
        let names: Vec<&str> = config.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["web", "192.168.1.3", "192.168.1.4", "192.168.1.5"]);
    }

    #[test]
    fn nothing_to_adopt_says_what_was_looked_for() {
        let err = config_from_routes("eth1", LAN, &[], ETC_HOSTS_TEXT).expect_err("no routes");
        assert!(matches!(err, AdoptError::NothingFound { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("via 192.168.1.3 dev eth1"), "{message}");
        assert!(message.contains("ha-user plan"), "{message}");

        let only_foreign = vec![
            route("0.0.0.0/0", Some("192.168.1.9"), LAN),
            route("192.168.1.0/27", None, LAN),
            route("192.168.1.64/27", Some("192.168.1.3"), OTHER),
        ];
        let err =
            config_from_routes("eth1", LAN, &only_foreign, ETC_HOSTS_TEXT).expect_err("nothing");
        assert!(matches!(err, AdoptError::NothingFound { .. }), "{err:?}");
    }

    #[test]
    fn routes_the_validator_refuses_name_the_problem_and_the_file() {
        let routes = vec![
            route("192.168.1.64/26", Some("192.168.1.3"), LAN),
            route("192.168.1.96/27", Some("192.168.1.4"), LAN),
        ];
        let err = config_from_routes("eth1", LAN, &routes, "").expect_err("overlap");
        let AdoptError::Invalid { text, .. } = &err else {
            panic!("expected Invalid, got {err:?}");
        };
        assert!(text.contains("cidr = \"192.168.1.96/27\""), "{text}");
        let message = err.to_string();
        assert!(
            message.contains("(the static routes through eth1):")
                && message.contains("192.168.1.96/27 overlaps 192.168.1.64/26"),
            "{message}"
        );
        assert!(message.contains("    1 | # The static routes"), "{message}");

        // Not caught before the routes went through the file's validator: a gateway
        // inside a prefix it would steer.
        let looped = vec![
            route("192.168.1.0/27", Some("192.168.1.3"), LAN),
            route("192.168.1.64/27", Some("192.168.1.2"), LAN),
        ];
        let err = config_from_routes("eth1", LAN, &looped, "").expect_err("loop");
        let message = err.to_string();
        assert!(
            message.contains("192.168.1.3 is inside the steered prefix 192.168.1.0/27"),
            "{message}"
        );
    }

    #[test]
    fn the_adopted_file_reads_like_a_hand_written_one() {
        let text = file_from_routes("eth1", LAN, &classic(), ETC_HOSTS_TEXT).expect("a file");
        let expected = "\
# The static routes through eth1, as `ha` adopts them.
lan = \"eth1\"

[health]
kind = \"tcp\"
port = 80

[[host]]
name = \"host1.example.net\"
address = \"192.168.1.2\"
";
        assert!(text.starts_with(expected), "{text}");
        assert!(
            text.contains("[[prefix]]\ncidr = \"192.168.1.128/27\"\nowner = \"host4\"\n"),
            "{text}"
        );
    }

    #[test]
    fn etc_hosts_parsing() {
        let names = host_names(ETC_HOSTS_TEXT);
        assert_eq!(
            names
                .get(&Ipv4Addr::new(192, 168, 1, 4))
                .map(String::as_str),
            Some("host3")
        );
        assert_eq!(
            names
                .get(&Ipv4Addr::new(192, 168, 1, 3))
                .map(String::as_str),
            Some("host2")
        );
        assert_eq!(names.len(), 5);
    }
}
