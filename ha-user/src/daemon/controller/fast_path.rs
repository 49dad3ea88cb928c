//! How each steered interface treats the router's forwarding: the controller looks
//! at it at start-up and every [`PERIOD`] (the routes every [`ROUTE_ROUNDS`] rounds,
//! the costly part at scale) on a thread of its own, and writes the outcome into the
//! data path: `IFACE_VERIFY` per interface, the router's own addresses and the
//! verification period (`HA_SETTINGS`). See the README's "The firewall and the rest
//! of the kernel's forwarding".

use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::Controller;
use crate::{
    kernel::{
        conntrack::keeper,
        forwarding::{Facts, GatherError, Gatherer, assess, routes::RouteFacts},
        steering,
    },
    proto::{Event, events::FastPathInterface},
};

/// How often the router's forwarding is looked at again.
pub const PERIOD: Duration = Duration::from_secs(2);
/// The routes are read every this many rounds.
const ROUTE_ROUNDS: u32 = 5;

/// Gathers the facts once, on a blocking thread (the gatherer blocks on netlink).
pub async fn gather_once(lan: String, ingress: Vec<String>) -> Result<Facts, GatherError> {
    tokio::task::spawn_blocking(move || Gatherer::new()?.gather(&lan, &ingress))
        .await
        .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
}

/// Starts the thread that gathers the facts every [`PERIOD`] and sends them; it ends
/// when the receiver goes away.
pub fn watch(lan: String, ingress: Vec<String>) -> std::io::Result<mpsc::Receiver<Facts>> {
    let (tx, rx) = mpsc::channel(2);
    std::thread::Builder::new()
        .name("ha-forwarding".to_owned())
        .spawn(move || {
            let mut gatherer = match Gatherer::new() {
                Ok(gatherer) => gatherer,
                Err(err) => return warn!("the router's forwarding is not followed: {err:#}"),
            };
            let mut routes: Option<RouteFacts> = None;
            for round in 0u32.. {
                std::thread::sleep(PERIOD);
                if round % ROUTE_ROUNDS == 0 || routes.is_none() {
                    match gatherer.routes() {
                        Ok(fresh) => routes = Some(fresh),
                        Err(err) => {
                            warn!("route scan for the forwarding checks failed: {err:#}");
                            continue;
                        }
                    }
                }
                let Some(known) = routes.clone() else {
                    continue;
                };
                match gatherer.gather_with_routes(&lan, &ingress, known) {
                    Ok(facts) => {
                        if tx.blocking_send(facts).is_err() {
                            return;
                        }
                    }
                    Err(err) => warn!("looking at the router's forwarding: {err:#}"),
                }
            }
        })?;
    Ok(rx)
}

impl Controller {
    /// Applies what `facts` say under the configured mode, if it differs from what the
    /// data path has: interface flags and settings first, then the log and the event.
    pub(in crate::daemon) fn on_forwarding(&mut self, facts: &Facts) {
        let assessment = assess(facts, self.config.fast_path.verify);
        if self.fast_path.as_ref() == Some(&assessment) {
            return;
        }
        let old = self.fast_path.replace(assessment);
        if let Err(err) = self.write_fast_path() {
            self.fast_path = old;
            return warn!("{err:#}");
        }
        let Some(assessment) = &self.fast_path else {
            return;
        };
        let refresh_ns = self.config.fast_path.refresh_ms.saturating_mul(1_000_000);
        let policy = assessment
            .conntrack
            .map(|sync| keeper::Policy { sync, refresh_ns });
        if self.conntrack.send_replace(policy) != policy {
            match &assessment.conntrack {
                Some(sync) => info!(
                    liberal = sync.liberal,
                    shortest_timeout_s = sync.timeouts.shortest(),
                    "the rules consult conntrack: steered flows keep their conntrack entries \
                     (steering starts once the entry is kept; TCP FIN and RST take the kernel's path)"
                ),
                None => info!(
                    "conntrack entries of steered flows no longer kept: the rules do not need them"
                ),
            }
        }
        for iface in &assessment.interfaces {
            let reasons: Vec<String> = iface.reasons.iter().map(ToString::to_string).collect();
            if iface.verify {
                info!(iface = %iface.name, reasons = ?reasons, "interface verifies flows: only what the kernel forwarded is steered");
            } else if reasons.is_empty() {
                info!(iface = %iface.name, "interface open: nothing in the kernel's forwarding differs here");
            } else {
                warn!(iface = %iface.name, bypassed = ?reasons, "interface open by configuration (verify = never), bypassing");
            }
        }
        let event = Event::FastPath {
            interfaces: assessment
                .interfaces
                .iter()
                .map(|i| FastPathInterface {
                    iface: i.name.clone(),
                    verify: i.verify,
                    reasons: i.reasons.iter().map(ToString::to_string).collect(),
                })
                .collect(),
        };
        self.events.publish(event);
    }

    /// Writes the current assessment into the maps: the settings, then every
    /// interface with its flags. Without one yet, every interface verifies (the safe
    /// side) and the settings stay as they are.
    pub(super) fn write_fast_path(&mut self) -> anyhow::Result<()> {
        if let Some(assessment) = &self.fast_path {
            let refresh_ns = self.config.fast_path.refresh_ms.saturating_mul(1_000_000);
            steering::write_settings(&mut self.maps, assessment.settings(refresh_ns))?;
        }
        let fast_path = &self.fast_path;
        steering::install_interfaces(&mut self.maps, &self.lan, &self.ingress, |iface| {
            fast_path
                .as_ref()
                .map_or(ha_common::IFACE_VERIFY, |a| a.flag(iface.index))
        })?;
        Ok(())
    }
}
