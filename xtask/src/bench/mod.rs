//! `cargo xtask bench`: builds the benchmark runners (`ha-tests`' `ha-bench` for the
//! data path and `ha-bench-lab` for failover and the control plane, release mode, with
//! the eBPF objects embedded) and runs them as root. They write
//! `target/bench/results.{json,md}` and `target/bench/lab.{json,md}`;
//! `docs/BENCHMARKS.md` keeps the latest full run and says how to read it.

use std::{process::ExitCode, time::Instant};

use anyhow::{Context as _, bail};

use crate::{
    ctx::{Ctx, is_root},
    exec,
};

/// The data-path families of `ha-bench` (tests/src/bin/ha-bench/main.rs).
const DATA_PATH: [&str; 2] = ["per-packet", "forwarding"];
/// The families of `ha-bench-lab` (tests/src/bin/ha-bench-lab/main.rs); `soak` (the
/// 10-minute false-failover run) only runs when asked for.
const LAB: [&str; 3] = ["failover", "control-plane", "soak"];
const FAMILIES: [&str; 5] = [
    "per-packet",
    "forwarding",
    "failover",
    "control-plane",
    "soak",
];

#[derive(clap::Args)]
pub struct Args {
    /// Fewer rounds and shorter windows: a smoke run in well under 3 minutes. The
    /// figures are noisier; docs/BENCHMARKS.md keeps a full run.
    #[arg(long)]
    quick: bool,
    /// Run one family only: `per-packet` (test_run cost), `forwarding` (veth pps),
    /// `failover` (outage in the lab), `control-plane` (set-owner latency, scale),
    /// or `soak` (10 minutes of load counting false failovers; not in the default run).
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
    // Benchmarks run in release mode; the production object is built by
    // ha-user/build.rs, the benchmark programs' by tests/build.rs.
    let mut build = ctx.cargo();
    build.args(["build", "--release", "-p", "ha-user", "-p", "ha-tests"]);
    for bin in [
        "ha-user",
        "ha-webd",
        "ha-stream",
        "ha-bench",
        "ha-bench-lab",
    ] {
        build.args(["--bin", bin]);
    }
    exec::run_checked(&mut build).context("building the benchmark runners")?;

    let target_dir = ctx.target_dir();
    let out = target_dir.join("bench");
    let start = Instant::now();
    let mut written = Vec::new();
    for (binary, families, outputs) in [
        ("ha-bench", &DATA_PATH[..], ["results.md", "results.json"]),
        ("ha-bench-lab", &LAB[..], ["lab.md", "lab.json"]),
    ] {
        // Without --only each runner runs its default families.
        if only.as_deref().is_some_and(|o| !families.contains(&o)) {
            continue;
        }
        let path = target_dir.join("release").join(binary);
        if !path.is_file() {
            bail!("{} is missing after the build", path.display());
        }
        let mut cmd = ctx.command(&path);
        cmd.arg("--out").arg(&out);
        if *quick {
            cmd.arg("--quick");
        }
        if let Some(only) = only {
            cmd.args(["--only", only]);
        }
        eprintln!("xtask: {}", exec::describe(&cmd));
        exec::run_checked(&mut cmd)?;
        written.extend(outputs.iter().map(|o| out.join(o).display().to_string()));
    }
    eprintln!(
        "xtask: bench done in {:.0} s: {}",
        start.elapsed().as_secs_f64(),
        written.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}
