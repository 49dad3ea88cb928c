//! `ha-bench`: the benchmarks of `cargo xtask bench` (run that; it builds this in
//! release mode and runs it as root). Writes `results.json` and `results.md`.
//!
//! Families: `per-packet` (test_run cost of `ha_steer` against a MAC-swap XDP_TX
//! program) and `forwarding` (forwarded pps on a veth topology: kernel routing,
//! `ha_steer` on XDP_TX and XDP_REDIRECT, and the minimal programs as ceilings).

mod forwarding;
mod json;
mod machine;
mod netns;
mod per_packet;
mod profile;
mod progs;
mod report;
mod stats;
mod topology;

use std::{fs, path::PathBuf, process::ExitCode, time::Instant};

use anyhow::{Context as _, bail};

use crate::{machine::Machine, report::Report};

const USAGE: &str = "usage: ha-bench [--quick] [--only per-packet|forwarding] --out DIR";

struct Args {
    quick: bool,
    only: Option<String>,
    out: PathBuf,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut quick = false;
    let mut only = None;
    let mut out = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--only" => only = Some(args.next().context("--only needs a family name")?),
            "--out" => {
                out = Some(PathBuf::from(
                    args.next().context("--out needs a directory")?,
                ))
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if let Some(name) = &only
        && !FAMILIES.contains(&name.as_str())
    {
        bail!(
            "--only {name}: no such family (families: {})",
            FAMILIES.join(", ")
        );
    }
    let out = out.context(USAGE)?;
    Ok(Args { quick, only, out })
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
    let Args { quick, only, out } = parse_args()?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the benchmarks load XDP programs and create network namespaces: run as root");
    }
    let start = Instant::now();
    let machine = Machine::probe();
    eprintln!(
        "ha-bench: {} ({} cores), kernel {}, load {}",
        machine.cpu_model, machine.cores, machine.kernel, machine.load_average
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
    let report = Report {
        machine,
        quick,
        only,
        families,
        elapsed_secs: start.elapsed().as_secs_f64(),
    };
    let json_path = out.join("results.json");
    fs::write(&json_path, format!("{:#}\n", report.to_json()))
        .with_context(|| format!("writing {}", json_path.display()))?;
    let md_path = out.join("results.md");
    let markdown = report.to_markdown();
    fs::write(&md_path, &markdown).with_context(|| format!("writing {}", md_path.display()))?;
    println!("{markdown}");
    eprintln!(
        "ha-bench: wrote {} and {} ({:.0} s)",
        json_path.display(),
        md_path.display(),
        report.elapsed_secs
    );
    Ok(())
}
