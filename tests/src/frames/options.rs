//! IPv4 options (RFC 791 and later), well-formed and malformed: what a router meets
//! in the wild and what a parser must survive. Each set is padded to a multiple of
//! four bytes and at most 40 bytes long (IHL 6..15).

use std::net::Ipv4Addr;

use super::rng::Rng;

/// End of option list.
pub const EOL: u8 = 0;
/// No operation.
pub const NOP: u8 = 1;
/// Record route: routers write their address at the pointer.
pub const RR: u8 = 7;
/// Internet timestamp: routers write a timestamp (and their address) at the pointer.
pub const TS: u8 = 68;
/// Loose source route.
pub const LSRR: u8 = 131;
/// Strict source route.
pub const SSRR: u8 = 137;
/// Router alert (RFC 2113).
pub const RA: u8 = 148;
/// Basic security (RFC 1108).
pub const SEC: u8 = 130;

/// Longest options a header can carry.
pub const MAX_OPTIONS: usize = 40;

/// A random option set: its bytes (a multiple of 4, at most 40) and what it is.
pub fn random(rng: &mut Rng) -> (Vec<u8>, &'static str) {
    let (mut bytes, label) = match rng.below(11) {
        0 => (vec![NOP; 4 * rng.between(1, 10)], "options: NOPs"),
        1 => (vec![EOL; 4 * rng.between(1, 10)], "options: EOL"),
        2 => (record_route(rng), "options: record route"),
        3 => (timestamp(rng), "options: timestamp"),
        4 => (vec![RA, 4, 0, 0], "options: router alert"),
        5 => (source_route(rng, LSRR), "options: loose source route"),
        6 => (source_route(rng, SSRR), "options: strict source route"),
        7 => (
            vec![SEC, 11, 0xab, 0xcd, 0, 0, 0, 0, 0, 0, 0],
            "options: security",
        ),
        8 => {
            // An option type no router implements (copied flag and classes mixed).
            let kind = *rng.pick(&[0x1e, 0x5e, 0x9e, 0xde, 25, 0x42]);
            let len = rng.between(2, 10);
            let mut option = vec![kind, len as u8];
            option.extend(rng.bytes(len - 2));
            (option, "options: unknown type")
        }
        9 => (malformed(rng), "options: malformed length"),
        _ => {
            // Three options in a row: 1 + 4 + at most 35 bytes.
            let mut all = vec![NOP, RA, 4, 0, 0];
            let slots = rng.between(1, 8);
            all.extend(record_route_of(rng, slots));
            (all, "options: NOP, router alert, record route")
        }
    };
    bytes.truncate(MAX_OPTIONS);
    while bytes.len() % 4 != 0 {
        bytes.push(if rng.chance(50) { EOL } else { NOP });
    }
    (bytes, label)
}

/// Record route with room for 1..=9 addresses, empty, partly or completely filled.
fn record_route(rng: &mut Rng) -> Vec<u8> {
    let slots = rng.between(1, 9);
    record_route_of(rng, slots)
}

/// Record route with room for `slots` addresses.
fn record_route_of(rng: &mut Rng, slots: usize) -> Vec<u8> {
    let len = 3 + 4 * slots;
    let filled = rng.between(0, slots);
    let mut option = vec![RR, len as u8, (4 + 4 * filled) as u8];
    for slot in 0..slots {
        if slot < filled {
            option.extend(Ipv4Addr::new(198, 51, 100, slot as u8 + 1).octets());
        } else {
            option.extend([0; 4]);
        }
    }
    option
}

/// Timestamp option: timestamps only (flag 0), with addresses (1) or prespecified
/// addresses (3), empty or partly filled, overflow counter random.
fn timestamp(rng: &mut Rng) -> Vec<u8> {
    let flag = *rng.pick(&[0u8, 1, 3]);
    let entry = if flag == 0 { 4 } else { 8 };
    let slots = rng.between(1, 36 / entry);
    let len = 4 + entry * slots;
    let filled = rng.between(0, slots);
    let overflow = rng.u8() & 0xf0;
    let mut option = vec![TS, len as u8, (5 + entry * filled) as u8, overflow | flag];
    for slot in 0..slots {
        if flag == 3 || slot < filled {
            option.extend(Ipv4Addr::new(10, 0, 0, 1).octets().iter().take(entry - 4));
        } else {
            option.extend(vec![0; entry - 4]);
        }
        option.extend(if slot < filled {
            rng.u32().to_be_bytes()
        } else {
            [0; 4]
        });
    }
    option
}

/// A source route through 1..=8 addresses, the pointer at the first.
fn source_route(rng: &mut Rng, kind: u8) -> Vec<u8> {
    let hops = rng.between(1, 8);
    let mut option = vec![kind, (3 + 4 * hops) as u8, 4];
    for hop in 0..hops {
        option.extend(Ipv4Addr::new(203, 0, 113, hop as u8 + 1).octets());
    }
    option
}

/// An option whose length byte is 0, 1 or beyond the options area.
fn malformed(rng: &mut Rng) -> Vec<u8> {
    let kind = *rng.pick(&[RR, TS, RA, LSRR, 0x9e]);
    let room = 4 * rng.between(1, 10);
    let len = *rng.pick(&[0u8, 1, room as u8 + 1, 255]);
    let mut option = vec![kind, len];
    option.extend(rng.bytes(room - 2));
    option
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each option's length byte, from `at`: where the next option starts.
    fn walk(bytes: &[u8]) -> Result<(), String> {
        let mut at = 0;
        while at < bytes.len() {
            match bytes[at] {
                EOL => return Ok(()),
                NOP => at += 1,
                _ => {
                    let len = usize::from(*bytes.get(at + 1).ok_or("no length")?);
                    if len < 2 || at + len > bytes.len() {
                        return Err(format!("length {len} at {at} in {bytes:02x?}"));
                    }
                    at += len;
                }
            }
        }
        Ok(())
    }

    #[test]
    fn option_sets_fit_the_header() {
        let mut rng = Rng::new(11);
        let mut labels = std::collections::BTreeSet::new();
        for _ in 0..2_000 {
            let (bytes, label) = random(&mut rng);
            assert!(!bytes.is_empty() && bytes.len() <= MAX_OPTIONS && bytes.len() % 4 == 0);
            // Only the option sets meant to be malformed are.
            assert_eq!(
                walk(&bytes).is_ok(),
                label != "options: malformed length",
                "{label}: {bytes:02x?}"
            );
            labels.insert(label);
        }
        assert_eq!(labels.len(), 11, "{labels:?}");
    }
}
