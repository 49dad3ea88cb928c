//! `cargo xtask test`: the source rules (`rules/`), unit tests, the package
//! (`dist --check --dev`), the root suites of `ha-tests` one by one, clippy for the host crates and the eBPF crates, rustfmt. Every step runs even when an earlier one
//! failed; a table and one summary line close the run.

use std::{
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

use anyhow::bail;

use crate::{
    ctx::{Ctx, is_root},
    dist,
    exec::{self, Tally},
    guest, rules,
    steps::{Outcome, Step, Totals, conclude, root_suites, run_step, step},
};

/// The crates built for bpfel-unknown-none: the production programs and the
/// benchmark programs.
const EBPF_CRATES: [&str; 2] = ["ha-ebpf", "ha-bench-ebpf"];

#[derive(clap::Args)]
pub struct Args {
    /// Skip the suites that need root (they are listed as skipped, never as passed).
    #[arg(long)]
    skip_root: bool,
    /// Run the suites at their full sizes (HA_LONG=1): 1,000,000 random frames through
    /// the program, the differential test's whole corpus. Takes minutes.
    #[arg(long)]
    long: bool,
    /// Run the root suites in a QEMU guest with this kernel instead of on the host
    /// (see `cargo xtask guest`); unit tests, clippy and rustfmt stay with the host run.
    #[arg(long, value_parser = ["debian-6.1"])]
    kernel: Option<String>,
}

pub fn run(ctx: &Ctx, args: &Args, setup_time: Duration) -> anyhow::Result<ExitCode> {
    let Args {
        skip_root,
        long,
        ref kernel,
    } = *args;
    if let Some(kernel) = kernel {
        if skip_root {
            bail!("--kernel runs the root suites in a guest: --skip-root contradicts it");
        }
        return guest::suites::run(ctx, kernel, long, setup_time);
    }
    let suites = root_suites(&ctx.root.join("tests/tests"))?;
    let root = is_root()?;
    if !root && !skip_root {
        let list = if suites.is_empty() {
            "none found yet".to_owned()
        } else {
            suites.join(", ")
        };
        bail!(
            "the ha-tests suites in tests/tests ({list}) load XDP programs and create \
             network namespaces: they need root. Run as root (`sudo -E env \"PATH=$PATH\" \
             cargo xtask test`), or pass --skip-root to run only the unit tests, clippy and \
             rustfmt"
        );
    }

    let mut totals = Totals::default();
    let mut steps = vec![Step {
        name: "setup".into(),
        outcome: Outcome::Ok,
        duration: setup_time,
    }];

    // Quick and independent of the build: first.
    println!("\nxtask: == source rules: xtask/src/rules/");
    steps.push(run_step(&mut totals, "source rules", || {
        rules::check(&ctx.root)
    }));

    // The eBPF crates' binaries only build for bpfel-unknown-none: the eBPF clippy
    // step checks them. ha-tests holds the root suites, run one by one below. ha-fuzz
    // has only libFuzzer targets (`cargo xtask fuzz` runs them; clippy checks them here).
    let mut unit = ctx.cargo();
    unit.args([
        "test",
        "--workspace",
        "--exclude",
        "ha-tests",
        "--exclude",
        "ha-fuzz",
    ]);
    for krate in EBPF_CRATES {
        unit.args(["--exclude", krate]);
    }
    steps.push(test_step(&mut totals, "unit tests", &mut unit, false));
    // The test library's own unit tests (packet builder, hex dump) need no root.
    let mut test_lib = ctx.cargo();
    test_lib.args(["test", "-p", "ha-tests", "--lib"]);
    steps.push(test_step(
        &mut totals,
        "ha-tests library",
        &mut test_lib,
        false,
    ));

    // The package, from the dev-profile binary (no release build) and checked; the
    // package suite runs its maintainer scripts from the staged tree, so it comes
    // before the root suites.
    println!("\nxtask: == package: cargo xtask dist --check --dev");
    steps.push(run_step(
        &mut totals,
        "package (dist --check --dev)",
        || dist::run(ctx, &dist::Args::for_tests()),
    ));

    if suites.is_empty() {
        let why = "no suite found in tests/tests".to_owned();
        let outcome = if skip_root {
            Outcome::Skipped(why)
        } else {
            totals.failed += 1;
            Outcome::Failed(why)
        };
        steps.push(Step {
            name: "root suites".into(),
            outcome,
            duration: Duration::ZERO,
        });
    }
    for suite in &suites {
        let name = if long {
            format!("ha-tests --test {suite} (long)")
        } else {
            format!("ha-tests --test {suite}")
        };
        if skip_root {
            let reason = if root {
                "--skip-root given"
            } else {
                "needs root; --skip-root given"
            };
            println!("xtask: skipping suite {suite}: {reason}");
            totals.skipped += 1;
            steps.push(Step {
                name,
                outcome: Outcome::Skipped(reason.into()),
                duration: Duration::ZERO,
            });
            continue;
        }
        // Network-namespace scenarios share host state (names, pinned maps): one test at a time.
        let mut cmd = ctx.cargo();
        cmd.args([
            "test",
            "-p",
            "ha-tests",
            "--test",
            suite,
            "--",
            "--test-threads=1",
        ]);
        // The suites read their sizes from HA_LONG (ha_tests::mode); an inherited
        // value must not turn a default run long, nor the reverse.
        cmd.env("HA_LONG", if long { "1" } else { "0" });
        steps.push(test_step(&mut totals, &name, &mut cmd, true));
    }

    let mut clippy = ctx.cargo();
    clippy.args(["clippy", "--workspace", "--all-targets"]);
    for krate in EBPF_CRATES {
        clippy.args(["--exclude", krate]);
    }
    clippy.args(["--", "-D", "warnings"]);
    steps.push(check_step(&mut totals, "clippy (host)", &mut clippy));

    let mut clippy_ebpf = ctx.cargo();
    clippy_ebpf.args(["+nightly", "clippy"]);
    for krate in EBPF_CRATES {
        clippy_ebpf.args(["-p", krate]);
    }
    clippy_ebpf.args(["--target", "bpfel-unknown-none"]);
    clippy_ebpf.args(["-Z", "build-std=core", "--", "-D", "warnings"]);
    steps.push(check_step(&mut totals, "clippy (ebpf)", &mut clippy_ebpf));

    let mut fmt = ctx.cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    steps.push(check_step(&mut totals, "rustfmt", &mut fmt));

    Ok(conclude(&steps, &totals))
}

/// Runs a `cargo test`; with `must_run`, a run without any passed or failed test fails.
fn test_step(totals: &mut Totals, name: &str, cmd: &mut Command, must_run: bool) -> Step {
    banner(name, cmd);
    let start = Instant::now();
    let outcome = match exec::run_tee(cmd) {
        Ok((status, tally)) => {
            let Tally {
                passed,
                failed,
                ignored,
                results,
            } = tally;
            totals.passed += passed;
            totals.failed += failed;
            totals.skipped += ignored;
            if !status.success() {
                if failed == 0 {
                    totals.failed += 1;
                }
                Outcome::Failed(format!("{failed} failed ({status})"))
            } else if must_run && passed + failed == 0 {
                totals.failed += 1;
                Outcome::Failed(format!(
                    "ran no test ({results} test binaries, {ignored} ignored)"
                ))
            } else {
                Outcome::Ok
            }
        }
        Err(err) => {
            totals.failed += 1;
            Outcome::Failed(format!("{err:#}"))
        }
    };
    step(name, outcome, start)
}

/// Runs a check (clippy, rustfmt) with inherited output.
fn check_step(totals: &mut Totals, name: &str, cmd: &mut Command) -> Step {
    banner(name, cmd);
    let start = Instant::now();
    let outcome = match exec::run_checked(cmd) {
        Ok(()) => Outcome::Ok,
        Err(err) => {
            totals.failed += 1;
            Outcome::Failed(format!("{err:#}"))
        }
    };
    step(name, outcome, start)
}

fn banner(name: &str, cmd: &Command) {
    println!("\nxtask: == {name}: {}", exec::describe(cmd));
}
