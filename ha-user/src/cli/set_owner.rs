use std::path::Path;

use anyhow::{Context as _, bail};
use ha_common::PrefixEntry;

use crate::{
    cli::require_root,
    config::{self, Config},
    datapath::Maps,
    steering,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A steered prefix, e.g. 192.168.1.64/27.
    #[arg(value_parser = config::parse_cidr)]
    pub prefix: ipnet::Ipv4Net,
    /// The new owner: a host name or address from the configuration.
    pub host: String,
}

pub fn set_owner(config_path: &Path, args: Args) -> anyhow::Result<()> {
    let Args { prefix, host } = args;
    let config = Config::load(config_path)?;
    let Some(host_id) = config.host_index(&host) else {
        let known: Vec<&str> = config.hosts.iter().map(|h| h.name.as_str()).collect();
        bail!("unknown host `{host}` (hosts: {})", known.join(", "));
    };
    require_root("ha-user set-owner")?;
    let mut maps = Maps::open_pinned(&config.pin_dir)?;
    let entries = maps.prefix_entries().context("reading the prefix table")?;
    let Some((_, current)) = entries.iter().find(|(net, _)| *net == prefix) else {
        let known: Vec<String> = entries.iter().map(|(net, _)| net.to_string()).collect();
        bail!(
            "prefix {prefix} is not steered (steered: {})",
            known.join(", ")
        );
    };
    let entry = PrefixEntry {
        host: host_id as u32,
        ..*current
    };
    steering::write_prefix(&mut maps, prefix, entry)?;
    let ready = maps
        .hosts
        .get(&entry.host, 0)
        .map(|h| h.is_ready())
        .unwrap_or(false);
    println!("{prefix} -> {}", config.hosts[host_id].name);
    if !ready {
        eprintln!(
            "warning: {} has no known MAC yet; {prefix} follows the kernel route until it does",
            config.hosts[host_id].name
        );
    }
    Ok(())
}
