//! Start-up, in order: load (or adopt) the configuration, check the interfaces, take
//! over the kernel routes, load the data path and adopt what a previous controller
//! left pinned, fill the maps, attach, then serve. Everything is validated before
//! anything in the kernel is touched.

use std::{
    collections::HashMap,
    io,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use rtnetlink::Handle;
use tokio::{
    io::{Interest, unix::AsyncFd},
    net::{TcpListener, UnixListener},
    sync::{mpsc, watch},
};
use tracing::{debug, info, warn};

use super::{
    Options,
    controller::{Affinity, Controller, Inputs, fast_path},
    events::EventBus,
    lock::Lock,
    metrics::{self, Metrics},
    server::{self, Command},
    state,
};
use crate::{
    config::{
        Config,
        adopt::{self, AdoptError},
    },
    health::HealthChecker,
    kernel::{
        self,
        datapath::{self, Loaded, Maps, layout},
        neigh, netdev,
        routes::{self, Adoption},
    },
    model::{HostId, defaults},
    policy::Policy,
    proto::{Event, events::ConfigSource},
};

/// A controller ready to run, with what it listens on.
pub(super) struct Booted {
    pub controller: Controller,
    pub inputs: Inputs,
    /// Requests for the loop, from the control socket's connections.
    pub commands: mpsc::Sender<Command>,
    /// Reload requests for the loop (SIGHUP).
    pub reload: mpsc::Sender<()>,
    /// The control socket, bound: it answers once the loop runs.
    pub control: UnixListener,
    pub metrics: Option<TcpListener>,
    /// Held for the life of the controller: one controller per control socket.
    pub lock: Lock,
    /// Tells the health checks to stop.
    pub stop_checks: watch::Sender<bool>,
}

/// Starts everything but the loop, publishing the start-up milestones on `events`.
pub(super) async fn boot(options: Options, events: &EventBus) -> anyhow::Result<Booted> {
    let Options {
        config: config_path,
        iface,
        xdp_mode,
        log_packets,
        reset,
    } = options;
    let handle = netdev::connect()?;
    // Everything is validated before anything in the kernel is touched.
    let (config, config_file) =
        load_config(&handle, config_path.as_deref(), iface.as_deref()).await?;
    kernel::require_root("ha-user run")?;
    events.publish(Event::ConfigLoaded {
        source: match (&config_file, &iface) {
            (Some(path), _) => ConfigSource::File { path: path.clone() },
            (None, iface) => ConfigSource::Routes {
                iface: iface.clone().unwrap_or_default(),
            },
        },
        hosts: config.hosts.len(),
        prefixes: config.prefixes.len(),
    });
    let Some(lan_name) = iface.or_else(|| config.lan.clone()) else {
        bail!("no LAN interface: give --iface or set `lan` in the configuration");
    };
    let mode = xdp_mode.unwrap_or(config.xdp_mode);
    let lan = netdev::interface(&handle, &lan_name).await?;
    let mut ingress = Vec::new();
    for name in config.ingress.iter().filter(|name| **name != lan_name) {
        ingress.push(netdev::interface(&handle, name).await?);
    }
    // An XDP program that is not behind one of our pinned links belongs to someone
    // else: refuse before anything changes.
    for iface in std::iter::once(&lan).chain(&ingress) {
        let ours = datapath::link_pin_path(&config.pin_dir, &iface.name).exists();
        if let (Some(id), false) = (iface.xdp_prog, ours) {
            bail!(
                "{} already runs XDP program id {id}, not attached by ha (see `bpftool net`); detach it or choose another interface",
                iface.name
            );
        }
    }
    datapath::ensure_bpffs(config.pin_dir.parent().unwrap_or(&config.pin_dir))?;
    let lock = Lock::acquire(&config.control_socket)?;
    // Pins of another version are refused before anything changes (--reset drops them).
    if !reset {
        layout::check_pinned(&config.pin_dir)?;
    }
    let metrics_listener = match config.metrics {
        Some(addr) => Some(
            metrics::bind(addr)
                .await
                .with_context(|| format!("binding the metrics address {addr}"))?,
        ),
        None => None,
    };

    // The slow path first: take over the static routes of the configured prefixes.
    let routes_left = adopt_routes(&handle, &config, lan.index, events).await?;

    if reset {
        let removed = datapath::detach_all(&config.pin_dir)?;
        match std::fs::remove_file(&config.state_file) {
            Ok(()) => info!(state = %config.state_file.display(), "saved pins and drains removed"),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(err)
                    .with_context(|| format!("removing {}", config.state_file.display()));
            }
        }
        info!(removed = removed.len(), "reset: starting from scratch");
    }
    let mut loaded = Loaded::load(&config.pin_dir, log_packets).context("loading the data path")?;
    events.publish(Event::ProgramLoaded {
        pin_dir: config.pin_dir.clone(),
    });
    if log_packets {
        match aya_log::EbpfLogger::init(loaded.ebpf_mut()) {
            Ok(logger) => drop(tokio::spawn(log_forwarder(logger))),
            Err(err) => warn!("packet logging unavailable: {err}"),
        }
    }
    let maps = loaded.maps()?;
    let policy = initial_policy(&config, &maps)?;
    let learned = neigh::lookup_all(&handle, lan.index).await?;
    let macs = config
        .hosts
        .iter()
        .map(|host| host.mac.or_else(|| learned.get(&host.address).copied()))
        .collect();

    let (health_tx, health_rx) = mpsc::channel(256);
    let (stop_checks, stop_rx) = watch::channel(false);
    let health = HealthChecker::spawn(&config.hosts, health_tx, stop_rx);
    let metrics_maps = if metrics_listener.is_some() {
        Some(Maps::open_pinned(&config.pin_dir)?)
    } else {
        None
    };
    let mut controller = Controller {
        metrics: Metrics::new(metrics_maps, Default::default()),
        last_change: vec![None; config.prefixes.len()],
        affinity: Affinity::adopt(&config, &maps, &policy)?,
        config,
        config_path: config_file,
        lan,
        ingress,
        maps,
        policy,
        netlink: handle,
        macs,
        health,
        events: events.clone(),
        fast_path: None,
    };
    controller.metrics.set_names(controller.metric_names());
    // How each interface must treat the router's forwarding, before the program runs
    // there: until this is known every interface verifies flows.
    let names: Vec<String> = controller.ingress.iter().map(|i| i.name.clone()).collect();
    let facts = fast_path::gather_once(controller.lan.name.clone(), names.clone())
        .await
        .context("looking at the router's forwarding (firewall, rp_filter, policy routing, ...)")?;
    controller.on_forwarding(&facts);
    // Maps before attaching: the program never runs on half-filled maps.
    controller
        .write_everything(Some(routes_left))
        .await
        .context("writing the data path and routes")?;
    events.publish(Event::MapsWritten {
        hosts: controller.config.hosts.len(),
        prefixes: controller.config.prefixes.len(),
        steered: controller
            .config
            .prefix_ids()
            .filter(|(id, _)| controller.policy.owner(*id).is_some())
            .count(),
    });
    for iface in std::iter::once(&controller.lan).chain(&controller.ingress) {
        let attachment = loaded.attach(&iface.name, mode)?;
        info!(
            iface = %iface.name,
            ifindex = iface.index,
            mode = %mode,
            adopted = attachment.adopted,
            pin = %attachment.pin.display(),
            "XDP attached"
        );
        events.publish(Event::XdpAttached {
            iface: iface.name.clone(),
            ifindex: iface.index,
            mode,
            adopted: attachment.adopted,
        });
    }
    // After XDP: flows the kernel forwards from now on are recorded.
    let (hook, adopted) = loaded.attach_learn(&controller.lan.name)?;
    info!(iface = %controller.lan.name, ?hook, adopted, "flow learning attached (TC egress)");
    // The links are pinned: the loaded object (the parsed ELF, its BTF) is not needed
    // any more.
    drop(loaded);
    controller.resolve_missing_macs().await;

    let addresses: Vec<_> = controller.config.hosts.iter().map(|h| h.address).collect();
    let neigh_rx = neigh::watch(controller.lan.index, addresses, 256)?;
    let forwarding = fast_path::watch(controller.lan.name.clone(), names)
        .context("starting the watch of the router's forwarding")?;
    let (commands, commands_rx) = mpsc::channel(64);
    let (reload, reload_rx) = mpsc::channel(1);
    let control = server::bind(&controller.config.control_socket)?;
    Ok(Booted {
        controller,
        inputs: Inputs {
            health: health_rx,
            neigh: neigh_rx,
            commands: commands_rx,
            reload: reload_rx,
            forwarding,
        },
        commands,
        reload,
        control,
        metrics: metrics_listener,
        lock,
        stop_checks,
    })
}

/// The configuration: the file, or (no file at the default path, --iface given) the
/// one the static routes through the interface describe.
async fn load_config(
    handle: &Handle,
    explicit: Option<&Path>,
    iface: Option<&str>,
) -> anyhow::Result<(Config, Option<PathBuf>)> {
    let path = explicit.unwrap_or(Path::new(defaults::CONFIG_PATH));
    if explicit.is_some() || path.exists() {
        return Ok((Config::load(path)?, Some(path.to_owned())));
    }
    let Some(iface) = iface else {
        bail!(
            "no configuration at {}: write one (see `ha-user plan` and the README) or give --iface to adopt the static routes through that interface",
            path.display()
        );
    };
    let config = config_from_kernel(handle, iface, Path::new(adopt::ETC_HOSTS)).await?;
    info!(
        iface,
        hosts = config.hosts.len(),
        prefixes = config.prefixes.len(),
        "no configuration file: adopting the static routes"
    );
    for prefix in &config.prefixes {
        let backups: Vec<&str> = prefix
            .backup_hosts(config.hosts.len())
            .map(|b| config.host(b).name.as_str())
            .collect();
        info!(prefix = %prefix.cidr, owner = %config.host(prefix.owner).name, backups = ?backups, "adopted");
    }
    Ok((config, None))
}

/// The configuration the routes through `lan` describe, with host names from
/// `etc_hosts` (normally [`adopt::ETC_HOSTS`]; a missing file means no names).
pub async fn config_from_kernel(
    handle: &Handle,
    lan: &str,
    etc_hosts: &Path,
) -> anyhow::Result<Config> {
    let interface = netdev::interface(handle, lan)
        .await
        .context("looking up the LAN interface to adopt its routes")?;
    let kernel_routes = routes::list(handle)
        .await
        .context("reading the kernel's routes to adopt them")?;
    let hosts_text = match std::fs::read_to_string(etc_hosts) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => String::new(),
        Err(err) => {
            return Err(err)
                .with_context(|| format!("reading {} for host names", etc_hosts.display()));
        }
    };
    let config: Result<Config, AdoptError> =
        adopt::config_from_routes(lan, interface.index, &kernel_routes, &hosts_text);
    Ok(config?)
}

/// A fresh policy, with what a previous controller's data path and the state file
/// say: its owners are kept until the health checks decide (pinned maps survive a
/// restart, so a restart moves no traffic), its pins and drains restored.
fn initial_policy(config: &Config, maps: &Maps) -> anyhow::Result<Policy> {
    let mut policy = Policy::new(config);
    let running = maps
        .prefix_entries()
        .context("reading the pinned prefix table")?;
    if !running.is_empty() {
        let running_hosts: HashMap<_, _> = running
            .iter()
            .map(|(net, entry)| (*net, HostId::from_raw(entry.host)))
            .collect();
        let holders: Vec<Option<HostId>> = config
            .prefixes
            .iter()
            .map(|p| running_hosts.get(&p.cidr).copied())
            .map(|host| host.filter(|h| h.index() < config.hosts.len()))
            .collect();
        policy.adopt_holders(&holders);
        info!(entries = running.len(), "adopting the running data path");
    }
    if let Some(saved) = state::load(&config.state_file)? {
        let applied = policy.restore(saved, tokio::time::Instant::now());
        for stale in applied.stale {
            warn!("saved admin state: {stale} (ignored)");
        }
    }
    Ok(policy)
}

/// Takes over (or installs) the kernel route of every configured prefix; a route the
/// configuration disagrees with stops the start-up before anything else changes.
/// Returns our routes through the LAN as it left them.
async fn adopt_routes(
    handle: &Handle,
    config: &Config,
    lan_index: u32,
    events: &EventBus,
) -> anyhow::Result<routes::OurRoutes> {
    let wanted: Vec<_> = config
        .prefixes
        .iter()
        .map(|p| (p.cidr, config.host(p.owner).address))
        .collect();
    let results = routes::adopt_all(handle, &wanted, lan_index).await?;
    let mut left = routes::OurRoutes::with_capacity(wanted.len());
    let (mut installed, mut kept, mut adopted) = (0, 0, 0);
    for ((prefix, _), result) in wanted.iter().zip(results) {
        let adoption =
            result.with_context(|| format!("taking over the kernel route of {prefix}"))?;
        if let Some(gateway) = adoption.ours_via(lan_index) {
            left.insert(*prefix, gateway);
        }
        match adoption {
            Adoption::Installed { gateway } => {
                installed += 1;
                debug!(%prefix, %gateway, "kernel route installed");
            }
            Adoption::AlreadyOurs { .. } => kept += 1,
            Adoption::Adopted { previous } => {
                adopted += 1;
                info!(%prefix, route = %previous, "kernel route adopted");
            }
        }
    }
    info!(
        installed,
        adopted,
        already_ours = kept,
        "kernel routes taken over"
    );
    events.publish(Event::RoutesTakenOver {
        installed,
        adopted,
        already_ours: kept,
    });
    Ok(left)
}

/// Drains aya-log records from the data path into our log, for as long as we run.
async fn log_forwarder(logger: aya_log::EbpfLogger<&'static dyn log::Log>) {
    // SAFETY: the ring buffer's descriptor is owned by `logger`, which the AsyncFd
    // owns, so it stays open for as long as it is registered.
    let mut logger = match unsafe { AsyncFd::register_with_interest(logger, Interest::READABLE) } {
        Ok(logger) => logger,
        Err(err) => return warn!("packet logging unavailable: {}", err.into_parts().1),
    };
    loop {
        let mut guard = match logger.readable_mut().await {
            Ok(guard) => guard,
            Err(err) => return warn!("packet logging stopped: {err}"),
        };
        guard.get_inner_mut().flush();
        guard.clear_ready();
    }
}
