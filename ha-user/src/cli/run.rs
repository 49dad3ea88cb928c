use std::path::Path;

use anyhow::{Context as _, bail};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
};
use tracing::{info, warn};

use crate::{
    cli::require_root,
    config::{Config, XdpMode},
    datapath::{self, Loaded},
    netdev, steering,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// LAN interface facing the web servers (overrides `lan` in the configuration).
    #[arg(long)]
    pub iface: Option<String>,
    /// XDP attach mode (overrides `xdp_mode`): native (in the driver) or skb (generic).
    #[arg(long, value_enum)]
    pub xdp_mode: Option<XdpModeArg>,
    /// Log every steered packet through aya-log (costs throughput; for debugging).
    #[arg(long)]
    pub log_packets: bool,
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

pub async fn run(config_path: &Path, args: Args) -> anyhow::Result<()> {
    let Args {
        iface,
        xdp_mode,
        log_packets,
    } = args;
    // Everything is validated before anything in the kernel is touched.
    let config = Config::load(config_path)?;
    require_root("ha-user run")?;
    let Some(lan_name) = iface.or_else(|| config.lan.clone()) else {
        bail!(
            "no LAN interface: give --iface or set `lan` in {}",
            config_path.display()
        );
    };
    let mode = xdp_mode.map_or(config.xdp_mode, XdpMode::from);
    let handle = netdev::connect()?;
    let lan = netdev::interface(&handle, &lan_name).await?;
    let mut ingress = Vec::new();
    for name in config.ingress.iter().filter(|name| **name != lan_name) {
        ingress.push(netdev::interface(&handle, name).await?);
    }
    datapath::ensure_bpffs(config.pin_dir.parent().unwrap_or(&config.pin_dir))?;
    let _lock = crate::lock::Lock::acquire(&config.control_socket)?;

    let mut loaded = Loaded::load(&config.pin_dir, log_packets).context("loading the data path")?;
    if log_packets {
        match aya_log::EbpfLogger::init(loaded.ebpf_mut()) {
            Ok(logger) => drop(tokio::spawn(log_forwarder(logger))),
            Err(err) => warn!("packet logging unavailable: {err}"),
        }
    }
    let mut maps = loaded.maps()?;
    // Maps first, then attach: the program never runs on half-filled maps.
    steering::install(&mut maps, &config, &lan, &ingress)?;
    let mut attachments = Vec::new();
    for iface in std::iter::once(&lan).chain(&ingress) {
        let attachment = loaded.attach(&iface.name, mode)?;
        info!(
            iface = %iface.name,
            ifindex = iface.index,
            mode = %mode,
            adopted = attachment.adopted,
            pin = %attachment.pin.display(),
            "XDP attached"
        );
        attachments.push(attachment);
    }
    info!(
        hosts = config.hosts.len(),
        prefixes = config.prefixes.len(),
        pin_dir = %config.pin_dir.display(),
        "steering; Ctrl-C or SIGTERM to detach and exit"
    );

    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    let removed = datapath::detach_all(&config.pin_dir)?;
    info!(
        removed = removed.len(),
        "detached; traffic follows the kernel routes"
    );
    Ok(())
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
