//! `cargo xtask bench`: builds the benchmark runner (`ha-tests`' `ha-bench` binary,
//! release mode, with the eBPF object embedded) and runs it as root. It writes
//! `target/bench/results.json` and `target/bench/results.md`; `docs/BENCHMARKS.md`
//! keeps the latest full run and says how to read it.

use std::{env, path::PathBuf, process::ExitCode, time::Instant};

use anyhow::{Context as _, bail};

use crate::{
    exec,
    setup::{Ctx, is_root},
};

/// The benchmark families `--only` accepts (see tests/src/bin/ha-bench/main.rs).
const FAMILIES: [&str; 2] = ["per-packet", "forwarding"];

#[derive(clap::Args)]
pub struct Args {
    /// Fewer rounds and shorter windows: a smoke run in well under 3 minutes. The
    /// figures are noisier; docs/BENCHMARKS.md keeps a full run.
    #[arg(long)]
    quick: bool,
    /// Run one family only: `per-packet` (test_run cost) or `forwarding` (veth pps).
    #[arg(long, value_name = "NAME", value_parser = FAMILIES)]
    only: Option<String>,
}

pub fn run(ctx: &Ctx, args: &Args) -> anyhow::Result<ExitCode> {
    let Args { quick, only } = args;
    if !is_root()? {
        bail!(
            "the benchmarks load XDP programs, create network namespaces and pin kernel \
             threads: they need root. Run as root, e.g. `sudo -E env \"PATH=$PATH\" cargo \
             xtask bench`"
        );
    }
    // Benchmarks run in release mode; the eBPF object is built by ha-user/build.rs.
    let mut build = ctx.cargo();
    build.args(["build", "--release", "-p", "ha-tests", "--bin", "ha-bench"]);
    exec::run_checked(&mut build).context("building ha-bench")?;

    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| ctx.root.join("target"));
    let binary = target_dir.join("release/ha-bench");
    if !binary.is_file() {
        bail!("{} is missing after the build", binary.display());
    }
    let out = target_dir.join("bench");
    let mut cmd = ctx.command(&binary);
    cmd.arg("--out").arg(&out);
    if *quick {
        cmd.arg("--quick");
    }
    if let Some(only) = only {
        cmd.args(["--only", only]);
    }
    eprintln!("xtask: {}", exec::describe(&cmd));
    let start = Instant::now();
    exec::run_checked(&mut cmd)?;
    eprintln!(
        "xtask: bench done in {:.0} s: {} and {}",
        start.elapsed().as_secs_f64(),
        out.join("results.md").display(),
        out.join("results.json").display()
    );
    Ok(ExitCode::SUCCESS)
}
