//! Debian packages the tests and benchmarks call: each is checked by the command it
//! provides (a file look-up, no dpkg call), installed with apt-get when missing.

use std::{
    env,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use anyhow::bail;

use crate::{
    ctx::{Ctx, is_root},
    exec,
};

/// (Debian package, a command it installs). The guest image (`cargo xtask guest`)
/// installs the same packages.
pub const PACKAGES: &[(&str, &str)] = &[
    ("iproute2", "ip"),
    ("bpftool", "bpftool"),
    ("ethtool", "ethtool"),
    ("tcpdump", "tcpdump"),
    ("curl", "curl"),
    // The forwarding-facts tests put real rule sets and settings in a namespace.
    ("nftables", "nft"),
    ("iptables", "iptables-legacy"),
    ("procps", "sysctl"),
    // The faithful suite judges the fast path by what `ping` reports (DF, fragments).
    ("iputils-ping", "ping"),
    // `cargo xtask dist`: the binary stripped, the unit checked by `systemd-analyze verify`.
    ("binutils", "strip"),
    ("systemd", "systemd-analyze"),
];

pub fn ensure(ctx: &Ctx) -> anyhow::Result<()> {
    ensure_list(ctx, PACKAGES, &[])
}

/// Installs the packages of `list` whose command is missing, with `apt_args` added to
/// `apt-get install` (e.g. `--no-install-recommends`).
pub fn ensure_list(
    ctx: &Ctx,
    list: &[(&'static str, &str)],
    apt_args: &[&str],
) -> anyhow::Result<()> {
    let missing = missing_packages(ctx, list);
    if missing.is_empty() {
        return Ok(());
    }
    let names = missing.join(" ");
    if !is_root()? {
        bail!(
            "missing {names}; install with `sudo apt-get update && \
             sudo DEBIAN_FRONTEND=noninteractive apt-get install -y {names}`"
        );
    }
    eprintln!("xtask: installing Debian packages: {names}");
    let apt = |args: &[&str]| {
        let mut cmd = ctx.command("apt-get");
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        exec::run_checked(&mut cmd)
    };
    apt(&["update"])?;
    let mut install = vec!["install", "-y"];
    install.extend(apt_args);
    install.extend(&missing);
    apt(&install)?;
    let still = missing_packages(ctx, list);
    if !still.is_empty() {
        bail!("still missing after apt-get install: {}", still.join(" "));
    }
    Ok(())
}

/// Packages whose command is not on the children's PATH (which includes sbin).
fn missing_packages(ctx: &Ctx, list: &[(&'static str, &str)]) -> Vec<&'static str> {
    let dirs: Vec<PathBuf> = env::split_paths(ctx.path()).collect();
    list.iter()
        .filter(|(_, command)| !dirs.iter().any(|dir| is_executable(&dir.join(command))))
        .map(|(package, _)| *package)
        .collect()
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}
