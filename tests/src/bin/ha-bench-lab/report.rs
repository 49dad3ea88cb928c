//! The results: figures (a distribution, its target and whether it was met), tables
//! and notes per section, written as JSON (serde) and Markdown.

use std::{fmt::Write as _, time::Duration};

use ha_tests::{
    bench::{
        machine::Machine,
        stats::{Dist, Stat},
    },
    lab::Bins,
};
use serde::Serialize;

use crate::Args;

#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    /// What was run: flags and binaries.
    pub run: RunInfo,
    pub sections: Vec<Section>,
}

#[derive(Debug, Serialize)]
pub struct RunInfo {
    pub quick: bool,
    pub only: Option<String>,
    pub build: String,
    pub ha_user: String,
    /// Wall time per family, seconds.
    pub family_seconds: Vec<(String, f64)>,
    pub total_seconds: f64,
}

/// One numbered section of the results.
#[derive(Debug, Serialize)]
pub struct Section {
    pub title: String,
    /// What was run, in words: set-up, trials, load, settings.
    pub setup: Vec<String>,
    pub figures: Vec<Figure>,
    pub tables: Vec<Table>,
    /// Explanations: targets missed and why, profiles, caveats.
    pub notes: Vec<String>,
    /// Set when the family could not run to its end.
    pub error: Option<String>,
}

/// A measured quantity: a distribution over trials (p50/p99/max) or over repeated
/// runs (min/median/max), with its target.
#[derive(Debug, Serialize)]
pub struct Figure {
    pub name: String,
    pub unit: String,
    /// `trials` (reported as p50/p99/max) or `runs` (min/median/max).
    pub over: Over,
    pub dist: Option<Dist>,
    pub target: Option<Target>,
    /// `None` without a target or without samples.
    pub met: Option<bool>,
    pub note: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Over {
    Trials,
    Runs,
}

/// "`stat` ≤ `limit`".
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub stat: Stat,
    pub limit: f64,
}

#[derive(Debug, Serialize)]
pub struct Table {
    pub title: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Figure {
    pub fn new(name: &str, unit: &str, over: Over, samples: &[f64]) -> Figure {
        Figure {
            name: name.to_owned(),
            unit: unit.to_owned(),
            over,
            dist: Dist::of(samples),
            target: None,
            met: None,
            note: String::new(),
        }
    }

    /// Adds the target `stat ≤ limit` and decides whether it was met.
    pub fn target(mut self, stat: Stat, limit: f64) -> Figure {
        self.met = self.dist.as_ref().map(|d| d.get(stat) <= limit);
        self.target = Some(Target { stat, limit });
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Figure {
        self.note = note.into();
        self
    }
}

impl Section {
    pub fn new(title: &str) -> Section {
        Section {
            title: title.to_owned(),
            setup: Vec::new(),
            figures: Vec::new(),
            tables: Vec::new(),
            notes: Vec::new(),
            error: None,
        }
    }

    pub fn failed(title: &str, error: String) -> Section {
        eprintln!("ha-bench-lab: {title}: {error}");
        let mut section = Section::new(title);
        section.error = Some(error);
        section
    }
}

impl Report {
    pub fn new(machine: Machine, args: &Args, bins: &Bins) -> Report {
        Report {
            machine,
            run: RunInfo {
                quick: args.quick,
                only: args.only.clone(),
                build: if cfg!(debug_assertions) {
                    "debug (ha-bench-lab); controller as given".to_owned()
                } else {
                    "release".to_owned()
                },
                ha_user: bins.ha_user.display().to_string(),
                family_seconds: Vec::new(),
                total_seconds: 0.0,
            },
            sections: Vec::new(),
        }
    }

    pub fn family_done(&mut self, family: &str, took: Duration, section: Section) {
        eprintln!("ha-bench-lab: {family} done in {:.0} s", took.as_secs_f64());
        self.run
            .family_seconds
            .push((family.to_owned(), took.as_secs_f64()));
        self.sections.push(section);
    }

    pub fn finish(&mut self, took: Duration) {
        self.run.total_seconds = took.as_secs_f64();
        self.machine.finish();
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let Machine {
            cpu_model,
            cores,
            kernel,
            date,
            load_average_start,
            load_average_end,
            busy_processes,
        } = &self.machine;
        let _ = writeln!(md, "# Lab benchmarks: failover and control plane\n");
        let _ = writeln!(
            md,
            "Machine: {cpu_model}, {cores} cores, kernel {kernel}; {date}; load average \
             {load_average_start} at the start, {load_average_end} at the end."
        );
        if !busy_processes.is_empty() {
            let _ = writeln!(
                md,
                "Other busy processes at the start: {}.",
                busy_processes.join(", ")
            );
        }
        let RunInfo {
            quick,
            only,
            build,
            ha_user,
            family_seconds,
            total_seconds,
        } = &self.run;
        let families: Vec<String> = family_seconds
            .iter()
            .map(|(f, s)| format!("{f} {s:.0} s"))
            .collect();
        let _ = writeln!(
            md,
            "Run: `ha-bench-lab{}{}` ({}), {build} build, controller `{ha_user}`; \
             {total_seconds:.0} s in all.\n",
            if *quick { " --quick" } else { "" },
            only.as_ref()
                .map_or(String::new(), |o| format!(" --only {o}")),
            families.join(", "),
        );
        let _ = writeln!(
            md,
            "Distributions over trials are given as p50 / p99 / max (nearest rank: with \
             fewer than 100 trials p99 is the largest or second largest sample); figures \
             over repeated runs as min / median / max.\n"
        );
        for section in &self.sections {
            section.markdown(&mut md);
        }
        md
    }
}

impl Section {
    fn markdown(&self, md: &mut String) {
        let _ = writeln!(md, "## {}\n", self.title);
        if let Some(error) = &self.error {
            let _ = writeln!(md, "**Not completed**: {error}\n");
        }
        for line in &self.setup {
            let _ = writeln!(md, "- {line}");
        }
        if !self.setup.is_empty() {
            md.push('\n');
        }
        if !self.figures.is_empty() {
            let _ = writeln!(
                md,
                "| figure | n | p50 or median | p99 | min | max | target | |"
            );
            let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
            for figure in &self.figures {
                figure.markdown(md);
            }
            md.push('\n');
            let notes: Vec<&Figure> = self.figures.iter().filter(|f| !f.note.is_empty()).collect();
            for figure in notes {
                let _ = writeln!(md, "- *{}*: {}", figure.name, figure.note);
            }
            md.push('\n');
        }
        for table in &self.tables {
            let _ = writeln!(md, "{}\n", table.title);
            let _ = writeln!(md, "| {} |", table.header.join(" | "));
            let _ = writeln!(md, "|{}", "---|".repeat(table.header.len()));
            for row in &table.rows {
                let _ = writeln!(md, "| {} |", row.join(" | "));
            }
            md.push('\n');
        }
        for note in &self.notes {
            let _ = writeln!(md, "{note}\n");
        }
    }
}

impl Figure {
    fn markdown(&self, md: &mut String) {
        let unit = &self.unit;
        let v = |x: f64| format!("{} {unit}", number(x));
        let (center, p99, min, max, n) = match &self.dist {
            Some(d) => match self.over {
                Over::Trials => (v(d.p50), v(d.p99), v(d.min), v(d.max), d.n.to_string()),
                Over::Runs => (
                    v(d.p50),
                    "–".to_owned(),
                    v(d.min),
                    v(d.max),
                    d.n.to_string(),
                ),
            },
            None => ("–".into(), "–".into(), "–".into(), "–".into(), "0".into()),
        };
        let target = self.target.as_ref().map_or(String::new(), |t| {
            let stat = match (t.stat, self.over) {
                (Stat::P50, Over::Runs) => "median",
                (Stat::P50, Over::Trials) => "p50",
                (Stat::P99, _) => "p99",
                (Stat::Max, _) => "max",
            };
            format!("{stat} ≤ {}", v(t.limit))
        });
        let met = match self.met {
            Some(true) => "met",
            Some(false) => "**NOT met**",
            None if self.target.is_some() => "no data",
            None => "",
        };
        let over = match self.over {
            Over::Trials => "",
            Over::Runs => " (runs)",
        };
        let _ = writeln!(
            md,
            "| {}{over} | {n} | {center} | {p99} | {min} | {max} | {target} | {met} |",
            self.name
        );
    }
}

/// A number with about three significant digits.
pub fn number(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 || x == x.trunc() && a < 1e6 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}
