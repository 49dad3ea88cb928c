use std::path::Path;

use crate::{cli, config, proto::Request};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A configured prefix, e.g. 192.168.1.64/27.
    #[arg(value_parser = config::parse_cidr)]
    pub prefix: ipnet::Ipv4Net,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn clear_owner(config: Option<&Path>, args: Args) -> anyhow::Result<()> {
    let Args { prefix, json } = args;
    cli::change(config, Request::ClearOwner { prefix }, json).await
}
