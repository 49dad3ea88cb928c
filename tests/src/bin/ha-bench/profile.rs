//! Why a figure is what it is: the programs' sizes after the verifier, the time each
//! spends per packet inside the forwarding path (BPF_ENABLE_STATS), and where the
//! router's CPU goes (`perf record` on the router's CPU).

use std::{fmt::Write as _, path::Path, process::Command, thread, time::Duration};

use anyhow::Context as _;
use aya::sys::{Stats, enable_stats};
use serde::{Serialize, Serializer};

use crate::{progs::Object, report::fmt_num, topology::ROUTER_CPU};

/// What the verifier and the JIT made of a program.
#[derive(Serialize)]
pub struct ProgramSizes {
    #[serde(rename = "program")]
    pub name: String,
    /// Instructions the verifier processed (all paths).
    pub verified_insns: Option<u32>,
    /// Bytes of translated (post-verifier) BPF: 8 bytes per instruction.
    pub xlated_bytes: Option<u32>,
    pub jited_bytes: u32,
}

/// Sizes of the loaded programs `names`.
pub fn program_sizes(object: &Object, names: &[&str]) -> anyhow::Result<Vec<ProgramSizes>> {
    names
        .iter()
        .map(|name| {
            let info = object
                .loaded(name)?
                .info()
                .with_context(|| format!("program info of {name}"))?;
            Ok(ProgramSizes {
                name: (*name).to_owned(),
                verified_insns: info.verified_instruction_count(),
                xlated_bytes: info.size_translated(),
                jited_bytes: info.size_jitted(),
            })
        })
        .collect()
}

pub fn sizes_markdown(sizes: &[ProgramSizes]) -> String {
    let mut md = String::from(
        "**Programs after the verifier** (instructions processed by the verifier; \
         translated instructions; JIT-compiled bytes):\n\n\
         | program | verified insns | xlated insns | jited bytes |\n|---|---|---|---|\n",
    );
    for size in sizes {
        let opt = |v: Option<u32>, div: u32| v.map_or("–".to_owned(), |v| (v / div).to_string());
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {} |",
            size.name,
            opt(size.verified_insns, 1),
            opt(size.xlated_bytes, 8),
            size.jited_bytes
        );
    }
    md
}

/// A profile of one forwarding configuration while the generator runs.
#[derive(Serialize)]
pub struct ConfigProfile {
    pub config: String,
    pub program: Option<String>,
    /// ns per run of the router's program inside the forwarding path (kernel
    /// BPF_ENABLE_STATS, which adds two clock reads per run).
    pub ns_per_run: Option<f64>,
    pub runs: u64,
    /// (share of the router CPU's samples, symbol); in JSON `{percent, symbol}`.
    #[serde(serialize_with = "percent_symbol")]
    pub perf_top: Vec<(f64, String)>,
    pub perf_error: Option<String>,
}

fn percent_symbol<S: Serializer>(
    lines: &[(f64, String)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Line<'a> {
        percent: f64,
        symbol: &'a str,
    }
    serializer.collect_seq(lines.iter().map(|(percent, symbol)| Line {
        percent: *percent,
        symbol,
    }))
}

/// Profiles the configuration on the router now, for `duration` per tool.
pub fn profile_config(
    object: &Object,
    config: &str,
    program: Option<&str>,
    duration: Duration,
    out: &Path,
) -> anyhow::Result<ConfigProfile> {
    let (mut ns_per_run, mut runs) = (None, 0);
    if let Some(program) = program {
        let prog = object.loaded(program)?;
        // Statistics stay on while the fd is open: for this window only.
        let stats = enable_stats(Stats::RunTime).context("BPF_ENABLE_STATS")?;
        let before = prog.info()?;
        thread::sleep(duration);
        let after = prog.info()?;
        drop(stats);
        runs = after.run_count() - before.run_count();
        let ns = (after.run_time() - before.run_time()).as_nanos() as f64;
        ns_per_run = (runs > 0).then(|| ns / runs as f64);
    }
    let (perf_top, perf_error) = match perf_top(config, duration, out) {
        Ok(top) => (top, None),
        Err(err) => (Vec::new(), Some(format!("{err:#}"))),
    };
    Ok(ConfigProfile {
        config: config.to_owned(),
        program: program.map(str::to_owned),
        ns_per_run,
        runs,
        perf_top,
        perf_error,
    })
}

/// `perf record` of the router's CPU; the symbols above 1 % of its samples.
fn perf_top(config: &str, duration: Duration, out: &Path) -> anyhow::Result<Vec<(f64, String)>> {
    let data = out.join(format!("perf-{config}.data"));
    let data = data.to_str().context("non-UTF-8 output path")?;
    let cpu = ROUTER_CPU.to_string();
    let secs = format!("{:.1}", duration.as_secs_f64());
    ha_tests::lab::ns::check(Command::new("perf").args([
        "record",
        "-q",
        "-e",
        "cpu-clock",
        "-C",
        &cpu,
        "-o",
        data,
        "--",
        "sleep",
        &secs,
    ]))
    .context("perf record (Debian package linux-perf)")?;
    let report = ha_tests::lab::ns::check(Command::new("perf").args([
        "report",
        "-i",
        data,
        "--stdio",
        "--no-children",
        "--sort",
        "sym",
        "-q",
        "--percent-limit",
        "1",
    ]))
    .context("perf report")?;
    Ok(report
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let pct = fields.next()?.strip_suffix('%')?.parse().ok()?;
            let symbol: Vec<&str> = fields.collect();
            Some((pct, symbol.join(" ")))
        })
        .take(15)
        .collect())
}

impl ConfigProfile {
    pub fn markdown(&self) -> String {
        let mut md = format!("**Profile of `{}`**", self.config);
        if let (Some(program), Some(ns)) = (&self.program, self.ns_per_run) {
            let _ = write!(
                md,
                ": `{program}` ran {} times, {} ns per run inside the forwarding path \
                 (BPF_ENABLE_STATS, clock reads included)",
                self.runs,
                fmt_num(ns)
            );
        }
        md.push_str(". Router CPU (perf, cpu-clock, symbols ≥ 1 %):");
        if let Some(error) = &self.perf_error {
            let _ = write!(md, " unavailable ({error})");
        }
        if !self.perf_top.is_empty() {
            md.push_str("\n\n```text");
            for (pct, symbol) in &self.perf_top {
                let _ = write!(md, "\n{pct:5.1} %  {symbol}");
            }
            md.push_str("\n```");
        }
        md
    }
}
