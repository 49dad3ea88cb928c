//! Rule 3: no import circle among sibling modules, and the bottom layers import only
//! what is below them.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use syn::visit::{self, Visit};

use super::{Violation, json::use_leaves, line_of, parse};

/// What each bottom layer may import from the crate (besides itself).
const LAYERS: &[(&str, &[&str])] = &[
    ("model", &[]),
    ("kernel", &["model"]),
    ("config", &["model"]),
    ("proto", &["model"]),
    ("health", &["model"]),
];

/// A module of the crate: `["daemon", "boot"]`; the crate root is `[]`.
type Module = Vec<String>;

/// The module a source file of `src` is, in the crate whose root file is `root`
/// (`lib.rs` or `main.rs`; the other one, and `src/bin/`, are other crates).
fn module_of(src: &Path, root: &str, path: &Path) -> Option<Module> {
    let relative = path.strip_prefix(src).ok()?;
    let mut names: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    if names.first().is_some_and(|n| n == "bin") {
        return None;
    }
    let file = names.pop()?;
    match file.as_str() {
        top @ ("lib.rs" | "main.rs") if names.is_empty() => {
            if top != root {
                return None;
            }
        }
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

/// The imports between modules of `files` (the sources under `src` of the crate
/// rooted at `root`).
fn imports(src: &Path, root: &str, files: &[(PathBuf, String)]) -> anyhow::Result<Vec<Edge>> {
    let modules: BTreeSet<Module> = files
        .iter()
        .filter_map(|(path, _)| module_of(src, root, path))
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
        let Some(module) = module_of(src, root, path) else {
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

/// Import circles among siblings and imports across the [`LAYERS`] (the library
/// `ha-user/src`).
pub(super) fn layers(src: &Path, files: &[(PathBuf, String)]) -> anyhow::Result<Vec<Violation>> {
    let edges = imports(src, "lib.rs", files)?;
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
    violations.extend(circles(src, &edges));
    Ok(violations)
}

/// Import circles among sibling modules of the crate under `src` whose root file
/// is `root` (`lib.rs` or `main.rs`).
pub(super) fn import_circles(
    src: &Path,
    root: &str,
    files: &[(PathBuf, String)],
) -> anyhow::Result<Vec<Violation>> {
    let edges = imports(src, root, files)?;
    Ok(circles(src, &edges))
}

fn circles(src: &Path, edges: &[Edge]) -> Vec<Violation> {
    let mut violations = Vec::new();
    // Sibling edges: for an import between modules neither of which contains the
    // other, the children of their common ancestor that contain them.
    let mut siblings: BTreeMap<(Module, Module), &Edge> = BTreeMap::new();
    for edge in edges {
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
    violations
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
    fn circles_in_a_binary_crate_are_reported_and_other_crates_ignored() {
        let src = Path::new("src");
        let files = [
            file("src/main.rs", "mod setup; mod linker;"),
            file("src/setup.rs", "use crate::linker; pub struct Ctx;"),
            file("src/linker.rs", "use crate::setup::Ctx;"),
            // Another crate: its modules are not this one's.
            file("src/lib.rs", "mod x;"),
            file("src/bin/tool/main.rs", "use crate::setup::Ctx;"),
        ];
        let found = import_circles(src, "main.rs", &files).expect("parses");
        let what: Vec<&str> = found.iter().map(|v| v.what.as_str()).collect();
        assert_eq!(found.len(), 1, "{what:#?}");
        assert!(
            what[0].contains("linker uses setup") && what[0].contains("setup uses linker"),
            "{what:#?}"
        );
    }
}
