//! The command line: one module per subcommand.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    config::{self, Config},
    model::defaults,
    proto::{
        ChangeReport, Request,
        socket::{Connection, ControlError},
    },
};

pub mod check_config;
pub mod clear_owner;
pub mod detach;
pub mod drain;
pub mod events;
pub mod plan;
pub mod run;
pub mod set_owner;
pub mod simulate;
pub mod stats;
pub mod status;

/// Keeps web traffic flowing when a web server fails: an XDP fast path that steers
/// each VIP prefix to its owning server, health checks that move prefixes when a
/// server fails, and the kernel's static routes kept in agreement.
#[derive(Debug, Parser)]
#[command(name = "ha-user", version)]
pub struct Cli {
    /// Configuration file [default: /etc/ha/ha.toml].
    #[arg(long, short = 'c', global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller: attach the fast path, health-check the hosts, move
    /// prefixes on failure, keep the kernel routes in agreement.
    Run(run::Args),
    /// Pin PREFIX to HOST (name or address) until `clear-owner`.
    SetOwner(set_owner::Args),
    /// Release the pin of PREFIX: the health policy decides again.
    ClearOwner(clear_owner::Args),
    /// Move every prefix off HOST until `undrain`: new connections go elsewhere at
    /// once, established ones may finish (up to `drain_timeout_ms`; `--now`: moved
    /// at once).
    Drain(drain::Args),
    /// Let HOST take prefixes again.
    Undrain(drain::UndrainArgs),
    /// Whether the LAN interface steers (and why not); each prefix's owner and why;
    /// each host's health, MAC, the VIPs it serves (and why not) and its probes by
    /// outcome.
    Status(status::Args),
    /// Packets and bytes per prefix and host, and the data path's verdict counters.
    Stats(stats::Args),
    /// Follow the controller live: health changes, owner changes, reloads, admin
    /// commands, start-up and shutdown, one line (or JSON object) per event.
    Events(events::Args),
    /// Run a packet to DST through the real program against the live tables and
    /// show where it would go (counters are not touched).
    Simulate(simulate::Args),
    /// Print what the classic setup writes by hand: loopback VIPs, sysctls, the
    /// router's static routes, DNS records.
    Plan(plan::Args),
    /// Validate a configuration file without touching anything.
    CheckConfig(check_config::Args),
    /// Remove everything ha pinned: detaches the program and deletes its maps
    /// (`--purge`: its kernel routes and saved pins and drains too).
    Detach(detach::Args),
}

impl Cli {
    pub async fn execute(self) -> anyhow::Result<()> {
        let Cli { config, command } = self;
        let config = config.as_deref();
        let path = config.unwrap_or(Path::new(defaults::CONFIG_PATH));
        match command {
            Command::Run(args) => run::run(config, args).await,
            Command::SetOwner(args) => set_owner::set_owner(config, args).await,
            Command::ClearOwner(args) => clear_owner::clear_owner(config, args).await,
            Command::Drain(args) => drain::drain(config, args).await,
            Command::Undrain(args) => drain::undrain(config, args).await,
            Command::Status(args) => status::status(config, args).await,
            Command::Stats(args) => stats::stats(config, args).await,
            Command::Events(args) => events::events(config, args).await,
            Command::Simulate(args) => simulate::simulate(config, args).await,
            Command::Plan(args) => plan::plan(path, args),
            Command::CheckConfig(args) => check_config::check_config(path, args).await,
            Command::Detach(args) => detach::detach(config, args).await,
        }
    }
}

/// The configuration if there is one: the --config file (must exist) or the default
/// file (may be missing: a controller started without one uses the defaults).
pub fn optional_config(explicit: Option<&Path>) -> anyhow::Result<Option<Config>> {
    let path = explicit.unwrap_or(Path::new(defaults::CONFIG_PATH));
    if explicit.is_none() && !path.exists() {
        return Ok(None);
    }
    Ok(Some(Config::load(path)?))
}

/// The control socket of the running controller: the one the configuration file
/// names. Only that key is read, so a file the controller would refuse (being edited,
/// say) does not keep the CLI from reaching it.
pub fn control_socket(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = explicit.unwrap_or(Path::new(defaults::CONFIG_PATH));
    if explicit.is_none() && !path.exists() {
        return Ok(PathBuf::from(defaults::CONTROL_SOCKET));
    }
    Ok(config::control_socket_of(path)?)
}

/// Sends `request` to the running controller and returns its answer. With `json`, a
/// refusal is also printed, as the controller's error object, on standard output.
pub async fn ask<T: DeserializeOwned>(
    config: Option<&Path>,
    request: Request,
    json: bool,
) -> anyhow::Result<T> {
    let socket = control_socket(config)?;
    let answer = Connection::open(&socket).await?.ask(request).await;
    if json && let Err(ControlError::Refused(error)) = &answer {
        print_json(error)?;
    }
    Ok(answer?)
}

/// `value` as the protocol writes it, indented.
pub fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Runs an admin command and prints its answer: JSON, or the result and the moves.
pub async fn change(config: Option<&Path>, request: Request, json: bool) -> anyhow::Result<()> {
    let report: ChangeReport = ask(config, request, json).await?;
    if json {
        return print_json(&report);
    }
    let ChangeReport { result, changes } = report;
    println!("{result}");
    for change in changes {
        println!("  {change}");
    }
    Ok(())
}
