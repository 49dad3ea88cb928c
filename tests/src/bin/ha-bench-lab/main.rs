//! `ha-bench-lab`: benchmark families 3 and 4 of `cargo xtask bench`, run in the lab
//! (network namespaces on this machine, the real controller and data path). Not a
//! test: it measures and reports, it does not assert. Run it as root, built in
//! release mode with the release `ha-user`, `ha-webd` and `ha-stream` next to it:
//!
//! ```text
//! cargo build --release -p ha-user -p ha-tests --bin ha-user --bin ha-webd \
//!     --bin ha-stream --bin ha-bench-lab
//! target/release/ha-bench-lab [--quick] [--only failover|control-plane|soak]
//!     [--out DIR] [--soak-seconds N]
//! ```
//!
//! Families:
//!
//! - `failover` (3): outage of a sequence-numbered UDP stream through a VIP when its
//!   owner's web server is killed, its link goes down or it is blackholed, split
//!   into detection and switch; false failovers in a soak under forwarding load; a
//!   small grid of health settings under load, the lowest without false failovers
//!   and its outage.
//! - `control-plane` (4): `set-owner` to the first packet steered; with 65,536
//!   prefixes and 1,024 hosts: start-up to full maps and routes, one host failing and
//!   its prefixes rewritten (map, kernel routes); controller RSS and CPU while
//!   health-checking 64 hosts every 10 ms.
//! - `soak` (not in the default run): the 10-minute false-failover soak
//!   (`--soak-seconds`, default 600); the default full run holds a 120 s soak.
//!
//! Writes `DIR/lab.json` and `DIR/lab.md` (default DIR: `target/bench`).

mod control;
mod failover;
mod load;
mod profile;
mod report;
mod scale;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    sync::atomic::{AtomicBool, Ordering},
    time::{Instant, SystemTime},
};

use anyhow::{Context as _, bail, ensure};
use clap::Parser as _;
use ha_tests::{
    bench::machine::Machine,
    lab::{Bins, workspace_root},
};

use crate::report::{Report, Section};

/// The families `--only` accepts; the default run is the first two.
const FAMILIES: [&str; 3] = ["failover", "control-plane", "soak"];

pub struct Args {
    pub quick: bool,
    pub only: Option<String>,
    pub out: PathBuf,
    /// Length of the `soak` family's soak (the default run's soak is fixed: 120 s,
    /// 10 s with `--quick`).
    pub soak_seconds: u64,
    /// Prefixes of the scale configuration (1,024 hosts): 65,536, 8,192 with
    /// `--quick` (installing 65,536 kernel routes alone takes seconds).
    pub scale_prefixes: usize,
}

/// The lab benchmarks: failover outage and control plane, and the long soak.
#[derive(clap::Parser)]
#[command(name = "ha-bench-lab")]
struct Cli {
    /// Fewer trials and shorter windows (a smoke run).
    #[arg(long)]
    quick: bool,
    /// Run one family only (`soak` runs only with this).
    #[arg(long, value_parser = FAMILIES)]
    only: Option<String>,
    /// Where lab.json and lab.md go [default: target/bench].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Length of the `soak` family's soak.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    soak_seconds: u64,
    /// Prefixes of the scale configuration, a multiple of 1024 up to 65536
    /// [default: 65536, 8192 with --quick].
    #[arg(long)]
    scale_prefixes: Option<usize>,
}

fn parse_args() -> anyhow::Result<Args> {
    let Cli {
        quick,
        only,
        out,
        soak_seconds,
        scale_prefixes,
    } = Cli::parse();
    let scale_prefixes = scale_prefixes.unwrap_or(if quick { 8192 } else { 65_536 });
    ensure!(
        (1024..=65_536).contains(&scale_prefixes) && scale_prefixes.is_multiple_of(1024),
        "--scale-prefixes must be a multiple of 1024 up to 65536"
    );
    Ok(Args {
        quick,
        only,
        out: out.unwrap_or_else(|| workspace_root().join("target/bench")),
        soak_seconds,
        scale_prefixes,
    })
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ha-bench-lab: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Set by SIGINT/SIGTERM: long loops stop and return an error, so every guard runs.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Fails once SIGINT or SIGTERM arrived.
pub fn check_interrupted() -> anyhow::Result<()> {
    ensure!(
        !INTERRUPTED.load(Ordering::SeqCst),
        "interrupted: cleaning up"
    );
    Ok(())
}

fn install_signal_handlers() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(signal, on_signal as *const () as libc::sighandler_t);
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args = parse_args()?;
    ha_tests::root::ensure_root(
        "ha-bench-lab",
        "namespaces, XDP, bpffs; or use `cargo xtask bench`",
    )?;
    install_signal_handlers();
    let bins = release_bins()?;

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let started = Instant::now();
    let mut report = Report::new(Machine::probe(), &args, &bins);
    let wanted = |family: &str| match &args.only {
        Some(only) => only == family,
        None => family != "soak",
    };
    if wanted("failover") {
        let t = Instant::now();
        let section = failover::run(&args, &bins)
            .unwrap_or_else(|err| Section::failed("3. Failover outage", format!("{err:#}")));
        report.family_done("failover", t.elapsed(), section);
        check_interrupted()?;
    }
    if wanted("control-plane") {
        let t = Instant::now();
        let section = control::run(&args, &bins)
            .unwrap_or_else(|err| Section::failed("4. Control plane", format!("{err:#}")));
        report.family_done("control-plane", t.elapsed(), section);
        check_interrupted()?;
    }
    if wanted("soak") {
        let t = Instant::now();
        let section = failover::soak::run_soak_family(&args, &bins).unwrap_or_else(|err| {
            Section::failed("3. Failover outage: long soak", format!("{err:#}"))
        });
        report.family_done("soak", t.elapsed(), section);
    }
    report.finish(started.elapsed());
    let (json_path, md_path) =
        ha_tests::bench::report::write_results(&args.out, "lab", &report, &report.markdown())?;
    eprintln!(
        "ha-bench-lab: {} and {} written in {:.0} s",
        json_path.display(),
        md_path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The release builds of the lab's programs: `$HA_USER_BIN` etc. if set, else the
/// ones next to this binary. A controller older than its sources is refused: the
/// figures would describe other code.
fn release_bins() -> anyhow::Result<Bins> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let dir = exe.parent().context("this binary has no directory")?;
    let pick =
        |var: &str, name: &str| std::env::var_os(var).map_or_else(|| dir.join(name), PathBuf::from);
    let bins = Bins {
        ha_user: pick("HA_USER_BIN", "ha-user"),
        webd: pick("HA_WEBD_BIN", "ha-webd"),
        stream: pick("HA_STREAM_BIN", "ha-stream"),
    };
    for path in [&bins.ha_user, &bins.webd, &bins.stream] {
        ensure!(
            path.is_file(),
            "{} is missing: build it with `cargo build --release -p ha-user -p ha-tests \
             --bin ha-user --bin ha-webd --bin ha-stream --bin ha-bench-lab`",
            path.display()
        );
    }
    if std::env::var_os("HA_USER_BIN").is_none() {
        let built = modified(&bins.ha_user)?;
        let root = workspace_root();
        for source in ["ha-user/src", "ha-common/src", "ha-ebpf/src"] {
            if let Some(newer) = newer_than(&root.join(source), built) {
                bail!(
                    "{} is older than {}: rebuild it (cargo build --release -p ha-user)",
                    bins.ha_user.display(),
                    newer.display()
                );
            }
        }
    }
    Ok(bins)
}

fn modified(path: &Path) -> anyhow::Result<SystemTime> {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .with_context(|| format!("reading the time of {}", path.display()))
}

/// A file under `path` modified after `time`.
fn newer_than(path: &Path, time: SystemTime) -> Option<PathBuf> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.is_dir() {
        std::fs::read_dir(path)
            .ok()?
            .flatten()
            .find_map(|entry| newer_than(&entry.path(), time))
    } else {
        meta.modified()
            .ok()
            .filter(|m| *m > time)
            .map(|_| path.to_owned())
    }
}
