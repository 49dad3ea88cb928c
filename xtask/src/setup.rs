//! `cargo xtask setup`: makes sure everything the build and the tests need is
//! installed, and installs what is missing. Cheap when nothing is missing: every
//! check is a file-system look-up or one `rustc +nightly --print sysroot`.

use std::path::Path;

use anyhow::Context as _;

use crate::{bpffs, ctx::Ctx, linker, packages, rustup};

/// Runs every setup step and returns the context for the other commands.
pub fn run(root: &Path) -> anyhow::Result<Ctx> {
    let ctx = Ctx::new(root, linker::bin_dir(root))?;
    let nightly = rustup::ensure(&ctx).context("Rust toolchains")?;
    linker::ensure(&ctx, &nightly).context("bpf-linker")?;
    packages::ensure(&ctx).context("Debian packages")?;
    bpffs::ensure(&ctx).context("bpffs")?;
    Ok(ctx)
}
