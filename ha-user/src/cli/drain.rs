//! `drain` and `undrain`: one argument shape, opposite requests.

use std::path::Path;

use crate::{cli, proto::Request};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A host name or address.
    pub host: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn drain(config: Option<&Path>, args: Args, drain: bool) -> anyhow::Result<()> {
    let Args { host, json } = args;
    let request = if drain {
        Request::Drain { host }
    } else {
        Request::Undrain { host }
    };
    cli::change(config, request, json).await
}
