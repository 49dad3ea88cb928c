//! The controller daemon: [`run`] boots it ([`boot`]), runs its loop
//! ([`controller`]), and detaches cleanly when told to stop.
//!
//! - [`boot`]: configuration, routes, data path, attach; [`rollback`], its undo log;
//! - [`controller`]: the loop and what it owns, how every ownership change reaches
//!   the map, the routes, the log and the metrics, reloads, the answers;
//! - [`server`]: the control socket; [`events`]: the event stream; [`conns`]: the
//!   bound on the connections of the control socket and the metrics endpoint;
//! - [`metrics`], [`state`] (pins and drains on disk), [`lock`] (one controller per
//!   data path).

pub mod boot;
pub mod conns;
mod controller;
pub mod dirs;
pub mod events;
pub mod lock;
pub mod metrics;
pub mod notify;
pub mod rollback;
pub mod route_record;
pub mod server;
pub mod state;

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};
use tracing::{error, info, warn};

pub use controller::{RequestError, SavedState, Steering, decide_request, steering_of};

use crate::{kernel::datapath, model::XdpMode, proto::Event};

/// How long the daemon waits at exit for its event subscribers to read the last
/// events.
const LAST_EVENTS: Duration = Duration::from_secs(2);

/// How `ha-user run` was asked to run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// `--config`: this file, which must exist. `None`: the default path, which may be
    /// missing when `iface` is given (the routes through it are adopted).
    pub config: Option<PathBuf>,
    /// `--iface`: the LAN interface, over the configuration's `lan`.
    pub iface: Option<String>,
    /// `--xdp-mode`, over the configuration's `xdp_mode`.
    pub xdp_mode: Option<XdpMode>,
    /// Log every steered packet (aya-log).
    pub log_packets: bool,
    /// Drop the pins, drains and maps of a previous controller instead of adopting them.
    pub reset: bool,
}

/// What the daemon leaves behind when it stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Detach the fast path and remove its pins: traffic follows the kernel routes.
    Detach,
    /// Leave the pinned fast path attached and the routes in place, for the next
    /// controller to adopt (a restart or an upgrade).
    Handover,
}

/// Runs the controller until `shutdown` resolves, then detaches the fast path
/// (traffic follows the kernel routes, which point at the current owners) or, for
/// [`Stop::Handover`], leaves it attached and pinned for the next controller. Pins
/// removed by hand while it runs stop it with a detach, and an error naming them.
pub async fn run(options: Options, shutdown: impl Future<Output = Stop>) -> anyhow::Result<()> {
    let events = events::EventBus::default();
    let boot::Booted {
        controller,
        inputs,
        commands,
        reload,
        control,
        metrics,
        lock,
        stop_checks,
    } = boot::boot(options, &events).await?;
    let (alive, mut subscribers) = mpsc::channel(1);
    let server = tokio::spawn(server::serve(
        control,
        server::Served {
            commands,
            events: events.clone(),
            alive,
        },
    ));
    if let Some(listener) = metrics {
        tokio::spawn(metrics::serve(listener, controller.metrics.clone()));
    }
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            // A reload already queued covers this one too.
            let _ = reload.try_send(());
        }
    });
    release_freed_memory();
    info!(
        hosts = controller.config.hosts.len(),
        prefixes = controller.config.prefixes.len(),
        socket = %controller.config.control_socket.display(),
        "steering; SIGHUP reloads the configuration, Ctrl-C or SIGTERM stops"
    );
    events.publish(Event::Serving {
        socket: controller.config.control_socket.clone(),
        hosts: controller.config.hosts.len(),
        prefixes: controller.config.prefixes.len(),
    });
    events.started();
    notify::ready();

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let shutdown = async move {
        let _ = stop_tx.send(shutdown.await);
    };
    let (controller, ended) = controller.run(inputs, shutdown).await;
    if let controller::Ended::PinsRemoved(missing) = &ended {
        error!(
            "{missing} while running: stopping (the fast path is detached, the kernel routes stay)"
        );
    }
    // `shutdown` sent its answer if it resolved; a controller that ended on its own
    // (pins removed) dropped it unanswered, and that stop detaches.
    let stop = stop_rx.await.unwrap_or(Stop::Detach);
    notify::stopping();
    let _ = stop_checks.send(true);
    let controller::Controller {
        config,
        health,
        lan,
        ..
    } = controller;
    health.stop().await;
    let removed = match stop {
        Stop::Detach => {
            let removed = datapath::detach_all(&config.pin_dir)?;
            datapath::learn::detach_filter(&lan.name)?;
            removed
        }
        Stop::Handover => Vec::new(),
    };
    // No new connections; the subscribers read what is left, then their streams end.
    server.abort();
    let _ = std::fs::remove_file(&config.control_socket);
    events.publish(Event::Shutdown {
        removed_pins: removed.len(),
        handover: stop == Stop::Handover,
    });
    events.close();
    if tokio::time::timeout(LAST_EVENTS, subscribers.recv())
        .await
        .is_err()
    {
        warn!("an event subscriber did not read the last events within {LAST_EVENTS:?}");
    }
    drop(lock);
    match stop {
        Stop::Detach => info!(
            removed = removed.len(),
            "detached; traffic follows the kernel routes"
        ),
        Stop::Handover => info!(
            pin_dir = %config.pin_dir.display(),
            "stopped; the fast path stays attached and pinned for the next controller"
        ),
    }
    match ended {
        controller::Ended::Shutdown => Ok(()),
        controller::Ended::PinsRemoved(missing) => Err(anyhow::anyhow!(
            "stopped: {missing} while running; without its pins the fast path cannot be \
             kept nor adopted by a restart. Traffic follows the kernel routes, which point \
             at the current owners; start `ha-user run` again"
        )),
    }
}

/// Resolves on Ctrl-C (SIGINT), which always detaches, or SIGTERM, which hands the
/// fast path over when `handover` (`run --handover`) and detaches otherwise.
pub fn terminated(handover: bool) -> anyhow::Result<impl Future<Output = Stop>> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => Stop::Detach,
            _ = term.recv() => if handover { Stop::Handover } else { Stop::Detach },
        }
    })
}

/// Hands the heap start-up freed back to the kernel. Parsing a large configuration,
/// the routing table and the BPF object leaves tens of MiB free inside the allocator,
/// which glibc keeps for the life of the process unless asked.
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
