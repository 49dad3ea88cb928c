//! Debian packages the tests and benchmarks call: each is checked by the command it
//! provides (a file look-up, no dpkg call), installed with apt-get when missing.

use std::{
    env,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use anyhow::bail;

use crate::{
    exec,
    setup::{Ctx, is_root},
};

/// (Debian package, a command it installs).
const PACKAGES: &[(&str, &str)] = &[
    ("iproute2", "ip"),
    ("bpftool", "bpftool"),
    ("ethtool", "ethtool"),
    ("tcpdump", "tcpdump"),
    ("curl", "curl"),
    // The forwarding-facts tests put real rule sets and settings in a namespace.
    ("nftables", "nft"),
    ("iptables", "iptables-legacy"),
    ("procps", "sysctl"),
];

pub fn ensure(ctx: &Ctx) -> anyhow::Result<()> {
    let missing = missing_packages(ctx);
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if !is_root()? {
        bail!(
            "missing {list}; install with `sudo apt-get update && \
             sudo DEBIAN_FRONTEND=noninteractive apt-get install -y {list}`"
        );
    }
    eprintln!("xtask: installing Debian packages: {list}");
    let apt = |args: &[&str]| {
        let mut cmd = ctx.command("apt-get");
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        exec::run_checked(&mut cmd)
    };
    apt(&["update"])?;
    let mut install = vec!["install", "-y"];
    install.extend(&missing);
    apt(&install)?;
    let still = missing_packages(ctx);
    if !still.is_empty() {
        bail!("still missing after apt-get install: {}", still.join(" "));
    }
    Ok(())
}

/// Packages whose command is not on the children's PATH (which includes sbin).
fn missing_packages(ctx: &Ctx) -> Vec<&'static str> {
    let dirs: Vec<PathBuf> = env::split_paths(ctx.path()).collect();
    PACKAGES
        .iter()
        .filter(|(_, command)| !dirs.iter().any(|dir| is_executable(&dir.join(command))))
        .map(|(package, _)| *package)
        .collect()
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}
