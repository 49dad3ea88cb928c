//! Health checks of the web servers, and of the VIPs they serve.
//!
//! [`HealthChecker::spawn`] starts one task per host on the checks' own thread (a
//! current-thread runtime, see [`runtime`]). A task probes its host's `address`
//! every `interval_ms` — a TCP connect, an HTTP GET or an ICMP echo, each bounded by
//! `timeout_ms` — one probe at a time: a slow probe delays the next tick
//! ([`MissedTickBehavior::Delay`]), probes never pile up. Every probe ends in a
//! [`ProbeOutcome`] ([`outcome`]): only answered, refused and silent count, through a
//! [`Hysteresis`] — a host starts unknown, `rise` consecutive successes make it up
//! and `fall` consecutive failures make it down; a local failure (the controller was
//! late, no socket, the LAN interface down, no route) is counted apart and decides
//! nothing. Every change is sent as a [`CheckEvent::Host`] with the timings of the
//! probes that decided it.
//!
//! The VIP checks ([`vip`]) run on the same thread: the controller hands them a
//! [`VipPlan`] ([`HealthChecker::set_vip_plan`]), they send [`CheckEvent::Vip`].
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
//! A probe discarded as late adds one interval.

mod error;
mod http;
mod hysteresis;
mod icmp;
mod iface;
mod outcome;
mod probe;
mod runtime;
mod tcp;
pub mod vip;

use std::{
    collections::VecDeque,
    net::Ipv4Addr,
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};

pub use error::ProbeError;
pub use hysteresis::Hysteresis;
pub use outcome::Probe;
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
    time::{Instant, MissedTickBehavior},
};
use tracing::{debug, trace};
pub use vip::{PlanHost, PlanPrefix, VipEvent, VipPair, VipPlan, VipSnapshot};

pub use crate::model::Health;
use crate::model::{CheckKind, Host, HostId, ProbeOutcome};

/// The probes kept with a host's state: the streak behind its next change.
const STREAK_KEPT: usize = 16;

/// What the checks tell the controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckEvent {
    /// A host's health changed.
    Host(HealthEvent),
    /// A host's verdict on a prefix's VIP changed.
    Vip(VipEvent),
}

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
    /// The probes since the streak began (discarded ones included), oldest first, at
    /// most [`STREAK_KEPT`]: what decided, with its timings.
    pub probes: Vec<Probe>,
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
    /// Probes of its own address since its check started, by outcome
    /// ([`ProbeOutcome::index`]).
    pub outcomes: [u64; ProbeOutcome::ALL.len()],
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
            outcomes: [0; ProbeOutcome::ALL.len()],
        }
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

/// Probe counts per host, by outcome ([`ProbeOutcome::index`]).
pub type OutcomeCounts = [u64; ProbeOutcome::ALL.len()];

/// A cloneable handle on the probe counts of every host.
#[derive(Clone, Debug)]
pub struct Outcomes {
    status: HealthStatus,
    shelf: vip::Shelf,
}

impl Outcomes {
    /// Per host (by [`HostId`]): its name, the counts of its own probes and of the
    /// VIP probes through it.
    pub fn read(&self) -> Vec<(String, OutcomeCounts, OutcomeCounts)> {
        let vips = self.shelf.outcomes();
        self.status
            .snapshot()
            .into_iter()
            .enumerate()
            .map(|(index, host)| {
                let vip = vips.get(index).copied().unwrap_or_default();
                (host.name, host.outcomes, vip)
            })
            .collect()
    }
}

/// The VIP checks' side of the checker.
#[derive(Debug)]
struct Vips {
    plan: watch::Sender<Arc<VipPlan>>,
    hosts: watch::Sender<(u64, Arc<Vec<Host>>)>,
    shelf: vip::Shelf,
    task: JoinHandle<()>,
}

/// The running checks: one task per host, and the VIP checks.
#[derive(Debug)]
pub struct HealthChecker {
    /// Index = host id; the host each task was started for.
    tasks: Vec<(Host, JoinHandle<()>)>,
    status: HealthStatus,
    events: mpsc::Sender<CheckEvent>,
    shutdown: watch::Receiver<bool>,
    /// What the probes of all hosts share (the ICMP sockets, the LAN interface).
    probes: probe::Shared,
    vips: Vips,
    /// Dropped last: its thread ends with it.
    runtime: runtime::Runtime,
}

impl HealthChecker {
    /// Starts checking every host; must be called inside a tokio runtime. Changes are
    /// sent on `events`. The tasks end when `shutdown` becomes `true` or its sender is
    /// dropped, when `events` is closed, or when the checker is dropped or stopped.
    /// The VIP checks wait for their first plan.
    pub fn spawn(
        hosts: &[Host],
        events: mpsc::Sender<CheckEvent>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let runtime = runtime::Runtime::start();
        let status = HealthStatus::default();
        status.with(|all| *all = hosts.iter().map(HostHealth::new).collect());
        let probes = probe::Shared::default();
        let (plan, plan_rx) = watch::channel(Arc::new(VipPlan::default()));
        let (hosts_tx, hosts_rx) = watch::channel((0, Arc::new(hosts.to_vec())));
        let shelf = vip::Shelf::default();
        let scheduler = vip::Scheduler {
            plan: plan_rx,
            hosts: hosts_rx,
            shelf: shelf.clone(),
            shared: probes.clone(),
            events: events.clone(),
        };
        let task = spawn_until(&runtime, shutdown.clone(), "VIP checks", scheduler.run());
        let mut checker = Self {
            tasks: Vec::new(),
            status,
            events,
            shutdown,
            probes,
            vips: Vips {
                plan,
                hosts: hosts_tx,
                shelf,
                task,
            },
            runtime,
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

    /// Failures while the LAN interface `name` is down (or without carrier) are the
    /// interface's, not the hosts'.
    pub fn set_lan(&self, name: &str) {
        self.probes.lan.set(name);
    }

    /// What the VIP checks are to ask from now on; the same plan again changes
    /// nothing.
    pub fn set_vip_plan(&self, plan: VipPlan) {
        self.vips.plan.send_if_modified(|current| {
            if **current == plan {
                return false;
            }
            *current = Arc::new(plan);
            true
        });
    }

    /// What the VIP checks know.
    pub fn vip_snapshot(&self) -> VipSnapshot {
        self.vips.shelf.snapshot()
    }

    /// A handle on every host's probe counts (for metrics, read at scrape time).
    pub fn outcomes(&self) -> Outcomes {
        Outcomes {
            status: self.status.clone(),
            shelf: self.vips.shelf.clone(),
        }
    }

    /// Applies a new host list (a configuration reload): a host whose name, address
    /// and check are unchanged at the same index keeps its task and state; any other
    /// is stopped, and restarted from unknown if it still exists. Returns the hosts
    /// that were (re)started. Old tasks have ended when this returns, so they send no
    /// event after it. The VIP verdicts start afresh (prefix and host ids may have
    /// moved).
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
        self.vips.hosts.send_modify(|(generation, current)| {
            *generation += 1;
            *current = Arc::new(hosts.to_vec());
        });
        restarted
    }

    /// Stops every task and waits until they have ended.
    pub async fn stop(mut self) {
        for (_, handle) in std::mem::take(&mut self.tasks) {
            stop_task(handle).await;
        }
        self.vips.task.abort();
        let _ended = (&mut self.vips.task).await;
    }

    fn start(&self, id: HostId, host: &Host) -> JoinHandle<()> {
        let task = HostTask {
            id,
            prober: probe::Prober::new(host.address, &host.health, &self.probes),
            host: host.clone(),
            status: self.status.clone(),
            events: self.events.clone(),
        };
        spawn_until(&self.runtime, self.shutdown.clone(), &host.name, task.run())
    }

    #[cfg(test)]
    fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime.handle
    }
}

/// Runs `work` on the checks' thread until it ends or `shutdown` says stop.
fn spawn_until(
    runtime: &runtime::Runtime,
    mut shutdown: watch::Receiver<bool>,
    name: &str,
    work: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    let name = name.to_owned();
    runtime.handle.spawn(async move {
        tokio::select! {
            // `wait_for` fails when the sender is gone: that is a shutdown too.
            _ = shutdown.wait_for(|&stop| stop) => {
                debug!(check = %name, "health check stopped");
            }
            () = work => {}
        }
    })
}

impl Drop for HealthChecker {
    fn drop(&mut self) {
        for (_, handle) in &self.tasks {
            handle.abort();
        }
        self.vips.task.abort();
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
    events: mpsc::Sender<CheckEvent>,
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
        let mut streak: VecDeque<Probe> = VecDeque::with_capacity(STREAK_KEPT);
        loop {
            interval.tick().await;
            let probe = prober.probe().await;
            let old = hysteresis.state();
            let verdict = probe.outcome.verdict();
            let change = verdict.and_then(|ok| hysteresis.record(ok));
            if verdict.is_some() && (hysteresis.successes() == 1 || hysteresis.failures() == 1) {
                // A new streak starts with this probe.
                streak_start = probe.started;
                streak.clear();
            }
            if streak.len() == STREAK_KEPT {
                streak.pop_front();
            }
            streak.push_back(probe.clone());
            let at = Instant::now();
            match probe.outcome {
                ProbeOutcome::Answered => {
                    trace!(host = %host.name, rtt = ?probe.waited, "probe ok")
                }
                outcome => {
                    debug!(host = %host.name, %outcome, reason = probe.error.as_deref(), "probe failed");
                }
            }
            status.with(|all| {
                let Some(slot) = all.get_mut(id.index()) else {
                    return;
                };
                slot.state = hysteresis.state();
                slot.successes = hysteresis.successes();
                slot.failures = hysteresis.failures();
                slot.last_probe = Some(probe.started);
                slot.outcomes[probe.outcome.index()] += 1;
                if probe.outcome == ProbeOutcome::Answered {
                    slot.last_rtt = Some(probe.waited);
                }
                if probe.error.is_some() {
                    slot.last_error.clone_from(&probe.error);
                }
                if change.is_some() {
                    slot.changed_at = Some(at);
                }
            });
            let Some(state) = change else {
                continue;
            };
            let reason = match state {
                Health::Down => probe.error.clone().unwrap_or_default(),
                _ => format!("{} consecutive successful probes", hysteresis.successes()),
            };
            let detected_in = at - streak_start;
            debug!(host = %host.name, %state, %reason, ?detected_in, "host health changed");
            let event = HealthEvent {
                host: id,
                state,
                old,
                at,
                detected_in,
                reason,
                probes: streak.iter().cloned().collect(),
            };
            if events.send(CheckEvent::Host(event)).await.is_err() {
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

    async fn next_event(events: &mut mpsc::Receiver<CheckEvent>) -> HealthEvent {
        loop {
            let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
                .await
                .expect("an event within 5 s")
                .expect("checker alive");
            if let CheckEvent::Host(event) = event {
                return event;
            }
        }
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

    /// Blocks the checks' thread for `stall` again and again, yielding in between: the
    /// controller not scheduled while its probes run.
    fn stall(checker: &HealthChecker, stall: Duration) -> JoinHandle<()> {
        checker.runtime().spawn(async move {
            loop {
                std::thread::sleep(stall);
                tokio::task::yield_now().await;
            }
        })
    }

    #[tokio::test]
    async fn a_stalled_controller_does_not_make_a_host_down() {
        for (what, reply) in [
            ("kept connection", Reply::Status(200)),
            ("new connection each probe", Reply::Close(200)),
        ] {
            let server = TestServer::start(reply).await;
            let hosts = [host(what, server.port, 10, 5)];
            let (events_tx, mut events) = mpsc::channel(8);
            let (_shutdown_tx, shutdown) = watch::channel(false);
            let checker = HealthChecker::spawn(&hosts, events_tx, shutdown);
            let up = next_event(&mut events).await;
            assert_eq!(up.state, Health::Up, "{what}: {up:?}");
            let before = checker.snapshot()[0].outcomes;
            let stalls = stall(&checker, Duration::from_millis(20));
            let event = tokio::time::timeout(Duration::from_secs(1), events.recv()).await;
            stalls.abort();
            let after = checker.snapshot()[0].clone();
            let of =
                |outcome: ProbeOutcome| after.outcomes[outcome.index()] - before[outcome.index()];
            println!(
                "{what}: under stalls answered {}, late {}, silent {}",
                of(ProbeOutcome::Answered),
                of(ProbeOutcome::Late),
                of(ProbeOutcome::Silent)
            );
            assert!(
                event.is_err(),
                "{what}: no health change expected: {event:?}"
            );
            assert_eq!(after.state, Health::Up, "{what}: {after:?}");
            assert_eq!(of(ProbeOutcome::Silent), 0, "{what}: {after:?}");
            if matches!(reply, Reply::Close(_)) {
                // Each probe connects, the stall holds the request back, its timeout
                // passes meanwhile: discarded, where it would have been silent.
                assert!(of(ProbeOutcome::Late) > 0, "{what}: {after:?}");
            } else {
                // The request left at once; the answer waits in the socket, and tokio
                // polls the probe before its timer: answered.
                assert!(of(ProbeOutcome::Answered) > 0, "{what}: {after:?}");
            }
            checker.stop().await;
        }
    }
}
