//! The differences as tables: a summary by outcome (printed), and every difference
//! with its frame, both outcomes and the bytes (printed in part, written whole to a
//! file).

use std::{collections::BTreeMap, fmt::Write as _, path::Path};

use ha_tests::hexdump;

use crate::{
    compare::{Accepted, Difference, summary},
    corpus::Corpus,
    observe::{Kind, Record},
};

/// Rows of the detailed table printed (the file has all of them).
const PRINTED_ROWS: usize = 40;

/// The shape of an outcome, for grouping: kinds of records, without sizes.
fn shape(records: &[Record]) -> String {
    if records.is_empty() {
        return "not delivered".into();
    }
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for record in records {
        let text = match record.kind {
            Kind::Delivered => format!("delivered to {}", record.point),
            Kind::IcmpError(kind, code) => format!("ICMP {kind}/{code} to {}", record.point),
        };
        *kinds.entry(text).or_default() += 1;
    }
    kinds
        .into_iter()
        .map(|(text, n)| if n > 1 { format!("{text} x{n}") } else { text })
        .collect::<Vec<_>>()
        .join(", ")
}

/// How the two outcomes' bytes differ, when both delivered to the same station.
fn bytes_diff(d: &Difference) -> String {
    let delivered = |records: &[Record]| {
        records
            .iter()
            .find(|r| r.kind == Kind::Delivered)
            .map(|r| (r.point, r.bytes.clone()))
    };
    match (delivered(&d.kernel), delivered(&d.fast)) {
        (Some((kp, kb)), Some((fp, fb))) if kp == fp => match hexdump::first_difference(&kb, &fb) {
            Some(at) => format!(
                "at {kp}: first at byte {at} ({} vs {} bytes)",
                kb.len(),
                fb.len()
            ),
            None => "same bytes, other records differ".into(),
        },
        _ => "-".into(),
    }
}

/// Differences of one outcome pair.
struct Group<'c> {
    count: usize,
    labels: BTreeMap<&'c str, usize>,
    example: usize,
}

/// Groups by (kernel shape, fast-path shape) with counts and the commonest labels.
pub fn grouped(corpus: &Corpus, differences: &[&Difference]) -> String {
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    for d in differences {
        let entry = &corpus.entries[d.index];
        let group = groups
            .entry((shape(&d.kernel), shape(&d.fast)))
            .or_insert(Group {
                count: 0,
                labels: BTreeMap::new(),
                example: d.index,
            });
        group.count += 1;
        for label in &entry.labels {
            *group.labels.entry(label).or_default() += 1;
        }
        if entry.origin.starts_with("fixture") {
            *group.labels.entry("(fixture frame)").or_default() += 1;
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| frames | kernel | fast path | commonest labels | e.g. |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    let mut rows: Vec<_> = groups.into_iter().collect();
    rows.sort_by_key(|(_, group)| std::cmp::Reverse(group.count));
    for (
        (kernel, fast),
        Group {
            count,
            labels,
            example,
        },
    ) in rows
    {
        let mut labels: Vec<(&str, usize)> = labels.into_iter().collect();
        labels.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        let labels: Vec<String> = labels
            .iter()
            .take(4)
            .map(|(label, n)| format!("{label} ({n})"))
            .collect();
        let _ = writeln!(
            out,
            "| {count} | {kernel} | {fast} | {} | #{example} |",
            labels.join("; ")
        );
    }
    out
}

/// Every difference: frame, both outcomes, how the bytes differ; with `dumps`, the
/// input and the two first delivered frames in hex.
pub fn table(
    corpus: &Corpus,
    differences: &[&Difference],
    rows: Option<usize>,
    dumps: bool,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| frame | kernel | fast path | bytes | accepted |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for d in differences.iter().take(rows.unwrap_or(usize::MAX)) {
        let entry = &corpus.entries[d.index];
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            entry.describe(),
            summary(&d.kernel),
            summary(&d.fast),
            bytes_diff(d),
            d.accepted.map_or("no", Accepted::describe)
        );
    }
    if dumps {
        for d in differences.iter().take(rows.unwrap_or(usize::MAX)) {
            let entry = &corpus.entries[d.index];
            let first =
                |records: &[Record]| records.first().map(|r| r.bytes.clone()).unwrap_or_default();
            let _ = writeln!(
                out,
                "\n{}\nkernel: {}\nfast path: {}\n(expected = the kernel's first record, actual = the fast path's)\n{}",
                entry.describe(),
                summary(&d.kernel),
                summary(&d.fast),
                hexdump::compare(&entry.bytes, &first(&d.kernel), &first(&d.fast))
            );
        }
    }
    out
}

/// The printed part of the report.
pub fn printed(corpus: &Corpus, differences: &[&Difference]) -> String {
    let mut out = grouped(corpus, differences);
    let shown = differences.len().min(PRINTED_ROWS);
    let _ = writeln!(out, "\nfirst {shown} of {} differences:", differences.len());
    out.push_str(&table(corpus, differences, Some(PRINTED_ROWS), false));
    out
}

/// Every entry with both outcomes, one line each.
pub fn outcomes(corpus: &Corpus, kernel: &[Vec<Record>], fast: &[Vec<Record>]) -> String {
    let mut out = String::from("| frame | kernel | fast path |\n|---|---|---|\n");
    for entry in &corpus.entries {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            entry.describe(),
            summary(&kernel[entry.index]),
            summary(&fast[entry.index])
        );
    }
    out
}

/// Writes the whole report to `path`: the differences not accepted by outcome, then
/// every difference.
pub fn write(path: &Path, corpus: &Corpus, header: &str, differences: &[&Difference]) {
    let mut text = String::from(header);
    let failing: Vec<&Difference> = differences
        .iter()
        .copied()
        .filter(|d| d.accepted.is_none())
        .collect();
    text.push_str("\n## Not accepted, by outcome\n\n");
    text.push_str(&grouped(corpus, &failing));
    text.push_str("\n## Every difference\n\n");
    text.push_str(&table(corpus, differences, None, true));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}
