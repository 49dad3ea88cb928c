//! `cargo xtask lab`: builds `ha-user` and the lab tools, then replaces the xtask with
//! the lab runner (`ha-lab`, in the tests crate, which shares its topology library with
//! the end-to-end suites), so Ctrl-C reaches it directly.

use std::{ffi::OsString, os::unix::process::CommandExt as _};

use anyhow::{Context as _, bail};

use crate::{
    ctx::{Ctx, is_root},
    exec,
};

#[derive(clap::Args)]
pub struct Args {
    /// Leave the network up at the end, print commands to explore it, and remove it
    /// on Ctrl-C.
    #[arg(long)]
    keep: bool,
    /// XDP attach mode of the router: native (with what veth needs) or skb.
    #[arg(long, default_value = "native", value_parser = ["native", "skb"])]
    xdp_mode: String,
    /// Further arguments for the lab runner, after `--`.
    #[arg(last = true)]
    extra: Vec<OsString>,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    if !is_root()? {
        bail!(
            "the lab creates network namespaces and attaches XDP programs: it needs root. \
             Run as root, e.g. `sudo -E env \"PATH=$PATH\" cargo xtask lab`"
        );
    }
    let mut build = ctx.cargo();
    build.args(["build", "-p", "ha-user", "-p", "ha-tests", "--bins"]);
    exec::run_checked(&mut build)?;

    let target_dir = ctx.target_dir();
    let binary = target_dir.join("debug/ha-lab");
    if !binary.is_file() {
        bail!("{} is missing after the build", binary.display());
    }
    let Args {
        keep,
        xdp_mode,
        extra,
    } = args;
    let mut cmd = ctx.command(&binary);
    cmd.args(["--xdp-mode", &xdp_mode, "--report"]);
    cmd.arg(target_dir.join("lab/report.html"));
    if keep {
        cmd.arg("--keep");
    }
    cmd.args(extra);
    eprintln!("xtask: exec {}", exec::describe(&cmd));
    let err = cmd.exec();
    Err(err).with_context(|| format!("cannot exec {}", binary.display()))
}
