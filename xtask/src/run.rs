//! `cargo xtask run`: builds `ha-user` (release) and replaces the xtask with
//! `ha-user run ...`, so signals (Ctrl-C, SIGTERM) reach the daemon directly.

use std::{ffi::OsString, os::unix::process::CommandExt as _, path::PathBuf};

use anyhow::{Context as _, bail};

use crate::{
    ctx::{Ctx, is_root},
    exec,
};

#[derive(clap::Args)]
pub struct Args {
    /// The router's LAN interface to attach the XDP program to.
    #[arg(long)]
    iface: String,
    /// Configuration file (TOML).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Enable per-packet logging in the XDP program.
    #[arg(long)]
    log_packets: bool,
    /// Further arguments for `ha-user run`, after `--` (e.g. `-- --xdp-mode skb`).
    #[arg(last = true)]
    extra: Vec<OsString>,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    if !is_root()? {
        bail!(
            "`ha-user run` attaches an XDP program and pins maps: it needs root. Run as \
             root, e.g. `sudo -E env \"PATH=$PATH\" cargo xtask run --iface IFACE`"
        );
    }
    let mut build = ctx.cargo();
    build.args(["build", "--release", "-p", "ha-user"]);
    exec::run_checked(&mut build)?;

    let target_dir = ctx.target_dir();
    let binary = target_dir.join("release/ha-user");
    if !binary.is_file() {
        bail!("{} is missing after the build", binary.display());
    }

    let Args {
        iface,
        config,
        log_packets,
        extra,
    } = args;
    let mut cmd = ctx.command(&binary);
    cmd.args(["run", "--iface", &iface]);
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    if log_packets {
        cmd.arg("--log-packets");
    }
    cmd.args(extra);
    eprintln!("xtask: exec {}", exec::describe(&cmd));
    let err = cmd.exec();
    Err(err).with_context(|| format!("cannot exec {}", binary.display()))
}
