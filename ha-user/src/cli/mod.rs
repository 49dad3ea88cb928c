//! The command line: one module per subcommand.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config;

pub mod check_config;
pub mod detach;
pub mod run;
pub mod set_owner;
pub mod status;

/// Keeps web traffic flowing when a web server fails: an XDP fast path that steers
/// each VIP prefix to its owning server, beside the kernel's static routes.
#[derive(Debug, Parser)]
#[command(name = "ha-user", version)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, short = 'c', global = true, default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load and attach the fast path, fill its maps, and run until Ctrl-C or SIGTERM.
    Run(run::Args),
    /// Show each steered prefix, its owner and traffic, read from the pinned maps.
    Status(status::Args),
    /// Steer PREFIX to HOST (a host name or address from the configuration).
    SetOwner(set_owner::Args),
    /// Validate a configuration file without touching anything.
    CheckConfig(check_config::Args),
    /// Remove everything ha pinned: detaches the program and deletes its maps.
    Detach,
}

impl Cli {
    pub async fn execute(self) -> anyhow::Result<()> {
        let Cli { config, command } = self;
        match command {
            Command::Run(args) => run::run(&config, args).await,
            Command::Status(args) => status::status(&config, args),
            Command::SetOwner(args) => set_owner::set_owner(&config, args),
            Command::CheckConfig(args) => check_config::check_config(&config, args),
            Command::Detach => detach::detach(&config),
        }
    }
}

/// Fails with a clear message unless running as root.
pub fn require_root(what: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        anyhow::bail!("{what} needs root (CAP_BPF and CAP_NET_ADMIN): run it with sudo");
    }
    Ok(())
}
