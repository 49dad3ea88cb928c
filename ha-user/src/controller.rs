//! The controller's main loop: health events, neighbour events, admin commands, policy
//! timers and configuration reloads all arrive here, one at a time, and every
//! ownership change is applied in the same order:
//!
//! 1. the data-path map (one LPM entry per prefix, every prefix of a batch first:
//!    traffic moves in microseconds);
//! 2. the kernel static routes (the slow path agrees with the fast path);
//! 3. one structured log line per prefix (prefix, old → new owner, reason, detection
//!    and switch time) and the metrics.
//!
//! Agreement rule, checked by the tests: a prefix with an owner has its map entry and
//! its kernel route pointing at that owner; a prefix without one (every candidate
//! down) has no map entry and its route points at the configured owner.

mod report;

use std::{
    path::PathBuf,
    time::{Duration, SystemTime},
};

use ha_common::PrefixEntry;
use rtnetlink::Handle;
use tokio::{
    sync::mpsc,
    time::{Instant, sleep_until},
};
use tracing::{debug, info, warn};

use crate::{
    config::{Config, Mac},
    control::{Command, Request, Response},
    datapath::Maps,
    health::{self, HealthChecker, HealthEvent},
    metrics::{Metrics, Names},
    neigh::{self, NeighEvent},
    netdev::Interface,
    policy::{self, Change, Policy, Reason},
    routes, state, steering,
};

/// How a prefix came to be where it is: kept for `status` and the log.
#[derive(Clone, Debug)]
pub struct LastChange {
    pub at: SystemTime,
    pub old: Option<usize>,
    pub new: Option<usize>,
    pub reason: Reason,
    /// From the first failed probe to the decision, when a health change caused it.
    pub detection: Option<Duration>,
    /// From the decision to the data-path map written.
    pub switch: Duration,
}

/// Everything the loop owns.
pub struct Controller {
    pub(crate) config: Config,
    pub(crate) config_path: Option<PathBuf>,
    pub(crate) lan: Interface,
    pub(crate) ingress: Vec<Interface>,
    pub(crate) maps: Maps,
    pub(crate) policy: Policy,
    pub(crate) netlink: Handle,
    /// Per host: configured, else learned from the neighbour table.
    pub(crate) macs: Vec<Option<Mac>>,
    /// Boxed: one word per prefix that never changed (most of them, at 65,536).
    pub(crate) last_change: Vec<Option<Box<LastChange>>>,
    pub(crate) health: HealthChecker,
    pub(crate) metrics: Metrics,
}

/// The channels the loop listens on.
pub struct Inputs {
    pub health: mpsc::Receiver<HealthEvent>,
    pub neigh: mpsc::Receiver<NeighEvent>,
    pub commands: mpsc::Receiver<Command>,
    pub reload: mpsc::Receiver<()>,
}

impl Controller {
    /// Runs until `shutdown` resolves.
    pub async fn run(
        mut self,
        mut inputs: Inputs,
        shutdown: impl Future<Output = ()>,
    ) -> Controller {
        tokio::pin!(shutdown);
        loop {
            let deadline = self.policy.next_deadline();
            tokio::select! {
                () = &mut shutdown => return self,
                Some(event) = inputs.health.recv() => self.on_health(event).await,
                Some(event) = inputs.neigh.recv() => self.on_neighbour(event),
                Some(command) = inputs.commands.recv() => {
                    let Command { request, reply } = command;
                    let response = self.on_request(request).await;
                    // The client may have gone; the change is applied either way.
                    let _ = reply.send(response);
                }
                Some(()) = inputs.reload.recv() => self.on_reload().await,
                () = sleep_or_never(deadline) => {
                    let changes = self.policy.tick(Instant::now());
                    self.apply(changes, None, Instant::now()).await;
                }
            }
        }
    }

    async fn on_health(&mut self, event: HealthEvent) {
        let HealthEvent {
            host,
            state,
            at,
            detected_in,
            reason,
        } = event;
        let name = self.host_name(Some(host));
        info!(host = %name, state = %state, detected_ms = ms(detected_in), reason = ?reason, "health changed");
        self.metrics.host_health(&name, state == health::Health::Up);
        let health = match state {
            health::Health::Up => policy::Health::Up,
            health::Health::Down => policy::Health::Down,
        };
        match self.policy.host_health(host, health, Instant::now()) {
            Ok(changes) => self.apply(changes, Some(detected_in), at).await,
            Err(err) => return warn!("health event for an unknown host: {err}"),
        }
        // After the prefixes moved: flows that stayed with the host now follow them.
        if let Some(mac) = self.macs.get(host).copied() {
            let entry = steering::host_entry(mac, &self.lan, self.is_up(host));
            if let Err(err) = steering::write_host(&mut self.maps, host as u32, entry) {
                warn!("{err:#}");
            }
        }
    }

    /// Whether the health checks say host `id` is up.
    fn is_up(&self, id: usize) -> bool {
        self.policy.health(id) == Some(policy::Health::Up)
    }

    fn on_neighbour(&mut self, event: NeighEvent) {
        let NeighEvent { addr, ifindex, mac } = event;
        if ifindex != self.lan.index {
            return;
        }
        let Some(host) = self.config.hosts.iter().position(|h| h.address == addr) else {
            return;
        };
        if self.config.hosts[host].mac.is_some() {
            return; // configured MACs win
        }
        // A lost entry (FAILED, deleted) keeps the last known MAC: hosts keep their
        // address; the health check decides whether the host is usable.
        let Some(mac) = mac else { return };
        if self.macs[host] == Some(mac) {
            return;
        }
        let old = self.macs[host].replace(mac);
        let entry = steering::host_entry(Some(mac), &self.lan, self.is_up(host));
        match steering::write_host(&mut self.maps, host as u32, entry) {
            Ok(()) => {
                info!(host = %self.config.hosts[host].name, %mac, old = ?old.map(|m| m.to_string()), "MAC learned")
            }
            Err(err) => warn!("{err:#}"),
        }
    }

    /// Applies policy changes: map, then route, then log and metrics.
    pub(crate) async fn apply(
        &mut self,
        changes: Vec<Change>,
        detection: Option<Duration>,
        decided: Instant,
    ) {
        // 1. Every map entry of the batch first: traffic moves before anything slower.
        let mut switched = Vec::with_capacity(changes.len());
        for change in changes {
            let Some(configured) = self.config.prefixes.get(change.prefix) else {
                continue;
            };
            let cidr = configured.cidr;
            let map_result = match change.new {
                Some(host) => steering::write_prefix(
                    &mut self.maps,
                    cidr,
                    PrefixEntry::owned(host as u32, change.prefix as u32),
                ),
                None => steering::remove_prefix(&mut self.maps, cidr),
            };
            if let Err(err) = map_result {
                warn!("{cidr}: {err:#}");
            }
            switched.push((change, cidr, decided.elapsed()));
        }
        // 2. The kernel routes, all of the batch at once, then 3. the log lines and metrics.
        let routes: Vec<_> = switched
            .iter()
            .map(|(change, cidr, _)| {
                let gateway_host = change
                    .new
                    .unwrap_or(self.config.prefixes[change.prefix].owner);
                (*cidr, self.config.hosts[gateway_host].address)
            })
            .collect();
        let routed = routes::replace_each(&self.netlink, &routes, self.lan.index).await;
        for (((change, cidr, switch), (_, gateway)), routed) in
            switched.into_iter().zip(routes).zip(routed)
        {
            let Change {
                prefix,
                old,
                new,
                reason,
            } = change;
            if let Err(err) = routed {
                warn!("{cidr}: {err:#}");
            }
            info!(
                prefix = %cidr,
                old = %self.host_name(old),
                new = %self.host_name(new),
                reason = ?reason.to_string(),
                detection_ms = detection.map(ms),
                switch_us = switch.as_micros() as u64,
                route_via = %gateway,
                "owner changed"
            );
            self.metrics
                .ownership_change(&reason.to_string(), detection, switch);
            self.metrics.owner(
                &cidr.to_string(),
                old.and_then(|h| self.config.hosts.get(h))
                    .map(|h| h.name.as_str()),
                new.and_then(|h| self.config.hosts.get(h))
                    .map(|h| h.name.as_str()),
            );
            self.last_change[prefix] = Some(Box::new(LastChange {
                at: SystemTime::now(),
                old,
                new,
                reason,
                detection,
                switch,
            }));
        }
    }

    async fn on_request(&mut self, request: Request) -> Response {
        let now = Instant::now();
        let result = match request {
            Request::Status => return Response::Ok(report::status(self)),
            Request::Stats => return report::stats(self).map_or_else(|err| Response::Error(format!("{err:#}")), Response::Ok),
            Request::SetOwner { prefix, host, force } => {
                match (self.prefix_index(&prefix), self.host_index(&host)) {
                    (Err(err), _) | (_, Err(err)) => Err(err),
                    (Ok(p), Ok(h)) => self.policy.set_owner(p, h, force, now).map_err(|e| e.to_string()).map(|pinned| {
                        let note = match pinned.effect {
                            policy::PinEffect::Steered => "steered".to_owned(),
                            policy::PinEffect::Waiting { health, drained } => format!(
                                "pinned; {host} is {health}{}: the prefix moves once it is up for its failback delay",
                                if drained { " and drained" } else { "" }
                            ),
                            policy::PinEffect::Forced { health, .. } => format!("forced onto {host} ({health})"),
                        };
                        (pinned.changes, note)
                    }),
                }
            }
            Request::ClearOwner { prefix } => self
                .prefix_index(&prefix)
                .and_then(|p| self.policy.clear_owner(p, now).map_err(|e| e.to_string()))
                .map(|changes| (changes, "pin cleared".to_owned())),
            Request::Drain { host } => self
                .host_index(&host)
                .and_then(|h| self.policy.drain(h, now).map_err(|e| e.to_string()))
                .map(|changes| (changes, format!("{host} drained"))),
            Request::Undrain { host } => self
                .host_index(&host)
                .and_then(|h| self.policy.undrain(h, now).map_err(|e| e.to_string()))
                .map(|changes| (changes, format!("{host} undrained"))),
        };
        match result {
            Err(message) => Response::Error(message),
            Ok((changes, note)) => {
                let moved: Vec<serde_json::Value> = changes
                    .iter()
                    .map(|c| {
                        serde_json::json!({
                            "prefix": self.config.prefixes[c.prefix].cidr.to_string(),
                            "old": self.host_name(c.old),
                            "new": self.host_name(c.new),
                            "reason": c.reason.to_string(),
                        })
                    })
                    .collect();
                self.apply(changes, None, now).await;
                if let Err(err) = state::save(&self.config.state_file, &self.policy.admin_state()) {
                    warn!("{err:#}");
                    return Response::Error(format!(
                        "applied, but the admin state was not saved: {err:#}"
                    ));
                }
                Response::Ok(serde_json::json!({ "result": note, "changes": moved }))
            }
        }
    }

    async fn on_reload(&mut self) {
        let Some(path) = self.config_path.clone() else {
            warn!("SIGHUP ignored: running without a configuration file");
            return;
        };
        let new = match Config::load(&path) {
            Ok(new) => new,
            Err(err) => {
                warn!("reload refused, nothing changed:\n{err}");
                return;
            }
        };
        if let Err(message) = self.check_reload(&new) {
            warn!("reload refused, nothing changed: {message}");
            return;
        }
        self.reconfigure(new).await;
    }

    fn check_reload(&self, new: &Config) -> Result<(), String> {
        let fixed = |what: &str| format!("`{what}` cannot change while running; restart ha-user");
        if new.lan.as_ref().is_some_and(|lan| *lan != self.lan.name) {
            return Err(fixed("lan"));
        }
        let ingress: Vec<&str> = self.ingress.iter().map(|i| i.name.as_str()).collect();
        if new
            .ingress
            .iter()
            .filter(|i| **i != self.lan.name)
            .map(String::as_str)
            .ne(ingress.iter().copied())
        {
            return Err(fixed("ingress"));
        }
        let Config {
            xdp_mode,
            pin_dir,
            control_socket,
            state_file,
            metrics,
            ..
        } = &self.config;
        if new.xdp_mode != *xdp_mode
            || new.pin_dir != *pin_dir
            || new.control_socket != *control_socket
            || new.state_file != *state_file
            || new.metrics != *metrics
        {
            return Err(fixed(
                "xdp_mode, pin_dir, control_socket, state_file and metrics",
            ));
        }
        Ok(())
    }

    /// Applies a new, valid configuration: only the difference changes.
    async fn reconfigure(&mut self, new: Config) {
        let now = Instant::now();
        let applied = self.policy.reconfigure(&new, now);
        for stale in &applied.stale {
            warn!("after reload: {stale}");
        }
        let old = std::mem::replace(&mut self.config, new);
        let old_hosts = &old.hosts;
        // Host ids may have moved: rewrite the host table from the new order.
        self.macs = self
            .config
            .hosts
            .iter()
            .map(|h| {
                h.mac.or_else(|| {
                    old_hosts
                        .iter()
                        .position(|o| o.address == h.address)
                        .and_then(|i| self.macs.get(i).copied().flatten())
                })
            })
            .collect();
        let restarted = self.health.update(&self.config.hosts).await;
        if let Err(err) = self.write_everything(None).await {
            warn!("after reload: {err:#}");
        }
        // Keep each surviving prefix's history, matched by CIDR.
        let mut history = std::mem::take(&mut self.last_change);
        self.last_change = self
            .config
            .prefixes
            .iter()
            .map(|p| {
                old.prefixes
                    .iter()
                    .position(|o| o.cidr == p.cidr)
                    .and_then(|i| history.get_mut(i).and_then(Option::take))
            })
            .collect();
        self.metrics.set_names(self.metric_names());
        self.apply(applied.changes, None, now).await;
        info!(
            hosts = self.config.hosts.len(),
            prefixes = self.config.prefixes.len(),
            restarted_checks = restarted.len(),
            "configuration reloaded"
        );
    }

    /// Writes hosts and every prefix from the policy, removes what the configuration
    /// no longer has (map entries and our kernel routes), and re-points the routes that
    /// do not agree with the owners.
    /// `known_routes`: our routes as the caller just left them (start-up's adoption);
    /// `None` reads them from the kernel.
    pub(crate) async fn write_everything(
        &mut self,
        known_routes: Option<routes::OurRoutes>,
    ) -> anyhow::Result<()> {
        steering::install_interfaces(&mut self.maps, &self.lan, &self.ingress)?;
        for (id, mac) in self.macs.iter().enumerate() {
            let entry = steering::host_entry(*mac, &self.lan, self.is_up(id));
            steering::write_host(&mut self.maps, id as u32, entry)?;
        }
        steering::clear_hosts_from(&mut self.maps, self.config.hosts.len() as u32)?;
        // Before the configured prefixes are written: at a cold start the table is
        // still empty and there is nothing to walk.
        for stale in steering::remove_stale_prefixes(&mut self.maps, &self.config)? {
            // Only routes carrying our protocol are removed: anything else stays.
            if let Err(err) = routes::remove(&self.netlink, stale).await {
                warn!("{stale}: {err:#}");
            }
        }
        for (id, prefix) in self.config.prefixes.iter().enumerate() {
            match self.policy.owner(id) {
                Some(host) => steering::write_prefix(
                    &mut self.maps,
                    prefix.cidr,
                    PrefixEntry::owned(host as u32, id as u32),
                )?,
                None => steering::remove_prefix(&mut self.maps, prefix.cidr)?,
            }
        }
        let wanted: Vec<_> = (self.config.prefixes.iter().enumerate())
            .map(|(id, prefix)| {
                let gateway_host = self.policy.owner(id).unwrap_or(prefix.owner);
                (prefix.cidr, self.config.hosts[gateway_host].address)
            })
            .collect();
        let current = match known_routes {
            Some(routes) => routes,
            None => routes::our_routes(&self.netlink, self.lan.index).await?,
        };
        let replaced = routes::agree_all(&self.netlink, &wanted, self.lan.index, &current).await?;
        debug!(replaced, "kernel routes re-pointed");
        Ok(())
    }

    pub(crate) fn host_names(&self) -> Vec<String> {
        self.config.hosts.iter().map(|h| h.name.clone()).collect()
    }

    /// Labels for the metrics' map counters, by data-path id; none without a metrics
    /// address (nothing reads them, and 65,536 prefix labels are megabytes).
    pub(crate) fn metric_names(&self) -> Names {
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
            hosts: self.host_names(),
        }
    }

    pub(crate) fn host_name(&self, host: Option<usize>) -> String {
        match host {
            Some(h) => self
                .config
                .hosts
                .get(h)
                .map_or_else(|| format!("#{h}"), |h| h.name.clone()),
            None => "-".to_owned(),
        }
    }

    fn host_index(&self, name: &str) -> Result<usize, String> {
        self.config.host_index(name).ok_or_else(|| {
            let known: Vec<&str> = self.config.hosts.iter().map(|h| h.name.as_str()).collect();
            format!("unknown host `{name}` (hosts: {})", known.join(", "))
        })
    }

    fn prefix_index(&self, text: &str) -> Result<usize, String> {
        let cidr = crate::config::parse_cidr(text)?;
        self.config
            .prefixes
            .iter()
            .position(|p| p.cidr == cidr)
            .ok_or_else(|| {
                let known: Vec<String> = self
                    .config
                    .prefixes
                    .iter()
                    .map(|p| p.cidr.to_string())
                    .collect();
                format!(
                    "prefix {cidr} is not configured (prefixes: {})",
                    known.join(", ")
                )
            })
    }

    /// Makes the kernel resolve every host whose MAC is still unknown.
    pub(crate) async fn resolve_missing_macs(&self) {
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
fn ms(duration: Duration) -> f64 {
    duration.as_micros() as f64 / 1e3
}

async fn sleep_or_never(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
