//! `ha-user run`: the arguments of the daemon; [`daemon::run`] does the rest.

use std::path::Path;

use crate::{
    daemon::{self, Options},
    model::XdpMode,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// LAN interface facing the web servers (overrides `lan`). Without a configuration
    /// file, the static routes through it are adopted: each gateway becomes a host.
    #[arg(long)]
    pub iface: Option<String>,
    /// XDP attach mode (overrides `xdp_mode`): native (in the driver) or skb (generic).
    #[arg(long, value_enum)]
    pub xdp_mode: Option<XdpMode>,
    /// Log every steered packet through aya-log (costs throughput; for debugging).
    #[arg(long)]
    pub log_packets: bool,
    /// Start from scratch: remove the pinned maps and links and the saved pins and
    /// drains instead of adopting them. A start-up that fails later undoes its own
    /// changes but does not bring these back.
    #[arg(long)]
    pub reset: bool,
    /// On SIGTERM, leave the pinned fast path attached and the routes in place for
    /// the next controller to adopt (a restart or an upgrade; the systemd unit uses
    /// it). Without it SIGTERM detaches; Ctrl-C (SIGINT) always detaches.
    #[arg(long)]
    pub handover: bool,
}

/// `config`: `Some` when given with --config (it must exist); `None` for the
/// default path, which may be missing when --iface is given (zero-config start).
pub async fn run(config: Option<&Path>, args: Args) -> anyhow::Result<()> {
    let Args {
        iface,
        xdp_mode,
        log_packets,
        reset,
        handover,
    } = args;
    let options = Options {
        config: config.map(Path::to_owned),
        iface,
        xdp_mode,
        log_packets,
        reset,
    };
    daemon::run(options, daemon::terminated(handover)?).await
}
