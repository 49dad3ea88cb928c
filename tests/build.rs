//! Builds the benchmark programs (`ha-bench-ebpf`) with the nightly toolchain and
//! bpf-linker, as ha-user/build.rs builds the production object, and leaves the
//! object in OUT_DIR, where the benchmark runner `ha-bench` embeds it.

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
    let root_dir = manifest_dir.join("..").join("ha-bench-ebpf");
    let root_dir = root_dir
        .to_str()
        .context("the ha-bench-ebpf path is not valid UTF-8")?;
    aya_build::build_ebpf(
        [Package {
            name: "ha-bench-ebpf",
            root_dir,
            ..Default::default()
        }],
        Toolchain::default(),
    )
}
