use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use crate::{config::Config, datapath::Maps};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct PrefixStatus {
    prefix: String,
    owner: String,
    mac: String,
    ready: bool,
    packets: u64,
    bytes: u64,
}

pub fn status(config_path: &Path, args: Args) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let maps = Maps::open_pinned(&config.pin_dir)?;
    let mut rows = Vec::new();
    for (net, entry) in maps.prefix_entries().context("reading the prefix table")? {
        let host = maps
            .hosts
            .get(&entry.host, 0)
            .context("reading the host table")?;
        let traffic =
            Maps::traffic(&maps.pfx_stats, entry.prefix_id).context("reading prefix statistics")?;
        let owner = config
            .hosts
            .get(entry.host as usize)
            .map_or_else(|| format!("#{}", entry.host), |h| h.name.clone());
        rows.push(PrefixStatus {
            prefix: net.to_string(),
            owner,
            mac: crate::config::Mac(host.mac).to_string(),
            ready: host.is_ready(),
            packets: traffic.packets,
            bytes: traffic.bytes,
        });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<18} {:<10} {:<17} {:<5} {:>12} {:>14}",
        "PREFIX", "OWNER", "MAC", "READY", "PACKETS", "BYTES"
    );
    for row in rows {
        let PrefixStatus {
            prefix,
            owner,
            mac,
            ready,
            packets,
            bytes,
        } = row;
        let ready = if ready { "yes" } else { "no" };
        println!("{prefix:<18} {owner:<10} {mac:<17} {ready:<5} {packets:>12} {bytes:>14}");
    }
    Ok(())
}
