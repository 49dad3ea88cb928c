//! Builds the eBPF object (`ha-ebpf`) with the nightly toolchain and bpf-linker and
//! leaves it in OUT_DIR, where `ha-user` embeds it. `cargo xtask setup` installs what
//! this needs.

use std::path::PathBuf;

use anyhow::Context as _;
use aya_build::{Package, Toolchain};

#[path = "../build-support/bpf_linker.rs"]
mod bpf_linker;

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?;
    let manifest_dir = PathBuf::from(manifest_dir);
    // The cargo that builds the eBPF crate links with it: on PATH from here on.
    bpf_linker::find(&manifest_dir);
    let root_dir = manifest_dir.join("..").join("ha-ebpf");
    let root_dir = root_dir
        .to_str()
        .context("the ha-ebpf path is not valid UTF-8")?;
    aya_build::build_ebpf(
        [Package {
            name: "ha-ebpf",
            root_dir,
            ..Default::default()
        }],
        Toolchain::default(),
    )
}
