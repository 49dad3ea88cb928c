//! What an address in the configuration may be, beyond parsing:
//!
//! - dotted quads are read one way everywhere: an octet with a leading zero (`010`,
//!   octal to inet_aton and some tools, decimal to others) is refused alike in host
//!   addresses, prefixes and VIPs, with the decimal reading suggested;
//! - a host's address is one a web server can have: not in 0.0.0.0/8, loopback,
//!   multicast or the limited broadcast address;
//! - a host's name is not an address other than its own, so a command naming a
//!   host by address (`drain 192.168.1.3`) can mean only one host;
//! - with the router's LAN addresses known ([`Router`]: `run`, `check-config` on the
//!   router, SIGHUP), no prefix contains one (the fast path would take the replies to
//!   the router's own health checks) and no host has one, nor the network or
//!   broadcast address of the router's subnet (the check would probe the router).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use toml::Spanned;

use super::{Checker, RawHost, RawPrefix, parse_cidr};
use crate::model::Host;

/// The router's addresses on its LAN interface, for the checks that need them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Router {
    /// The interface, for messages.
    pub iface: String,
    /// Its IPv4 addresses with their subnets.
    pub addresses: Vec<Ipv4Net>,
}

/// `text` read the decimal way, if it is a dotted quad with an octet that has a
/// leading zero.
fn with_leading_zero(text: &str) -> Option<Ipv4Addr> {
    let octets: Vec<&str> = text.split('.').collect();
    let digits = |o: &&str| !o.is_empty() && o.len() <= 3 && o.bytes().all(|b| b.is_ascii_digit());
    if octets.len() != 4 || !octets.iter().all(digits) {
        return None;
    }
    if !octets.iter().any(|o| o.len() > 1 && o.starts_with('0')) {
        return None;
    }
    let mut parsed = [0u8; 4];
    for (slot, octet) in parsed.iter_mut().zip(&octets) {
        *slot = octet.parse().ok()?;
    }
    Some(Ipv4Addr::from(parsed))
}

fn leading_zero_message(text: &str, fixed: impl std::fmt::Display) -> String {
    format!(
        "`{text}` has an octet with a leading zero, which some tools read as octal: write {fixed}"
    )
}

/// An IPv4 address in dotted form; an octet with a leading zero is refused.
pub fn parse_ipv4(text: &str) -> Result<Ipv4Addr, String> {
    if let Some(fixed) = with_leading_zero(text) {
        return Err(leading_zero_message(text, fixed));
    }
    text.parse()
        .map_err(|_| format!("`{text}` is not an IPv4 address"))
}

/// The problem with the address part of prefix `text` (`A.B.C.D/N`), if it has an
/// octet with a leading zero.
pub fn prefix_leading_zero(text: &str) -> Option<String> {
    let (address, len) = text.split_once('/')?;
    let fixed = with_leading_zero(address)?;
    Some(leading_zero_message(text, format!("{fixed}/{len}")))
}

/// Why `addr` cannot be a web server's address, if it cannot.
pub fn unusable_host(addr: Ipv4Addr) -> Option<String> {
    let why = if addr.octets()[0] == 0 {
        "it is in 0.0.0.0/8, \"this network\", which no host has"
    } else if addr.is_loopback() {
        "it is a loopback address (127.0.0.0/8), the router itself"
    } else if addr.is_broadcast() {
        "it is the limited broadcast address"
    } else if addr.is_multicast() {
        "it is a multicast address (224.0.0.0/4)"
    } else {
        return None;
    };
    Some(format!("{addr} cannot be a web server's address: {why}"))
}

/// The problem with a host named `name` at `address`, if its name is an address
/// other than its own.
pub fn name_problem(name: &str, address: Ipv4Addr) -> Option<String> {
    let named: Ipv4Addr = name.parse().ok()?;
    (named != address).then(|| {
        format!(
            "`{name}` is an address, not this host's ({address}): `drain {name}` would mean \
             two hosts; give it a name that is not an address"
        )
    })
}

/// Reports the prefixes and hosts that clash with the router's own addresses.
pub(super) fn check_router(
    checker: &mut Checker<'_>,
    router: &Router,
    raw_hosts: &[Spanned<RawHost>],
    hosts: &[Host],
    raw_prefixes: &[Spanned<RawPrefix>],
) {
    let Router { iface, addresses } = router;
    for (i, raw) in raw_prefixes.iter().enumerate() {
        let cidr = &raw.get_ref().cidr;
        let Ok(net) = parse_cidr(cidr.get_ref()) else {
            continue;
        };
        if let Some(own) = addresses.iter().find(|own| net.contains(&own.addr())) {
            let message = format!(
                "{net} contains {}, an address of the router ({iface}): the fast path would \
                 take the replies to the router's own health checks",
                own.addr()
            );
            checker.report(cidr.span(), format!("prefix[{i}].cidr"), message);
        }
    }
    for (i, (raw, host)) in raw_hosts.iter().zip(hosts).enumerate() {
        let address = host.address;
        let message = addresses.iter().find_map(|own| {
            if own.addr() == address {
                Some(format!(
                    "{address} is an address of the router ({iface}): the health check would \
                     probe the router itself"
                ))
            } else if own.prefix_len() < 31
                && (own.network() == address || own.broadcast() == address)
            {
                let which = if own.network() == address {
                    "network"
                } else {
                    "broadcast"
                };
                Some(format!(
                    "{address} is the {which} address of the router's subnet {} ({iface}), \
                     not a host's",
                    own.trunc()
                ))
            } else {
                None
            }
        });
        if let Some(message) = message {
            let span = raw.get_ref().address.span();
            checker.report(span, format!("host[{i}].address"), message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_zeros_are_read_one_way() {
        assert_eq!(parse_ipv4("192.168.1.2"), Ok(Ipv4Addr::new(192, 168, 1, 2)));
        let err = parse_ipv4("010.0.0.1").expect_err("a leading zero");
        assert!(err.contains("write 10.0.0.1"), "{err}");
        assert_eq!(parse_ipv4("0.0.0.0"), Ok(Ipv4Addr::UNSPECIFIED));
        assert!(
            parse_ipv4("1.2.3.0400")
                .expect_err("too long")
                .contains("not an IPv4")
        );
        assert!(
            parse_ipv4("1.2.3.256")
                .expect_err("out of range")
                .contains("not an IPv4")
        );
        assert_eq!(prefix_leading_zero("10.0.0.0/8"), None);
        let err = prefix_leading_zero("10.00.0.0/16").expect("a leading zero");
        assert!(err.contains("write 10.0.0.0/16"), "{err}");
    }

    #[test]
    fn names_and_addresses() {
        assert_eq!(name_problem("host1", Ipv4Addr::new(10, 0, 0, 2)), None);
        assert_eq!(name_problem("10.0.0.2", Ipv4Addr::new(10, 0, 0, 2)), None);
        assert!(name_problem("10.0.0.3", Ipv4Addr::new(10, 0, 0, 2)).is_some());
        assert_eq!(unusable_host(Ipv4Addr::new(192, 168, 1, 2)), None);
        for bad in [
            [0, 0, 0, 0],
            [127, 0, 0, 1],
            [255, 255, 255, 255],
            [239, 1, 1, 1],
        ] {
            assert!(unusable_host(Ipv4Addr::from(bad)).is_some(), "{bad:?}");
        }
    }
}
