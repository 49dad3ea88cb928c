//! The documentation's map tables are rendered from `ha_common::MAPS`: the README's
//! (section "Looking inside with bpftool") and this crate's own docs. This fails when
//! either is not current; `UPDATE_GOLDEN=1 cargo test -p ha-common --test map_table`
//! rewrites both.

use std::{fmt::Write as _, fs, path::PathBuf};

use ha_common::{MAPS, MapSpec};

const BEGIN: &str = "<!-- map table: rendered from ha_common::MAPS; `UPDATE_GOLDEN=1 cargo test -p ha-common --test map_table` rewrites it -->";
const END: &str = "<!-- end of map table -->";

/// The table, one line per map, in the table's order.
fn render(maps: &[MapSpec]) -> String {
    let mut table = String::from(
        "| map | kind | key | value | entries | holds | written by |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for spec in maps {
        let MapSpec {
            name,
            kind,
            key_size,
            value_size,
            max_entries,
            holds,
            written_by,
        } = spec;
        let _ = writeln!(
            table,
            "| `{name}` | {} | {key_size} B | {value_size} B | {max_entries} | {holds} | {written_by} |",
            kind.describe()
        );
    }
    table
}

/// Replaces what lies between the markers of `text` (whose lines start with
/// `prefix`) by `table`; `None` without both markers.
fn with_table(text: &str, prefix: &str, table: &str) -> Option<String> {
    let begin = format!("{prefix}{BEGIN}\n");
    let end = format!("{prefix}{END}\n");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let body: String = table
        .lines()
        .map(|line| format!("{prefix}{line}\n"))
        .collect();
    Some(format!("{}{body}{}", &text[..start], &text[stop..]))
}

fn check(relative: &str, prefix: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let current = with_table(&text, prefix, &render(&MAPS)).unwrap_or_else(|| {
        panic!(
            "{} has no map table between `{prefix}{BEGIN}` and `{prefix}{END}`",
            path.display()
        )
    });
    if current == text {
        return;
    }
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        fs::write(&path, current).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    panic!(
        "the map table of {} is not the one of ha_common::MAPS (UPDATE_GOLDEN=1 rewrites \
         it); it should read:\n{}",
        path.display(),
        render(&MAPS)
    );
}

#[test]
fn the_readme_lists_the_table() {
    check("../README.md", "");
}

#[test]
fn the_crate_docs_list_the_table() {
    check("src/lib.rs", "//! ");
}

#[test]
fn every_map_is_a_row() {
    let table = render(&MAPS);
    let rows: Vec<&str> = table.lines().skip(2).collect();
    assert_eq!(rows.len(), MAPS.len());
    for (row, spec) in rows.iter().zip(&MAPS) {
        assert!(row.starts_with(&format!("| `{}` |", spec.name)), "{row}");
        assert!(row.contains(&format!("| {} |", spec.max_entries)), "{row}");
    }
}
