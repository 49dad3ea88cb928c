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
//!    (`config` its own `adopt` too).
//!
//! Code under `#[cfg(test)]` counts for rules 1 and 2, not for rule 3.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use proc_macro2::{Delimiter, TokenStream, TokenTree};
use syn::visit::{self, Visit};

/// What each bottom layer may import from the crate (besides itself).
const LAYERS: &[(&str, &[&str])] = &[
    ("model", &[]),
    ("kernel", &["model"]),
    ("config", &["model"]),
    ("proto", &["model"]),
    ("health", &["model"]),
];

/// The `tracing` macros whose text is log text.
const LOG_MACROS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];

/// The shortest fixed part of a log message that counts as its text.
const MIN_MESSAGE: usize = 8;

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
                // This file quotes what it looks for.
                .filter(|(path, _)| !path.ends_with("xtask/src/rules.rs")),
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
    if violations.is_empty() {
        println!(
            "xtask: source rules hold ({} files of ha-user/src, {} outside; {} log messages, {} log fields)",
            daemon.len(),
            outside.len(),
            log.messages.len(),
            log.fields.len()
        );
        return Ok(());
    }
    violations.sort();
    let list: Vec<String> = violations.iter().map(ToString::to_string).collect();
    bail!(
        "{} source rule violations (see xtask/src/rules.rs):\n  {}",
        violations.len(),
        list.join("\n  ")
    )
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

fn parse(path: &Path, text: &str) -> anyhow::Result<syn::File> {
    syn::parse_file(text).with_context(|| format!("parsing {}", path.display()))
}

fn line_of(span: proc_macro2::Span) -> usize {
    span.start().line
}

// ---- 1. no JSON values -------------------------------------------------------------

/// `serde_json::Value`, `serde_json::Map` and `json!` in one file.
pub fn no_json_values(path: &Path, text: &str) -> anyhow::Result<Vec<Violation>> {
    struct Finder<'a> {
        path: &'a Path,
        found: Vec<Violation>,
    }
    impl Finder<'_> {
        fn report(&mut self, span: proc_macro2::Span, what: &str) {
            self.found.push(Violation {
                file: self.path.to_owned(),
                line: line_of(span),
                what: format!(
                    "{what}: the protocol is typed (ha-user/src/proto); derive the JSON from a type"
                ),
            });
        }
    }
    impl<'ast> Visit<'ast> for Finder<'_> {
        fn visit_path(&mut self, path: &'ast syn::Path) {
            let names: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
            if let Some(at) = names.iter().position(|n| n == "serde_json")
                && let Some(next) = names.get(at + 1)
                && (next == "Value" || next == "Map")
            {
                self.report(
                    path.segments[at].ident.span(),
                    &format!("serde_json::{next}"),
                );
            }
            visit::visit_path(self, path);
        }

        fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
            let mut leaves = Vec::new();
            use_leaves(&item.tree, &mut Vec::new(), &mut leaves);
            for (names, span) in leaves {
                if names.first().is_some_and(|n| n == "serde_json")
                    && names.get(1).is_some_and(|n| n == "Value" || n == "Map")
                {
                    self.report(span, &format!("use {}", names.join("::")));
                }
            }
        }

        fn visit_macro(&mut self, mac: &'ast syn::Macro) {
            if mac.path.segments.last().is_some_and(|s| s.ident == "json") {
                self.report(mac.path.segments[0].ident.span(), "json!");
            }
            visit::visit_macro(self, mac);
        }
    }
    let mut finder = Finder {
        path,
        found: Vec::new(),
    };
    finder.visit_file(&parse(path, text)?);
    Ok(finder.found)
}

/// Every path a use tree names, with the span of its last segment.
fn use_leaves(
    tree: &syn::UseTree,
    prefix: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, proc_macro2::Span)>,
) {
    match tree {
        syn::UseTree::Path(path) => {
            prefix.push(path.ident.to_string());
            use_leaves(&path.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(name) => {
            let mut names = prefix.clone();
            if name.ident != "self" {
                names.push(name.ident.to_string());
            }
            out.push((names, name.ident.span()));
        }
        syn::UseTree::Rename(rename) => {
            let mut names = prefix.clone();
            names.push(rename.ident.to_string());
            out.push((names, rename.ident.span()));
        }
        syn::UseTree::Glob(glob) => {
            out.push((prefix.clone(), glob.star_token.spans[0]));
        }
        syn::UseTree::Group(group) => {
            for tree in &group.items {
                use_leaves(tree, prefix, out);
            }
        }
    }
}

// ---- 2. log text ------------------------------------------------------------------

/// What the daemon's log lines are made of.
#[derive(Debug, Default)]
pub struct LogText {
    /// Fixed parts of messages, with where they are written.
    pub messages: BTreeMap<String, (PathBuf, usize)>,
    /// Field names (`prefix` of `prefix = %cidr`, `mac` of `%mac`).
    pub fields: BTreeMap<String, (PathBuf, usize)>,
}

impl LogText {
    /// The log text of `files` (the daemon's sources).
    pub fn of(files: &[(PathBuf, String)]) -> anyhow::Result<LogText> {
        struct Collector<'a> {
            path: &'a Path,
            log: &'a mut LogText,
        }
        impl<'ast> Visit<'ast> for Collector<'_> {
            fn visit_macro(&mut self, mac: &'ast syn::Macro) {
                let is_log = mac
                    .path
                    .segments
                    .last()
                    .is_some_and(|s| LOG_MACROS.contains(&s.ident.to_string().as_str()));
                if is_log {
                    self.collect(mac.tokens.clone());
                }
                visit::visit_macro(self, mac);
            }
        }
        impl Collector<'_> {
            fn collect(&mut self, tokens: TokenStream) {
                let tokens: Vec<TokenTree> = tokens.into_iter().collect();
                let mut message = None;
                for (i, token) in tokens.iter().enumerate() {
                    match token {
                        TokenTree::Literal(literal) => {
                            if let Ok(text) = syn::parse_str::<syn::LitStr>(&literal.to_string()) {
                                message = Some((text.value(), line_of(literal.span())));
                            }
                        }
                        TokenTree::Ident(ident) => {
                            let next = tokens.get(i + 1);
                            let after = tokens.get(i + 2);
                            let assigned = matches!(next, Some(TokenTree::Punct(p)) if p.as_char() == '=')
                                && !matches!(after, Some(TokenTree::Punct(p)) if p.as_char() == '=');
                            // `%name` or `?name` as a whole argument (not `x = %name`).
                            let sigil = i.checked_sub(1).and_then(|j| tokens.get(j));
                            let before = i.checked_sub(2).and_then(|j| tokens.get(j));
                            let shorthand = matches!(sigil, Some(TokenTree::Punct(p)) if p.as_char() == '%' || p.as_char() == '?')
                                && matches!(before, None | Some(TokenTree::Punct(_)))
                                && !matches!(before, Some(TokenTree::Punct(p)) if p.as_char() == '=')
                                && matches!(next, None | Some(TokenTree::Punct(_)));
                            if assigned || shorthand {
                                self.log
                                    .fields
                                    .entry(ident.to_string())
                                    .or_insert((self.path.to_owned(), line_of(ident.span())));
                            }
                        }
                        _ => {}
                    }
                }
                // The message is the last string literal; its `{...}` are arguments.
                if let Some((message, line)) = message {
                    for part in fixed_parts(&message) {
                        self.log
                            .messages
                            .entry(part)
                            .or_insert((self.path.to_owned(), line));
                    }
                }
            }
        }
        let mut log = LogText::default();
        for (path, text) in files {
            Collector {
                path,
                log: &mut log,
            }
            .visit_file(&parse(path, text)?);
        }
        Ok(log)
    }

    /// The strings of one file (outside the daemon) that match the daemon's log text.
    pub fn matches_in(&self, path: &Path, text: &str) -> anyhow::Result<Vec<Violation>> {
        let mut found = Vec::new();
        for (literal, line) in string_literals(&parse(path, text)?) {
            if let Some(why) = self.matches(&literal) {
                found.push(Violation {
                    file: path.to_owned(),
                    line,
                    what: format!(
                        "{literal:?} {why}: read the daemon's events or its typed answers (ha_user::proto), not its log"
                    ),
                });
            }
        }
        Ok(found)
    }

    /// Why `literal` is log text, if it is.
    fn matches(&self, literal: &str) -> Option<String> {
        for (part, (file, line)) in &self.messages {
            // The start of a message, up to a word's end (`steering;` of `steering;
            // SIGHUP reloads ...`, not `owner change` of `owner changed`).
            let starts = literal.chars().count() >= MIN_MESSAGE
                && part.starts_with(literal)
                && !part[literal.len()..]
                    .chars()
                    .next()
                    .is_some_and(char::is_alphanumeric);
            if literal.contains(part.as_str()) || starts {
                return Some(format!(
                    "matches the log message {part:?} ({}:{line})",
                    file.display()
                ));
            }
        }
        for (field, (file, line)) in &self.fields {
            if literal.contains(&format!("{field}=")) {
                return Some(format!(
                    "matches the log field `{field}=` ({}:{line})",
                    file.display()
                ));
            }
        }
        None
    }
}

/// The fixed parts of a format string (between its `{...}`), trimmed, of at least
/// [`MIN_MESSAGE`] characters.
fn fixed_parts(message: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut depth = 0;
    let mut chars = message.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                current.push('{');
            }
            '}' if depth == 0 && chars.peek() == Some(&'}') => {
                chars.next();
                current.push('}');
            }
            '{' => {
                depth += 1;
                parts.push(std::mem::take(&mut current));
            }
            '}' if depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            c => current.push(c),
        }
    }
    parts.push(current);
    parts
        .into_iter()
        .map(|p| p.trim().to_owned())
        .filter(|p| p.chars().count() >= MIN_MESSAGE)
        .collect()
}

/// Every string literal of a file, in code and in macro arguments, with its line.
fn string_literals(file: &syn::File) -> Vec<(String, usize)> {
    struct Strings(Vec<(String, usize)>);
    impl<'ast> Visit<'ast> for Strings {
        fn visit_lit_str(&mut self, lit: &'ast syn::LitStr) {
            self.0.push((lit.value(), line_of(lit.span())));
        }

        fn visit_macro(&mut self, mac: &'ast syn::Macro) {
            self.tokens(mac.tokens.clone());
            visit::visit_macro(self, mac);
        }
    }
    impl Strings {
        fn tokens(&mut self, tokens: TokenStream) {
            for token in tokens {
                match token {
                    TokenTree::Literal(literal) => {
                        if let Ok(text) = syn::parse_str::<syn::LitStr>(&literal.to_string()) {
                            self.0.push((text.value(), line_of(literal.span())));
                        }
                    }
                    TokenTree::Group(group) if group.delimiter() != Delimiter::None => {
                        self.tokens(group.stream());
                    }
                    TokenTree::Group(group) => self.tokens(group.stream()),
                    _ => {}
                }
            }
        }
    }
    let mut strings = Strings(Vec::new());
    strings.visit_file(file);
    strings.0
}

// ---- 3. layers ------------------------------------------------------------------

/// A module of the crate: `["daemon", "boot"]`; the crate root is `[]`.
type Module = Vec<String>;

/// The module a source file of `src` is.
fn module_of(src: &Path, path: &Path) -> Option<Module> {
    let relative = path.strip_prefix(src).ok()?;
    let mut names: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    let file = names.pop()?;
    match file.as_str() {
        "lib.rs" if names.is_empty() => {}
        // The binary is another crate.
        "main.rs" if names.is_empty() => return None,
        "mod.rs" => {}
        other => names.push(other.strip_suffix(".rs")?.to_owned()),
    }
    Some(names)
}

/// An import of module `to` by module `from`, at a line of `file`.
#[derive(Clone, Debug)]
struct Edge {
    from: Module,
    to: Module,
    file: PathBuf,
    line: usize,
}

/// Whether `item` is compiled only for tests.
fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg")
            && attr
                .meta
                .require_list()
                .is_ok_and(|list| list.tokens.to_string().contains("test"))
    })
}

/// The imports between modules of `files` (the sources under `src`).
fn imports(src: &Path, files: &[(PathBuf, String)]) -> anyhow::Result<Vec<Edge>> {
    let modules: BTreeSet<Module> = files
        .iter()
        .filter_map(|(path, _)| module_of(src, path))
        .collect();
    struct Walker<'a> {
        modules: &'a BTreeSet<Module>,
        module: Module,
        file: &'a Path,
        edges: Vec<Edge>,
    }
    impl Walker<'_> {
        /// The longest module `names` starts with, resolved from `self.module`.
        fn resolve(&self, names: &[String]) -> Option<Module> {
            let mut base: Module = match names.first()?.as_str() {
                "crate" => Vec::new(),
                "super" => {
                    let mut base = self.module.clone();
                    let mut rest = names;
                    while rest.first().is_some_and(|n| n == "super") {
                        base.pop()?;
                        rest = &rest[1..];
                    }
                    return self.longest(base, rest);
                }
                "self" => self.module.clone(),
                // A child module, named bare (`probe::Prober`).
                first => {
                    let mut child = self.module.clone();
                    child.push(first.to_owned());
                    if !self.modules.contains(&child) {
                        return None;
                    }
                    return self.longest(self.module.clone(), names);
                }
            };
            let rest = &names[1..];
            base = self.longest(base, rest)?;
            Some(base)
        }

        fn longest(&self, mut base: Module, rest: &[String]) -> Option<Module> {
            for name in rest {
                let mut next = base.clone();
                next.push(name.clone());
                if !self.modules.contains(&next) {
                    break;
                }
                base = next;
            }
            Some(base)
        }

        fn edge(&mut self, names: &[String], line: usize) {
            if let Some(to) = self.resolve(names)
                && to != self.module
            {
                self.edges.push(Edge {
                    from: self.module.clone(),
                    to,
                    file: self.file.to_owned(),
                    line,
                });
            }
        }
    }
    impl<'ast> Visit<'ast> for Walker<'_> {
        fn visit_item(&mut self, item: &'ast syn::Item) {
            let attrs = match item {
                syn::Item::Mod(m) => &m.attrs,
                syn::Item::Fn(f) => &f.attrs,
                syn::Item::Impl(i) => &i.attrs,
                syn::Item::Use(u) => &u.attrs,
                _ => return visit::visit_item(self, item),
            };
            if !is_test_only(attrs) {
                visit::visit_item(self, item);
            }
        }

        fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
            let mut leaves = Vec::new();
            use_leaves(&item.tree, &mut Vec::new(), &mut leaves);
            for (names, span) in leaves {
                self.edge(&names, line_of(span));
            }
        }

        fn visit_path(&mut self, path: &'ast syn::Path) {
            let names: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
            if names.len() > 1 {
                let line = line_of(path.segments[0].ident.span());
                self.edge(&names, line);
            }
            visit::visit_path(self, path);
        }
    }
    let mut edges = Vec::new();
    for (path, text) in files {
        let Some(module) = module_of(src, path) else {
            continue;
        };
        let mut walker = Walker {
            modules: &modules,
            module,
            file: path,
            edges: Vec::new(),
        };
        walker.visit_file(&parse(path, text)?);
        edges.extend(walker.edges);
    }
    Ok(edges)
}

/// Import circles among siblings and imports across the [`LAYERS`].
fn layers(src: &Path, files: &[(PathBuf, String)]) -> anyhow::Result<Vec<Violation>> {
    let edges = imports(src, files)?;
    let mut violations = Vec::new();
    for edge in &edges {
        let (Some(layer), Some(target)) = (edge.from.first(), edge.to.first()) else {
            continue;
        };
        if layer == target {
            continue;
        }
        if let Some((_, allowed)) = LAYERS.iter().find(|(name, _)| name == layer)
            && !allowed.contains(&target.as_str())
        {
            violations.push(Violation {
                file: edge.file.clone(),
                line: edge.line,
                what: format!(
                    "`{}` imports `{}`: {layer} may import only {}",
                    edge.from.join("::"),
                    edge.to.join("::"),
                    if allowed.is_empty() {
                        "nothing of the crate".to_owned()
                    } else {
                        allowed.join(", ")
                    }
                ),
            });
        }
    }
    // Sibling edges: for an import between modules neither of which contains the
    // other, the children of their common ancestor that contain them.
    let mut siblings: BTreeMap<(Module, Module), &Edge> = BTreeMap::new();
    for edge in &edges {
        let common = edge
            .from
            .iter()
            .zip(&edge.to)
            .take_while(|(a, b)| a == b)
            .count();
        if common == edge.from.len() || common == edge.to.len() {
            continue; // one contains the other
        }
        let from = edge.from[..=common].to_vec();
        let to = edge.to[..=common].to_vec();
        siblings.entry((from, to)).or_insert(edge);
    }
    for cycle in cycles(siblings.keys().cloned().collect()) {
        let mut steps = Vec::new();
        for pair in cycle.windows(2) {
            if let Some(edge) = siblings.get(&(pair[0].clone(), pair[1].clone())) {
                steps.push(format!(
                    "{} uses {} ({}:{})",
                    pair[0].join("::"),
                    pair[1].join("::"),
                    edge.file.display(),
                    edge.line
                ));
            }
        }
        let first = siblings.get(&(cycle[0].clone(), cycle[1].clone()));
        violations.push(Violation {
            file: first.map_or_else(|| src.to_owned(), |e| e.file.clone()),
            line: first.map_or(0, |e| e.line),
            what: format!("import circle: {}", steps.join(", ")),
        });
    }
    Ok(violations)
}

/// The elementary cycles of a small directed graph, each once, as the path of nodes
/// with its first node repeated at the end.
fn cycles(edges: Vec<(Module, Module)>) -> Vec<Vec<Module>> {
    let mut next: BTreeMap<Module, Vec<Module>> = BTreeMap::new();
    for (from, to) in edges {
        next.entry(from).or_default().push(to);
    }
    let mut found: BTreeSet<Vec<Module>> = BTreeSet::new();
    for start in next.keys() {
        // Depth-first from `start`, through nodes greater than it only, so each cycle
        // is found from its smallest node.
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        while let Some((node, path)) = stack.pop() {
            for to in next.get(&node).into_iter().flatten() {
                if to == start {
                    let mut cycle = path.clone();
                    cycle.push(start.clone());
                    found.insert(cycle);
                } else if to > start && !path.contains(to) {
                    let mut longer = path.clone();
                    longer.push(to.clone());
                    stack.push((to.clone(), longer));
                }
            }
        }
    }
    found.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, text: &str) -> (PathBuf, String) {
        (PathBuf::from(path), text.to_owned())
    }

    #[test]
    fn json_values_are_found_in_every_form() {
        let text = r#"
            use serde_json::{self, Map, Value as V};
            fn a(x: serde_json::Value) -> String { serde_json::json!({"a": 1}).to_string() }
            fn b() { let _ = json!(1); }
            fn fine(x: serde_json::Error) {}
        "#;
        let found = no_json_values(Path::new("x.rs"), text).expect("parses");
        let what: Vec<&str> = found
            .iter()
            .map(|v| v.what.split(':').next().unwrap_or(""))
            .collect();
        assert_eq!(
            what,
            [
                "use serde_json",
                "use serde_json",
                "serde_json",
                "json!",
                "json!"
            ],
            "{found:#?}"
        );
        assert!(
            found[0].what.starts_with("use serde_json::Map"),
            "{found:#?}"
        );
        assert!(
            found[1].what.starts_with("use serde_json::Value"),
            "{found:#?}"
        );
    }

    #[test]
    fn log_messages_and_fields_are_found_outside_the_daemon() {
        let daemon = [file(
            "ha-user/src/daemon/apply.rs",
            r#"fn f() {
                info!(prefix = %cidr, switch_us = 3, route_via = %gw, "owner changed");
                tracing::warn!("reload refused, nothing changed:\n{err}");
                debug!(%target, "probe {n} ok");
                let x = format!("not a log line {a}");
            }"#,
        )];
        let log = LogText::of(&daemon).expect("parses");
        assert_eq!(
            log.messages.keys().collect::<Vec<_>>(),
            ["owner changed", "reload refused, nothing changed:"]
        );
        assert_eq!(
            log.fields.keys().collect::<Vec<_>>(),
            ["prefix", "route_via", "switch_us", "target"]
        );
        let test = r#"
            fn t(log: &str) {
                assert!(log.contains("owner changed"));
                let seen = wait("reload refused");
                assert!(line.contains("route_via=192.168.1.2"), "{}", "fine text");
                let ok = ["host2 answers", "owner change", "nothing changed"];
            }
        "#;
        let found = log
            .matches_in(Path::new("tests/x.rs"), test)
            .expect("parses");
        let lines: Vec<usize> = found.iter().map(|v| v.line).collect();
        assert_eq!(lines, [3, 4, 5], "{found:#?}");
    }

    #[test]
    fn format_strings_split_at_their_arguments() {
        assert_eq!(
            fixed_parts("steering; {n} hosts, {{literal}} braces {x:?} and more"),
            ["steering;", "hosts, {literal} braces", "and more"]
        );
    }

    #[test]
    fn sibling_circles_and_layer_breaches_are_reported() {
        let src = Path::new("src");
        let files = [
            file(
                "src/lib.rs",
                "pub mod health; pub mod kernel; pub mod config; pub mod model;",
            ),
            file("src/model/mod.rs", ""),
            file("src/config/mod.rs", "use crate::model::Mac;"),
            file(
                "src/health/mod.rs",
                "mod probe; mod http; use probe::Prober;",
            ),
            file("src/health/probe.rs", "use super::http;"),
            file(
                "src/health/http.rs",
                "use super::probe::ProbeError; fn f() { super::super::model::X; }",
            ),
            file(
                "src/kernel/mod.rs",
                "use crate::config::Mac; #[cfg(test)] mod tests { use crate::health::X; }",
            ),
        ];
        let found = layers(src, &files).expect("parses");
        let what: Vec<&str> = found.iter().map(|v| v.what.as_str()).collect();
        assert_eq!(found.len(), 2, "{what:#?}");
        assert!(
            what.iter()
                .any(|w| w.starts_with("`kernel` imports `config`: kernel may import only model")),
            "{what:#?}"
        );
        assert!(
            what.iter().any(
                |w| w.starts_with("import circle: health::http uses health::probe")
                    && w.contains("health::probe uses health::http")
            ),
            "{what:#?}"
        );
    }

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
