//! Rule 2: log text is for people; no code outside the daemon matches it.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use syn::visit::{self, Visit};

use super::{Violation, line_of, parse};

/// The `tracing` macros whose text is log text.
const LOG_MACROS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];

/// The shortest fixed part of a log message that counts as its text.
const MIN_MESSAGE: usize = 8;

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
            if has_field(literal, field) {
                return Some(format!(
                    "matches the log field `{field}=` ({}:{line})",
                    file.display()
                ));
            }
        }
        None
    }
}

/// Whether `literal` holds `field=` as a word of its own: `prefix=` in `prefix=10.0.0.0/8`,
/// not in `-artifact_prefix=` (another program's option).
fn has_field(literal: &str, field: &str) -> bool {
    let needle = format!("{field}=");
    literal.match_indices(&needle).any(|(at, _)| {
        !literal[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, text: &str) -> (PathBuf, String) {
        (PathBuf::from(path), text.to_owned())
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
                let other_program = "-artifact_prefix=a/";
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
}
