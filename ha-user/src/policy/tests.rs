//! The policy's rules, driven by a hand-advanced clock. The policy never reads the
//! clock itself, so moving `now` forward is all a paused tokio clock would give.

use std::{path::Path, time::Duration};

use tokio::time::Instant;

use super::*;

/// Four hosts; web2's failback delay is 500 ms, the others' 2000 ms.
/// Prefix A: owner web1, backups web3, web2. B: owner web2, default backups (web1,
/// web3, web4). C: owner web3, backup web4.
const CONFIG: &str = r#"
[health]
failback_delay_ms = 2000

[[host]]
name = "web1"
address = "10.0.0.1"

[[host]]
name = "web2"
address = "10.0.0.2"
health = { failback_delay_ms = 500 }

[[host]]
name = "web3"
address = "10.0.0.3"

[[host]]
name = "web4"
address = "10.0.0.4"

[[prefix]]
cidr = "192.168.1.0/27"
owner = "web1"
backups = ["web3", "web2"]

[[prefix]]
cidr = "192.168.1.32/27"
owner = "web2"

[[prefix]]
cidr = "192.168.1.64/27"
owner = "web3"
backups = ["web4"]
"#;

const W1: HostId = HostId::new(0);
const W2: HostId = HostId::new(1);
const W3: HostId = HostId::new(2);
const W4: HostId = HostId::new(3);
const A: PrefixId = PrefixId::new(0);
const B: PrefixId = PrefixId::new(1);
const C: PrefixId = PrefixId::new(2);

// `Reason::AdminPin` stays qualified: the name is also the persisted pin's struct.
use super::Reason::{
    AdminClear, AdminForce, AllDown, Drain, Failback, Failover, Initial, PinResumed, PinWaiting,
    Reconfigured, Recovered, Undrain,
};

fn parse(text: &str) -> Config {
    match Config::parse(Path::new("ha.toml"), text) {
        Ok(config) => config,
        Err(err) => panic!("invalid test configuration:\n{err}"),
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn ch(prefix: PrefixId, old: Option<HostId>, new: Option<HostId>, reason: Reason) -> Change {
    Change {
        prefix,
        old,
        new,
        reason,
    }
}

fn net(s: &str) -> Ipv4Net {
    s.parse().expect("test CIDR")
}

/// A policy and the time, advanced by hand.
struct Harness {
    policy: Policy,
    now: Instant,
}

impl Harness {
    fn new() -> Self {
        Self {
            policy: Policy::new(&parse(CONFIG)),
            now: Instant::now(),
        }
    }

    /// Every host up, which changes no owner.
    fn all_up() -> Self {
        let mut h = Self::new();
        for host in [W1, W2, W3, W4] {
            assert_eq!(h.up(host), [], "host {host} up at start");
        }
        h
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    fn set(&mut self, host: HostId, health: Health) -> Vec<Change> {
        self.policy
            .host_health(host, health, self.now)
            .expect("known host")
    }

    fn up(&mut self, host: HostId) -> Vec<Change> {
        self.set(host, Health::Up)
    }

    fn down(&mut self, host: HostId) -> Vec<Change> {
        self.set(host, Health::Down)
    }

    fn tick(&mut self) -> Vec<Change> {
        self.policy.tick(self.now)
    }

    fn pin(&mut self, prefix: PrefixId, host: HostId, force: bool) -> Pinned {
        self.policy
            .set_owner(prefix, host, force, self.now)
            .expect("known prefix and host")
    }

    fn clear(&mut self, prefix: PrefixId) -> Vec<Change> {
        self.policy
            .clear_owner(prefix, self.now)
            .expect("known prefix")
    }

    fn drain(&mut self, host: HostId) -> Vec<Change> {
        self.policy.drain(host, self.now).expect("known host")
    }

    fn undrain(&mut self, host: HostId) -> Vec<Change> {
        self.policy.undrain(host, self.now).expect("known host")
    }

    fn owners(&self) -> Vec<Option<HostId>> {
        PrefixId::all(3).map(|p| self.policy.owner(p)).collect()
    }
}

#[test]
fn starts_at_the_configured_owners() {
    let h = Harness::new();
    assert_eq!(h.owners(), [Some(W1), Some(W2), Some(W3)]);
    assert_eq!(h.policy.why(A), Some(Initial));
    assert_eq!(h.policy.health(W1), Some(Health::Unknown));
    assert_eq!(h.policy.next_deadline(), None);
    assert_eq!(h.policy.why(PrefixId::new(3)), None);
    assert_eq!(h.policy.owner(PrefixId::new(3)), None);
}

#[test]
fn owner_down_fails_over_to_the_first_backup_in_order() {
    let mut h = Harness::all_up();
    assert_eq!(h.down(W1), [ch(A, Some(W1), Some(W3), Failover)]);
    assert_eq!(h.policy.why(A), Some(Failover));
    // A's next backup is web2; C's is web4.
    assert_eq!(
        h.down(W3),
        [
            ch(A, Some(W3), Some(W2), Failover),
            ch(C, Some(W3), Some(W4), Failover),
        ]
    );
    // Repeating a verdict changes nothing.
    assert_eq!(h.down(W3), []);
}

#[test]
fn default_backups_are_the_other_hosts_in_configuration_order() {
    let mut h = Harness::all_up();
    assert_eq!(h.down(W2), [ch(B, Some(W2), Some(W1), Failover)]);
    assert_eq!(
        h.down(W1),
        [
            ch(A, Some(W1), Some(W3), Failover),
            ch(B, Some(W1), Some(W3), Failover),
        ]
    );
    assert_eq!(
        h.down(W3),
        [
            ch(A, Some(W3), None, AllDown),
            ch(B, Some(W3), Some(W4), Failover),
            ch(C, Some(W3), Some(W4), Failover),
        ]
    );
}

#[test]
fn all_candidates_down_leaves_the_prefix_to_the_kernel_route() {
    let mut h = Harness::all_up();
    assert_eq!(h.down(W4), []);
    assert_eq!(h.down(W3), [ch(C, Some(W3), None, AllDown)]);
    assert_eq!(h.policy.owner(C), None);
    assert_eq!(h.policy.why(C), Some(AllDown));
    assert_eq!(h.policy.next_deadline(), None);
    // With nobody holding it there is nothing to disrupt: the first host back takes
    // it at once, even a backup ...
    h.advance(ms(5000));
    assert_eq!(h.up(W4), [ch(C, None, Some(W4), Recovered)]);
    // ... and the owner then fails back after its hold-down.
    assert_eq!(h.up(W3), []);
    h.advance(ms(2000));
    assert_eq!(h.tick(), [ch(C, Some(W4), Some(W3), Failback)]);

    // The owner coming back first takes it at once too.
    assert_eq!(h.down(W4), []);
    assert_eq!(h.down(W3), [ch(C, Some(W3), None, AllDown)]);
    assert_eq!(h.up(W3), [ch(C, None, Some(W3), Recovered)]);
}

#[test]
fn failback_happens_exactly_after_the_failback_delay() {
    let mut h = Harness::all_up();
    assert_eq!(h.down(W1), [ch(A, Some(W1), Some(W3), Failover)]);
    h.advance(ms(10_000));
    let recovered = h.now;
    assert_eq!(h.up(W1), []);
    assert_eq!(h.policy.next_deadline(), Some(recovered + ms(2000)));
    h.advance(ms(1999));
    assert_eq!(h.tick(), []);
    assert_eq!(h.policy.owner(A), Some(W3));
    h.advance(ms(1));
    assert_eq!(h.tick(), [ch(A, Some(W3), Some(W1), Failback)]);
    assert_eq!(h.policy.why(A), Some(Failback));
    assert_eq!(h.policy.next_deadline(), None);
    assert_eq!(h.tick(), []);
}

#[test]
fn late_tick_and_health_reports_apply_an_expired_failback() {
    let mut h = Harness::all_up();
    h.down(W1);
    h.up(W1);
    h.advance(ms(60_000));
    // An unrelated report settles everything, including the expired hold-down.
    assert_eq!(h.up(W4), [ch(A, Some(W3), Some(W1), Failback)]);
}

#[test]
fn the_failback_delay_is_the_recovering_owners() {
    let mut h = Harness::all_up();
    assert_eq!(h.down(W2), [ch(B, Some(W2), Some(W1), Failover)]);
    assert_eq!(h.up(W2), []);
    h.advance(ms(499));
    assert_eq!(h.tick(), []);
    h.advance(ms(1));
    assert_eq!(h.tick(), [ch(B, Some(W1), Some(W2), Failback)]);
}

#[test]
fn repeated_up_reports_do_not_restart_the_hold_down() {
    let mut h = Harness::all_up();
    h.down(W1);
    h.up(W1);
    h.advance(ms(1000));
    assert_eq!(h.up(W1), []);
    h.advance(ms(1000));
    assert_eq!(h.tick(), [ch(A, Some(W3), Some(W1), Failback)]);
}

#[test]
fn a_flapping_owner_restarts_its_hold_down_and_never_storms() {
    let mut h = Harness::all_up();
    let mut changes = h.down(W1);
    assert_eq!(changes, [ch(A, Some(W1), Some(W3), Failover)]);
    // Up for 1.9 s, down for 0.1 s, twenty times: never a full hold-down.
    for _ in 0..20 {
        changes.extend(h.up(W1));
        h.advance(ms(1900));
        changes.extend(h.tick());
        changes.extend(h.down(W1));
        h.advance(ms(100));
        changes.extend(h.tick());
    }
    assert_eq!(changes.len(), 1, "no change while flapping: {changes:?}");
    assert_eq!(h.policy.next_deadline(), None);
    let stable = h.now;
    assert_eq!(h.up(W1), []);
    assert_eq!(h.policy.next_deadline(), Some(stable + ms(2000)));
    h.advance(ms(1999));
    assert_eq!(h.tick(), []);
    h.advance(ms(1));
    assert_eq!(h.tick(), [ch(A, Some(W3), Some(W1), Failback)]);
}

#[test]
fn backups_do_not_preempt_each_other() {
    let mut h = Harness::all_up();
    h.down(W1);
    assert_eq!(
        h.down(W3),
        [
            ch(A, Some(W3), Some(W2), Failover),
            ch(C, Some(W3), Some(W4), Failover),
        ]
    );
    // web3 is A's first backup, but A stays on web2; C goes back to its owner.
    assert_eq!(h.up(W3), []);
    h.advance(ms(3_600_000));
    assert_eq!(h.tick(), [ch(C, Some(W4), Some(W3), Failback)]);
    assert_eq!(h.policy.owner(A), Some(W2));
    assert_eq!(h.policy.next_deadline(), None);
    // Only the owner takes it back.
    assert_eq!(h.up(W1), []);
    h.advance(ms(2000));
    assert_eq!(h.tick(), [ch(A, Some(W2), Some(W1), Failback)]);
}

#[test]
fn a_holder_failing_during_the_hold_down_hands_straight_to_the_owner() {
    let mut h = Harness::all_up();
    h.down(W1);
    h.up(W1);
    h.advance(ms(500));
    assert_eq!(
        h.down(W3),
        [
            ch(A, Some(W3), Some(W1), Failover),
            ch(C, Some(W3), Some(W4), Failover),
        ]
    );
}

#[test]
fn unknown_health_counts_only_for_the_preferred_host_and_the_holder() {
    let mut h = Harness::new();
    // Backups whose health is unknown are not failover targets.
    assert_eq!(h.down(W1), [ch(A, Some(W1), None, AllDown)]);
    assert_eq!(h.up(W2), [ch(A, None, Some(W2), Recovered)]);
    // An unknown holder keeps its prefix while a pin waits for a down host.
    assert_eq!(h.down(W4), []);
    let pinned = h.pin(C, W4, false);
    assert_eq!(pinned.changes, []);
    assert_eq!(
        pinned.effect,
        PinEffect::Waiting {
            health: Health::Down,
            drained: false
        }
    );
    assert_eq!(h.policy.owner(C), Some(W3));
    assert_eq!(h.policy.why(C), Some(PinWaiting));
    // An unknown preferred host takes a pin at once (as after a restart).
    assert_eq!(
        h.pin(B, W3, false),
        Pinned {
            changes: vec![ch(B, Some(W2), Some(W3), Reason::AdminPin)],
            effect: PinEffect::Steered,
        }
    );
}

#[test]
fn a_pin_moves_now_fails_over_and_resumes_after_the_hold_down() {
    let mut h = Harness::all_up();
    assert_eq!(
        h.pin(A, W4, false),
        Pinned {
            changes: vec![ch(A, Some(W1), Some(W4), Reason::AdminPin)],
            effect: PinEffect::Steered,
        }
    );
    assert_eq!(
        h.policy.pin(A),
        Some(Pin {
            host: W4,
            force: false
        })
    );
    assert_eq!(h.policy.why(A), Some(Reason::AdminPin));
    // The pinned host fails: normal order, skipping it.
    assert_eq!(h.down(W4), [ch(A, Some(W4), Some(W1), Failover)]);
    let recovered = h.now;
    assert_eq!(h.up(W4), []);
    assert_eq!(h.policy.next_deadline(), Some(recovered + ms(2000)));
    h.advance(ms(1999));
    assert_eq!(h.tick(), []);
    h.advance(ms(1));
    assert_eq!(h.tick(), [ch(A, Some(W1), Some(W4), PinResumed)]);
    // The owner's recovery does not undo the pin.
    h.down(W1);
    h.up(W1);
    h.advance(ms(10_000));
    assert_eq!(h.tick(), []);
}

#[test]
fn a_pin_to_a_down_host_waits_for_its_hold_down() {
    let mut h = Harness::all_up();
    assert_eq!(h.down(W4), []);
    let pinned = h.pin(A, W4, false);
    assert_eq!(pinned.changes, []);
    assert_eq!(
        pinned.effect,
        PinEffect::Waiting {
            health: Health::Down,
            drained: false
        }
    );
    assert_eq!(h.policy.owner(A), Some(W1));
    assert_eq!(h.policy.why(A), Some(PinWaiting));
    assert_eq!(h.up(W4), []);
    h.advance(ms(1999));
    assert_eq!(h.tick(), []);
    h.advance(ms(1));
    assert_eq!(h.tick(), [ch(A, Some(W1), Some(W4), PinResumed)]);
}

#[test]
fn a_pin_to_a_drained_host_waits_for_undrain() {
    let mut h = Harness::all_up();
    assert_eq!(h.drain(W4), []);
    let pinned = h.pin(A, W4, false);
    assert_eq!(pinned.changes, []);
    assert_eq!(
        pinned.effect,
        PinEffect::Waiting {
            health: Health::Up,
            drained: true
        }
    );
    h.advance(ms(60_000));
    assert_eq!(h.tick(), []);
    assert_eq!(h.undrain(W4), [ch(A, Some(W1), Some(W4), Undrain)]);
}

#[test]
fn a_forced_pin_ignores_health_and_drain() {
    let mut h = Harness::all_up();
    h.down(W4);
    assert_eq!(
        h.pin(A, W4, true),
        Pinned {
            changes: vec![ch(A, Some(W1), Some(W4), AdminForce)],
            effect: PinEffect::Forced {
                health: Health::Down,
                drained: false
            },
        }
    );
    assert_eq!(h.up(W4), []);
    assert_eq!(h.down(W4), []);
    assert_eq!(h.drain(W4), []);
    h.advance(ms(60_000));
    assert_eq!(h.tick(), []);
    assert_eq!(h.policy.owner(A), Some(W4));
    assert_eq!(h.policy.why(A), Some(AdminForce));
    assert_eq!(h.policy.next_deadline(), None);
    assert_eq!(h.clear(A), [ch(A, Some(W4), Some(W1), AdminClear)]);
}

#[test]
fn clear_owner_returns_to_the_normal_rules_at_once() {
    let mut h = Harness::all_up();
    h.pin(A, W4, false);
    // The owner is in its hold-down; the admin's clear does not wait for it.
    h.down(W1);
    h.up(W1);
    assert_eq!(h.clear(A), [ch(A, Some(W4), Some(W1), AdminClear)]);
    assert_eq!(h.policy.pin(A), None);
    assert_eq!(h.policy.why(A), Some(AdminClear));
    assert_eq!(h.clear(A), [], "no pin left to clear");

    // With the owner down, a healthy backup holding the prefix keeps it ...
    assert_eq!(
        h.pin(A, W2, false).changes,
        [ch(A, Some(W1), Some(W2), Reason::AdminPin)]
    );
    assert_eq!(h.down(W1), []);
    assert_eq!(h.clear(A), []);
    assert_eq!(h.policy.why(A), Some(AdminClear));
    // ... until the owner fails back.
    h.up(W1);
    h.advance(ms(2000));
    assert_eq!(h.tick(), [ch(A, Some(W2), Some(W1), Failback)]);

    // A holder that is no candidate without the pin leaves at once.
    h.pin(C, W1, false);
    h.down(W3);
    assert_eq!(h.clear(C), [ch(C, Some(W1), Some(W4), AdminClear)]);
}

#[test]
fn drain_moves_everything_off_and_undrain_gives_preferred_prefixes_back_at_once() {
    let mut h = Harness::all_up();
    h.down(W1);
    assert_eq!(h.policy.owner(A), Some(W3));
    assert_eq!(
        h.drain(W3),
        [
            ch(A, Some(W3), Some(W2), Drain),
            ch(C, Some(W3), Some(W4), Drain),
        ]
    );
    assert!(h.policy.is_drained(W3));
    assert_eq!(h.drain(W3), [], "already drained");
    // Health changes of a drained host move nothing.
    assert_eq!(h.down(W3), []);
    assert_eq!(h.up(W3), []);
    h.advance(ms(10));
    // Undrain is immediate, even within the hold-down, for the prefixes web3 owns;
    // A, for which web3 is only a backup, stays on web2.
    assert_eq!(h.undrain(W3), [ch(C, Some(W4), Some(W3), Undrain)]);
    assert!(!h.policy.is_drained(W3));
    assert_eq!(h.undrain(W3), [], "not drained");
    assert_eq!(h.owners(), [Some(W2), Some(W2), Some(W3)]);
}

#[test]
fn draining_every_candidate_leaves_no_owner() {
    let mut h = Harness::all_up();
    assert_eq!(h.drain(W4), []);
    assert_eq!(h.drain(W3), [ch(C, Some(W3), None, AllDown)]);
    assert_eq!(h.undrain(W4), [ch(C, None, Some(W4), Recovered)]);
}

#[test]
fn admin_state_round_trips_through_json() {
    let mut h = Harness::all_up();
    h.pin(A, W4, false);
    h.pin(B, W3, true);
    h.drain(W2);
    let state = h.policy.admin_state();
    let json = serde_json::to_string(&state).expect("serializable");
    assert_eq!(
        json,
        r#"{"pins":{"192.168.1.0/27":{"host":"web4","force":false},"192.168.1.32/27":{"host":"web3","force":true}},"drained":["web2"]}"#
    );
    let parsed: AdminState = serde_json::from_str(&json).expect("parsable");
    assert_eq!(parsed, state);

    let mut fresh = Harness::all_up();
    let applied = fresh.policy.restore(parsed, fresh.now);
    assert_eq!(
        applied,
        Applied {
            changes: vec![
                ch(A, Some(W1), Some(W4), Reason::AdminPin),
                ch(B, Some(W2), Some(W3), AdminForce),
            ],
            stale: vec![],
        }
    );
    assert_eq!(fresh.policy.admin_state(), state);
    assert_eq!(fresh.owners(), h.owners());

    // Missing fields take their defaults.
    let sparse: AdminState =
        serde_json::from_str(r#"{"pins":{"192.168.1.0/27":{"host":"web4"}}}"#).expect("parsable");
    assert!(!sparse.pins[&net("192.168.1.0/27")].force);
    assert!(sparse.drained.is_empty());
}

#[test]
fn restore_replaces_admin_state_and_reports_what_the_configuration_lacks() {
    let mut h = Harness::all_up();
    h.pin(C, W4, false);
    let mut state = AdminState::default();
    for (cidr, host) in [
        ("10.9.9.0/24", "web1"),
        ("192.168.1.0/27", "web2"),
        ("192.168.1.64/27", "web9"),
    ] {
        state.pins.insert(
            net(cidr),
            AdminPin {
                host: host.to_owned(),
                force: false,
            },
        );
    }
    state.drained = ["web7".to_owned()].into();
    let applied = h.policy.restore(state, h.now);
    assert_eq!(
        applied.stale,
        [
            Stale::Drain {
                host: "web7".to_owned()
            },
            Stale::PinPrefix {
                prefix: net("10.9.9.0/24"),
                host: "web1".to_owned()
            },
            Stale::PinHost {
                prefix: net("192.168.1.64/27"),
                host: "web9".to_owned()
            },
        ]
    );
    assert_eq!(
        applied.stale[2].to_string(),
        "pin of 192.168.1.64/27 to web9 dropped: web9 is not a configured host"
    );
    // C's old pin is gone; A's new one applies.
    assert_eq!(
        applied.changes,
        [
            ch(A, Some(W1), Some(W2), Reason::AdminPin),
            ch(C, Some(W4), Some(W3), AdminClear),
        ]
    );
    assert_eq!(h.policy.pin(C), None);
}

#[test]
fn restore_undrains_at_once() {
    let mut h = Harness::all_up();
    h.drain(W3);
    let applied = h.policy.restore(AdminState::default(), h.now);
    assert_eq!(applied.changes, [ch(C, Some(W4), Some(W3), Undrain)]);
}

/// web1 and web3 swap places, web4 goes, web5 comes; C goes, D comes.
const RELOADED: &str = r#"
[[host]]
name = "web3"
address = "10.0.0.3"

[[host]]
name = "web1"
address = "10.0.0.1"

[[host]]
name = "web2"
address = "10.0.0.2"

[[host]]
name = "web5"
address = "10.0.0.5"

[[prefix]]
cidr = "192.168.1.0/27"
owner = "web1"
backups = ["web3", "web2"]

[[prefix]]
cidr = "192.168.1.32/27"
owner = "web2"

[[prefix]]
cidr = "192.168.1.96/27"
owner = "web5"
"#;

#[test]
fn reconfigure_keeps_health_hold_downs_and_admin_state_by_name() {
    let [n3, n1, n2, n5] = [0, 1, 2, 3].map(HostId::new);
    let mut h = Harness::all_up();
    h.down(W1);
    let recovered = h.now;
    h.up(W1);
    h.advance(ms(1000));
    assert_eq!(
        h.pin(B, W3, false).changes,
        [ch(B, Some(W2), Some(W3), Reason::AdminPin)]
    );
    h.pin(C, W1, false);
    h.drain(W4);

    let applied = h.policy.reconfigure(&parse(RELOADED), h.now);
    assert_eq!(
        applied.stale,
        [
            Stale::Drain {
                host: "web4".to_owned()
            },
            Stale::PinPrefix {
                prefix: net("192.168.1.64/27"),
                host: "web1".to_owned()
            },
        ]
    );
    // A stays on web3 (web1's hold-down runs on), B keeps its pin; the new prefix
    // goes to its owner, whose health is unknown, at once.
    assert_eq!(
        applied.changes,
        [ch(PrefixId::new(2), None, Some(n5), Reconfigured)]
    );
    assert_eq!(h.owners(), [Some(n3), Some(n3), Some(n5)]);
    assert_eq!(
        h.policy.pin(B),
        Some(Pin {
            host: n3,
            force: false
        })
    );
    assert_eq!(h.policy.health(n2), Some(Health::Up));
    assert_eq!(h.policy.health(n5), Some(Health::Unknown));
    assert_eq!(h.policy.next_deadline(), Some(recovered + ms(2000)));
    h.advance(ms(1000));
    assert_eq!(
        h.tick(),
        [ch(PrefixId::new(0), Some(n3), Some(n1), Failback)]
    );
    assert_eq!(
        h.policy.admin_state().pins[&net("192.168.1.32/27")],
        AdminPin {
            host: "web3".to_owned(),
            force: false
        }
    );
}

#[test]
fn reconfigure_drops_a_pin_to_a_removed_host() {
    let mut h = Harness::all_up();
    h.pin(A, W4, false);
    let applied = h.policy.reconfigure(&parse(RELOADED), h.now);
    assert_eq!(
        applied.stale,
        [Stale::PinHost {
            prefix: net("192.168.1.0/27"),
            host: "web4".to_owned()
        }]
    );
    // The old holder is gone from the configuration: `old` is None.
    assert_eq!(
        applied.changes,
        [
            ch(PrefixId::new(0), None, Some(HostId::new(1)), Reconfigured),
            ch(PrefixId::new(2), None, Some(HostId::new(3)), Reconfigured),
        ]
    );
    assert_eq!(h.policy.why(A), Some(Reconfigured));
}

#[test]
fn unknown_indices_are_errors() {
    let mut h = Harness::all_up();
    let now = h.now;
    let (h9, p7) = (HostId::new(9), PrefixId::new(7));
    let no_host = Err(PolicyError::UnknownHost { host: h9, count: 4 });
    let no_prefix = Err(PolicyError::UnknownPrefix {
        prefix: p7,
        count: 3,
    });
    assert_eq!(h.policy.host_health(h9, Health::Up, now), no_host);
    assert_eq!(h.policy.drain(h9, now), no_host);
    assert_eq!(h.policy.undrain(h9, now), no_host);
    assert_eq!(h.policy.clear_owner(p7, now), no_prefix);
    assert_eq!(
        h.policy.set_owner(A, h9, false, now),
        Err(PolicyError::UnknownHost { host: h9, count: 4 })
    );
    assert_eq!(
        h.policy.set_owner(p7, W1, false, now),
        Err(PolicyError::UnknownPrefix {
            prefix: p7,
            count: 3
        })
    );
    assert_eq!(h.policy.pin(A), None, "a failed set_owner pins nothing");
    assert_eq!(
        PolicyError::UnknownHost { host: h9, count: 4 }.to_string(),
        "no host #9: the configuration has 4"
    );
}

#[test]
fn reasons_read_well_in_logs() {
    assert_eq!(
        Failback.to_string(),
        "failback: owner up for its failback delay"
    );
    assert_eq!(
        serde_json::to_string(&PinResumed).expect("serializable"),
        r#""pin-resumed""#
    );
    assert_eq!(Health::Down.to_string(), "down");
}

#[test]
fn a_restart_keeps_the_running_holders_until_health_decides() {
    let mut h = Harness::new();
    // A had failed over to web3; B had no entry (all down); C names a host that
    // is not one of its candidates and is ignored.
    h.policy.adopt_holders(&[Some(W3), None, Some(W1)]);
    assert_eq!(h.owners(), [Some(W3), None, Some(W3)]);
    assert_eq!(h.policy.why(A), Some(Reason::Running));
    // The next decision gives B to its owner, whose health is unknown and so counts
    // as usable: the kernel route of an ownerless prefix points there anyway.
    assert_eq!(h.up(W3), [ch(B, None, Some(W2), Recovered)]);
    // A stays on web3: the owner must be up for its hold-down to fail back.
    assert_eq!(h.up(W1), []);
    h.advance(ms(1999));
    assert_eq!(h.tick(), []);
    h.advance(ms(1));
    assert_eq!(h.tick(), [ch(A, Some(W3), Some(W1), Failback)]);
}
