//! The Rust toolchains: the nightly that builds the eBPF object (with rust-src for
//! `-Z build-std=core`, and clippy), and clippy and rustfmt for the toolchain that runs
//! the xtask.

use std::{env, path::PathBuf};

use anyhow::{Context as _, bail};

use crate::{ctx::Ctx, exec};

const NIGHTLY: &str = "nightly";

/// Makes sure the toolchains have what we need; returns the nightly sysroot.
pub fn ensure(ctx: &Ctx) -> anyhow::Result<PathBuf> {
    let sysroot = match nightly_sysroot(ctx)? {
        Some(sysroot) => sysroot,
        None => {
            eprintln!("xtask: the nightly toolchain is not installed; installing it");
            exec::run_checked(ctx.command("rustup").args([
                "toolchain",
                "install",
                NIGHTLY,
                "--profile",
                "minimal",
                "--component",
                "rust-src,clippy",
            ]))
            .context(
                "installing nightly failed; run `rustup toolchain install nightly \
                 --profile minimal --component rust-src,clippy`",
            )?;
            nightly_sysroot(ctx)?.context("nightly is still missing after installing it")?
        }
    };
    let mut missing = Vec::new();
    if !sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
        missing.push("rust-src");
    }
    if !sysroot.join("bin/cargo-clippy").is_file() {
        missing.push("clippy");
    }
    add_components(ctx, NIGHTLY, &missing)?;
    ensure_host_components(ctx)?;
    Ok(sysroot)
}

/// `rustc +nightly --print sysroot`, or `None` when nightly is not installed.
fn nightly_sysroot(ctx: &Ctx) -> anyhow::Result<Option<PathBuf>> {
    let (ok, stdout, stderr) = exec::output(
        ctx.command("rustc")
            .arg(format!("+{NIGHTLY}"))
            .args(["--print", "sysroot"])
            // An implicit install would pull the whole default profile.
            .env("RUSTUP_AUTO_INSTALL", "0")
            .env_remove("RUST_BACKTRACE"),
    )
    .context("cannot run `rustc`; install rustup from https://rustup.rs")?;
    if ok {
        return Ok(Some(PathBuf::from(stdout.trim())));
    }
    if stderr.contains("is not installed") {
        return Ok(None);
    }
    bail!(
        "`rustc +{NIGHTLY} --print sysroot` failed: {}",
        stderr.lines().next().unwrap_or_default()
    );
}

/// clippy and rustfmt for the toolchain running us (rustup tells us which it is).
fn ensure_host_components(ctx: &Ctx) -> anyhow::Result<()> {
    let bin = host_bin_dir(ctx)?;
    let bin = bin.as_path();
    let mut missing = Vec::new();
    if !bin.join("cargo-clippy").is_file() {
        missing.push("clippy");
    }
    if !bin.join("rustfmt").is_file() {
        missing.push("rustfmt");
    }
    if missing.is_empty() {
        return Ok(());
    }
    let toolchain = env::var("RUSTUP_TOOLCHAIN").with_context(|| {
        format!(
            "{} missing next to {} and RUSTUP_TOOLCHAIN is not set (cargo is not run by \
             rustup); install them for this toolchain",
            missing.join(" and "),
            bin.display()
        )
    })?;
    add_components(ctx, &toolchain, &missing)
}

/// The bin dir of the toolchain running us: `cargo run` tells us its cargo.
fn host_bin_dir(ctx: &Ctx) -> anyhow::Result<PathBuf> {
    if let Some(cargo) = env::var_os("CARGO") {
        let cargo = PathBuf::from(cargo);
        let bin = cargo.parent().context("CARGO has no parent directory")?;
        return Ok(bin.to_path_buf());
    }
    let (ok, stdout, stderr) = exec::output(ctx.command("rustc").args(["--print", "sysroot"]))?;
    if !ok {
        bail!("`rustc --print sysroot` failed: {}", stderr.trim());
    }
    Ok(PathBuf::from(stdout.trim()).join("bin"))
}

fn add_components(ctx: &Ctx, toolchain: &str, components: &[&str]) -> anyhow::Result<()> {
    if components.is_empty() {
        return Ok(());
    }
    let list = components.join(" ");
    eprintln!("xtask: installing {list} for the {toolchain} toolchain");
    exec::run_checked(
        ctx.command("rustup")
            .args(["component", "add", "--toolchain", toolchain])
            .args(components),
    )
    .with_context(|| {
        format!(
            "installing {list} failed; run `rustup component add --toolchain {toolchain} {list}`"
        )
    })
}
