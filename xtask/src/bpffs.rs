//! bpffs at /sys/fs/bpf: `ha-user run` pins its maps and links there and refuses to
//! start without it; systemd mounts it on most machines, a bare container may not.

use std::path::Path;

use anyhow::{Context as _, bail};

use crate::{
    ctx::{Ctx, is_root},
    exec,
};

const MOUNT_POINT: &str = "/sys/fs/bpf";

fn mounted() -> anyhow::Result<bool> {
    let mounts = std::fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    Ok(mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (_, point, kind) = (fields.next(), fields.next(), fields.next());
        point == Some(MOUNT_POINT) && kind == Some("bpf")
    }))
}

pub fn ensure(ctx: &Ctx) -> anyhow::Result<()> {
    if mounted()? {
        return Ok(());
    }
    if !is_root()? || !Path::new(MOUNT_POINT).is_dir() {
        // Only the root suites and `ha-user run` need it; they say so themselves.
        return Ok(());
    }
    eprintln!("xtask: mounting bpffs at {MOUNT_POINT}");
    let mut mount = ctx.command("mount");
    mount.args(["-t", "bpf", "bpf", MOUNT_POINT]);
    exec::run_checked(&mut mount)?;
    if !mounted()? {
        bail!(
            "bpffs is still not mounted at {MOUNT_POINT}; mount it with `mount -t bpf bpf {MOUNT_POINT}`"
        );
    }
    Ok(())
}
