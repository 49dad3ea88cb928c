use std::{
    io,
    path::{Path, PathBuf},
};

use crate::{
    config::Config,
    daemon::{
        SavedState, server,
        state::{self, StateError},
    },
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// File to check (default: the --config file).
    pub file: Option<PathBuf>,
}

pub fn check_config(config: &Path, args: Args) -> anyhow::Result<()> {
    let path = args.file.as_deref().unwrap_or(config);
    let config = Config::load(path)?;
    check_paths(&config)?;
    println!(
        "{}: ok ({} hosts, {} prefixes)",
        path.display(),
        config.hosts.len(),
        config.prefixes.len()
    );
    Ok(())
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
