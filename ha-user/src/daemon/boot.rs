//! Start-up, in two phases.
//!
//! 1. [`check`] changes nothing: it loads (or adopts) the configuration and checks
//!    it against the LAN's own addresses, checks the pin directory, the control
//!    socket path and the state file, takes the controller's locks (socket, pins,
//!    interfaces), checks the interfaces (no VLAN sub-interface, no foreign XDP
//!    program) and the pinned maps' layout, binds the metrics address and decides
//!    about every kernel route (a route it cannot take over stops it here).
//! 2. [`start`] makes the changes, in order: the control socket, the kernel routes,
//!    `--reset`, the programs and their pinned maps, the maps' contents, XDP on
//!    every interface, `ha_learn`, the watches. Each is recorded in the undo log
//!    ([`Rollback`]) as it is made, with what was there before; any failure undoes
//!    them all before the error is returned, so the machine is as it was found.

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
    controller::{Affinity, Controller, Inputs, LanState, SavedState, fast_path},
    events::EventBus,
    lock::{DataPath, Lock},
    metrics::{self, Metrics},
    rollback::{Rollback, Step, Undo},
    route_record::Recorder,
    server::{self, Command},
    state,
};
use crate::{
    config::{
        Config, Router,
        adopt::{self, AdoptError},
    },
    health::HealthChecker,
    kernel::{
        self, conntrack,
        datapath::{
            self, Loaded, Maps, layout,
            undo::{LearnBefore, MapsBefore, PinsBefore, XdpBefore},
        },
        forwarding::Facts,
        lan::{self, LanLink},
        neigh,
        netdev::{self, Interface},
        route_snapshot::RouteSnapshot,
        routes::{self, AdoptPlan, Adoption},
    },
    model::{HostId, XdpMode, defaults},
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
    /// Held for the life of the controller: one controller per data path (socket, pins, interfaces).
    pub lock: Lock,
    /// Tells the health checks to stop.
    pub stop_checks: watch::Sender<bool>,
}

/// Starts everything but the loop, publishing the start-up milestones on `events`.
/// A failure leaves the machine as it was found (see the module documentation).
pub(super) async fn boot(options: Options, events: &EventBus) -> anyhow::Result<Booted> {
    let handle = netdev::connect()?;
    let (checked, lock) = check(options, &handle, events).await?;
    let mut rollback = Rollback::new(handle.clone())?;
    match start(checked, &handle, events, &mut rollback).await {
        Ok(mut started) => {
            rollback.disarm();
            // Not part of the undo: what a kill or an earlier configuration left.
            started.controller.remove_unnamed_routes().await;
            Ok(started.with(lock))
        }
        Err(err) => {
            let undone = rollback.undo().await;
            // Held until the undo is over: no other controller starts meanwhile.
            drop(lock);
            Err(undone.explain(err))
        }
    }
}

/// What [`check`] found and decided; nothing has changed yet.
struct Checked {
    config: Config,
    config_file: Option<PathBuf>,
    lan: Interface,
    ingress: Vec<Interface>,
    mode: XdpMode,
    log_packets: bool,
    reset: bool,
    metrics: Option<TcpListener>,
    /// What happens to the kernel route of every configured prefix.
    routes: AdoptPlan,
    /// The routes ha may have installed through the LAN.
    record: Recorder,
    /// The router's forwarding, as the fast path must respect it (firewall,
    /// reverse-path filter, policy routing, ...).
    forwarding: Facts,
}

/// Everything validated, nothing changed: the configuration, the interfaces, the
/// lock, the pins' layout, the metrics address, the kernel routes.
async fn check(
    options: Options,
    handle: &Handle,
    events: &EventBus,
) -> anyhow::Result<(Checked, Lock)> {
    let Options {
        config: config_path,
        iface,
        xdp_mode,
        log_packets,
        reset,
    } = options;
    let (config, config_file) =
        load_config(handle, config_path.as_deref(), iface.as_deref()).await?;
    kernel::require_root("ha-user run")?;
    kernel::require_kernel()?;
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
    let lan = netdev::interface(handle, &lan_name).await?;
    // Checked again now that the router's own addresses are known.
    let config = match &config_file {
        Some(path) => {
            let router = Router {
                iface: lan.name.clone(),
                addresses: netdev::ipv4_addresses(handle, lan.index, &lan.name).await?,
            };
            Config::load_on(path, Some(&router))?
        }
        None => config,
    };
    let mut ingress = Vec::new();
    for name in config.ingress.iter().filter(|name| **name != lan_name) {
        ingress.push(netdev::interface(handle, name).await?);
    }
    datapath::ensure_bpffs(config.pin_dir.parent().unwrap_or(&config.pin_dir))?;
    datapath::pin_dir::check(&config.pin_dir)?;
    server::check_path(&config.control_socket)?;
    // A state file that is not ha's is refused before anything changes.
    state::load::<SavedState>(&config.state_file)?;
    // Before the interfaces are looked at: a controller running on them is named as
    // such, not as a foreign XDP program.
    let lock = Lock::acquire(DataPath {
        control_socket: &config.control_socket,
        pin_dir: &config.pin_dir,
        lan: Some(&lan.name),
        ingress: &config.ingress,
    })?;
    check_interfaces(handle, &config, &lan, &ingress).await?;
    // A record that is not ha's is refused before anything changes.
    let record = Recorder::open(&lan.name)?;
    // Pins of another version are refused before anything changes (--reset drops them).
    if !reset {
        layout::check_pinned(&config.pin_dir)?;
    }
    let metrics = match config.metrics {
        Some(addr) => Some(
            metrics::bind(addr)
                .await
                .with_context(|| format!("binding the metrics address {addr}"))?,
        ),
        None => None,
    };
    let wanted: Vec<_> = config
        .prefixes
        .iter()
        .map(|p| (p.cidr, config.host(p.owner).address))
        .collect();
    let routes = routes::plan_all(handle, &wanted, lan.index)
        .await
        .context("taking over the kernel routes of the configured prefixes")?;
    let names: Vec<String> = ingress.iter().map(|i| i.name.clone()).collect();
    let forwarding = fast_path::gather_once(lan.name.clone(), names)
        .await
        .context("looking at the router's forwarding (firewall, rp_filter, policy routing, ...)")?;
    let checked = Checked {
        config,
        config_file,
        lan,
        ingress,
        mode,
        log_packets,
        reset,
        metrics,
        routes,
        record,
        forwarding,
    };
    Ok((checked, lock))
}

/// Refuses interfaces the fast path cannot run on: VLAN sub-interfaces, and
/// interfaces running an XDP program that is not behind one of our pinned links
/// (someone else's).
async fn check_interfaces(
    handle: &Handle,
    config: &Config,
    lan: &Interface,
    ingress: &[Interface],
) -> anyhow::Result<()> {
    let roles = std::iter::once((lan, "the LAN interface"))
        .chain(ingress.iter().map(|iface| (iface, "an ingress interface")));
    for (iface, role) in roles {
        if let Some(vlan) = iface.vlan {
            let parent = match vlan.parent {
                Some(index) => netdev::name_of(handle, index).await.unwrap_or(None),
                None => None,
            };
            netdev::refuse_vlan(iface, role, parent)?;
        }
        let ours = datapath::link_pin_path(&config.pin_dir, &iface.name).exists();
        if let (Some(id), false) = (iface.xdp_prog, ours) {
            bail!(
                "{} already runs XDP program id {id}, not attached by ha (see `bpftool net`); detach it or choose another interface",
                iface.name
            );
        }
    }
    Ok(())
}

/// What [`start`] made; with the lock, a [`Booted`].
struct Started {
    controller: Controller,
    inputs: Inputs,
    commands: mpsc::Sender<Command>,
    reload: mpsc::Sender<()>,
    control: UnixListener,
    metrics: Option<TcpListener>,
    stop_checks: watch::Sender<bool>,
}

impl Started {
    fn with(self, lock: Lock) -> Booted {
        let Started {
            controller,
            inputs,
            commands,
            reload,
            control,
            metrics,
            stop_checks,
        } = self;
        Booted {
            controller,
            inputs,
            commands,
            reload,
            control,
            metrics,
            lock,
            stop_checks,
        }
    }
}

/// The changes, each recorded in `rollback` before (or as) it is made.
async fn start(
    checked: Checked,
    handle: &Handle,
    events: &EventBus,
    rollback: &mut Rollback,
) -> anyhow::Result<Started> {
    let Checked {
        config,
        config_file,
        lan,
        ingress,
        mode,
        log_packets,
        reset,
        metrics: metrics_listener,
        routes: route_plan,
        mut record,
        forwarding,
    } = checked;

    let control = server::bind(&config.control_socket)?;
    rollback.record(Undo::ControlSocket(config.control_socket.clone()));
    rollback.passed(Step::ControlSocket)?;

    // The slow path first: take over the static routes of the configured prefixes.
    // Every route of ours counts too: writing the maps removes those of prefixes that
    // left the configuration.
    let snapshot = RouteSnapshot::take(handle, config.prefixes.iter().map(|p| p.cidr))
        .await
        .context("reading the kernel routes before changing them")?;
    rollback.record(Undo::Routes(snapshot));
    // Before any route is added: a kill from here on leaves them recorded.
    record
        .cover(config.prefixes.iter().map(|p| p.cidr))
        .context("recording the routes about to be installed")?;
    let routes_left = adopt_routes(handle, route_plan, lan.index, events).await?;
    rollback.passed(Step::Routes)?;

    if reset {
        reset_pins(&config)?;
        rollback.passed(Step::Reset)?;
    }
    let pins = PinsBefore::capture(&config.pin_dir)?;
    let adopted_maps = MapsBefore::capture(&config.pin_dir, &pins)
        .context("reading the pinned maps before changing them")?;
    rollback.record(Undo::Pins(pins));
    if adopted_maps.any() {
        rollback.record(Undo::Maps(adopted_maps));
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
    rollback.passed(Step::Load)?;

    let policy = initial_policy(&config, &maps)?;
    let learned = neigh::lookup_all(handle, lan.index).await?;
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
        lan_state: LanState::Steering,
        // The watch reports a LAN down at start-up at once.
        lan_up: true,
        xdp_mode: mode,
        log_packets,
        route_retry: None,
        route_record: record,
        ingress,
        maps,
        policy,
        netlink: handle.clone(),
        macs,
        health,
        events: events.clone(),
        fast_path: None,
        conntrack: watch::channel(None).0,
    };
    controller.metrics.set_names(controller.metric_names());
    // How each interface must treat the router's forwarding, before the program runs
    // there (until this is written every interface verifies flows); its writes are in
    // the maps' undo.
    controller.on_forwarding(&forwarding);
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
    rollback.passed(Step::Maps)?;

    attach_xdp(&mut loaded, &controller, mode, events, rollback)?;
    rollback.passed(Step::Xdp)?;
    // After XDP: flows the kernel forwards from now on are recorded.
    attach_learn(&mut loaded, &controller, rollback)?;
    rollback.passed(Step::Learn)?;
    // The links are pinned: the loaded object (the parsed ELF, its BTF) is not needed
    // any more.
    drop(loaded);

    let neigh_rx = neigh::watch(256)?;
    let known = LanLink {
        index: controller.lan.index,
        mtu: controller.lan.mtu,
        mac: Some(controller.lan.mac),
        // Read again at once: a LAN down at start-up is reported by the watch.
        up: true,
    };
    let lan_rx = lan::watch(&controller.lan.name, Some(known), 64)?;
    let names: Vec<String> = controller.ingress.iter().map(|i| i.name.clone()).collect();
    let forwarding = fast_path::watch(controller.lan.name.clone(), names)
        .context("starting the watch of the router's forwarding")?;
    conntrack::keeper::spawn(&controller.config.pin_dir, controller.conntrack.subscribe())
        .context("starting the conntrack keeper")?;
    rollback.passed(Step::Watch)?;
    // The last step cannot fail: the kernel resolves what it is asked to (missing
    // MACs are then reported by the neighbour watch).
    controller.resolve_missing_macs().await;
    let (commands, commands_rx) = mpsc::channel(64);
    let (reload, reload_rx) = mpsc::channel(1);
    Ok(Started {
        controller,
        inputs: Inputs {
            health: health_rx,
            neigh: neigh_rx,
            lan: lan_rx,
            commands: commands_rx,
            reload: reload_rx,
            forwarding,
        },
        commands,
        reload,
        control,
        metrics: metrics_listener,
        stop_checks,
    })
}

/// `--reset`: the pins, the saved pins and drains of a previous controller go (not
/// undone if the start-up fails later: that was asked for).
fn reset_pins(config: &Config) -> anyhow::Result<()> {
    let removed = datapath::detach_all(&config.pin_dir)?;
    match std::fs::remove_file(&config.state_file) {
        Ok(()) => info!(state = %config.state_file.display(), "saved pins and drains removed"),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => {
            return Err(err).with_context(|| format!("removing {}", config.state_file.display()));
        }
    }
    info!(removed = removed.len(), "reset: starting from scratch");
    Ok(())
}

/// Attaches `ha_steer` to the LAN and every ingress interface, each recorded with
/// the link it replaces (if any) before it is attached.
fn attach_xdp(
    loaded: &mut Loaded,
    controller: &Controller,
    mode: XdpMode,
    events: &EventBus,
    rollback: &mut Rollback,
) -> anyhow::Result<()> {
    for iface in std::iter::once(&controller.lan).chain(&controller.ingress) {
        let before = XdpBefore::capture(&controller.config.pin_dir, &iface.name)?;
        let attached = loaded.attach(iface, mode);
        rollback.record(Undo::Xdp {
            iface: iface.name.clone(),
            before,
        });
        let attachment = attached?;
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
    Ok(())
}

/// Attaches `ha_learn` to the LAN's egress, recorded like [`attach_xdp`].
fn attach_learn(
    loaded: &mut Loaded,
    controller: &Controller,
    rollback: &mut Rollback,
) -> anyhow::Result<()> {
    let lan = &controller.lan.name;
    let mut before = LearnBefore::capture(&controller.config.pin_dir, lan)?;
    let attached = loaded.attach_learn(lan);
    if let Ok((hook, adopted)) = &attached {
        before.attached(*hook, *adopted);
    }
    rollback.record(Undo::Learn {
        iface: lan.clone(),
        before,
    });
    let (hook, adopted) = attached?;
    info!(iface = %lan, ?hook, adopted, "flow learning attached (TC egress)");
    Ok(())
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
    if let Some(saved) = state::load::<SavedState>(&config.state_file)? {
        let applied = policy.restore(saved.admin, tokio::time::Instant::now());
        for stale in applied.stale {
            warn!("saved admin state: {stale} (ignored)");
        }
    }
    Ok(policy)
}

/// Takes over (or installs) the kernel route of every configured prefix, as [`check`]
/// planned. Returns our routes through the LAN as it left them.
async fn adopt_routes(
    handle: &Handle,
    plan: AdoptPlan,
    lan_index: u32,
    events: &EventBus,
) -> anyhow::Result<routes::OurRoutes> {
    let adoptions = plan
        .carry_out(handle)
        .await
        .context("taking over the kernel routes of the configured prefixes")?;
    let mut left = routes::OurRoutes::with_capacity(adoptions.len());
    let (mut installed, mut kept, mut adopted) = (0, 0, 0);
    for (prefix, adoption) in adoptions {
        if let Some(gateway) = adoption.ours_via(lan_index) {
            left.insert(prefix, gateway);
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
