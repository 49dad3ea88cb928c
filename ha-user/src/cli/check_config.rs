use std::path::{Path, PathBuf};

use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// File to check (default: the --config file).
    pub file: Option<PathBuf>,
}

pub fn check_config(config: &Path, args: Args) -> anyhow::Result<()> {
    let path = args.file.as_deref().unwrap_or(config);
    let config = Config::load(path)?;
    println!(
        "{}: ok ({} hosts, {} prefixes)",
        path.display(),
        config.hosts.len(),
        config.prefixes.len()
    );
    Ok(())
}
