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
//! [`config_from_routes`] turns that into a [`Config`]:
//!
//! - Considered: the main-table unicast routes through a gateway whose output
//!   interface is the LAN, of any prefix length but 0 (a default route is the way
//!   out, not a VIP subnet), whoever installed them (boot scripts, `ip route`, or
//!   `ha` itself on an earlier run: its routes carry [`routes::ROUTE_PROTO`]).
//!   Skipped: routes on other interfaces, device routes without a gateway, routes
//!   with several next hops. Of several routes for the same prefix (other metrics),
//!   the lowest metric counts: it is the one the kernel uses.
//! - Each distinct gateway is a host, in order of first appearance (the kernel lists
//!   routes by destination), named by its first name in `/etc/hosts` or, without
//!   one, by its address.
//! - Each route is a prefix owned by its gateway, backed up by every other host in
//!   host order.
//! - Health check: TCP connect to port 80; every other setting the documented
//!   default. `lan` is the interface; everything else is the default of the
//!   configuration file (`pin_dir` `/sys/fs/bpf/ha`, `control_socket`
//!   `/run/ha/ha.sock`, `state_file` `/var/lib/ha/state.json`, native XDP).
//!
//! It assumes every gateway route on the LAN leads to a web server holding the VIPs:
//! a route to another network through another router on the same LAN would be
//! steered too. Such setups need a configuration file.

use std::{
    collections::HashMap,
    io,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use ipnet::Ipv4Net;
use rtnetlink::Handle;

use crate::{
    config::{self, Backups, CheckKind, Config, HealthCheck, Host, Prefix, XdpMode},
    netdev::{self, NetdevError},
    routes::{self, KernelRoute, RouteError},
};

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
        "the routes `{first} via {first_gateway}` and `{second} via {second_gateway}` on \
         `{lan}` overlap, so an address would have two owners; write a configuration \
         file (see `ha-user plan` and the README)"
    )]
    Overlap {
        lan: String,
        first: Ipv4Net,
        first_gateway: Ipv4Addr,
        second: Ipv4Net,
        second_gateway: Ipv4Addr,
    },
    #[error(
        "{count} {what} found through `{lan}`, at most {max} are supported; write a \
         configuration file (see `ha-user plan` and the README)"
    )]
    TooMany {
        lan: String,
        what: &'static str,
        count: usize,
        max: u32,
    },
    #[error("cannot look up the LAN interface to adopt its routes")]
    Interface {
        #[source]
        source: NetdevError,
    },
    #[error("cannot read the kernel's routes to adopt them")]
    Routes {
        #[source]
        source: RouteError,
    },
    #[error("cannot read {} for host names", path.display())]
    ReadHosts {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Reads the routes through `lan` and the host names of `etc_hosts` (normally
/// [`ETC_HOSTS`]; a missing file means no names) and builds the configuration.
pub async fn config_from_kernel(
    handle: &Handle,
    lan: &str,
    etc_hosts: &Path,
) -> Result<Config, AdoptError> {
    let interface = netdev::interface(handle, lan)
        .await
        .map_err(|source| AdoptError::Interface { source })?;
    let kernel_routes = routes::list(handle)
        .await
        .map_err(|source| AdoptError::Routes { source })?;
    let hosts_text = match std::fs::read_to_string(etc_hosts) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(AdoptError::ReadHosts {
                path: etc_hosts.to_owned(),
                source,
            });
        }
    };
    config_from_routes(lan, interface.index, &kernel_routes, &hosts_text)
}

/// The configuration the routes through `lan` (index `lan_index`) describe; see the
/// module documentation for the rules. `etc_hosts` is the text of `/etc/hosts`.
pub fn config_from_routes(
    lan: &str,
    lan_index: u32,
    routes: &[KernelRoute],
    etc_hosts: &str,
) -> Result<Config, AdoptError> {
    // The route the kernel uses for each prefix: the lowest metric.
    let mut chosen: Vec<(Ipv4Net, Ipv4Addr, u32)> = Vec::new();
    for route in routes {
        let KernelRoute {
            prefix,
            gateway,
            oif,
            protocol: _,
            metric,
        } = route;
        let Some(gateway) = *gateway else { continue };
        if *oif != Some(lan_index) || prefix.prefix_len() == 0 {
            continue;
        }
        match chosen.iter_mut().find(|(p, _, _)| p == prefix) {
            Some(existing) if existing.2 > *metric => *existing = (*prefix, gateway, *metric),
            Some(_) => {}
            None => chosen.push((*prefix, gateway, *metric)),
        }
    }
    if chosen.is_empty() {
        return Err(AdoptError::NothingFound {
            lan: lan.to_owned(),
        });
    }
    for (i, (first, first_gateway, _)) in chosen.iter().enumerate() {
        if let Some((second, second_gateway, _)) = chosen[i + 1..]
            .iter()
            .find(|(other, _, _)| other.contains(first) || first.contains(other))
        {
            return Err(AdoptError::Overlap {
                lan: lan.to_owned(),
                first: *first,
                first_gateway: *first_gateway,
                second: *second,
                second_gateway: *second_gateway,
            });
        }
    }

    let names = host_names(etc_hosts);
    let health = HealthCheck {
        kind: CheckKind::Tcp,
        port: 80,
        ..HealthCheck::default()
    };
    let mut hosts: Vec<Host> = Vec::new();
    let mut owners = Vec::with_capacity(chosen.len());
    for (_, gateway, _) in &chosen {
        let index = match hosts.iter().position(|h| h.address == *gateway) {
            Some(index) => index,
            None => {
                let name = match names.get(gateway) {
                    // Two addresses under one name would make host names ambiguous.
                    Some(name) if !hosts.iter().any(|h| h.name == *name) => name.clone(),
                    _ => gateway.to_string(),
                };
                hosts.push(Host {
                    name,
                    address: *gateway,
                    mac: None,
                    health: health.clone(),
                });
                hosts.len() - 1
            }
        };
        owners.push(index);
    }
    check_count(lan, "gateways (hosts)", hosts.len(), ha_common::MAX_HOSTS)?;
    check_count(lan, "prefixes", chosen.len(), ha_common::MAX_PREFIXES)?;

    let prefixes = chosen
        .iter()
        .zip(owners)
        .map(|((cidr, _, _), owner)| Prefix {
            cidr: *cidr,
            owner,
            backups: Backups::AllOthers,
        })
        .collect();
    Ok(Config {
        lan: Some(lan.to_owned()),
        ingress: Vec::new(),
        xdp_mode: XdpMode::Native,
        pin_dir: PathBuf::from(config::DEFAULT_PIN_DIR),
        control_socket: PathBuf::from(config::DEFAULT_SOCKET),
        state_file: PathBuf::from(config::DEFAULT_STATE_FILE),
        metrics: None,
        hosts,
        prefixes,
    })
}

fn check_count(lan: &str, what: &'static str, count: usize, max: u32) -> Result<(), AdoptError> {
    if count > max as usize {
        return Err(AdoptError::TooMany {
            lan: lan.to_owned(),
            what,
            count,
            max,
        });
    }
    Ok(())
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
                    config.hosts[p.owner].name.clone(),
                    p.backup_hosts(config.hosts.len())
                        .map(|b| config.hosts[b].name.clone())
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
        assert_eq!(config.host_index("192.168.1.4"), Some(2));
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
        let owners: Vec<usize> = config.prefixes.iter().map(|p| p.owner).collect();
        assert_eq!(owners, [0, 1, 0, 1]);
        let backups: Vec<Vec<usize>> = (config.prefixes.iter())
            .map(|p| p.backup_hosts(config.hosts.len()).collect())
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
    fn overlapping_routes_are_refused() {
        let routes = vec![
            route("192.168.1.64/26", Some("192.168.1.3"), LAN),
            route("192.168.1.96/27", Some("192.168.1.4"), LAN),
        ];
        let err = config_from_routes("eth1", LAN, &routes, "").expect_err("overlap");
        assert!(matches!(err, AdoptError::Overlap { .. }), "{err:?}");
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
