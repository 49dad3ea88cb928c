//! `ha-user plan`: everything the classic setup ("High Availability Linux Web
//! Servers") writes by hand, rendered from one configuration.
//!
//! In that design every web server binds every VIP on its loopback, one VIP per
//! prefix; the router's static routes send each prefix to its owning server; DNS
//! hands out the VIPs round-robin. This module prints, as text:
//!
//! - for the web servers (the same on each): the Red Hat `ifcfg-lo:N` files, the
//!   equivalent `ip addr add` commands and the ARP sysctls;
//! - for the router: one static route per prefix to its owner, as `ip route`,
//!   net-tools `route add` and Cisco `ip route` lines;
//! - for DNS: the zone's `www IN A` records, one per VIP.
//!
//! [`Format::All`] is for people: headed sections with comments. Every other format
//! prints one part bare, so that its output can be run or pasted as it is: the
//! command formats (`ip-addr`, `sysctl`, `routes`, `route-add`) print nothing but
//! command lines, `cisco` nothing but configuration lines; `ifcfg` separates the files
//! with a comment naming each path and `dns` starts with a `;` comment, both legal in
//! their own syntax.
//!
//! Everything here is pure: [`render`] only formats the configuration.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::{config::Config, model::Prefix};

/// Which part of the plan to print.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Every part below, under headings and with comments, for people to read.
    All,
    /// Red Hat `/etc/sysconfig/network-scripts/ifcfg-lo:N` files, each after a comment
    /// naming its path; the same files on every web server.
    Ifcfg,
    /// `ip link set dev lo up`, then `ip addr add` commands binding the VIPs on `lo`;
    /// run on every web server.
    IpAddr,
    /// `sysctl -w` commands so web servers neither answer nor announce VIPs in ARP; run
    /// on every web server.
    Sysctl,
    /// `ip route replace` commands, one per prefix to its owner; run on the router.
    Routes,
    /// net-tools `/sbin/route add` commands, one per prefix; run on the router.
    RouteAdd,
    /// Cisco IOS `ip route` configuration lines, one per prefix.
    Cisco,
    /// The zone's `www IN A` records, one per VIP.
    Dns,
}

/// Where Red Hat keeps the interface files.
const IFCFG_DIR: &str = "/etc/sysconfig/network-scripts";

/// The ARP settings every web server needs, as (key, value). The kernel applies the
/// larger of `conf.all` and `conf.<interface>`, so `all` covers every interface.
const ARP_SYSCTLS: [(&str, u8); 2] = [
    // Answer ARP only for addresses configured on the interface the request came in
    // on: never for the VIPs, which live on `lo`.
    ("net.ipv4.conf.all.arp_ignore", 1),
    // Use the interface's own address as the sender of ARP requests, never a VIP that
    // every web server shares.
    ("net.ipv4.conf.all.arp_announce", 2),
];

/// Where the `all` output suggests keeping the sysctls.
const SYSCTL_FILE: &str = "/etc/sysctl.d/90-ha-arp.conf";

/// The default VIP of `prefix`: its first usable address, as in the article
/// (192.168.1.33 for 192.168.1.32/27); for a /31 or /32, which have no network or
/// broadcast address, the prefix's first address. A prefix's `vip` in the
/// configuration overrides it, and the plan binds that.
pub fn vip(prefix: Ipv4Net) -> Ipv4Addr {
    crate::model::vip::default_vip(prefix)
}

/// The loopback alias label of the prefix at `index` (0-based): `lo:1`, `lo:2`, ...
pub fn loopback_label(index: usize) -> String {
    format!("lo:{}", index + 1)
}

/// The plan for `config` in `format`: whole lines, each ending with a newline.
pub fn render(config: &Config, format: Format) -> String {
    match format {
        Format::All => all(config),
        Format::Ifcfg => ifcfg(config),
        Format::IpAddr => ip_addr(config),
        Format::Sysctl => sysctl_commands(),
        Format::Routes => ip_routes(config),
        Format::RouteAdd => route_add(config),
        Format::Cisco => cisco(config),
        Format::Dns => dns(config),
    }
}

/// The `ifcfg-lo:N` files, in prefix order, separated by blank lines.
fn ifcfg(config: &Config) -> String {
    config
        .prefixes
        .iter()
        .enumerate()
        .map(|(i, prefix)| {
            let net = prefix.cidr;
            let label = loopback_label(i);
            format!(
                "# {IFCFG_DIR}/ifcfg-{label}\n\
                 DEVICE={label}\n\
                 IPADDR={}\n\
                 NETMASK={}\n\
                 NETWORK={}\n\
                 BROADCAST={}\n\
                 ONBOOT=yes\n",
                prefix.vip,
                net.netmask(),
                net.network(),
                net.broadcast(),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `ip addr add VIP/LEN dev lo label lo:N`, the iproute2 form of the ifcfg files. Like
/// them it puts the whole prefix on `lo`, so the server takes every address of it as
/// local. It starts by bringing `lo` up, as the network service does: a no-op on a
/// running server, needed in a fresh network namespace.
fn ip_addr(config: &Config) -> String {
    let addresses = config.prefixes.iter().enumerate().map(|(i, prefix)| {
        format!(
            "ip addr add {}/{} dev lo label {}\n",
            prefix.vip,
            prefix.cidr.prefix_len(),
            loopback_label(i)
        )
    });
    std::iter::once("ip link set dev lo up\n".to_owned())
        .chain(addresses)
        .collect()
}

fn sysctl_commands() -> String {
    ARP_SYSCTLS
        .iter()
        .map(|(key, value)| format!("sysctl -w {key}={value}\n"))
        .collect()
}

fn sysctl_conf() -> String {
    ARP_SYSCTLS
        .iter()
        .map(|(key, value)| format!("{key} = {value}\n"))
        .collect()
}

/// The address of the owner of `prefix`, the next hop of its static route.
fn gateway(config: &Config, prefix: &Prefix) -> Ipv4Addr {
    config.host(prefix.owner).address
}

/// `ip route replace PREFIX via OWNER [dev LAN]`: `replace`, so running it again, or
/// after an owner change, is harmless.
fn ip_routes(config: &Config) -> String {
    let dev = match &config.lan {
        Some(lan) => format!(" dev {lan}"),
        None => String::new(),
    };
    config
        .prefixes
        .iter()
        .map(|prefix| {
            format!(
                "ip route replace {} via {}{dev}\n",
                prefix.cidr,
                gateway(config, prefix)
            )
        })
        .collect()
}

/// The article's net-tools form, with the `gw` keyword it leaves out: `route` takes a
/// bare trailing word for a device name.
fn route_add(config: &Config) -> String {
    config
        .prefixes
        .iter()
        .map(|prefix| {
            format!(
                "/sbin/route add -net {} netmask {} gw {}\n",
                prefix.cidr.network(),
                prefix.cidr.netmask(),
                gateway(config, prefix)
            )
        })
        .collect()
}

fn cisco(config: &Config) -> String {
    config
        .prefixes
        .iter()
        .map(|prefix| {
            format!(
                "ip route {} {} {}\n",
                prefix.cidr.network(),
                prefix.cidr.netmask(),
                gateway(config, prefix)
            )
        })
        .collect()
}

/// The article's zone records: the first names `www`, the others start with blanks,
/// which in a zone file repeats the previous owner name.
fn dns(config: &Config) -> String {
    let mut out = String::from(
        "; www: one A record per VIP; the name server rotates their order (round-robin).\n",
    );
    for (i, prefix) in config.prefixes.iter().enumerate() {
        let owner = if i == 0 { "www" } else { "   " };
        out.push_str(&format!("{owner} IN A {}\n", prefix.vip));
    }
    out
}

/// Every part, under headings, with the comments that explain it.
fn all(config: &Config) -> String {
    let servers = config
        .hosts
        .iter()
        .map(|h| format!("{} ({})", h.name, h.address))
        .collect::<Vec<_>>()
        .join(", ");
    let vips = config
        .prefixes
        .iter()
        .map(|p| p.vip.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let sections = [
        format!(
            "# ha-user plan: the classic high-availability web server setup.\n\
             # Web servers: {servers}.\n\
             # VIPs (one address of each prefix): {vips}.\n"
        ),
        format!(
            "## Web servers: the same on every one\n\
             #\n\
             # Every web server binds every VIP on its loopback, so each can serve any VIP\n\
             # the router sends it.\n\
             \n\
             ### Red Hat: these files, then `/etc/rc.d/init.d/network start`\n\
             \n\
             {}",
            ifcfg(config)
        ),
        format!(
            "### Or with iproute2, until the next reboot (--format ip-addr)\n\
             \n\
             {}",
            ip_addr(config)
        ),
        format!(
            "### ARP: answer and announce only the LAN address, never a VIP (--format sysctl)\n\
             #\n\
             # The kernel applies the larger of conf.all and conf.<interface>, so `all`\n\
             # covers the LAN interface; LVS-DR guides often set it there too, harmlessly.\n\
             \n\
             {}\
             \n\
             # {SYSCTL_FILE}, to keep them across reboots\n\
             {}",
            sysctl_commands(),
            sysctl_conf()
        ),
        format!(
            "## Router: each VIP prefix to its owner\n\
             #\n\
             # ha's fast path moves a prefix to a backup while its owner is down.\n\
             \n\
             ### Linux, iproute2 (--format routes)\n\
             \n\
             {}",
            ip_routes(config)
        ),
        format!(
            "### Linux, net-tools (--format route-add)\n\
             #\n\
             # The article leaves out `gw`; route(8) would take the address for a device.\n\
             \n\
             {}",
            route_add(config)
        ),
        format!(
            "### Cisco IOS (--format cisco)\n\
             \n\
             {}",
            cisco(config)
        ),
        format!(
            "## DNS: in the site's zone, after its SOA and NS records (--format dns)\n\
             \n\
             {}",
            dns(config)
        ),
    ];
    sections.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vip_is_the_first_usable_address() {
        let vip_of = |s: &str| vip(s.parse().expect("test prefix"));
        assert_eq!(vip_of("192.168.1.32/27"), Ipv4Addr::new(192, 168, 1, 33));
        assert_eq!(vip_of("192.168.1.128/27"), Ipv4Addr::new(192, 168, 1, 129));
        assert_eq!(vip_of("10.0.0.0/8"), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(vip_of("10.0.0.4/31"), Ipv4Addr::new(10, 0, 0, 4));
        assert_eq!(vip_of("10.0.0.7/32"), Ipv4Addr::new(10, 0, 0, 7));
    }

    #[test]
    fn labels_count_from_one() {
        assert_eq!(loopback_label(0), "lo:1");
        assert_eq!(loopback_label(9), "lo:10");
    }
}
