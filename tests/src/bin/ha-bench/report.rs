//! The results model and its two renderings: `results.json` (serde, through the
//! shared results writer) and `results.md`.

use std::{collections::BTreeMap, fmt::Write as _};

use ha_tests::bench::{machine::Machine, stats::Dist};
use serde::{Serialize, Serializer, ser::SerializeMap as _};

/// A bound on a ratio.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bound {
    AtMost(f64),
    AtLeast(f64),
}

impl Bound {
    pub fn holds(self, ratio: f64) -> bool {
        match self {
            Self::AtMost(bound) => ratio <= bound,
            Self::AtLeast(bound) => ratio >= bound,
        }
    }

    fn describe(self) -> String {
        match self {
            Self::AtMost(bound) => format!("≤ {bound:.2}"),
            Self::AtLeast(bound) => format!("≥ {bound:.2}"),
        }
    }
}

/// A figure divided by another one of the same family, measured in the same rounds.
///
/// The headline is the median of the per-round ratios: the two measurements of a
/// round are seconds apart, so load that comes and goes on the machine cancels
/// better than in the ratio of the two medians (also given).
#[derive(Clone, Debug)]
pub struct Ratio {
    /// Name of the figure divided by.
    pub against: String,
    /// Median of this figure / median of the other.
    pub of_medians: f64,
    /// The ratio within each round (same round, adjacent in time).
    pub per_round: Option<Dist>,
    pub target: Option<Bound>,
}

impl Ratio {
    /// Median of the per-round ratios.
    pub fn value(&self) -> f64 {
        self.per_round.map_or(f64::NAN, |s| s.median)
    }

    pub fn met(&self) -> Option<bool> {
        self.target.map(|bound| bound.holds(self.value()))
    }
}

/// One measured quantity, repeated over rounds.
#[derive(Clone, Debug)]
pub struct Figure {
    /// Short machine name (`--only` takes it).
    pub name: String,
    /// What it is, for people.
    pub label: String,
    pub unit: &'static str,
    /// One value per round.
    pub samples: Vec<f64>,
    pub ratios: Vec<Ratio>,
    /// Side measurements (offered rate, CPU use, drops), each summarised over rounds.
    pub side: Vec<(String, Vec<f64>)>,
}

impl Figure {
    pub fn summary(&self) -> Option<Dist> {
        Dist::of(&self.samples)
    }

    /// Adds the ratio of this figure to `other` (round by round and of medians).
    pub fn add_ratio(&mut self, other: &Figure, target: Option<Bound>) {
        let of_medians = match (self.summary(), other.summary()) {
            (Some(a), Some(b)) if b.median != 0.0 => a.median / b.median,
            _ => f64::NAN,
        };
        let per_round: Vec<f64> = self
            .samples
            .iter()
            .zip(&other.samples)
            .filter(|(_, b)| **b != 0.0)
            .map(|(a, b)| a / b)
            .collect();
        self.ratios.push(Ratio {
            against: other.name.clone(),
            of_medians,
            per_round: Dist::of(&per_round),
            target,
        });
    }
}

/// One benchmark family: its figures, how they were measured, and what explains them.
#[derive(Clone, Debug, Serialize)]
pub struct Family {
    pub name: &'static str,
    pub title: &'static str,
    /// Markdown: the method, in a few lines.
    pub method: String,
    pub figures: Vec<Figure>,
    /// Markdown: profile and diagnostics, appended after the table.
    #[serde(skip)]
    pub notes: Vec<String>,
    /// The same diagnostics, machine-readable.
    pub details: serde_json::Value,
}

pub struct Report {
    pub machine: Machine,
    pub quick: bool,
    pub only: Option<String>,
    pub families: Vec<Family>,
    pub elapsed_secs: f64,
}

impl Report {
    pub fn to_markdown(&self) -> String {
        let Self {
            machine,
            quick,
            only,
            families,
            elapsed_secs,
        } = self;
        let mut md = String::new();
        let _ = writeln!(md, "# `ha` benchmark results\n");
        let _ = writeln!(md, "| | |\n|---|---|");
        let _ = writeln!(md, "| CPU | {} |", machine.cpu_model);
        let _ = writeln!(md, "| cores | {} |", machine.cores);
        let _ = writeln!(md, "| kernel | {} |", machine.kernel);
        let _ = writeln!(md, "| date | {} |", machine.date);
        let _ = writeln!(
            md,
            "| load average at start | {} |",
            machine.load_average_start
        );
        let mode = if *quick { "`--quick`" } else { "full" };
        let _ = writeln!(md, "| mode | {mode} |");
        if let Some(only) = only {
            let _ = writeln!(md, "| only | `{only}` |");
        }
        let _ = writeln!(md, "| run time | {elapsed_secs:.0} s |\n");
        for family in families {
            family_markdown(&mut md, family);
        }
        md
    }
}

/// `{min, median, max}` of a figure's rounds (the classic median), or `null`.
fn min_median_max<S: Serializer>(dist: &Option<Dist>, serializer: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct MinMedianMax {
        min: f64,
        median: f64,
        max: f64,
    }
    dist.map(|d| MinMedianMax {
        min: d.min,
        median: d.median,
        max: d.max,
    })
    .serialize(serializer)
}

impl Serialize for Report {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out<'a> {
            machine: &'a Machine,
            mode: &'static str,
            only: &'a Option<String>,
            elapsed_seconds: f64,
            families: &'a [Family],
        }
        Out {
            machine: &self.machine,
            mode: if self.quick { "quick" } else { "full" },
            only: &self.only,
            elapsed_seconds: self.elapsed_secs,
            families: &self.families,
        }
        .serialize(serializer)
    }
}

impl Serialize for Bound {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (op, value) = match *self {
            Self::AtMost(value) => ("<=", value),
            Self::AtLeast(value) => (">=", value),
        };
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("op", op)?;
        map.serialize_entry("value", &value)?;
        map.end()
    }
}

impl Serialize for Ratio {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out<'a> {
            against: &'a str,
            value: f64,
            #[serde(serialize_with = "min_median_max")]
            per_round: Option<Dist>,
            of_medians: f64,
            target: Option<Bound>,
            met: Option<bool>,
        }
        Out {
            against: &self.against,
            value: self.value(),
            per_round: self.per_round,
            of_medians: self.of_medians,
            target: self.target,
            met: self.met(),
        }
        .serialize(serializer)
    }
}

impl Serialize for Figure {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Side<'a> {
            #[serde(serialize_with = "min_median_max")]
            summary: Option<Dist>,
            samples: &'a [f64],
        }
        #[derive(Serialize)]
        struct Out<'a> {
            name: &'a str,
            label: &'a str,
            unit: &'static str,
            #[serde(serialize_with = "min_median_max")]
            summary: Option<Dist>,
            samples: &'a [f64],
            ratios: &'a [Ratio],
            side: BTreeMap<&'a str, Side<'a>>,
        }
        Out {
            name: &self.name,
            label: &self.label,
            unit: self.unit,
            summary: self.summary(),
            samples: &self.samples,
            ratios: &self.ratios,
            side: self
                .side
                .iter()
                .map(|(key, values)| {
                    (
                        key.as_str(),
                        Side {
                            summary: Dist::of(values),
                            samples: values,
                        },
                    )
                })
                .collect(),
        }
        .serialize(serializer)
    }
}

/// A number with three significant digits or so.
pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        "–".to_owned()
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn family_markdown(md: &mut String, family: &Family) {
    let Family {
        name,
        title,
        method,
        figures,
        notes,
        details: _,
    } = family;
    let _ = writeln!(md, "## {title} (`{name}`)\n");
    let _ = writeln!(md, "{method}\n");
    let _ = writeln!(
        md,
        "| figure | what | unit | min | median | max | ratio: median of per-round ratios (min–max) [ratio of medians] |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for figure in figures {
        let (min, median, max) = figure.summary().map_or_else(
            || ("–".to_owned(), "–".to_owned(), "–".to_owned()),
            |s| (fmt_num(s.min), fmt_num(s.median), fmt_num(s.max)),
        );
        let ratios: Vec<String> = figure
            .ratios
            .iter()
            .map(|ratio| {
                let mut text = format!("{:.2}× `{}`", ratio.value(), ratio.against);
                if let Some(per_round) = ratio.per_round {
                    let _ = write!(text, " ({:.2}–{:.2})", per_round.min, per_round.max);
                }
                let _ = write!(text, " [medians: {:.2}]", ratio.of_medians);
                if let (Some(bound), Some(met)) = (ratio.target, ratio.met()) {
                    let verdict = if met { "met" } else { "**NOT met**" };
                    let _ = write!(text, " target {}: {verdict}", bound.describe());
                }
                text
            })
            .collect();
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {min} | {median} | {max} | {} |",
            figure.name,
            figure.label,
            figure.unit,
            if ratios.is_empty() {
                "reference".to_owned()
            } else {
                ratios.join("<br>")
            }
        );
    }
    let sides: Vec<&Figure> = figures.iter().filter(|f| !f.side.is_empty()).collect();
    if !sides.is_empty() {
        let _ = writeln!(md, "\nSide measurements (median over rounds, min–max):\n");
        let keys: Vec<&String> = sides[0].side.iter().map(|(key, _)| key).collect();
        let _ = writeln!(
            md,
            "| figure | {} |",
            keys.iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(md, "|---|{}", "---|".repeat(keys.len()));
        for figure in sides {
            let cells: Vec<String> = figure
                .side
                .iter()
                .map(|(_, values)| {
                    Dist::of(values).map_or_else(
                        || "–".to_owned(),
                        |s| {
                            format!(
                                "{} ({}–{})",
                                fmt_num(s.median),
                                fmt_num(s.min),
                                fmt_num(s.max)
                            )
                        },
                    )
                })
                .collect();
            let _ = writeln!(md, "| `{}` | {} |", figure.name, cells.join(" | "));
        }
    }
    for note in notes {
        let _ = writeln!(md, "\n{note}");
    }
    let _ = writeln!(md);
}
