//! Following the LAN interface and the kernel routes ([`crate::kernel::lan`]): what
//! the controller does when they change under it.
//!
//! - **Down, then up** (a flap, `ip link set LAN down`): the kernel deletes every
//!   route through the interface, ours with them, without a notification per route.
//!   While it is down nothing can be installed through it; when it is up again the
//!   routes are put back ([`Controller::restore_routes`]). The map does not change:
//!   the health checks decide about the hosts (a probe failing because the
//!   interface is down says nothing about a host).
//! - **A route of ours deleted** by someone else: put back at once. One that someone
//!   else replaced is theirs now: left alone, with a warning.
//! - **Gone** (deleted, or renamed away): the fast path cannot steer; the pins of its
//!   dead links are removed, `status` says so. The health checks go on (they fail
//!   locally, which does not count against the hosts).
//! - **Back** (an interface of the configured name appears, a new ifindex): the
//!   controller takes it as the LAN interface: its interface entry written, XDP and
//!   `ha_learn` attached again (the program loaded afresh), every host entry
//!   rewritten (egress ifindex, MAC, MTU), the routes put back, the hosts resolved
//!   on the new interface (their last known MACs stay in use meanwhile; the
//!   neighbour watch reports any that differ there). An interface the fast path cannot run on (an ifindex beyond the
//!   interface table, a VLAN, someone else's XDP program) is not steered on: the
//!   routes are put back all the same, `status` says why.
//!
//! A failed route write (the interface still settling) is retried every
//! [`ROUTE_RETRY`] until it succeeds or the interface goes again.

use std::{fmt, time::Duration};

use anyhow::Context as _;
use ha_common::MAX_IFINDEX;
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::{Controller, steering_of};
use crate::{
    kernel::{
        datapath::{self, Loaded},
        lan::{LanEvent, LanLink},
        neigh,
        netdev::{self, Interface},
        routes,
    },
    proto::{Event, reports::LanStatus},
};

/// Wait before retrying a route write that failed.
pub(super) const ROUTE_RETRY: Duration = Duration::from_millis(200);

/// Whether the fast path steers on the LAN interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LanState {
    Steering,
    /// Administratively down.
    Down,
    /// No interface has the configured name.
    Gone,
    /// There, but the fast path cannot run on it (why).
    Unsteerable(String),
}

impl fmt::Display for LanState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LanState::Steering => f.write_str("steering"),
            LanState::Down => f.write_str("the interface is down"),
            LanState::Gone => f.write_str("no interface has this name (deleted?)"),
            LanState::Unsteerable(why) => f.write_str(why),
        }
    }
}

impl Controller {
    /// `status`'s view of the LAN interface.
    pub(super) fn lan_status(&self) -> LanStatus {
        let steering = self.lan_state == LanState::Steering;
        LanStatus {
            name: self.lan.name.clone(),
            ifindex: (self.lan_state != LanState::Gone).then_some(self.lan.index),
            steering,
            why: (!steering).then(|| self.lan_state.to_string()),
        }
    }

    pub(super) async fn on_lan(&mut self, event: LanEvent) {
        match event {
            LanEvent::Link(link)
                if link.index != self.lan.index || self.lan_state == LanState::Gone =>
            {
                self.on_lan_back(link).await;
            }
            LanEvent::Link(link) => self.on_lan_link(link).await,
            LanEvent::Gone { index } if index == self.lan.index => self.on_lan_gone(),
            LanEvent::Gone { .. } => {}
            LanEvent::RouteDeleted { prefix, oif } => {
                if self.config.prefix_id(prefix).is_some() {
                    let via = oif.map_or_else(String::new, |i| format!(" (dev #{i})"));
                    let cause = format!("the route for {prefix}{via} was deleted");
                    self.restore_routes(&cause).await;
                }
            }
            LanEvent::Resynced => {
                self.restore_routes("route notifications were lost").await;
            }
        }
    }

    /// The same interface changed: MTU, MAC, up or down.
    async fn on_lan_link(&mut self, link: LanLink) {
        if link.mtu != self.lan.mtu {
            self.on_lan_mtu(link.mtu);
        }
        if let Some(mac) = link.mac
            && mac != self.lan.mac
        {
            info!(iface = %self.lan.name, old = %self.lan.mac, new = %mac, "LAN MAC changed; interface and host entries rewritten");
            self.lan.mac = mac;
            if let Err(err) = self.write_lan_entries() {
                warn!("{err:#}");
            }
        }
        let was_up = std::mem::replace(&mut self.lan_up, link.up);
        match (was_up, link.up) {
            (false, true) => {
                info!(iface = %self.lan.name, "LAN interface up again");
                if self.lan_state == LanState::Down {
                    self.set_lan_state(LanState::Steering);
                }
                self.restore_routes("the LAN interface came up again").await;
                self.resolve_hosts().await;
            }
            (true, false) => {
                warn!(iface = %self.lan.name, "LAN interface down: the kernel dropped the routes through it; they are put back when it is up");
                if self.lan_state == LanState::Steering {
                    self.set_lan_state(LanState::Down);
                }
            }
            _ => {}
        }
    }

    fn on_lan_gone(&mut self) {
        error!(
            iface = %self.lan.name,
            ifindex = self.lan.index,
            "the configured LAN interface is gone: the fast path does not steer; waiting for an interface of that name"
        );
        match datapath::remove_link_pins(&self.config.pin_dir, &self.lan.name) {
            Ok(removed) => {
                for pin in removed {
                    info!(pin = %pin.display(), "removed the pin of a link the kernel detached");
                }
            }
            Err(err) => warn!("{err:#}"),
        }
        self.route_retry = None;
        self.set_lan_state(LanState::Gone);
    }

    /// An interface of the configured name appeared (or replaced the one we had).
    async fn on_lan_back(&mut self, link: LanLink) {
        let iface = match netdev::interface(&self.netlink, &self.lan.name).await {
            Ok(iface) if iface.index == link.index => iface,
            // Gone again, or replaced meanwhile: the watch reports what follows.
            Ok(_) | Err(netdev::NetdevError::Unknown { .. }) => return,
            Err(err) => {
                return self.set_lan_state(LanState::Unsteerable(format!("{err:#}")));
            }
        };
        if iface.index != self.lan.index && self.lan_state != LanState::Gone {
            // Replaced without our seeing it go (renamed away and another named so).
            self.on_lan_gone();
        }
        info!(iface = %iface.name, ifindex = iface.index, old_ifindex = self.lan.index, "an interface of the LAN's name appeared: taking it as the LAN interface");
        let state = match self.steer_on(iface).await {
            Ok(()) if link.up => LanState::Steering,
            Ok(()) => LanState::Down,
            Err(why) => {
                error!(iface = %self.lan.name, ifindex = self.lan.index, "the fast path cannot steer on the new LAN interface: {why:#}; the kernel routes carry the traffic");
                LanState::Unsteerable(format!("{why:#}"))
            }
        };
        self.lan_up = link.up;
        self.set_lan_state(state);
        if link.up {
            self.resolve_hosts().await;
        }
        self.restore_routes("the LAN interface was created again")
            .await;
    }

    /// Makes `iface` the LAN interface and attaches the fast path to it.
    async fn steer_on(&mut self, iface: Interface) -> anyhow::Result<()> {
        self.lan = iface;
        if self.lan.index >= MAX_IFINDEX {
            anyhow::bail!(
                "its ifindex {} is beyond the interface table ({MAX_IFINDEX} entries)",
                self.lan.index
            );
        }
        netdev::refuse_vlan(&self.lan, "the LAN interface", None)?;
        if let Some(id) = self.lan.xdp_prog {
            anyhow::bail!("it runs XDP program id {id}, not attached by ha (see `bpftool net`)");
        }
        // Entries first: the program never runs on a half-written interface.
        self.write_lan_entries()?;
        let mut loaded = Loaded::load(&self.config.pin_dir, self.log_packets)
            .context("loading the data path again")?;
        let attachment = loaded.attach(&self.lan, self.xdp_mode)?;
        info!(iface = %self.lan.name, ifindex = self.lan.index, mode = %self.xdp_mode, pin = %attachment.pin.display(), "XDP attached");
        self.events.publish(Event::XdpAttached {
            iface: self.lan.name.clone(),
            ifindex: self.lan.index,
            mode: self.xdp_mode,
            adopted: attachment.adopted,
        });
        let (hook, _) = loaded.attach_learn(&self.lan.name)?;
        info!(iface = %self.lan.name, ?hook, "flow learning attached (TC egress)");
        Ok(())
    }

    /// The interface entries (the LAN's index, MAC, redirect port) and every host
    /// entry (egress ifindex, MAC, MTU).
    fn write_lan_entries(&mut self) -> anyhow::Result<()> {
        self.write_fast_path()?;
        for host in crate::model::HostId::all(self.macs.len()) {
            self.write_host_entry(host)?;
        }
        Ok(())
    }

    /// The kernel flushed the interface's neighbours when it went down or away: it
    /// is asked to resolve every host whose MAC is learned (the MACs last known stay
    /// in use meanwhile; the neighbour watch reports any that changed).
    async fn resolve_hosts(&self) {
        for host in self.config.hosts.iter().filter(|h| h.mac.is_none()) {
            if let Err(err) = neigh::resolve(&self.netlink, host.address, self.lan.index).await {
                warn!("{err:#}");
            }
        }
    }

    fn set_lan_state(&mut self, state: LanState) {
        if self.lan_state == state {
            return;
        }
        self.lan_state = state;
        let LanStatus {
            name,
            ifindex,
            steering,
            why,
        } = self.lan_status();
        self.events.publish(Event::LanChanged {
            iface: name,
            ifindex,
            steering,
            why,
        });
    }

    /// Puts back the routes the kernel lost (see [`routes::restore`]), through the
    /// LAN interface if it is there and up; a failure is retried after
    /// [`ROUTE_RETRY`].
    pub(super) async fn restore_routes(&mut self, cause: &str) {
        if self.lan_state == LanState::Gone || !self.lan_up {
            return;
        }
        let wanted: Vec<_> = self
            .config
            .prefix_ids()
            .map(|(id, p)| {
                let via = steering_of(&self.config, id, self.policy.owner(id), None).route_via;
                (p.cidr, via)
            })
            .collect();
        match routes::restore(&self.netlink, &wanted, self.lan.index).await {
            Ok(restored) => {
                self.route_retry = None;
                for route in &restored.foreign {
                    warn!(%route, "someone else's route replaced ours: left alone (restart ha-user to take it over again)");
                }
                let routes::Restored {
                    installed,
                    repointed,
                    ..
                } = restored;
                if installed + repointed > 0 {
                    info!(installed, repointed, cause, "kernel routes restored");
                    self.events.publish(Event::RoutesRestored {
                        installed,
                        repointed,
                        cause: cause.to_owned(),
                    });
                }
            }
            Err(err) => {
                warn!(
                    "not every kernel route could be put back ({cause}): {err:#}; retrying in {} ms",
                    ROUTE_RETRY.as_millis()
                );
                self.route_retry = Some(Instant::now() + ROUTE_RETRY);
            }
        }
    }
}
