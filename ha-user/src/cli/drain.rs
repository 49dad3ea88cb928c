//! `drain` and `undrain`.

use std::path::Path;

use crate::{cli, proto::Request};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A host name or address.
    pub host: String,
    /// Move its established connections too, at once (by default they may finish
    /// for up to `drain_timeout_ms`; new ones go elsewhere at once either way).
    #[arg(long)]
    pub now: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct UndrainArgs {
    /// A host name or address.
    pub host: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn drain(config: Option<&Path>, args: Args) -> anyhow::Result<()> {
    let Args { host, now, json } = args;
    cli::change(config, Request::Drain { host, now }, json).await
}

pub async fn undrain(config: Option<&Path>, args: UndrainArgs) -> anyhow::Result<()> {
    let UndrainArgs { host, json } = args;
    cli::change(config, Request::Undrain { host }, json).await
}
