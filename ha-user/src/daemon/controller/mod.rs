//! The controller: what it owns and its main loop. Health events, neighbour events,
//! changes of the LAN interface and of the kernel routes ([`lan`]), admin commands,
//! policy timers and configuration reloads all arrive here, one at a time. Every ownership change goes through
//! [`apply`], in the same order; [`reload`] is SIGHUP, [`requests`] and [`report`]
//! answer the control socket; [`affinity`] keeps established flows with their hosts
//! across moves, with the [`sweep`] of the flow table and graceful [`drain`]s; [`vip`]
//! hands the VIP checks their plan after every event and applies their verdicts.

mod affinity;
mod apply;
mod drain;
pub mod fast_path;
mod lan;
mod reload;
mod report;
mod requests;
mod sweep;
mod vip;

pub use affinity::Affinity;
pub use apply::{Steering, steering_of};
pub use drain::SavedState;
pub use lan::LanState;
pub use requests::{RequestError, decide as decide_request};

use std::{
    path::PathBuf,
    time::{Duration, SystemTime},
};

use rtnetlink::Handle;
use tokio::{
    sync::{mpsc, watch},
    time::{Instant, sleep_until},
};
use tracing::{info, warn};

use crate::{
    config::Config,
    daemon::{
        events::EventBus,
        metrics::{Metrics, Names},
        route_record::Recorder,
        server::Command,
    },
    health::{CheckEvent, HealthChecker, HealthEvent},
    kernel::{
        conntrack::keeper,
        datapath::{self, Maps},
        forwarding::{Assessment, Facts},
        lan::LanEvent,
        neigh::{self, NeighEvent},
        netdev::Interface,
    },
    model::{Health, HostId, Mac, Reason, XdpMode},
    policy::Policy,
    proto::Event,
};

/// How a prefix came to be where it is: kept for `status`.
#[derive(Clone, Debug)]
pub struct LastChange {
    pub at: SystemTime,
    pub old: Option<HostId>,
    pub new: Option<HostId>,
    pub reason: Reason,
    /// From the first failed probe to the decision, when a health change caused it.
    pub detection: Option<Duration>,
    /// From the decision to the data-path map written.
    pub switch: Duration,
}

/// Everything the loop owns.
pub struct Controller {
    pub(super) config: Config,
    /// The file the configuration came from and SIGHUP re-reads; `None` when it was
    /// adopted from the kernel's routes.
    pub(super) config_path: Option<PathBuf>,
    pub(super) lan: Interface,
    /// Whether the fast path steers on it ([`lan`]).
    pub(super) lan_state: LanState,
    /// Whether it is administratively up (routes through it can be installed).
    pub(super) lan_up: bool,
    /// How the program is attached, and whether it logs packets: to attach it again
    /// to a LAN interface created anew.
    pub(super) xdp_mode: XdpMode,
    pub(super) log_packets: bool,
    /// When to try again to put back kernel routes a write failed for.
    pub(super) route_retry: Option<Instant>,
    /// The routes ha may have installed: covered before routes are added, trimmed
    /// after they are removed ([`crate::daemon::route_record`]).
    pub(super) route_record: Recorder,
    pub(super) ingress: Vec<Interface>,
    pub(super) maps: Maps,
    pub(super) policy: Policy,
    pub(super) netlink: Handle,
    /// Per host: configured, else learned from the neighbour table.
    pub(super) macs: Vec<Option<Mac>>,
    /// Boxed: one word per prefix that never changed (most of them, at 65,536).
    pub(super) last_change: Vec<Option<Box<LastChange>>>,
    pub(super) health: HealthChecker,
    pub(super) metrics: Metrics,
    pub(super) events: EventBus,
    /// How each interface treats the router's forwarding, as last written into the
    /// data path (see [`fast_path`]).
    pub(super) fast_path: Option<Assessment>,
    /// What the conntrack keeper does ([`crate::kernel::conntrack::keeper`]), from the
    /// assessment.
    pub(super) conntrack: watch::Sender<Option<keeper::Policy>>,
    /// Moves in progress, hosts keeping their flows, drains, the flow table's sweep.
    pub(super) affinity: Affinity,
}

/// How often the loop checks that its map pins are still there.
const PIN_CHECK: Duration = Duration::from_millis(250);

/// Why the loop ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Asked to stop (Ctrl-C, SIGTERM).
    Shutdown,
    /// Its pins were removed from under it (what is missing): nothing it writes
    /// reaches a map anyone else can find, and a restart would not find them.
    PinsRemoved(String),
}

/// The channels the loop listens on.
pub struct Inputs {
    /// Host health and VIP verdicts.
    pub health: mpsc::Receiver<CheckEvent>,
    pub neigh: mpsc::Receiver<NeighEvent>,
    /// The LAN interface (MTU, up or down, gone, back) and our deleted routes.
    pub lan: mpsc::Receiver<LanEvent>,
    pub commands: mpsc::Receiver<Command>,
    pub reload: mpsc::Receiver<()>,
    /// The router's forwarding, looked at again ([`fast_path::watch`]).
    pub forwarding: mpsc::Receiver<Facts>,
}

impl Controller {
    /// Runs until `shutdown` resolves, or until its pins are found removed (checked
    /// every [`PIN_CHECK`], between events: no change is left half applied).
    pub async fn run(
        mut self,
        mut inputs: Inputs,
        shutdown: impl Future<Output = ()>,
    ) -> (Controller, Ended) {
        tokio::pin!(shutdown);
        let mut pin_check = tokio::time::interval(PIN_CHECK);
        pin_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        self.health.set_lan(&self.lan.name);
        self.metrics.set_probes(self.health.outcomes());
        loop {
            // After every event: holders, health and MACs decide what the VIP checks
            // ask (the same plan again costs a comparison).
            self.plan_vips();
            let deadline = earliest(
                earliest(self.policy.next_deadline(), self.next_drain_deadline()),
                self.route_retry,
            );
            tokio::select! {
                () = &mut shutdown => return (self, Ended::Shutdown),
                _ = pin_check.tick() => {
                    if let Some(missing) = datapath::missing_pins(&self.config.pin_dir) {
                        return (self, Ended::PinsRemoved(missing));
                    }
                }
                Some(event) = inputs.health.recv() => match event {
                    CheckEvent::Host(event) => self.on_health(event).await,
                    CheckEvent::Vip(event) => self.on_vip(event).await,
                },
                Some(event) = inputs.neigh.recv() => self.on_neighbour(event),
                Some(facts) = inputs.forwarding.recv() => self.on_forwarding(&facts),
                Some(event) = inputs.lan.recv() => self.on_lan(event).await,
                Some(report) = self.affinity.reports.recv() => self.on_sweep(report).await,
                Some(command) = inputs.commands.recv() => {
                    let Command { request, reply } = command;
                    let response = requests::answer(&mut self, request).await;
                    // The client may have gone; the change is applied either way.
                    let _ = reply.send(response);
                }
                Some(()) = inputs.reload.recv() => {
                    let event = match self.on_reload().await {
                        Ok(reloaded) => Event::ReloadApplied {
                            hosts: self.config.hosts.len(),
                            prefixes: self.config.prefixes.len(),
                            restarted_checks: reloaded.restarted_checks,
                            stale: reloaded.stale,
                        },
                        Err(refused) => Event::ReloadRefused { why: refused.to_string() },
                    };
                    self.events.publish(event);
                }
                () = sleep_or_never(deadline) => {
                    let changes = self.policy.tick(Instant::now());
                    self.apply(changes, None, Instant::now()).await;
                    self.end_due_drains();
                    if self.route_retry.is_some_and(|at| at <= Instant::now()) {
                        self.restore_routes("retrying a failed route write").await;
                    }
                }
            }
        }
    }

    async fn on_health(&mut self, event: HealthEvent) {
        let HealthEvent {
            host,
            state,
            old,
            at,
            detected_in,
            reason,
            probes,
        } = event;
        let name = self.host_name(Some(host));
        info!(host = %name, state = %state, detected_ms = ms(detected_in), reason = ?reason, "health changed");
        self.metrics.host_health(&name, state == Health::Up);
        self.events.publish(Event::HealthChanged {
            host: name,
            old,
            new: state,
            reason,
            detection_ms: ms(detected_in),
            probes: probes.iter().map(vip::timing).collect(),
        });
        match self.policy.host_health(host, state, Instant::now()) {
            Ok(changes) => self.apply(changes, Some(detected_in), at).await,
            Err(err) => return warn!("health event for an unknown host: {err}"),
        }
        // After the prefixes moved: flows that stayed with the host now follow them.
        if let Err(err) = self.write_host_entry(host) {
            warn!("{err:#}");
        }
    }

    fn on_neighbour(&mut self, event: NeighEvent) {
        let NeighEvent { addr, ifindex, mac } = event;
        if ifindex != self.lan.index {
            return;
        }
        let Some((host, configured)) = self.config.host_ids().find(|(_, h)| h.address == addr)
        else {
            return;
        };
        if configured.mac.is_some() {
            return; // configured MACs win
        }
        // A lost entry (FAILED, deleted) keeps the last known MAC: hosts keep their
        // address; the health check decides whether the host is usable.
        let Some(mac) = mac else { return };
        let Some(known) = self.macs.get_mut(host.index()) else {
            return;
        };
        if *known == Some(mac) {
            return;
        }
        let old = known.replace(mac);
        match self.write_host_entry(host) {
            Ok(()) => {
                let name = self.config.host(host).name.clone();
                info!(host = %name, %mac, old = ?old.map(|m| m.to_string()), "MAC learned");
                self.events.publish(Event::MacLearned {
                    host: name,
                    mac,
                    old,
                });
            }
            Err(err) => warn!("{err:#}"),
        }
    }

    /// The LAN interface's MTU changed: every host entry carries the egress MTU (a
    /// longer datagram passes to the kernel), so every one is rewritten.
    fn on_lan_mtu(&mut self, mtu: u32) {
        if mtu == self.lan.mtu {
            return;
        }
        let old = std::mem::replace(&mut self.lan.mtu, mtu);
        let mut written = 0;
        for host in HostId::all(self.macs.len()) {
            match self.write_host_entry(host) {
                Ok(()) => written += 1,
                Err(err) => warn!("{err:#}"),
            }
        }
        info!(iface = %self.lan.name, old, new = mtu, hosts = written, "LAN MTU changed; host entries rewritten");
    }

    /// The name of `host`, if any.
    pub(super) fn name_of(&self, host: Option<HostId>) -> Option<String> {
        host.map(|h| self.host_name(Some(h)))
    }

    /// The name of `host`; `-` for none.
    pub(super) fn host_name(&self, host: Option<HostId>) -> String {
        match host {
            Some(h) => self
                .config
                .hosts
                .get(h.index())
                .map_or_else(|| h.to_string(), |h| h.name.clone()),
            None => "-".to_owned(),
        }
    }

    /// Labels for the metrics' map counters, by data-path id; none without a metrics
    /// address (nothing reads them, and 65,536 prefix labels are megabytes).
    pub(super) fn metric_names(&self) -> Names {
        if self.config.metrics.is_none() {
            return Names::default();
        }
        Names {
            prefixes: self
                .config
                .prefixes
                .iter()
                .map(|p| p.cidr.to_string())
                .collect(),
            hosts: self.config.hosts.iter().map(|h| h.name.clone()).collect(),
        }
    }

    /// Makes the kernel resolve every host whose MAC is still unknown.
    pub(super) async fn resolve_missing_macs(&self) {
        for (host, mac) in self.config.hosts.iter().zip(&self.macs) {
            if mac.is_none()
                && let Err(err) = neigh::resolve(&self.netlink, host.address, self.lan.index).await
            {
                warn!("{err:#}");
            }
        }
    }
}

/// Milliseconds, to the microsecond (so logs show `20.911`, not float noise).
pub(super) fn ms(duration: Duration) -> f64 {
    duration.as_micros() as f64 / 1e3
}

/// The earlier of two deadlines.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

async fn sleep_or_never(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
