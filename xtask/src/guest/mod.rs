//! `cargo xtask guest [-- CMD ARGS...]`: a QEMU guest with Debian 12's own kernel
//! (6.1), for what this host's kernel cannot show (another kernel version, 802.1Q,
//! nftables flowtables, systemd as init, loadable modules).
//!
//! - [`image`]: the cached Debian 12 image (debootstrap; rebuilt when what goes in
//!   changes);
//! - [`qemu`]: one boot running one command, the workspace shared in at its own path;
//! - [`suites`]: `cargo xtask test --kernel debian-6.1`, the root suites in the guest.

mod image;
mod mirror;
mod qemu;
pub mod suites;

use std::{
    ffi::OsString,
    io::Write as _,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context as _;
pub use qemu::AccelChoice;

use crate::{ctx::Ctx, exec, packages};

/// The host tools the guest needs: (Debian package, a command it installs).
const HOST_PACKAGES: &[(&str, &str)] = &[
    ("debootstrap", "debootstrap"),
    ("qemu-system-x86", "qemu-system-x86_64"),
    ("e2fsprogs", "mkfs.ext4"),
];

#[derive(clap::Args)]
pub struct Args {
    /// How to run the guest: KVM when it boots the guest, else software emulation.
    #[arg(long, value_enum, default_value = "auto")]
    accel: AccelChoice,
    /// Build the image anew even if the cached one is current.
    #[arg(long)]
    rebuild: bool,
    /// The most the command may run once the guest is up, in seconds.
    #[arg(long, default_value_t = 3600)]
    timeout: u64,
    /// The command to run in the guest, as root in the workspace (after `--`);
    /// without one, the guest is built if needed, booted, and prints its kernel.
    #[arg(last = true)]
    command: Vec<OsString>,
}

/// `cargo xtask guest`: exits with the command's exit status.
pub fn run(ctx: &Ctx, args: &Args) -> anyhow::Result<ExitCode> {
    let Args {
        accel,
        rebuild,
        timeout,
        command,
    } = args;
    let image = prepare(ctx, *rebuild)?;
    let script = if command.is_empty() {
        "echo \"guest kernel: $(uname -r)\"\n".to_owned()
    } else {
        let words: Vec<String> = command
            .iter()
            .map(|word| qemu::quote(&word.to_string_lossy()))
            .collect();
        format!("exec {}\n", words.join(" "))
    };
    let request = qemu::Request {
        script,
        env: passed_env(),
        timeout: Duration::from_secs(*timeout),
        accel: *accel,
    };
    let mut out = std::io::stdout();
    let finished = qemu::run(ctx, &image, &request, &mut |line| {
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    })?;
    eprintln!(
        "xtask: guest: exit status {} (kernel {}, {}, boot {:.1} s, command {:.1} s)",
        finished.status,
        finished.release,
        finished.accel,
        finished.boot.as_secs_f64(),
        finished.ran.as_secs_f64()
    );
    Ok(ExitCode::from(
        u8::try_from(finished.status.clamp(0, 255)).unwrap_or(1),
    ))
}

/// The host tools, then the image (built or from the cache).
fn prepare(ctx: &Ctx, rebuild: bool) -> anyhow::Result<image::Image> {
    packages::ensure_list(ctx, HOST_PACKAGES, &["--no-install-recommends"])
        .context("the guest's host tools")?;
    let start = Instant::now();
    let image = image::ensure(ctx, rebuild)?;
    eprintln!(
        "xtask: guest: image ready ({:.1?}): {}, kernel {}",
        start.elapsed(),
        image.rootfs.display(),
        image.release
    );
    Ok(image)
}

/// The host's `HA_*`, `RUST_*` and `CARGO_TARGET_DIR` variables, which the guest
/// gets too.
fn passed_env() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(key, _)| {
            key.starts_with("HA_") || key.starts_with("RUST_") || key == "CARGO_TARGET_DIR"
        })
        .filter(|(key, _)| key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .collect()
}

/// `cargo build` of what the guest runs, as in [`exec::run_checked`].
fn build(ctx: &Ctx, args: &[&str]) -> anyhow::Result<()> {
    let mut cmd = ctx.cargo();
    cmd.args(args);
    exec::run_checked(&mut cmd)
}
