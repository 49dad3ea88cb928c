use std::path::Path;

use crate::{cli, config, proto::Request};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A configured prefix, e.g. 192.168.1.64/27.
    #[arg(value_parser = config::parse_cidr)]
    pub prefix: ipnet::Ipv4Net,
    /// The new owner: a host name or address.
    pub host: String,
    /// Keep the prefix on HOST even while it is down or drained (no failover).
    #[arg(long)]
    pub force: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn set_owner(config: Option<&Path>, args: Args) -> anyhow::Result<()> {
    let Args {
        prefix,
        host,
        force,
        json,
    } = args;
    let request = Request::SetOwner {
        prefix,
        host,
        force,
    };
    cli::change(config, request, json).await
}
