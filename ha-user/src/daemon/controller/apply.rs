//! Ownership changes reach the kernel here, always in the same order:
//!
//! 1. the data-path map (one LPM entry per prefix, every prefix of a batch first:
//!    traffic moves in microseconds);
//! 2. the kernel static routes (the slow path agrees with the fast path);
//! 3. one structured log line per prefix (prefix, old → new owner, reason, detection
//!    and switch time) and the metrics.
//!
//! The agreement rule, [`steering_of`], is the one place that turns a prefix's holder
//! (and its move in progress) into its map entry and route, for start-up
//! ([`Controller::write_everything`]) and for every change ([`Controller::apply`]): a
//! prefix with a holder has its map entry and its kernel route pointing at that host
//! (the entry moving, with the previous host, while a move keeps flows: see
//! [`affinity`](super::affinity)); a prefix without one (every candidate down) has no
//! map entry and its route points at its configured owner.

use std::{collections::HashSet, net::Ipv4Addr, time::SystemTime};

use anyhow::Context as _;
use ha_common::PrefixEntry;
use ipnet::Ipv4Net;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{Controller, LastChange, ms};
use crate::{
    config::Config,
    kernel::{routes, steering},
    model::{HostId, PrefixId},
    policy::Change,
    proto::Event,
};

/// Where a prefix's traffic goes, in the fast path and the slow path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Steering {
    /// The prefix table's entry; `None`: no entry, the kernel route carries it.
    pub entry: Option<PrefixEntry>,
    /// The gateway of the prefix's kernel route.
    pub route_via: Ipv4Addr,
}

/// The agreement rule: prefix `prefix` of `config` held by `holder`, moving from
/// `moving_from` (its flows keep their hosts) or steady (`None`). The kernel route
/// follows the holder either way: `ha_learn` sends the kernel-forwarded packets of
/// flows that stay to their hosts.
pub fn steering_of(
    config: &Config,
    prefix: PrefixId,
    holder: Option<HostId>,
    moving_from: Option<HostId>,
) -> Steering {
    let entry = holder.map(|host| match moving_from {
        Some(prev) => PrefixEntry::moving(host.raw(), prefix.raw(), prev.raw()),
        None => PrefixEntry::owned(host.raw(), prefix.raw()),
    });
    let gateway = holder.unwrap_or(config.prefix(prefix).owner);
    Steering {
        entry,
        route_via: config.host(gateway).address,
    }
}

impl Controller {
    /// Applies policy changes: map, then route, then log and metrics.
    /// `detection`: how long the health change behind them took to detect;
    /// `decided`: when the policy decided (the switch time is measured from it).
    pub(super) async fn apply(
        &mut self,
        changes: Vec<Change>,
        detection: Option<std::time::Duration>,
        decided: Instant,
    ) {
        // 1. Every map entry of the batch first: traffic moves before anything slower.
        let mut switched = Vec::with_capacity(changes.len());
        for change in changes {
            let Some(configured) = self.config.prefixes.get(change.prefix.index()) else {
                continue;
            };
            let cidr = configured.cidr;
            let moving = self.move_after(&change);
            let route_via = match self.steer_prefix(change.prefix, change.new, moving) {
                Ok(via) => via,
                Err(err) => {
                    warn!("{cidr}: {err:#}");
                    steering_of(&self.config, change.prefix, change.new, None).route_via
                }
            };
            switched.push((change, cidr, route_via, decided.elapsed()));
        }
        // 2. The kernel routes, all of the batch at once, then 3. the log lines and metrics.
        let routes: Vec<_> = switched
            .iter()
            .map(|(_, cidr, via, _)| (*cidr, *via))
            .collect();
        let routed = routes::replace_each(&self.netlink, &routes, self.lan.index).await;
        for ((change, cidr, gateway, switch), routed) in switched.into_iter().zip(routed) {
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
            let name = |host: Option<HostId>| {
                host.and_then(|h| self.config.hosts.get(h.index()))
                    .map(|h| h.name.as_str())
            };
            self.metrics.owner(&cidr.to_string(), name(old), name(new));
            self.events.publish(Event::OwnerChanged {
                prefix: cidr,
                old: self.name_of(old),
                new: self.name_of(new),
                reason,
                detection_ms: detection.map(ms),
                switch_us: switch.as_micros() as u64,
                route_via: gateway,
            });
            if let Some(slot) = self.last_change.get_mut(prefix.index()) {
                *slot = Some(Box::new(LastChange {
                    at: SystemTime::now(),
                    old,
                    new,
                    reason,
                    detection,
                    switch,
                }));
            }
        }
    }

    /// Writes the interfaces, the hosts and every prefix from the policy, removes what
    /// the configuration no longer has (map entries and our kernel routes), and
    /// re-points the routes that do not agree with the owners.
    /// `known_routes`: our routes as the caller just left them (start-up's adoption);
    /// `None` reads them from the kernel.
    pub(in crate::daemon) async fn write_everything(
        &mut self,
        known_routes: Option<routes::OurRoutes>,
    ) -> anyhow::Result<()> {
        self.write_fast_path()?;
        for host in HostId::all(self.macs.len()) {
            self.write_host_entry(host)?;
        }
        steering::clear_hosts_from(&mut self.maps, HostId::new(self.config.hosts.len()))?;
        // Before the configured prefixes are written: at a cold start the table is
        // still empty and there is nothing to walk.
        let configured = self.config.prefixes.iter().map(|p| p.cidr);
        for stale in steering::remove_stale_prefixes(&mut self.maps, configured)? {
            // Only routes carrying our protocol are removed: anything else stays.
            if let Err(err) = routes::remove(&self.netlink, stale).await {
                warn!("{stale}: {err:#}");
            }
        }
        let mut wanted = Vec::with_capacity(self.config.prefixes.len());
        let ids: Vec<(PrefixId, Ipv4Net)> = self
            .config
            .prefix_ids()
            .map(|(id, p)| (id, p.cidr))
            .collect();
        for (id, cidr) in ids {
            let moving = self.affinity.moving(id).copied();
            let via = self.steer_prefix(id, self.policy.owner(id), moving)?;
            wanted.push((cidr, via));
        }
        let current = match known_routes {
            Some(routes) => routes,
            None => routes::our_routes(&self.netlink, self.lan.index)
                .await
                .context("reading our kernel routes")?,
        };
        let replaced = routes::agree_all(&self.netlink, &wanted, self.lan.index, &current).await?;
        debug!(replaced, "kernel routes re-pointed");
        Ok(())
    }

    /// Removes the recorded routes the configuration does not name (a kill during a
    /// reload, a prefix that left the configuration), those that still look like
    /// ours (protocol 165, through the LAN), and trims the record to the configured
    /// prefixes and the routes that could not be removed (tried again next time).
    pub(in crate::daemon) async fn remove_unnamed_routes(&mut self) {
        let configured: HashSet<Ipv4Net> = self.config.prefixes.iter().map(|p| p.cidr).collect();
        let unnamed: Vec<Ipv4Net> = self
            .route_record
            .prefixes()
            .iter()
            .filter(|prefix| !configured.contains(prefix))
            .copied()
            .collect();
        if unnamed.is_empty() {
            return;
        }
        let started = std::time::Instant::now();
        let results =
            match routes::remove_ours(&self.netlink, unnamed.iter().copied(), self.lan.index).await
            {
                Ok(results) => results,
                Err(err) => {
                    return warn!(
                        "the recorded routes the configuration does not name stay for now: {err:#}"
                    );
                }
            };
        let mut failed = HashSet::new();
        let mut removed = 0;
        for (prefix, _, result) in results {
            match result {
                Ok(()) => removed += 1,
                Err(err) => {
                    warn!("{err:#}");
                    failed.insert(prefix);
                }
            }
        }
        if removed > 0 {
            info!(
                removed,
                recorded = unnamed.len(),
                took_ms = ms(started.elapsed()),
                record = %self.route_record.path().display(),
                "stale routes of ha removed (recorded, not configured)"
            );
        }
        if let Err(err) = self
            .route_record
            .trim(|prefix| configured.contains(prefix) || failed.contains(prefix))
        {
            warn!("{err:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn a_held_prefix_points_at_its_holder_and_a_free_one_routes_via_its_owner() {
        let text = r#"
            [[host]]
            name = "a"
            address = "10.0.0.1"
            [[host]]
            name = "b"
            address = "10.0.0.2"
            [[prefix]]
            cidr = "192.168.1.32/27"
            owner = "a"
            [[prefix]]
            cidr = "192.168.1.64/27"
            owner = "b"
        "#;
        let config = Config::parse(Path::new("t.toml"), text).expect("valid");
        let second = PrefixId::new(1);
        assert_eq!(
            steering_of(&config, second, Some(HostId::new(0)), None),
            Steering {
                entry: Some(PrefixEntry::owned(0, 1)),
                route_via: Ipv4Addr::new(10, 0, 0, 1),
            }
        );
        assert_eq!(
            steering_of(&config, second, None, None),
            Steering {
                entry: None,
                route_via: Ipv4Addr::new(10, 0, 0, 2),
            }
        );
        // Moving: the entry names the previous host; the route follows the holder.
        assert_eq!(
            steering_of(&config, second, Some(HostId::new(0)), Some(HostId::new(1))),
            Steering {
                entry: Some(PrefixEntry::moving(0, 1, 1)),
                route_via: Ipv4Addr::new(10, 0, 0, 1),
            }
        );
        assert_eq!(
            steering_of(&config, second, None, Some(HostId::new(1))).entry,
            None
        );
    }
}
