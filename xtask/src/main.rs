//! `cargo xtask`: orchestration for the `ha` workspace (toolchain setup, tests, running
//! the daemon). It never builds the eBPF object itself: `ha-user/build.rs` does, with
//! the toolchain that `setup` installs.

mod bench;
mod bpffs;
mod ctx;
mod dist;
mod exec;
mod fuzz;
mod guest;
mod lab;
mod linker;
mod packages;
mod rules;
mod run;
mod rustup;
mod setup;
mod steps;
mod test;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::Instant,
};

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, test and run the ha workspace")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what builds and tests need: nightly rust-src and clippy, bpf-linker
    /// built against the nightly's LLVM, Debian packages. Idempotent; every other
    /// command runs it first.
    Setup,
    /// Unit tests, root test suites (tests/tests/*.rs), clippy (host and eBPF), rustfmt.
    Test(test::Args),
    /// Build ha-user (release) and run `ha-user run` on an interface (needs root).
    Run(run::Args),
    /// Build the classic network in namespaces and show failover live; writes
    /// target/lab/report.html (needs root).
    Lab(lab::Args),
    /// Benchmarks in release mode (needs root): per-packet cost (test_run), forwarding
    /// rate on veth, failover outage and the control plane, each against its reference
    /// or target. Writes target/bench/results.{json,md} and lab.{json,md}.
    Bench(bench::Args),
    /// A QEMU guest with Debian 12's kernel (6.1): builds and caches the image under
    /// target/guest/ (needs root), boots it and runs `-- CMD ARGS...` in it as root,
    /// with the workspace and its built binaries at the same path; exits with the
    /// command's status. `cargo xtask test --kernel debian-6.1` runs the suites there.
    Guest(guest::Args),
    /// Fuzz the parsers of outside input (fuzz/, cargo-fuzz and libFuzzer; installs
    /// cargo-fuzz if missing): each target for --seconds from its seeds in
    /// fuzz/corpus/; prints executions and coverage per target, fails on a finding.
    Fuzz(fuzz::Args),
    /// The Debian package target/dist/ha_<version>_amd64.deb (dpkg-deb): the release
    /// ha-user, its systemd unit, an example /etc/ha/ha.toml, man pages and
    /// completions; `--check` lists it and runs `systemd-analyze verify` on the unit.
    Dist(dist::Args),
}

fn workspace_root() -> anyhow::Result<PathBuf> {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .with_context(|| format!("{} has no parent directory", manifest_dir.display()))?;
    Ok(root.to_path_buf())
}

fn main() -> ExitCode {
    match try_main() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn try_main() -> anyhow::Result<ExitCode> {
    let Cli { command } = Cli::parse();
    let root = workspace_root()?;
    let start = Instant::now();
    let ctx = setup::run(&root).context("setup failed")?;
    let setup_time = start.elapsed();
    eprintln!("xtask: setup ok ({setup_time:.2?})");
    match command {
        Command::Setup => Ok(ExitCode::SUCCESS),
        Command::Test(args) => test::run(&ctx, &args, setup_time),
        Command::Run(args) => run::run(&ctx, args).map(|()| ExitCode::SUCCESS),
        Command::Bench(args) => bench::run(&ctx, &args),
        Command::Lab(args) => lab::run(&ctx, args).map(|()| ExitCode::SUCCESS),
        Command::Guest(args) => guest::run(&ctx, &args),
        Command::Fuzz(args) => fuzz::run(&ctx, &args),
        Command::Dist(args) => dist::run(&ctx, &args).map(|()| ExitCode::SUCCESS),
    }
}
