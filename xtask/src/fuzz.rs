//! `cargo xtask fuzz`: builds the libFuzzer targets of `fuzz/` with cargo-fuzz
//! (installing it first if it is missing) and runs each for a while, starting from
//! its committed seeds (`fuzz/corpus/<target>`). What a run learns goes to
//! `target/fuzz/corpus/<target>`, a finding to `target/fuzz/artifacts/<target>/`;
//! the committed seeds are never written. Not part of `cargo xtask test`.

use std::{
    fs,
    io::{BufRead as _, BufReader},
    process::{ExitCode, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};

use crate::{ctx::Ctx, exec};

#[derive(clap::Args)]
pub struct Args {
    /// Run only this target (default: every target; `cargo fuzz list` names them).
    #[arg(long)]
    target: Option<String>,
    /// How long each target runs.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
}

/// libFuzzer's limits: a run whose memory passes `RSS_LIMIT_MB`, or a single input
/// that takes longer than `TIMEOUT_S`, is a finding (an unbounded allocation, a hang).
const RSS_LIMIT_MB: u32 = 2048;
const TIMEOUT_S: u32 = 10;

/// What cargo-fuzz builds with: release, debug assertions and overflow checks on,
/// AddressSanitizer (cargo-fuzz's default).
const BUILD_FLAGS: [&str; 2] = ["--release", "--debug-assertions"];

/// One target's run, from libFuzzer's output.
#[derive(Default)]
struct Figures {
    executions: Option<u64>,
    /// Coverage counters (`cov:`, the edges hit) and features (`ft:`) at the end.
    cov: Option<u64>,
    ft: Option<u64>,
    corpus: Option<u64>,
    finding: Option<String>,
}

pub fn run(ctx: &Ctx, args: &Args) -> anyhow::Result<ExitCode> {
    let Args { target, seconds } = args;
    ensure_cargo_fuzz(ctx)?;
    let targets = match target {
        Some(target) => vec![target.clone()],
        None => list(ctx)?,
    };
    let mut build = ctx.cargo();
    build.args(["+nightly", "fuzz", "build"]).args(BUILD_FLAGS);
    if let Some(target) = target {
        build.arg(target);
    }
    exec::run_checked(&mut build).context("building the fuzz targets")?;

    let mut rows = Vec::new();
    for target in &targets {
        let start = Instant::now();
        let figures = run_target(ctx, target, *seconds)?;
        rows.push((target, start.elapsed(), figures));
    }
    println!("\nxtask: == fuzzing, {seconds} s per target");
    println!(
        "{:<16} {:>8} {:>12} {:>8} {:>8} {:>8}  result",
        "target", "seconds", "executions", "cov", "ft", "corpus"
    );
    let show = |n: Option<u64>| n.map_or_else(|| "?".to_owned(), |n| n.to_string());
    let mut failed = 0;
    for (target, elapsed, figures) in &rows {
        let result = match &figures.finding {
            Some(finding) => {
                failed += 1;
                format!("FINDING: {finding}")
            }
            None => "no finding".to_owned(),
        };
        println!(
            "{:<16} {:>8.0} {:>12} {:>8} {:>8} {:>8}  {result}",
            target,
            elapsed.as_secs_f64(),
            show(figures.executions),
            show(figures.cov),
            show(figures.ft),
            show(figures.corpus),
        );
    }
    if failed > 0 {
        println!(
            "xtask: {failed} target(s) found something; the input is in target/fuzz/artifacts/"
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn ensure_cargo_fuzz(ctx: &Ctx) -> anyhow::Result<()> {
    let found = exec::output(ctx.cargo().args(["+nightly", "fuzz", "--version"]))
        .is_ok_and(|(ok, _, _)| ok);
    if found {
        return Ok(());
    }
    eprintln!("xtask: cargo-fuzz is not installed; installing it from crates.io");
    exec::run_checked(ctx.cargo().args(["install", "cargo-fuzz", "--locked"]))
        .context("installing cargo-fuzz failed; run `cargo install cargo-fuzz --locked`")
}

fn list(ctx: &Ctx) -> anyhow::Result<Vec<String>> {
    let (ok, stdout, stderr) = exec::output(ctx.cargo().args(["+nightly", "fuzz", "list"]))?;
    if !ok {
        bail!("`cargo fuzz list` failed: {}", stderr.trim());
    }
    let targets: Vec<String> = stdout.lines().map(str::trim).map(str::to_owned).collect();
    if targets.is_empty() {
        bail!("`cargo fuzz list` names no target");
    }
    Ok(targets)
}

fn run_target(ctx: &Ctx, target: &str, seconds: u64) -> anyhow::Result<Figures> {
    let seeds = ctx.root.join("fuzz/corpus").join(target);
    if !seeds.is_dir() {
        bail!(
            "{} is missing: every target has its seed corpus",
            seeds.display()
        );
    }
    let work = ctx.target_dir().join("fuzz");
    let corpus = work.join("corpus").join(target);
    let artifacts = work.join("artifacts").join(target);
    for dir in [&corpus, &artifacts] {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    println!("\nxtask: == fuzz target {target} ({seconds} s)");
    let mut cmd = ctx.cargo();
    cmd.args(["+nightly", "fuzz", "run"])
        .args(BUILD_FLAGS)
        .arg(target)
        // libFuzzer adds what it learns to the first directory only.
        .arg(&corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .arg(format!("-timeout={TIMEOUT_S}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg("-print_final_stats=1")
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start `{}`", exec::describe(&cmd)))?;
    let stderr = child.stderr.take().context("no stderr pipe")?;
    let mut figures = Figures::default();
    for line in BufReader::new(stderr).lines() {
        let line = line.context("reading libFuzzer's output")?;
        read_line(&line, &mut figures);
        // Every new input is a line; the periodic and final ones are enough here.
        if !is_progress(&line) {
            eprintln!("{line}");
        }
    }
    let status = child.wait().context("waiting for cargo fuzz")?;
    if !status.success() && figures.finding.is_none() {
        figures.finding = Some(format!("cargo fuzz run exited with {status}"));
    }
    Ok(figures)
}

/// A `#N NEW ...` or `#N REDUCE ...` line, or the `NEW_FUNC` lines after one.
fn is_progress(line: &str) -> bool {
    if line.trim_start().starts_with("NEW_FUNC[") {
        return true;
    }
    let mut words = line.split_whitespace();
    words.next().is_some_and(|w| w.starts_with('#'))
        && words.next().is_some_and(|w| w == "NEW" || w == "REDUCE")
}

/// Takes the figures from one line of libFuzzer's output.
fn read_line(line: &str, figures: &mut Figures) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |key: &str| {
        words
            .iter()
            .position(|w| *w == key)
            .and_then(|at| words.get(at + 1))
            .and_then(|n| n.parse::<u64>().ok())
    };
    if words.first().is_some_and(|w| w.starts_with('#')) {
        if let Some(cov) = after("cov:") {
            figures.cov = Some(cov);
        }
        if let Some(ft) = after("ft:") {
            figures.ft = Some(ft);
        }
        if let Some(corpus) = after("corp:").or_else(|| {
            let at = words.iter().position(|w| *w == "corp:")?;
            words.get(at + 1)?.split('/').next()?.parse().ok()
        }) {
            figures.corpus = Some(corpus);
        }
    }
    if let Some(units) = line.strip_prefix("stat::number_of_executed_units:") {
        figures.executions = units.trim().parse().ok();
    }
    if let Some(rest) = line.strip_prefix("Done ")
        && let Some(runs) = rest.split_whitespace().next()
        && figures.executions.is_none()
    {
        figures.executions = runs.parse().ok();
    }
    if line.starts_with("==") && line.contains("ERROR: libFuzzer:") {
        figures.finding = Some(
            line.split("ERROR: libFuzzer: ")
                .last()
                .unwrap_or(line)
                .to_owned(),
        );
    }
    if line.contains("panicked at") && figures.finding.is_none() {
        figures.finding = Some(line.trim().to_owned());
    }
    if let Some(path) = line.split("Test unit written to ").nth(1) {
        let what = figures.finding.take().unwrap_or_else(|| "crash".to_owned());
        figures.finding = Some(format!("{what} ({})", path.trim()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzer_figures() {
        let mut figures = Figures::default();
        for line in [
            "#2\tINITED cov: 10 ft: 12 corp: 2/30b exec/s: 0 rss: 40Mb",
            "#524288\tpulse  cov: 1234 ft: 5678 corp: 345/12Kb lim: 4096 exec/s: 1000 rss: 80Mb",
            "#600000\tDONE   cov: 1240 ft: 5700 corp: 350/13Kb lim: 4096 exec/s: 1000 rss: 81Mb",
            "Done 600000 runs in 600 second(s)",
            "stat::number_of_executed_units: 600001",
        ] {
            read_line(line, &mut figures);
        }
        assert_eq!(figures.cov, Some(1240));
        assert_eq!(figures.ft, Some(5700));
        assert_eq!(figures.corpus, Some(350));
        assert_eq!(figures.executions, Some(600_001));
        assert!(figures.finding.is_none());
    }

    #[test]
    fn reads_a_finding_and_its_artifact() {
        let mut figures = Figures::default();
        for line in [
            "thread '<unnamed>' panicked at ha-user/src/x.rs:1:2:",
            "==123== ERROR: libFuzzer: deadly signal",
            "artifact_prefix='a/'; Test unit written to a/crash-abc",
        ] {
            read_line(line, &mut figures);
        }
        assert_eq!(
            figures.finding.as_deref(),
            Some("deadly signal (a/crash-abc)")
        );
        assert!(is_progress("#12\tNEW    cov: 1 ft: 1 corp: 1/1b"));
        assert!(!is_progress("#12\tpulse  cov: 1 ft: 1 corp: 1/1b"));
    }
}
