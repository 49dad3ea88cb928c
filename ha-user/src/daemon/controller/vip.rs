//! The VIP checks in the loop: the plan the checks get after every event (each
//! prefix's VIP, the candidates they watch, the host its route goes through; each
//! host's readiness and health), and the verdicts they send back, which go through
//! the policy and [`apply`](super::apply) like any other change.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tracing::{info, warn};

use super::Controller;
use crate::{
    health::{PlanHost, PlanPrefix, Probe, VipEvent, VipPlan},
    model::{Health, HostId, VipVerdict},
    proto::{Event, events::ProbeTiming},
};

impl Controller {
    /// Hands the VIP checks what to ask now.
    pub(super) fn plan_vips(&self) {
        let settings = self.config.vip_check;
        if !settings.enabled {
            self.health.set_vip_plan(VipPlan {
                settings,
                ..VipPlan::default()
            });
            return;
        }
        let prefixes = self
            .config
            .prefix_ids()
            .map(|(id, prefix)| PlanPrefix {
                vip: prefix.vip,
                watched: self.policy.vip_watch(id),
                via: self.policy.owner(id).unwrap_or(prefix.owner),
            })
            .collect();
        let hosts = HostId::all(self.config.hosts.len())
            .map(|host| PlanHost {
                ready: self.macs.get(host.index()).is_some_and(Option::is_some),
                down: self.policy.health(host) == Some(Health::Down),
            })
            .collect();
        self.health.set_vip_plan(VipPlan {
            settings,
            prefixes,
            hosts,
        });
    }

    /// A host's verdict on a prefix's VIP changed.
    pub(super) async fn on_vip(&mut self, event: VipEvent) {
        let VipEvent {
            prefix,
            host,
            vip,
            old,
            new,
            reason,
        } = event;
        let Some(cidr) = self.config.prefixes.get(prefix.index()).map(|p| p.cidr) else {
            return;
        };
        let name = self.host_name(Some(host));
        info!(host = %name, prefix = %cidr, %vip, %old, %new, reason = ?reason, "VIP verdict changed");
        let serving = new != VipVerdict::NotServing;
        self.metrics.vip_serving(&cidr.to_string(), &name, serving);
        self.events.publish(Event::VipChanged {
            host: name,
            prefix: cidr,
            vip,
            old,
            new,
            reason,
        });
        let now = Instant::now();
        match self.policy.vip_verdict(prefix, host, serving, now) {
            Ok(changes) => self.apply(changes, None, now).await,
            Err(err) => warn!("VIP verdict for an unknown prefix or host: {err}"),
        }
    }
}

/// A probe's timings as events carry them.
pub(super) fn timing(probe: &Probe) -> ProbeTiming {
    let us = |d: Duration| d.as_micros() as u64;
    let ago = Instant::now().saturating_duration_since(probe.started);
    let at = SystemTime::now()
        .checked_sub(ago)
        .and_then(|at| at.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, us);
    ProbeTiming {
        outcome: probe.outcome,
        at_unix_us: at,
        waited_us: us(probe.waited),
        sent_lag_us: us(probe.sent_lag),
        step_lag_us: us(probe.step_lag),
        late_us: us(probe.late_by),
    }
}
