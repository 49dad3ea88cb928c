//! SIGHUP: the configuration file is read again; a bad one changes nothing, a good
//! one applies only the difference.

use std::collections::HashMap;

use tokio::time::Instant;
use tracing::{info, warn};

use super::Controller;
use crate::{
    config::{Config, ConfigError, Router},
    daemon::state::StateError,
    kernel::{
        neigh, netdev,
        routes::{self, RouteError},
    },
};

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadRefused {
    #[error("running without a configuration file (the routes were adopted)")]
    NoFile,
    #[error("{0}")]
    Invalid(#[from] ConfigError),
    #[error("`{0}` cannot change while running; restart ha-user")]
    Fixed(&'static str),
    /// A kernel route of a prefix is one start-up would refuse to take over too.
    #[error("{0}")]
    Routes(RouteError),
    /// The record of the routes could not be written, so none is added.
    #[error("{0}")]
    Record(StateError),
}

/// What a reload changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reloaded {
    /// Health checks started afresh (new or changed hosts).
    pub restarted_checks: usize,
    /// Pins and drains dropped because what they name is gone.
    pub stale: Vec<String>,
}

impl Controller {
    pub(super) async fn on_reload(&mut self) -> Result<Reloaded, ReloadRefused> {
        let result = match self.config_path.clone() {
            None => Err(ReloadRefused::NoFile),
            Some(path) => match Config::load_on(&path, Some(&self.router().await)) {
                Err(err) => Err(err.into()),
                Ok(new) => match self.check_reload(&new) {
                    Err(refused) => Err(refused),
                    Ok(()) => match self.check_routes(&new).await {
                        Err(refused) => Err(refused),
                        Ok(()) => Ok(self.reconfigure(new).await),
                    },
                },
            },
        };
        match &result {
            Err(ReloadRefused::NoFile) => {
                warn!("SIGHUP ignored: running without a configuration file");
            }
            Err(ReloadRefused::Invalid(err)) => warn!("reload refused, nothing changed:\n{err}"),
            Err(refused) => warn!("reload refused, nothing changed: {refused}"),
            Ok(_) => {}
        }
        result
    }

    /// The router's own addresses on the LAN now (none if they cannot be read: the
    /// reload is then checked without them, and says so).
    async fn router(&self) -> Router {
        let addresses =
            match netdev::ipv4_addresses(&self.netlink, self.lan.index, &self.lan.name).await {
                Ok(addresses) => addresses,
                Err(err) => {
                    warn!("reload: the LAN's addresses are not checked: {err}");
                    Vec::new()
                }
            };
        Router {
            iface: self.lan.name.clone(),
            addresses,
        }
    }

    /// The settings a running controller cannot change.
    fn check_reload(&self, new: &Config) -> Result<(), ReloadRefused> {
        if new.lan.as_ref().is_some_and(|lan| *lan != self.lan.name) {
            return Err(ReloadRefused::Fixed("lan"));
        }
        let ingress: Vec<&str> = self.ingress.iter().map(|i| i.name.as_str()).collect();
        if new
            .ingress
            .iter()
            .filter(|i| **i != self.lan.name)
            .map(String::as_str)
            .ne(ingress.iter().copied())
        {
            return Err(ReloadRefused::Fixed("ingress"));
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
            return Err(ReloadRefused::Fixed(
                "xdp_mode, pin_dir, control_socket, state_file and metrics",
            ));
        }
        Ok(())
    }

    /// Decides about the kernel route of every prefix of `new` by start-up's own
    /// rule ([`routes::plan_all`]: a blackhole, a device route without a gateway, a
    /// connected subnet, a route with its own MTU are refused), before anything
    /// changes; then records them all, before any route is added.
    async fn check_routes(&mut self, new: &Config) -> Result<(), ReloadRefused> {
        let wanted: Vec<_> = new
            .prefixes
            .iter()
            .map(|p| (p.cidr, new.host(p.owner).address))
            .collect();
        routes::plan_all(&self.netlink, &wanted, self.lan.index)
            .await
            .map_err(ReloadRefused::Routes)?;
        self.route_record
            .cover(new.prefixes.iter().map(|p| p.cidr))
            .map_err(ReloadRefused::Record)
    }

    /// Applies a new, valid configuration: only the difference changes.
    async fn reconfigure(&mut self, new: Config) -> Reloaded {
        let now = Instant::now();
        let applied = self.policy.reconfigure(&new, now);
        for stale in &applied.stale {
            warn!("after reload: {stale}");
        }
        let old = std::mem::replace(&mut self.config, new);
        self.affinity.reconfigure(&old, &self.config);
        // Host ids may have moved: rewrite the host table from the new order. A MAC
        // learned for an address is kept for that address; a configured one goes
        // with its line. Hosts left without one (new, readdressed, their configured
        // MAC removed) get what the neighbour table has, and are resolved below.
        let learned: HashMap<_, _> = old
            .hosts
            .iter()
            .zip(&self.macs)
            .filter(|(host, _)| host.mac.is_none())
            .filter_map(|(host, mac)| Some((host.address, (*mac)?)))
            .collect();
        let table = if self
            .config
            .hosts
            .iter()
            .any(|h| h.mac.is_none() && !learned.contains_key(&h.address))
        {
            match neigh::lookup_all(&self.netlink, self.lan.index).await {
                Ok(table) => table,
                Err(err) => {
                    warn!("after reload: {err:#}");
                    HashMap::new()
                }
            }
        } else {
            HashMap::new()
        };
        self.macs = self
            .config
            .hosts
            .iter()
            .map(|h| {
                h.mac
                    .or_else(|| learned.get(&h.address).copied())
                    .or_else(|| table.get(&h.address).copied())
            })
            .collect();
        let restarted = self.health.update(&self.config.hosts).await;
        if let Err(err) = self.write_everything(None).await {
            warn!("after reload: {err:#}");
        }
        // Keep each surviving prefix's history, matched by CIDR.
        let mut history: HashMap<_, _> = old
            .prefixes
            .iter()
            .map(|p| p.cidr)
            .zip(std::mem::take(&mut self.last_change))
            .collect();
        self.last_change = self
            .config
            .prefixes
            .iter()
            .map(|p| history.remove(&p.cidr).flatten())
            .collect();
        self.metrics.set_names(self.metric_names());
        self.apply(applied.changes, None, now).await;
        // Prefixes that left the configuration without a map entry keep a route of
        // ours until here.
        self.remove_unnamed_routes().await;
        // The neighbour watch reports the answers.
        self.resolve_missing_macs().await;
        info!(
            hosts = self.config.hosts.len(),
            prefixes = self.config.prefixes.len(),
            restarted_checks = restarted.len(),
            "configuration reloaded"
        );
        Reloaded {
            restarted_checks: restarted.len(),
            stale: applied.stale.iter().map(ToString::to_string).collect(),
        }
    }
}
