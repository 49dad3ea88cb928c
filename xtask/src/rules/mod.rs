//! Rules of the sources that the compiler does not check, run by `cargo xtask test`:
//!
//! 1. **The protocol is types.** No `serde_json::Value`, `serde_json::Map` or `json!`
//!    anywhere in `ha-user/src`: the control protocol's JSON is derived from its
//!    types, never built or read by string keys.
//! 2. **Log text is for people.** No code outside the daemon (`tests/`,
//!    `ha-user/tests/`, `xtask/`) holds a string that matches the daemon's log
//!    lines: one that contains the fixed part (8 characters or more) of the message
//!    of a `tracing` macro in `ha-user/src`, or is the start of one (up to the end
//!    of a word), or contains `field=` for any of their fields. Tests and benchmarks
//!    follow the event stream or the typed reports instead.
//! 3. **Layers.** Between the modules of `ha-user/src` there is no import circle
//!    (among the children of each module: a child may use its parent's items and a
//!    parent its children's), and the bottom layers import only what is below them:
//!    `model` nothing, `kernel`, `config`, `proto` and `health` only `model`
//!    (`config` its own `adopt` too). No import circle in the other crates either:
//!    `xtask`, `ha-common`, the `ha-tests` library and each of its binaries.
//! 4. **Every security promise is a test.** Each promise of `docs/SECURITY.md`
//!    (`### S<n>. ...`) names in its `Tests:` paragraph the tests that prove it,
//!    and each named test is a `#[test]` function of the named suite or file.
//!
//! Code under `#[cfg(test)]` counts for rules 1 and 2, not for rule 3.

mod json;
mod layers;
mod log_text;
mod security;

use std::{
    fmt,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

use self::{
    json::no_json_values,
    layers::{import_circles, layers},
    log_text::LogText,
    security::security_promises,
};

/// One broken rule, at a place in a file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Violation {
    pub file: PathBuf,
    pub line: usize,
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.what)
    }
}

/// Checks every rule in the workspace at `root`; the error lists every violation.
pub fn check(root: &Path) -> anyhow::Result<()> {
    let daemon = sources(&root.join("ha-user/src"))?;
    let mut outside = Vec::new();
    for dir in ["tests", "ha-user/tests", "xtask/src"] {
        outside.extend(
            sources(&root.join(dir))?
                .into_iter()
                // The rules' own tests quote what they look for.
                .filter(|(path, _)| !path.starts_with(root.join("xtask/src/rules"))),
        );
    }
    let mut violations = Vec::new();
    for (path, text) in &daemon {
        violations.extend(no_json_values(path, text)?);
    }
    let log = LogText::of(&daemon)?;
    for (path, text) in &outside {
        violations.extend(log.matches_in(path, text)?);
    }
    violations.extend(layers(&root.join("ha-user/src"), &daemon)?);
    let crates = other_crates(root)?;
    for (src, root_file) in &crates {
        violations.extend(import_circles(src, root_file, &sources(src)?)?);
    }
    let (broken_promises, promises) = security_promises(root)?;
    violations.extend(broken_promises);
    if violations.is_empty() {
        println!(
            "xtask: source rules hold ({} files of ha-user/src, {} outside; {} log messages, {} log fields; no import circle in {} other crates; {} security promises, each with its tests)",
            daemon.len(),
            outside.len(),
            log.messages.len(),
            log.fields.len(),
            crates.len(),
            promises
        );
        return Ok(());
    }
    violations.sort();
    let list: Vec<String> = violations.iter().map(ToString::to_string).collect();
    bail!(
        "{} source rule violations (see xtask/src/rules/):\n  {}",
        violations.len(),
        list.join("\n  ")
    )
}

/// The crates checked for import circles besides `ha-user`'s library, as (source
/// directory, root file): xtask, ha-common, the ha-tests library and its binaries
/// (a directory under `tests/src/bin` with a `main.rs`).
fn other_crates(root: &Path) -> anyhow::Result<Vec<(PathBuf, &'static str)>> {
    let mut crates = vec![
        (root.join("xtask/src"), "main.rs"),
        (root.join("ha-common/src"), "lib.rs"),
        (root.join("tests/src"), "lib.rs"),
    ];
    let bins = root.join("tests/src/bin");
    let entries =
        std::fs::read_dir(&bins).with_context(|| format!("listing {}", bins.display()))?;
    let mut dirs = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("listing {}", bins.display()))?
            .path();
        if path.join("main.rs").is_file() {
            dirs.push((path, "main.rs"));
        }
    }
    dirs.sort();
    crates.extend(dirs);
    Ok(crates)
}

/// Every `.rs` file under `dir` with its text, in path order.
fn sources(dir: &Path) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?;
        for entry in entries {
            let path = entry
                .with_context(|| format!("listing {}", dir.display()))?
                .path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                files.push((path, text));
            }
        }
    }
    files.sort();
    Ok(files)
}

pub(super) fn parse(path: &Path, text: &str) -> anyhow::Result<syn::File> {
    syn::parse_file(text).with_context(|| format!("parsing {}", path.display()))
}

pub(super) fn line_of(span: proc_macro2::Span) -> usize {
    span.start().line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workspace_keeps_the_rules() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the workspace");
        if let Err(err) = check(root) {
            panic!("{err:#}");
        }
    }
}
