//! Rule 4: every promise of `docs/SECURITY.md` names the tests that prove it, and
//! each named test exists.
//!
//! A promise is a heading `### S<n>. <what>`; its `Tests:` paragraph (up to the
//! next blank line) names tests in backticks, in one of two forms:
//!
//! - `suite::test` or `suite::module::test`: a root suite of `tests/tests`
//!   (`<suite>.rs` or `<suite>/main.rs`; a module is `<suite>/<module>.rs`);
//! - `path/to/file.rs::test`: a file of the workspace (unit tests, `ha-user/tests`).
//!
//! The test must be a function with a `#[test]` attribute (`#[tokio::test]` too) in
//! that file, at any depth of its inline modules. A promise without a `Tests:`
//! paragraph, or with one that names nothing, and an id used twice are violations.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use syn::visit::{self, Visit};

use super::{Violation, parse};

/// The document, relative to the workspace.
pub const DOCUMENT: &str = "docs/SECURITY.md";

/// One promise as written.
#[derive(Debug)]
struct Promise {
    id: String,
    line: usize,
    tests: Vec<(usize, String)>,
    has_tests_paragraph: bool,
}

/// The promises of `text`, in order.
fn promises(text: &str) -> Vec<Promise> {
    let mut found: Vec<Promise> = Vec::new();
    // Whether the text belongs to the last promise (a heading of another kind ends
    // it), and whether it is in its `Tests:` paragraph.
    let (mut open, mut in_tests) = (false, false);
    for (at, line) in text.lines().enumerate() {
        let number = at + 1;
        if line.starts_with('#') {
            in_tests = false;
            open = match promise_id(line) {
                Some(id) => {
                    found.push(Promise {
                        id,
                        line: number,
                        tests: Vec::new(),
                        has_tests_paragraph: false,
                    });
                    true
                }
                // A deeper heading stays inside the promise.
                None => open && line.starts_with("####"),
            };
            continue;
        }
        let Some(promise) = found.last_mut().filter(|_| open) else {
            continue;
        };
        if line.trim().is_empty() {
            in_tests = false;
            continue;
        }
        if let Some(rest) = line.trim_start().strip_prefix("Tests:") {
            in_tests = true;
            promise.has_tests_paragraph = true;
            promise.tests.extend(quoted(rest).map(|t| (number, t)));
        } else if in_tests {
            promise.tests.extend(quoted(line).map(|t| (number, t)));
        }
    }
    found
}

/// `S<n>` of a heading `### S<n>. ...`.
fn promise_id(line: &str) -> Option<String> {
    let rest = line.strip_prefix("### ")?;
    let (id, _) = rest.split_once('.')?;
    let digits = id.strip_prefix('S')?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then(|| id.to_owned())
}

/// The backtick-quoted spans of `line`.
fn quoted(line: &str) -> impl Iterator<Item = String> + '_ {
    line.split('`').skip(1).step_by(2).map(str::to_owned)
}

/// The file a reference names and the test's name, or why it names none.
fn resolve(root: &Path, reference: &str) -> Result<(PathBuf, String), String> {
    if let Some(at) = reference.find(".rs::") {
        let file = &reference[..at + 3];
        let name = reference[at + 5..].rsplit("::").next().unwrap_or("");
        return Ok((root.join(file), name.to_owned()));
    }
    let segments: Vec<&str> = reference.split("::").collect();
    if segments.len() < 2 || segments.iter().any(|s| s.is_empty() || s.contains('/')) {
        return Err(format!(
            "`{reference}` is neither `suite::test` nor `path/file.rs::test`"
        ));
    }
    let (name, modules) = segments.split_last().ok_or("empty")?;
    let suites = root.join("tests/tests");
    let file = match modules {
        [suite] => {
            let flat = suites.join(format!("{suite}.rs"));
            if flat.is_file() {
                flat
            } else {
                suites.join(suite).join("main.rs")
            }
        }
        [suite, inner @ ..] => {
            let mut dir = suites.join(suite);
            let (last, above) = inner.split_last().ok_or("empty")?;
            for module in above {
                dir = dir.join(module);
            }
            let flat = dir.join(format!("{last}.rs"));
            if flat.is_file() {
                flat
            } else {
                dir.join(last).join("mod.rs")
            }
        }
        [] => unreachable!("at least two segments"),
    };
    Ok((file, (*name).to_owned()))
}

/// The names of the `#[test]` functions of a parsed file, at any depth.
fn test_functions(file: &syn::File) -> BTreeSet<String> {
    struct Finder(BTreeSet<String>);
    impl<'ast> Visit<'ast> for Finder {
        fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
            let is_test = item.attrs.iter().any(|attr| {
                attr.path()
                    .segments
                    .last()
                    .is_some_and(|s| s.ident == "test")
            });
            if is_test {
                self.0.insert(item.sig.ident.to_string());
            }
            visit::visit_item_fn(self, item);
        }
    }
    let mut finder = Finder(BTreeSet::new());
    finder.visit_file(file);
    finder.0
}

/// The violations of `text` (the document at `doc`) against the workspace at `root`,
/// and the number of promises.
pub fn check_document(
    root: &Path,
    doc: &Path,
    text: &str,
) -> anyhow::Result<(Vec<Violation>, usize)> {
    let mut violations = Vec::new();
    let mut report = |line: usize, what: String| {
        violations.push(Violation {
            file: doc.to_owned(),
            line,
            what,
        })
    };
    let promises = promises(text);
    if promises.is_empty() {
        report(1, "no promise (`### S1. ...`) in the document".to_owned());
    }
    let mut seen = BTreeSet::new();
    for promise in &promises {
        if !seen.insert(promise.id.clone()) {
            report(promise.line, format!("{} is used twice", promise.id));
        }
        if promise.tests.is_empty() {
            let why = if promise.has_tests_paragraph {
                "its `Tests:` paragraph names no test in backticks"
            } else {
                "it has no `Tests:` paragraph"
            };
            report(
                promise.line,
                format!("{} names no test proving it: {why}", promise.id),
            );
        }
        for (line, reference) in &promise.tests {
            let (file, name) = match resolve(root, reference) {
                Ok(found) => found,
                Err(why) => {
                    report(*line, format!("{}: {why}", promise.id));
                    continue;
                }
            };
            let shown = file.strip_prefix(root).unwrap_or(&file).display();
            let Ok(source) = std::fs::read_to_string(&file) else {
                report(
                    *line,
                    format!("{}: `{reference}`: {shown} does not exist", promise.id),
                );
                continue;
            };
            let tests = test_functions(&parse(&file, &source)?);
            if !tests.contains(&name) {
                report(
                    *line,
                    format!(
                        "{}: `{reference}`: {shown} has no #[test] fn {name}",
                        promise.id
                    ),
                );
            }
        }
    }
    Ok((violations, promises.len()))
}

/// [`check_document`] on the workspace's own document.
pub fn security_promises(root: &Path) -> anyhow::Result<(Vec<Violation>, usize)> {
    let doc = root.join(DOCUMENT);
    let text = match std::fs::read_to_string(&doc) {
        Ok(text) => text,
        Err(err) => {
            return Ok((
                vec![Violation {
                    file: doc,
                    line: 0,
                    what: format!("cannot read the threat model: {err}"),
                }],
                0,
            ));
        }
    };
    check_document(root, &doc, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn promises_without_tests_or_with_missing_tests_are_found() {
        let root = Dir(std::env::temp_dir().join(format!("xtask-security-{}", std::process::id())));
        let suites = root.0.join("tests/tests/big");
        std::fs::create_dir_all(&suites).expect("dirs");
        std::fs::write(
            root.0.join("tests/tests/small.rs"),
            "#[test]\nfn real() {}\nfn helper() {}\n",
        )
        .expect("suite");
        std::fs::write(suites.join("main.rs"), "mod part;\n#[test]\nfn top() {}\n").expect("main");
        std::fs::write(
            suites.join("part.rs"),
            "mod tests {\n    #[tokio::test]\n    async fn deep() {}\n}\n",
        )
        .expect("module");
        std::fs::create_dir_all(root.0.join("crate/src")).expect("crate");
        std::fs::write(
            root.0.join("crate/src/unit.rs"),
            "#[cfg(test)]\nmod tests {\n    #[test]\n    fn unit() {}\n}\n",
        )
        .expect("unit");
        let text = "\
# Threat model

### S1. Holds
Tests: `small::real`, `big::top`,
`big::part::deep`, `crate/src/unit.rs::tests::unit`.

### S2. Nothing named

### S3. Empty list
Tests: none yet.

### S4. Wrong names
Tests: `small::helper`, `small::gone`, `absent::x`, `crate/src/nope.rs::unit`,
`justaname`.

### S1. Again
Tests: `small::real`.
";
        let doc = Path::new("docs/SECURITY.md");
        let (found, count) = check_document(&root.0, doc, text).expect("checks");
        assert_eq!(count, 5);
        let what: Vec<(usize, &str)> = found.iter().map(|v| (v.line, v.what.as_str())).collect();
        let expected = [
            (
                7,
                "S2 names no test proving it: it has no `Tests:` paragraph",
            ),
            (
                9,
                "S3 names no test proving it: its `Tests:` paragraph names no test in backticks",
            ),
            (
                13,
                "S4: `small::helper`: tests/tests/small.rs has no #[test] fn helper",
            ),
            (
                13,
                "S4: `small::gone`: tests/tests/small.rs has no #[test] fn gone",
            ),
            (
                13,
                "S4: `absent::x`: tests/tests/absent/main.rs does not exist",
            ),
            (
                13,
                "S4: `crate/src/nope.rs::unit`: crate/src/nope.rs does not exist",
            ),
            (
                14,
                "S4: `justaname` is neither `suite::test` nor `path/file.rs::test`",
            ),
            (16, "S1 is used twice"),
        ];
        assert_eq!(what, expected, "{found:#?}");
    }

    #[test]
    fn a_document_without_promises_is_a_violation() {
        let (found, count) =
            check_document(Path::new("."), Path::new("x.md"), "# Nothing\n").expect("checks");
        assert_eq!(count, 0);
        assert_eq!(found.len(), 1, "{found:#?}");
    }
}
