//! The VIP verdicts in the ownership rules, on a hand-advanced clock.

use std::{path::Path, time::Duration};

use tokio::time::Instant;

use super::*;
use crate::{config::Config, model::Health, policy::Change};

/// Three hosts, failback 500 ms; prefix A owned by web1 with backups web2, web3;
/// prefix B owned by web2 (default backups).
const CONFIG: &str = r#"
[health]
failback_delay_ms = 500
[[host]]
name = "web1"
address = "10.0.0.1"
[[host]]
name = "web2"
address = "10.0.0.2"
[[host]]
name = "web3"
address = "10.0.0.3"
[[prefix]]
cidr = "192.168.1.0/27"
owner = "web1"
backups = ["web2", "web3"]
[[prefix]]
cidr = "192.168.1.32/27"
owner = "web2"
"#;

const W1: HostId = HostId::new(0);
const W2: HostId = HostId::new(1);
const W3: HostId = HostId::new(2);
const A: PrefixId = PrefixId::new(0);
const B: PrefixId = PrefixId::new(1);

fn ch(prefix: PrefixId, old: Option<HostId>, new: Option<HostId>, reason: Reason) -> Change {
    Change {
        prefix,
        old,
        new,
        reason,
    }
}

struct Harness {
    policy: Policy,
    now: Instant,
}

impl Harness {
    fn all_up() -> Self {
        let config = Config::parse(Path::new("ha.toml"), CONFIG).expect("valid");
        let mut h = Self {
            policy: Policy::new(&config),
            now: Instant::now(),
        };
        for host in [W1, W2, W3] {
            let changes = h.policy.host_health(host, Health::Up, h.now).expect("host");
            assert_eq!(changes, []);
        }
        h
    }

    fn vip(&mut self, prefix: PrefixId, host: HostId, serving: bool) -> Vec<Change> {
        self.policy
            .vip_verdict(prefix, host, serving, self.now)
            .expect("known prefix and host")
    }

    fn down(&mut self, host: HostId) -> Vec<Change> {
        self.policy
            .host_health(host, Health::Down, self.now)
            .expect("host")
    }

    fn advance(&mut self, ms: u64) -> Vec<Change> {
        self.now += Duration::from_millis(ms);
        self.policy.tick(self.now)
    }
}

#[test]
fn a_failover_skips_a_backup_that_does_not_serve_the_vip() {
    let mut h = Harness::all_up();
    assert_eq!(h.vip(A, W2, false), [], "web2 is only a backup of A");
    assert!(!h.policy.serves_vip(A, W2));
    assert!(h.policy.serves_vip(B, W2), "for A only");
    assert_eq!(h.down(W1), [ch(A, Some(W1), Some(W3), Reason::Failover)]);
    // Repeating a verdict changes nothing.
    assert_eq!(h.vip(A, W2, false), []);
}

#[test]
fn with_no_candidate_serving_the_prefix_follows_the_kernel_route() {
    let mut h = Harness::all_up();
    assert_eq!(h.vip(A, W2, false), []);
    assert_eq!(h.vip(A, W3, false), []);
    assert_eq!(h.down(W1), [ch(A, Some(W1), None, Reason::AllDown)]);
    // A candidate serving again takes it at once.
    assert_eq!(
        h.vip(A, W3, true),
        [ch(A, None, Some(W3), Reason::Recovered)]
    );
}

#[test]
fn a_holder_found_not_serving_loses_the_prefix_at_once() {
    let mut h = Harness::all_up();
    assert_eq!(
        h.vip(A, W1, false),
        [ch(A, Some(W1), Some(W2), Reason::VipNotAnswered)]
    );
    assert_eq!(h.policy.why(A), Some(Reason::VipNotAnswered));
    // Back to serving: the owner takes it back after its failback delay, counted from
    // its return.
    assert_eq!(h.advance(1000), []);
    assert_eq!(h.vip(A, W1, true), []);
    assert_eq!(h.advance(499), []);
    assert_eq!(h.advance(1), [ch(A, Some(W2), Some(W1), Reason::Failback)]);
    assert_eq!(h.policy.next_deadline(), None);
}

#[test]
fn a_forced_pin_ignores_the_vip() {
    let mut h = Harness::all_up();
    h.policy.set_owner(A, W3, true, h.now).expect("pin");
    assert_eq!(h.vip(A, W3, false), []);
    assert_eq!(h.policy.owner(A), Some(W3));
}

#[test]
fn the_checks_watch_the_holder_the_next_candidate_and_the_rest_in_order() {
    let mut h = Harness::all_up();
    assert_eq!(h.policy.vip_watch(A), [Some(W1), Some(W2), Some(W3), None]);
    assert_eq!(h.vip(A, W2, false), []);
    assert_eq!(
        h.policy.vip_watch(A),
        [Some(W1), Some(W3), Some(W2), None],
        "the next candidate is the first one serving"
    );
    assert_eq!(h.down(W1), [ch(A, Some(W1), Some(W3), Reason::Failover)]);
    assert_eq!(
        h.policy.vip_watch(A),
        [Some(W3), Some(W1), Some(W2), None],
        "nobody to fail over to: the candidates in order after the holder"
    );
}
