//! Rule 1: the protocol is types, not JSON values.

use std::path::Path;

use syn::visit::{self, Visit};

use super::{Violation, line_of, parse};

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
pub(super) fn use_leaves(
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
