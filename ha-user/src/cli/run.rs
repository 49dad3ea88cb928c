use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};
use tracing::{debug, info, warn};

use crate::{
    adopt,
    cli::require_root,
    config::{self, Config, XdpMode},
    control,
    controller::{Controller, Inputs},
    datapath::{self, Loaded, Maps},
    health::HealthChecker,
    metrics::{self, Metrics},
    neigh, netdev,
    policy::Policy,
    routes::{self, Adoption},
    state,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// LAN interface facing the web servers (overrides `lan`). Without a configuration
    /// file, the static routes through it are adopted: each gateway becomes a host.
    #[arg(long)]
    pub iface: Option<String>,
    /// XDP attach mode (overrides `xdp_mode`): native (in the driver) or skb (generic).
    #[arg(long, value_enum)]
    pub xdp_mode: Option<XdpModeArg>,
    /// Log every steered packet through aya-log (costs throughput; for debugging).
    #[arg(long)]
    pub log_packets: bool,
    /// Start from scratch: remove the pinned maps and links and the saved pins and
    /// drains instead of adopting them.
    #[arg(long)]
    pub reset: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum XdpModeArg {
    Native,
    Skb,
}

impl From<XdpModeArg> for XdpMode {
    fn from(mode: XdpModeArg) -> Self {
        match mode {
            XdpModeArg::Native => XdpMode::Native,
            XdpModeArg::Skb => XdpMode::Skb,
        }
    }
}

/// `config_path`: `Some` when given with --config (it must exist); `None` for the
/// default path, which may be missing when --iface is given (zero-config start).
pub async fn run(config_path: Option<&Path>, args: Args) -> anyhow::Result<()> {
    let Args {
        iface,
        xdp_mode,
        log_packets,
        reset,
    } = args;
    let handle = netdev::connect()?;
    // Everything is validated before anything in the kernel is touched.
    let (config, config_file) = load_config(&handle, config_path, iface.as_deref()).await?;
    require_root("ha-user run")?;
    let Some(lan_name) = iface.or_else(|| config.lan.clone()) else {
        bail!("no LAN interface: give --iface or set `lan` in the configuration");
    };
    let mode = xdp_mode.map_or(config.xdp_mode, XdpMode::from);
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
    let _lock = crate::lock::Lock::acquire(&config.control_socket)?;
    let metrics_listener = match config.metrics {
        Some(addr) => Some(
            metrics::bind(addr)
                .await
                .with_context(|| format!("binding the metrics address {addr}"))?,
        ),
        None => None,
    };

    // The slow path first: take over the static routes of the configured prefixes.
    let routes_left = adopt_routes(&handle, &config, lan.index).await?;

    if reset {
        let removed = datapath::detach_all(&config.pin_dir)?;
        match std::fs::remove_file(&config.state_file) {
            Ok(()) => info!(state = %config.state_file.display(), "saved pins and drains removed"),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(err)
                    .with_context(|| format!("removing {}", config.state_file.display()));
            }
        }
        info!(removed = removed.len(), "reset: starting from scratch");
    }
    let mut loaded = Loaded::load(&config.pin_dir, log_packets).context("loading the data path")?;
    if log_packets {
        match aya_log::EbpfLogger::init(loaded.ebpf_mut()) {
            Ok(logger) => drop(tokio::spawn(log_forwarder(logger))),
            Err(err) => warn!("packet logging unavailable: {err}"),
        }
    }
    let maps = loaded.maps()?;

    let mut policy = Policy::new(&config);
    // A previous controller's data path (pinned maps survive it): keep its owners
    // until the health checks decide, so a restart moves no traffic.
    let running = maps
        .prefix_entries()
        .context("reading the pinned prefix table")?;
    if !running.is_empty() {
        let running_hosts: HashMap<_, _> = running
            .iter()
            .map(|(net, entry)| (*net, entry.host as usize))
            .collect();
        let holders: Vec<Option<usize>> = config
            .prefixes
            .iter()
            .map(|p| running_hosts.get(&p.cidr).copied())
            .map(|host| host.filter(|&h| h < config.hosts.len()))
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
    let mut macs = Vec::with_capacity(config.hosts.len());
    let learned = neigh::lookup_all(&handle, lan.index).await?;
    for host in &config.hosts {
        macs.push(host.mac.or_else(|| learned.get(&host.address).copied()));
    }

    let (health_tx, health_rx) = mpsc::channel(256);
    let (stop_tx, stop_rx) = watch::channel(false);
    let health = HealthChecker::spawn(&config.hosts, health_tx, stop_rx);
    let metrics_maps = if metrics_listener.is_some() {
        Some(Maps::open_pinned(&config.pin_dir)?)
    } else {
        None
    };
    let mut controller = Controller {
        metrics: Metrics::new(metrics_maps, Default::default()),
        last_change: vec![None; config.prefixes.len()],
        config,
        config_path: config_file,
        lan,
        ingress,
        maps,
        policy,
        netlink: handle,
        macs,
        health,
    };
    controller.metrics.set_names(controller.metric_names());
    // Maps before attaching: the program never runs on half-filled maps.
    controller
        .write_everything(Some(routes_left))
        .await
        .context("writing the data path and routes")?;
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
    }
    // The links are pinned: the loaded object (the parsed ELF, its BTF) is not needed
    // any more.
    drop(loaded);
    controller.resolve_missing_macs().await;

    let addresses: Vec<_> = controller.config.hosts.iter().map(|h| h.address).collect();
    let neigh_rx = neigh::watch(controller.lan.index, addresses, 256)?;
    let (command_tx, command_rx) = mpsc::channel(64);
    let listener = control::bind(&controller.config.control_socket)?;
    tokio::spawn(control::serve(listener, command_tx));
    if let Some(listener) = metrics_listener {
        tokio::spawn(metrics::serve(listener, controller.metrics.clone()));
    }
    let (reload_tx, reload_rx) = mpsc::channel(1);
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            // A reload already queued covers this one too.
            let _ = reload_tx.try_send(());
        }
    });
    release_freed_memory();
    info!(
        hosts = controller.config.hosts.len(),
        prefixes = controller.config.prefixes.len(),
        socket = %controller.config.control_socket.display(),
        "steering; SIGHUP reloads the configuration, Ctrl-C or SIGTERM detaches and exits"
    );

    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    let inputs = Inputs {
        health: health_rx,
        neigh: neigh_rx,
        commands: command_rx,
        reload: reload_rx,
    };
    let controller = controller.run(inputs, shutdown).await;
    let _ = stop_tx.send(true);
    controller.health.stop().await;
    let removed = datapath::detach_all(&controller.config.pin_dir)?;
    let _ = std::fs::remove_file(&controller.config.control_socket);
    info!(
        removed = removed.len(),
        "detached; traffic follows the kernel routes"
    );
    Ok(())
}

/// The configuration: the file, or (no file at the default path, --iface given) the
/// one the static routes through the interface describe.
async fn load_config(
    handle: &rtnetlink::Handle,
    explicit: Option<&Path>,
    iface: Option<&str>,
) -> anyhow::Result<(Config, Option<PathBuf>)> {
    let path = explicit.unwrap_or(Path::new(config::DEFAULT_PATH));
    if explicit.is_some() || path.exists() {
        return Ok((Config::load(path)?, Some(path.to_owned())));
    }
    let Some(iface) = iface else {
        bail!(
            "no configuration at {}: write one (see `ha-user plan` and the README) or give --iface to adopt the static routes through that interface",
            path.display()
        );
    };
    let config = adopt::config_from_kernel(handle, iface, Path::new(adopt::ETC_HOSTS)).await?;
    info!(
        iface,
        hosts = config.hosts.len(),
        prefixes = config.prefixes.len(),
        "no configuration file: adopting the static routes"
    );
    for prefix in &config.prefixes {
        let backups: Vec<&str> = prefix
            .backup_hosts(config.hosts.len())
            .map(|b| config.hosts[b].name.as_str())
            .collect();
        info!(prefix = %prefix.cidr, owner = %config.hosts[prefix.owner].name, backups = ?backups, "adopted");
    }
    Ok((config, None))
}

/// Takes over (or installs) the kernel route of every configured prefix; a route the
/// configuration disagrees with stops the start-up before anything else changes.
/// Returns our routes through the LAN as it left them.
async fn adopt_routes(
    handle: &rtnetlink::Handle,
    config: &Config,
    lan_index: u32,
) -> anyhow::Result<routes::OurRoutes> {
    let wanted: Vec<_> = config
        .prefixes
        .iter()
        .map(|p| (p.cidr, config.hosts[p.owner].address))
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
    Ok(left)
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
