//! `ha-bench`: the benchmarks of `cargo xtask bench` (run that; it builds this in
//! release mode and runs it as root). Writes `results.json` and `results.md`.
//!
//! Families: `per-packet` (test_run cost of `ha_steer` against a MAC-swap XDP_TX
//! program) and `forwarding` (forwarded pps on a veth topology: kernel routing,
//! `ha_steer` on XDP_TX and XDP_REDIRECT, and the minimal programs as ceilings).

mod forwarding;
mod per_packet;
mod profile;
mod progs;
mod report;
mod sched;
mod topology;

use std::{fs, path::PathBuf, process::ExitCode, time::Instant};

use anyhow::Context as _;
use clap::Parser as _;

use ha_tests::bench::machine::Machine;

use crate::report::Report;

/// The data-path benchmarks: per-packet cost and forwarding rate.
#[derive(clap::Parser)]
#[command(name = "ha-bench")]
struct Args {
    /// Fewer rounds and shorter windows (a smoke run).
    #[arg(long)]
    quick: bool,
    /// Run one family only.
    #[arg(long, value_parser = FAMILIES)]
    only: Option<String>,
    /// Where results.json and results.md go.
    #[arg(long)]
    out: PathBuf,
}

const FAMILIES: [&str; 2] = ["per-packet", "forwarding"];

fn main() -> ExitCode {
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ha-bench: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn try_main() -> anyhow::Result<()> {
    let Args { quick, only, out } = Args::parse();
    ha_tests::root::ensure_root(
        "ha-bench",
        "it loads XDP programs and creates network namespaces; or use `cargo xtask bench`",
    )?;
    let start = Instant::now();
    let mut machine = Machine::probe();
    eprintln!(
        "ha-bench: {} ({} cores), kernel {}, load {}",
        machine.cpu_model, machine.cores, machine.kernel, machine.load_average_start
    );
    let wanted = |name: &str| only.as_deref().is_none_or(|only| only == name);
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut families = Vec::new();
    if wanted("per-packet") {
        eprintln!("ha-bench: family 1: per-packet cost");
        let settings = if quick {
            per_packet::Settings {
                rounds: 5,
                pairs: 400,
            }
        } else {
            per_packet::Settings {
                rounds: 15,
                pairs: 2000,
            }
        };
        families.push(per_packet::run(&settings).context("per-packet benchmark")?);
    }
    if wanted("forwarding") {
        eprintln!("ha-bench: family 2: forwarding rate on veth");
        let settings = if quick {
            forwarding::Settings::quick()
        } else {
            forwarding::Settings::full()
        };
        families.push(forwarding::run(&settings, &out).context("forwarding benchmark")?);
    }
    machine.finish();
    let report = Report {
        machine,
        quick,
        only,
        families,
        elapsed_secs: start.elapsed().as_secs_f64(),
    };
    let markdown = report.to_markdown();
    let (json_path, md_path) =
        ha_tests::bench::report::write_results(&out, "results", &report, &markdown)?;
    println!("{markdown}");
    eprintln!(
        "ha-bench: wrote {} and {} ({:.0} s)",
        json_path.display(),
        md_path.display(),
        report.elapsed_secs
    );
    Ok(())
}
