//! Health checks of the web servers.
//!
//! [`HealthChecker::spawn`] starts one tokio task per host. A task probes its host's
//! `address` every `interval_ms` — a TCP connect, an HTTP GET or an ICMP echo, each
//! bounded by `timeout_ms` — one probe at a time: a slow probe delays the next tick
//! ([`MissedTickBehavior::Delay`]), probes never pile up. Results go through a
//! [`Hysteresis`]: a host starts unknown, `rise` consecutive successes make it up and
//! `fall` consecutive failures make it down. Every change is sent as a [`HealthEvent`].
//!
//! The latest [`HostHealth`] of every host is kept in a [`HealthStatus`]: an
//! `Arc<RwLock<Vec<HostHealth>>>` indexed by [`HostId`],
//! written by each task after each probe (before the event of a change is sent) and
//! copied out by [`HealthStatus::snapshot`]; the lock is never held across an await.
//!
//! What a host's probes keep between probes is in its [`probe::Prober`]: the HTTP
//! check keeps its connection open (HTTP/1.1 keep-alive, see [`http`]); every ICMP
//! check shares one raw socket, opened by the first ICMP probe for the life of the
//! checker (see [`icmp`]). A TCP check connects anew each time: that is its meaning.
//!
//! Detection time: a host that fails just after a successful probe is declared down
//! after at most `interval + (fall - 1) × max(interval, timeout) + timeout`, that is
//! `fall × interval + timeout` when `timeout ≤ interval`. A dead process answers with
//! RST (immediate failure; a kept HTTP connection to it is found closed and the probe
//! connects anew, refused); a dead link, a blackhole or a hung server costs `timeout`.

mod error;
mod http;
mod icmp;
mod probe;
mod tcp;

use std::{
    net::Ipv4Addr,
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};

pub use error::ProbeError;
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
    time::{Instant, MissedTickBehavior},
};
use tracing::{debug, trace};

pub use crate::model::Health;
use crate::model::{CheckKind, Host, HostId};

/// A host changed state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthEvent {
    pub host: HostId,
    /// The new state: [`Health::Up`] or [`Health::Down`].
    pub state: Health,
    /// The state before: [`Health::Unknown`] for the first decision.
    pub old: Health,
    /// When the probe that completed the streak finished.
    pub at: Instant,
    /// From the start of the first probe of the streak that caused the change (the
    /// first failing probe for `Down`, the first succeeding one for `Up`) to `at`.
    pub detected_in: Duration,
    /// For `Down` the last probe's error (`connection refused`, `timeout after 10 ms`,
    /// `http status 503`, ...); for `Up` the number of successes.
    pub reason: String,
}

/// The latest known health of one host, as status shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostHealth {
    pub name: String,
    pub address: Ipv4Addr,
    pub kind: CheckKind,
    /// Unknown until `rise` successes or `fall` failures in a row decide.
    pub state: Health,
    /// Consecutive successful probes (0 after a failure).
    pub successes: u32,
    /// Consecutive failed probes (0 after a success).
    pub failures: u32,
    /// The error of the most recent failed probe, kept after later successes.
    pub last_error: Option<String>,
    /// The duration of the most recent successful probe.
    pub last_rtt: Option<Duration>,
    /// When the most recent probe started.
    pub last_probe: Option<Instant>,
    /// When `state` last changed.
    pub changed_at: Option<Instant>,
}

impl HostHealth {
    fn new(host: &Host) -> Self {
        Self {
            name: host.name.clone(),
            address: host.address,
            kind: host.health.kind,
            state: Health::Unknown,
            successes: 0,
            failures: 0,
            last_error: None,
            last_rtt: None,
            last_probe: None,
            changed_at: None,
        }
    }
}

/// Rise/fall hysteresis over probe results; no I/O, no clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hysteresis {
    rise: u32,
    fall: u32,
    state: Health,
    successes: u32,
    failures: u32,
}

impl Hysteresis {
    /// Starts unknown. A `rise` or `fall` of 0 counts as 1 (the config rejects 0).
    pub fn new(rise: u32, fall: u32) -> Self {
        Self {
            rise: rise.max(1),
            fall: fall.max(1),
            state: Health::Unknown,
            successes: 0,
            failures: 0,
        }
    }

    /// Records one probe result; returns the new state if this result changed it.
    pub fn record(&mut self, ok: bool) -> Option<Health> {
        let (streak, threshold, next) = if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            (self.successes, self.rise, Health::Up)
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            (self.failures, self.fall, Health::Down)
        };
        if streak >= threshold && self.state != next {
            self.state = next;
            return Some(next);
        }
        None
    }

    pub fn state(&self) -> Health {
        self.state
    }

    pub fn successes(&self) -> u32 {
        self.successes
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// A cloneable handle on the latest health of every host (for status and metrics).
#[derive(Clone, Debug, Default)]
pub struct HealthStatus(Arc<RwLock<Vec<HostHealth>>>);

impl HealthStatus {
    /// A copy of every host's latest health, indexed by [`HostId`].
    pub fn snapshot(&self) -> Vec<HostHealth> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn with<R>(&self, f: impl FnOnce(&mut Vec<HostHealth>) -> R) -> R {
        f(&mut self.0.write().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The running checks: one task per host.
#[derive(Debug)]
pub struct HealthChecker {
    /// Index = host id; the host each task was started for.
    tasks: Vec<(Host, JoinHandle<()>)>,
    status: HealthStatus,
    events: mpsc::Sender<HealthEvent>,
    shutdown: watch::Receiver<bool>,
    /// What the probes of all hosts share (the ICMP socket).
    probes: probe::Shared,
}

impl HealthChecker {
    /// Starts checking every host; must be called inside a tokio runtime. Changes are
    /// sent on `events`. The tasks end when `shutdown` becomes `true` or its sender is
    /// dropped, when `events` is closed, or when the checker is dropped or stopped.
    pub fn spawn(
        hosts: &[Host],
        events: mpsc::Sender<HealthEvent>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let status = HealthStatus::default();
        status.with(|all| *all = hosts.iter().map(HostHealth::new).collect());
        let mut checker = Self {
            tasks: Vec::new(),
            status,
            events,
            shutdown,
            probes: probe::Shared::default(),
        };
        checker.tasks = hosts
            .iter()
            .enumerate()
            .map(|(index, host)| (host.clone(), checker.start(HostId::new(index), host)))
            .collect();
        checker
    }

    /// A copy of every host's latest health.
    pub fn snapshot(&self) -> Vec<HostHealth> {
        self.status.snapshot()
    }

    /// A handle that reads the same health as [`HealthChecker::snapshot`].
    pub fn status(&self) -> HealthStatus {
        self.status.clone()
    }

    /// Applies a new host list (a configuration reload): a host whose name, address
    /// and check are unchanged at the same index keeps its task and state; any other
    /// is stopped, and restarted from unknown if it still exists. Returns the hosts
    /// that were (re)started. Old tasks have ended when this returns, so they send no
    /// event after it.
    pub async fn update(&mut self, hosts: &[Host]) -> Vec<HostId> {
        let same = |old: &Host, new: &Host| {
            old.name == new.name && old.address == new.address && old.health == new.health
        };
        let mut restarted = Vec::new();
        let old_tasks = std::mem::take(&mut self.tasks);
        let mut old_tasks = old_tasks.into_iter();
        for (index, new) in hosts.iter().enumerate() {
            match old_tasks.next() {
                Some((old, handle)) if same(&old, new) => {
                    self.tasks.push((old, handle));
                    continue;
                }
                Some((_, handle)) => stop_task(handle).await,
                None => {}
            }
            self.status.with(|all| match all.get_mut(index) {
                Some(slot) => *slot = HostHealth::new(new),
                None => all.push(HostHealth::new(new)),
            });
            let handle = self.start(HostId::new(index), new);
            self.tasks.push((new.clone(), handle));
            restarted.push(HostId::new(index));
        }
        for (_, handle) in old_tasks {
            stop_task(handle).await;
        }
        self.status.with(|all| all.truncate(hosts.len()));
        restarted
    }

    /// Stops every task and waits until they have ended.
    pub async fn stop(mut self) {
        for (_, handle) in std::mem::take(&mut self.tasks) {
            stop_task(handle).await;
        }
    }

    fn start(&self, id: HostId, host: &Host) -> JoinHandle<()> {
        let task = HostTask {
            id,
            prober: probe::Prober::new(host.address, &host.health, &self.probes),
            host: host.clone(),
            status: self.status.clone(),
            events: self.events.clone(),
        };
        let mut shutdown = self.shutdown.clone();
        let name = host.name.clone();
        tokio::spawn(async move {
            tokio::select! {
                // `wait_for` fails when the sender is gone: that is a shutdown too.
                _ = shutdown.wait_for(|&stop| stop) => {
                    debug!(host = %name, "health check stopped");
                }
                () = task.run() => {}
            }
        })
    }
}

impl Drop for HealthChecker {
    fn drop(&mut self) {
        for (_, handle) in &self.tasks {
            handle.abort();
        }
    }
}

async fn stop_task(handle: JoinHandle<()>) {
    handle.abort();
    // Cancelled or already finished; a panic in a probe task is not ours to re-raise.
    let _ended = handle.await;
}

struct HostTask {
    id: HostId,
    prober: probe::Prober,
    host: Host,
    status: HealthStatus,
    events: mpsc::Sender<HealthEvent>,
}

impl HostTask {
    async fn run(self) {
        let Self {
            id,
            mut prober,
            host,
            status,
            events,
        } = self;
        let check = &host.health;
        let mut interval = tokio::time::interval(Duration::from_millis(check.interval_ms.max(1)));
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut hysteresis = Hysteresis::new(check.rise, check.fall);
        let mut streak_start = Instant::now();
        loop {
            interval.tick().await;
            let started = Instant::now();
            let result = prober.probe().await;
            let old = hysteresis.state();
            let change = hysteresis.record(result.is_ok());
            if hysteresis.successes() == 1 || hysteresis.failures() == 1 {
                streak_start = started;
            }
            let at = Instant::now();
            let error = match &result {
                Ok(rtt) => {
                    trace!(host = %host.name, ?rtt, "probe ok");
                    None
                }
                Err(err) => {
                    let reason = err.reason();
                    debug!(host = %host.name, %reason, "probe failed");
                    Some(reason)
                }
            };
            status.with(|all| {
                let Some(slot) = all.get_mut(id.index()) else {
                    return;
                };
                slot.state = hysteresis.state();
                slot.successes = hysteresis.successes();
                slot.failures = hysteresis.failures();
                slot.last_probe = Some(started);
                if let Ok(rtt) = result {
                    slot.last_rtt = Some(rtt);
                }
                if error.is_some() {
                    slot.last_error.clone_from(&error);
                }
                if change.is_some() {
                    slot.changed_at = Some(at);
                }
            });
            let Some(state) = change else {
                continue;
            };
            let reason = error.unwrap_or_else(|| {
                format!("{} consecutive successful probes", hysteresis.successes())
            });
            let detected_in = at - streak_start;
            debug!(host = %host.name, %state, %reason, ?detected_in, "host health changed");
            let event = HealthEvent {
                host: id,
                state,
                old,
                at,
                detected_in,
                reason,
            };
            if events.send(event).await.is_err() {
                debug!(host = %host.name, "health event receiver closed; stopping checks");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{probe::tests::*, *};
    use crate::model::HealthCheck;

    #[test]
    fn first_result_decides_nothing() {
        for ok in [true, false] {
            let mut h = Hysteresis::new(2, 3);
            assert_eq!(h.record(ok), None);
            assert_eq!(h.state(), Health::Unknown);
        }
    }

    #[test]
    fn rise_and_fall_count_consecutive_results() {
        let mut h = Hysteresis::new(2, 3);
        assert_eq!(h.record(true), None);
        assert_eq!(h.record(true), Some(Health::Up));
        assert_eq!(h.record(true), None, "already up");
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(false), None);
        assert_eq!((h.failures(), h.state()), (2, Health::Up));
        assert_eq!(h.record(false), Some(Health::Down));
        assert_eq!(h.record(false), None, "already down");
        assert_eq!(h.record(true), None);
        assert_eq!(h.record(true), Some(Health::Up));

        let mut from_unknown = Hysteresis::new(5, 3);
        assert_eq!(from_unknown.record(false), None);
        assert_eq!(from_unknown.record(false), None);
        assert_eq!(from_unknown.record(false), Some(Health::Down));
    }

    #[test]
    fn flapping_never_crosses_a_threshold() {
        for start in [None, Some(true), Some(false)] {
            let mut h = Hysteresis::new(2, 2);
            if let Some(ok) = start {
                h.record(ok);
                h.record(ok);
            }
            let before = h.state();
            for i in 0..100 {
                assert_eq!(h.record(i % 2 == 0), None, "flap {i} from {before:?}");
            }
            assert_eq!(h.state(), before);
        }
    }

    #[test]
    fn rise_and_fall_of_one_decide_at_once() {
        let mut h = Hysteresis::new(1, 1);
        assert_eq!(h.record(false), Some(Health::Down));
        assert_eq!(h.record(true), Some(Health::Up));
    }

    fn host(name: &str, port: u16, interval_ms: u64, timeout_ms: u64) -> Host {
        Host {
            name: name.into(),
            address: Ipv4Addr::LOCALHOST,
            mac: None,
            health: HealthCheck {
                interval_ms,
                fall: 3,
                rise: 2,
                ..check(CheckKind::Http, port, timeout_ms)
            },
        }
    }

    async fn next_event(events: &mut mpsc::Receiver<HealthEvent>) -> HealthEvent {
        tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("an event within 5 s")
            .expect("checker alive")
    }

    /// Waits for Up, breaks the server with `fail`, and asserts Down comes in time.
    async fn detect_failure(name: &str, fail: impl AsyncFnOnce(TestServer), want: &str) {
        let (interval_ms, timeout_ms, margin_ms) = (20, 20, 200);
        let server = TestServer::start(Reply::Status(200)).await;
        let hosts = [host(name, server.port, interval_ms, timeout_ms)];
        let (events_tx, mut events) = mpsc::channel(8);
        let (_shutdown_tx, shutdown) = watch::channel(false);
        let checker = HealthChecker::spawn(&hosts, events_tx, shutdown);

        let up = next_event(&mut events).await;
        assert_eq!((up.host, up.state), (HostId::new(0), Health::Up), "{up:?}");
        assert_eq!(up.old, Health::Unknown, "{up:?}");
        let broken = Instant::now();
        fail(server).await;
        let down = next_event(&mut events).await;
        let measured = down.at - broken;
        let bound = Duration::from_millis(3 * interval_ms + timeout_ms + margin_ms);
        println!(
            "{name}: down {measured:?} after the failure (streak {:?}, bound {bound:?}): {}",
            down.detected_in, down.reason
        );
        assert_eq!(down.state, Health::Down, "{down:?}");
        assert!(down.reason.contains(want), "{down:?}");
        assert!(
            measured <= bound,
            "detected in {measured:?}, bound {bound:?}"
        );
        let status = &checker.snapshot()[0];
        assert_eq!(status.state, Health::Down);
        assert!(status.failures >= 3, "{status:?}");
        assert!(status.last_rtt.is_some(), "{status:?}");
        checker.stop().await;
    }

    #[tokio::test]
    async fn detects_a_dead_server() {
        detect_failure(
            "dead",
            async |server| server.stop().await,
            "connection refused",
        )
        .await;
    }

    #[tokio::test]
    async fn detects_a_hung_server() {
        let hang = async |server: TestServer| {
            server.set(Reply::Hang);
            // Kept running until the end of the test; dropping it would refuse instead.
            std::mem::forget(server);
        };
        detect_failure("hung", hang, "timeout after 20 ms").await;
    }

    #[tokio::test]
    async fn checks_hosts_concurrently_and_restarts_only_changed_ones() {
        let good = TestServer::start(Reply::Status(200)).await;
        let bad = TestServer::start(Reply::Status(503)).await;
        let mut hosts = vec![
            host("good", good.port, 20, 50),
            host("bad", bad.port, 20, 50),
        ];
        let (events_tx, mut events) = mpsc::channel(8);
        let (shutdown_tx, shutdown) = watch::channel(false);
        let mut checker = HealthChecker::spawn(&hosts, events_tx, shutdown);

        let mut seen = [next_event(&mut events).await, next_event(&mut events).await];
        seen.sort_by_key(|event| event.host);
        assert_eq!(
            (seen[0].host, seen[0].state),
            (HostId::new(0), Health::Up),
            "{seen:?}"
        );
        assert_eq!(
            (seen[1].host, seen[1].state, seen[1].reason.as_str()),
            (HostId::new(1), Health::Down, "http status 503")
        );

        hosts[1].health.expect_status = 503;
        assert_eq!(checker.update(&hosts).await, vec![HostId::new(1)]);
        assert_eq!(
            checker.snapshot()[1].state,
            Health::Unknown,
            "restarted from unknown"
        );
        assert_eq!(checker.snapshot()[0].state, Health::Up, "kept");
        let up = next_event(&mut events).await;
        assert_eq!((up.host, up.state), (HostId::new(1), Health::Up), "{up:?}");

        assert_eq!(checker.update(&hosts[..1]).await, Vec::<HostId>::new());
        assert_eq!(checker.snapshot().len(), 1);

        shutdown_tx.send(true).expect("checker listens");
        tokio::time::timeout(Duration::from_secs(5), async {
            while !checker.tasks.iter().all(|(_, task)| task.is_finished()) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("every task ends on shutdown");
    }
}
