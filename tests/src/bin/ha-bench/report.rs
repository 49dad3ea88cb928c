//! The results model and its two renderings: `results.json` and `results.md`.

use std::fmt::Write as _;

use crate::{
    json::{Json, JsonExt as _},
    machine::Machine,
    stats::Summary,
};

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
    pub per_round: Option<Summary>,
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
    pub fn summary(&self) -> Option<Summary> {
        Summary::of(&self.samples)
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
            per_round: Summary::of(&per_round),
            target,
        });
    }
}

/// One benchmark family: its figures, how they were measured, and what explains them.
#[derive(Clone, Debug)]
pub struct Family {
    pub name: &'static str,
    pub title: &'static str,
    /// Markdown: the method, in a few lines.
    pub method: String,
    pub figures: Vec<Figure>,
    /// Markdown: profile and diagnostics, appended after the table.
    pub notes: Vec<String>,
    /// The same diagnostics, machine-readable.
    pub details: Json,
}

pub struct Report {
    pub machine: Machine,
    pub quick: bool,
    pub only: Option<String>,
    pub families: Vec<Family>,
    pub elapsed_secs: f64,
}

impl Report {
    pub fn to_json(&self) -> Json {
        let Self {
            machine,
            quick,
            only,
            families,
            elapsed_secs,
        } = self;
        Json::obj([
            ("machine", machine.to_json()),
            ("mode", Json::str(if *quick { "quick" } else { "full" })),
            ("only", only.as_ref().map_or(Json::Null, Json::str)),
            ("elapsed_seconds", Json::num(*elapsed_secs)),
            (
                "families",
                Json::Array(families.iter().map(family_json).collect()),
            ),
        ])
    }

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
        let _ = writeln!(md, "| load average at start | {} |", machine.load_average);
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

fn family_json(family: &Family) -> Json {
    let Family {
        name,
        title,
        method,
        figures,
        notes: _,
        details,
    } = family;
    Json::obj([
        ("name", Json::str(*name)),
        ("title", Json::str(*title)),
        ("method", Json::str(method)),
        (
            "figures",
            Json::Array(figures.iter().map(figure_json).collect()),
        ),
        ("details", details.clone()),
    ])
}

fn summary_json(summary: Option<Summary>) -> Json {
    summary.map_or(Json::Null, |Summary { min, median, max }| {
        Json::obj([
            ("min", Json::num(min)),
            ("median", Json::num(median)),
            ("max", Json::num(max)),
        ])
    })
}

fn figure_json(figure: &Figure) -> Json {
    let Figure {
        name,
        label,
        unit,
        samples,
        ratios,
        side,
    } = figure;
    let ratios = ratios.iter().map(|ratio| {
        let Ratio {
            against,
            of_medians,
            per_round,
            target,
        } = ratio;
        let target = target.map_or(Json::Null, |bound| {
            let (op, value) = match bound {
                Bound::AtMost(v) => ("<=", v),
                Bound::AtLeast(v) => (">=", v),
            };
            Json::obj([("op", Json::str(op)), ("value", Json::num(value))])
        });
        Json::obj([
            ("against", Json::str(against)),
            ("value", Json::num(ratio.value())),
            ("per_round", summary_json(*per_round)),
            ("of_medians", Json::num(*of_medians)),
            ("target", target),
            ("met", ratio.met().map_or(Json::Null, Json::Bool)),
        ])
    });
    let side = side.iter().map(|(key, values)| {
        (
            key.clone(),
            Json::obj([
                ("summary", summary_json(Summary::of(values))),
                (
                    "samples",
                    Json::Array(values.iter().map(|v| Json::num(*v)).collect()),
                ),
            ]),
        )
    });
    Json::obj([
        ("name", Json::str(name)),
        ("label", Json::str(label)),
        ("unit", Json::str(*unit)),
        ("summary", summary_json(figure.summary())),
        (
            "samples",
            Json::Array(samples.iter().map(|v| Json::num(*v)).collect()),
        ),
        ("ratios", Json::Array(ratios.collect())),
        ("side", Json::obj(side)),
    ])
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
                    Summary::of(values).map_or_else(
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
