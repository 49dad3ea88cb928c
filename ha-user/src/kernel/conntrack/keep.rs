//! The keeper's decisions, pure: which timeout the kernel alone would give an entry,
//! and what to change so that it expires then.
//!
//! The kernel alone renews an entry with every packet to the protocol's timeout
//! (which depends on the entry's state); the flow's last packet was at
//! [`ha_common::FlowEntry::seen_ns`] (to within [`ha_common::SEEN_GRANULARITY_NS`]), so
//! it would expire at `seen + timeout`: the *target*. `ctnetlink` sets a timeout in
//! whole seconds from the moment it is applied, and reports one rounded down, so:
//! - an entry is never shortened: the change is made only when its new end is surely
//!   later than the kernel's (replies and the packets that took the kernel's path
//!   renew it too);
//! - the precise change, `ceil(target - now)` seconds, is made in the round where it
//!   overshoots the target by less than the time between rounds (there is one such
//!   round every second, as `target - now` crosses a whole number); it ends the
//!   entry at most a round after the target;
//! - an entry that would end within two seconds, before such a round may come, gets
//!   `floor(target - now)`, which never passes the target.

use ha_common::FlowKey;

use super::{
    Timeouts,
    message::{Change, Entry, IPS_ASSURED},
};

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const NS_PER_S: i128 = 1_000_000_000;

/// The timeout, in seconds, the kernel gives `entry` at each packet; `None` for a
/// protocol or state it is not kept for.
pub fn timeout(key: &FlowKey, entry: &Entry, timeouts: &Timeouts) -> Option<u32> {
    match key.proto {
        // Replied flows the kernel calls streams (assured) have the longer timeout.
        IPPROTO_UDP if entry.status & IPS_ASSURED != 0 => Some(timeouts.udp_stream),
        IPPROTO_UDP => Some(timeouts.udp),
        IPPROTO_TCP => match entry.tcp_state? {
            1 | 9 => Some(timeouts.tcp_syn_sent),
            2 => Some(timeouts.tcp_syn_recv),
            3 => Some(timeouts.tcp_established),
            4 => Some(timeouts.tcp_fin_wait),
            5 => Some(timeouts.tcp_close_wait),
            6 => Some(timeouts.tcp_last_ack),
            7 => Some(timeouts.tcp_time_wait),
            8 => Some(timeouts.tcp_close),
            _ => None,
        },
        _ => None,
    }
}

/// The timeout to set now, if any: `left_ns` is `target - now` (negative once the
/// target has passed), `entry_s` the kernel's remaining seconds, `round_ns` the time
/// since the previous round looked at the flow.
pub fn renewal(left_ns: i128, entry_s: u32, round_ns: u64) -> Option<u32> {
    if left_ns <= 0 {
        return None;
    }
    let ceil = (left_ns + NS_PER_S - 1) / NS_PER_S;
    let floor = left_ns / NS_PER_S;
    // The entry ends before `now + entry_s + 1`: a timeout of at least that many
    // seconds never shortens it.
    let longer = |seconds: i128| seconds > i128::from(entry_s);
    let overshoot = ceil * NS_PER_S - left_ns;
    let seconds = if overshoot < i128::from(round_ns) && longer(ceil) {
        ceil
    } else if entry_s < 2 && longer(floor) {
        floor
    } else {
        return None;
    };
    u32::try_from(seconds).ok()
}

/// What to change in the entry of a flow last seen at `seen_ns`, at `now_ns`.
pub fn change(
    key: &FlowKey,
    entry: &Entry,
    timeouts: &Timeouts,
    liberal: bool,
    seen_ns: u64,
    now_ns: u64,
    round_ns: u64,
) -> Change {
    let timeout_s = timeout(key, entry, timeouts).and_then(|timeout| {
        let target = i128::from(seen_ns) + i128::from(timeout) * NS_PER_S;
        renewal(target - i128::from(now_ns), entry.timeout_s, round_ns)
    });
    Change {
        timeout_s,
        liberal: liberal && key.proto == IPPROTO_TCP && !entry.liberal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::conntrack::message::IPS_SEEN_REPLY;

    const MS: i128 = 1_000_000;
    const ROUND: u64 = 100_000_000;

    fn key(proto: u8) -> FlowKey {
        FlowKey {
            proto,
            ..FlowKey::default()
        }
    }

    fn timeouts() -> Timeouts {
        Timeouts {
            udp: 30,
            udp_stream: 120,
            tcp_established: 432_000,
            tcp_time_wait: 120,
            tcp_close: 10,
            ..Timeouts::default()
        }
    }

    #[test]
    fn the_timeout_follows_the_protocol_and_state() {
        let t = timeouts();
        let udp = Entry::default();
        assert_eq!(timeout(&key(17), &udp, &t), Some(30));
        let stream = Entry {
            status: IPS_SEEN_REPLY | IPS_ASSURED,
            ..Entry::default()
        };
        assert_eq!(timeout(&key(17), &stream, &t), Some(120));
        let established = Entry {
            tcp_state: Some(3),
            ..Entry::default()
        };
        assert_eq!(timeout(&key(6), &established, &t), Some(432_000));
        let closing = Entry {
            tcp_state: Some(8),
            ..Entry::default()
        };
        assert_eq!(timeout(&key(6), &closing, &t), Some(10));
        assert_eq!(timeout(&key(6), &Entry::default(), &t), None);
        assert_eq!(timeout(&key(1), &udp, &t), None);
    }

    #[test]
    fn the_precise_renewal_comes_as_the_target_crosses_a_second() {
        // 2.95 s left, the entry at 1 s: 3 s overshoots by 50 ms < a round.
        assert_eq!(renewal(2950 * MS, 1, ROUND), Some(3));
        // 2.5 s left: 3 s would overshoot by half a second; the entry lives long
        // enough for a later round.
        assert_eq!(renewal(2500 * MS, 2, ROUND), None);
    }

    #[test]
    fn an_entry_is_never_shortened() {
        // The kernel's own renewal (a reply) keeps it longer than the target.
        assert_eq!(renewal(2950 * MS, 3, ROUND), None);
        assert_eq!(renewal(2950 * MS, 5, ROUND), None);
        // Nothing once the target has passed: the entry ends as the kernel's would.
        assert_eq!(renewal(0, 0, ROUND), None);
        assert_eq!(renewal(-500 * MS, 0, ROUND), None);
    }

    #[test]
    fn an_entry_about_to_end_early_is_kept_without_passing_the_target() {
        // Ends within a second, the target 2.5 s away: 2 s, not 3.
        assert_eq!(renewal(2500 * MS, 0, ROUND), Some(2));
        // Less than a second away: nothing shorter than the entry to set.
        assert_eq!(renewal(500 * MS, 0, ROUND), None);
    }

    #[test]
    fn every_second_has_a_precise_round() {
        // From 3 s left, rounds every 100 ms: the ones at 2.0 s and 1.0 s left (the
        // crossings) renew exactly; the entry then ends at the target.
        let mut entry_end = 1500 * MS; // from the kernel's last renewal, ahead of "now"
        let mut renewed = Vec::new();
        for step in 0..30 {
            let left = 3000 * MS - i128::from(step) * 100 * MS;
            let entry_s = u32::try_from((entry_end - (3000 * MS - left)).max(0) / (1000 * MS))
                .expect("seconds");
            if let Some(s) = renewal(left, entry_s, ROUND) {
                entry_end = 3000 * MS - left + i128::from(s) * 1000 * MS;
                renewed.push(s);
            }
            assert!(
                entry_end >= 3000 * MS - left,
                "the entry ended at {entry_end} before {}",
                3000 * MS - left
            );
        }
        assert!(!renewed.is_empty());
        assert!((3000 * MS..3100 * MS).contains(&entry_end));
    }

    #[test]
    fn tcp_entries_are_made_liberal_once() {
        let t = timeouts();
        let strict = Entry {
            tcp_state: Some(3),
            timeout_s: 431_000,
            ..Entry::default()
        };
        let c = change(&key(6), &strict, &t, true, 0, 0, ROUND);
        assert!(c.liberal);
        let liberal = Entry {
            liberal: true,
            ..strict
        };
        assert!(!change(&key(6), &liberal, &t, true, 0, 0, ROUND).liberal);
        assert!(!change(&key(6), &strict, &t, false, 0, 0, ROUND).liberal);
        assert!(!change(&key(17), &Entry::default(), &t, true, 0, 0, ROUND).liberal);
    }
}
