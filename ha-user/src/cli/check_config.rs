use std::{
    io,
    path::{Path, PathBuf},
};

use crate::{
    config::{Config, Router, file},
    daemon::{
        SavedState, server,
        state::{self, StateError},
    },
    kernel::netdev,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// File to check (default: the --config file).
    pub file: Option<PathBuf>,
}

pub async fn check_config(config: &Path, args: Args) -> anyhow::Result<()> {
    let path = args.file.as_deref().unwrap_or(config);
    let text = file::read(path)?;
    let config = Config::parse(path, &text)?;
    match router(&config).await {
        Ok(router) => drop(Config::parse_on(path, &text, Some(&router))?),
        Err(why) => eprintln!("note: not checked against the router's own addresses: {why}"),
    }
    check_paths(&config)?;
    println!(
        "{}: ok ({} hosts, {} prefixes)",
        path.display(),
        config.hosts.len(),
        config.prefixes.len()
    );
    Ok(())
}

/// The router's addresses on the configuration's LAN interface, or why they are not
/// known here (no `lan`, no such interface on this machine).
async fn router(config: &Config) -> Result<Router, String> {
    let Some(lan) = &config.lan else {
        return Err("no `lan` in the configuration (`run --iface` names it)".to_owned());
    };
    let handle = netdev::connect().map_err(|e| e.to_string())?;
    let iface = netdev::interface(&handle, lan)
        .await
        .map_err(|e| e.to_string())?;
    let addresses = netdev::ipv4_addresses(&handle, iface.index, lan)
        .await
        .map_err(|e| format!("{:#}", anyhow::Error::from(e)))?;
    Ok(Router {
        iface: lan.clone(),
        addresses,
    })
}

/// What `run` would refuse about the files the configuration names: a control
/// socket over something that is not a socket, a state file that is not ha's. A
/// state file this user may not read is not checked (`run` is root).
fn check_paths(config: &Config) -> anyhow::Result<()> {
    server::check_path(&config.control_socket)?;
    match state::load::<SavedState>(&config.state_file) {
        Ok(_) => Ok(()),
        Err(StateError::Read { source, .. })
            if source.kind() == io::ErrorKind::PermissionDenied =>
        {
            eprintln!(
                "note: {} is not readable here: not checked",
                config.state_file.display()
            );
            Ok(())
        }
        Err(err) => Err(err.into()),
    }
}
