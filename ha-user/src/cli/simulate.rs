use std::{net::Ipv4Addr, path::Path};

use anyhow::bail;

use crate::{
    cli,
    kernel::{self, netdev, simulate},
    model::{HostId, defaults},
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Destination address of the simulated packet, e.g. a VIP.
    pub dst: Ipv4Addr,
    /// Source address.
    #[arg(long, default_value = "198.51.100.1")]
    pub src: Ipv4Addr,
    /// Interface the packet arrives on (default: `lan`).
    #[arg(long)]
    pub iface: Option<String>,
    /// TTL of the packet.
    #[arg(long, default_value_t = 64)]
    pub ttl: u8,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn simulate(config: Option<&Path>, args: Args) -> anyhow::Result<()> {
    let Args {
        dst,
        src,
        iface,
        ttl,
        json,
    } = args;
    let config = cli::optional_config(config)?;
    let Some(iface) = iface.or_else(|| config.as_ref().and_then(|c| c.lan.clone())) else {
        bail!("give --iface: no configuration names the LAN interface");
    };
    kernel::require_root("ha-user simulate")?;
    let pin_dir = config
        .as_ref()
        .map_or_else(|| defaults::PIN_DIR.into(), |c| c.pin_dir.clone());
    let handle = netdev::connect()?;
    let interface = netdev::interface(&handle, &iface).await?;
    let outcome = simulate::simulate(&pin_dir, &interface, src, dst, ttl)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
        return Ok(());
    }
    let host = outcome.host_id.map(|id| {
        config
            .as_ref()
            .and_then(|c| c.hosts.get(HostId::from_raw(id).index()))
            .map_or_else(|| format!("host #{id}"), |h| h.name.clone())
    });
    print!(
        "{src} -> {dst} on {iface}: {} ({})",
        outcome.action, outcome.counter
    );
    match (&outcome.dst_mac, host) {
        (Some(mac), Some(host)) => println!(
            ", steered to {host} ({mac}) for {}, TTL {ttl} -> {}",
            outcome.prefix.as_deref().unwrap_or("?"),
            outcome.ttl.map_or("?".to_owned(), |t| t.to_string())
        ),
        _ => println!(": the kernel routes it"),
    }
    Ok(())
}
