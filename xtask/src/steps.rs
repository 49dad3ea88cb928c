//! What every test command reports: its steps, their outcomes and the table they
//! end with; and the root suites it runs. Shared by `cargo xtask test` on this
//! machine and in the guest.

use std::{
    fs,
    path::Path,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context as _;

/// How a step ended.
pub(crate) enum Outcome {
    Ok,
    Failed(String),
    Skipped(String),
}

/// One step of a run: a build, a suite, a check.
pub(crate) struct Step {
    pub(crate) name: String,
    pub(crate) outcome: Outcome,
    pub(crate) duration: Duration,
}

/// Summary counts: tests from `cargo test`, plus whole steps where no test count says it.
#[derive(Default)]
pub(crate) struct Totals {
    pub(crate) passed: u64,
    /// Failed tests, plus one per failed step that reported no failed test (a build
    /// error, a crash, a suite that ran nothing, clippy, rustfmt).
    pub(crate) failed: u64,
    /// Ignored tests, plus one per skipped suite (its test count is unknown).
    pub(crate) skipped: u64,
}

/// The integration test targets of `ha-tests`: `tests/tests/NAME.rs` and
/// `tests/tests/NAME/main.rs`, as cargo discovers them.
pub(crate) fn root_suites(dir: &Path) -> anyhow::Result<Vec<String>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let entries = fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    let mut suites = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot list {}", dir.display()))?
            .path();
        let name = if path.is_dir() && path.join("main.rs").is_file() {
            path.file_name()
        } else if path.extension().is_some_and(|ext| ext == "rs") && path.is_file() {
            path.file_stem()
        } else {
            None
        };
        if let Some(name) = name.and_then(|name| name.to_str()) {
            suites.push(name.to_owned());
        }
    }
    suites.sort();
    Ok(suites)
}

/// The table of steps a run ends with.
pub(crate) fn print_table(steps: &[Step]) {
    let width = steps.iter().map(|step| step.name.len()).max().unwrap_or(4);
    println!(
        "\n{:<width$}  {:<7}  {:>8}  detail",
        "step", "result", "time"
    );
    for Step {
        name,
        outcome,
        duration,
    } in steps
    {
        let (result, detail) = match outcome {
            Outcome::Ok => ("ok", ""),
            Outcome::Failed(why) => ("FAILED", why.as_str()),
            Outcome::Skipped(why) => ("skipped", why.as_str()),
        };
        let secs = format!("{:.1}s", duration.as_secs_f64());
        println!("{name:<width$}  {result:<7}  {secs:>8}  {detail}");
    }
}

/// The step `name`, which started at `start`, ended with `outcome`.
pub(crate) fn step(name: &str, outcome: Outcome, start: Instant) -> Step {
    Step {
        name: name.into(),
        outcome,
        duration: start.elapsed(),
    }
}

/// Runs a step that is a call rather than a command: its error is printed and
/// counted as a failure, and the table says "see above".
pub(crate) fn run_step(
    totals: &mut Totals,
    name: &str,
    call: impl FnOnce() -> anyhow::Result<()>,
) -> Step {
    let start = Instant::now();
    let outcome = match call() {
        Ok(()) => Outcome::Ok,
        Err(err) => {
            println!("{err:#}");
            totals.failed += 1;
            Outcome::Failed("see above".into())
        }
    };
    step(name, outcome, start)
}

/// Prints the table and the summary line a run ends with; fails if any step failed.
pub(crate) fn conclude(steps: &[Step], totals: &Totals) -> ExitCode {
    print_table(steps);
    let Totals {
        passed,
        failed,
        skipped,
    } = totals;
    println!("xtask: {passed} passed, {failed} failed, {skipped} skipped");
    let ok = steps
        .iter()
        .all(|step| !matches!(step.outcome, Outcome::Failed(_)));
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
