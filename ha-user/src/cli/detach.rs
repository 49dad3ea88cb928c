use std::{collections::BTreeSet, path::Path};

use anyhow::Context as _;
use ipnet::Ipv4Net;
use rtnetlink::Handle;
use tracing::warn;

use crate::{
    cli,
    config::Config,
    daemon::{
        lock::{DataPath, Lock, LockError},
        route_record::{self, Recorder},
    },
    kernel::{self, datapath, netdev, routes},
    model::defaults,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Also remove ha's kernel routes and its saved pins and drains: everything ha
    /// installed. Its routes are those of the configured prefixes and those in its
    /// record (/run/ha/routes-*.json), protocol 165 through the LAN; any other route
    /// stays. Until routes are added back, the VIP prefixes are unreachable; without
    /// this, traffic follows those routes as before.
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
    let named: Vec<Ipv4Net> = config
        .iter()
        .flat_map(|c| c.prefixes.iter().map(|p| p.cidr))
        .collect();
    purge_routes(&handle, lan.as_deref(), &named).await?;
    match std::fs::remove_file(&state_file) {
        Ok(()) => println!("removed {}", state_file.display()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("removing {}", state_file.display())),
    }
    Ok(())
}

/// Removes ha's routes through `lan` (without a configuration naming it: through
/// every LAN recorded in this namespace): those of the `named` prefixes and those
/// recorded, each only if it is still protocol 165 through that LAN. A record is
/// removed once its routes are; one whose routes could not all be removed stays.
async fn purge_routes(handle: &Handle, lan: Option<&str>, named: &[Ipv4Net]) -> anyhow::Result<()> {
    let records: Vec<Recorder> = match lan {
        Some(lan) => vec![Recorder::open(lan)?],
        None => {
            let mut records = Vec::new();
            for (lan, path) in route_record::all_here().context("listing ha's route records")? {
                records.push(Recorder::open_at(path, &lan)?);
            }
            records
        }
    };
    if records.is_empty() {
        println!(
            "no record of ha's routes in this network namespace: no route removed \
             (`ip route flush proto {}` removes every route of that protocol)",
            routes::ROUTE_PROTO
        );
    }
    for record in records {
        let lan = record.lan().to_owned();
        let prefixes: BTreeSet<Ipv4Net> = record.prefixes().iter().chain(named).copied().collect();
        let iface = match netdev::interface(handle, &lan).await {
            Ok(iface) => iface,
            Err(err) => {
                // Gone: the kernel removed every route through it with it.
                println!("{err}: no route through it to remove");
                record
                    .remove()
                    .with_context(|| format!("removing the record of {lan}"))?;
                continue;
            }
        };
        let mut failed = false;
        for (prefix, gateway, result) in routes::remove_ours(handle, prefixes, iface.index).await? {
            match result {
                Ok(()) => println!(
                    "removed route {prefix} via {gateway} dev {lan} proto {}",
                    routes::ROUTE_PROTO
                ),
                Err(err) => {
                    warn!("{err:#}");
                    failed = true;
                }
            }
        }
        if !failed {
            let path = record.path().to_owned();
            record
                .remove()
                .with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}
