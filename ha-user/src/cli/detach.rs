use std::path::Path;

use anyhow::Context as _;
use tracing::warn;

use crate::{
    cli,
    config::Config,
    daemon::lock::{DataPath, Lock, LockError},
    kernel::{self, datapath, netdev, routes},
    model::defaults,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Also remove ha's kernel routes (protocol 165) and its saved pins and drains:
    /// everything ha installed. Until routes are added back, the VIP prefixes are
    /// unreachable; without this, traffic follows those routes as before.
    #[arg(long)]
    pub purge: bool,
}

pub async fn detach(config: Option<&Path>, args: Args) -> anyhow::Result<()> {
    kernel::require_root("ha-user detach")?;
    let config = cli::optional_config(config)?;
    let (pin_dir, socket, state_file, lan, ingress) = match &config {
        Some(Config {
            pin_dir,
            control_socket,
            state_file,
            lan,
            ingress,
            ..
        }) => (
            pin_dir.clone(),
            control_socket.clone(),
            state_file.clone(),
            lan.clone(),
            ingress.clone(),
        ),
        None => (
            defaults::PIN_DIR.into(),
            defaults::CONTROL_SOCKET.into(),
            defaults::STATE_FILE.into(),
            None,
            Vec::new(),
        ),
    };
    // A running controller would keep writing what is removed here: one with this
    // control socket, these pins or these interfaces.
    let _lock = match Lock::acquire(DataPath {
        control_socket: &socket,
        pin_dir: &pin_dir,
        lan: lan.as_deref(),
        ingress: &ingress,
    }) {
        Err(LockError::Held { what, .. }) => anyhow::bail!(
            "a controller is running (it holds {what}): stop it instead (SIGTERM or Ctrl-C \
             detaches the fast path)"
        ),
        other => other?,
    };
    let removed = datapath::detach_all(&pin_dir)
        .with_context(|| format!("detaching {}", pin_dir.display()))?;
    // On kernels without TCX the flow-learning program is a tc filter, not a pin.
    let handle = netdev::connect()?;
    for iface in netdev::names(&handle).await? {
        if datapath::learn::detach_filter(&iface)? {
            println!("removed the flow-learning tc filter from {iface}");
        }
    }
    if removed.is_empty() {
        println!("nothing pinned under {}", pin_dir.display());
    }
    for path in removed {
        println!("removed {}", path.display());
    }
    if !args.purge {
        println!(
            "kernel routes with protocol {} stay (the slow path); `detach --purge` removes them",
            routes::ROUTE_PROTO
        );
        return Ok(());
    }
    for route in routes::list(&handle)
        .await?
        .into_iter()
        .filter(|r| r.is_ours())
    {
        match routes::remove(&handle, route.prefix).await {
            Ok(_) => println!("removed route {route}"),
            Err(err) => warn!("{err:#}"),
        }
    }
    match std::fs::remove_file(&state_file) {
        Ok(()) => println!("removed {}", state_file.display()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("removing {}", state_file.display())),
    }
    Ok(())
}
