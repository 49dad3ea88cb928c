//! The Debian mirror the guest image is bootstrapped from: the first `deb` source of
//! the host's APT configuration that serves the guest's suite with `main`, in either
//! format (one-line `sources.list`, deb822 `*.sources`).

use std::{fs, path::Path};

use anyhow::{Context as _, bail};

/// The URI of the first source in `/etc/apt/sources.list` and
/// `/etc/apt/sources.list.d/*.{list,sources}` (in name order) that has `suite` and
/// the `main` component.
pub fn find(suite: &str) -> anyhow::Result<String> {
    let mut files = vec![Path::new("/etc/apt/sources.list").to_path_buf()];
    let dir = Path::new("/etc/apt/sources.list.d");
    if let Ok(entries) = fs::read_dir(dir) {
        let mut more: Vec<_> = entries.flatten().map(|entry| entry.path()).collect();
        more.sort();
        files.extend(more);
    }
    let mut read = Vec::new();
    for file in &files {
        let deb822 = match file.extension().and_then(|ext| ext.to_str()) {
            Some("sources") => true,
            Some("list") => false,
            _ if file.file_name().is_some_and(|name| name == "sources.list") => false,
            _ => continue,
        };
        let Ok(text) = fs::read_to_string(file) else {
            continue;
        };
        read.push(file.display().to_string());
        let found = if deb822 {
            from_deb822(&text, suite)
        } else {
            from_one_line(&text, suite)
        };
        if let Some(uri) = found {
            return Ok(uri);
        }
    }
    if read.is_empty() {
        bail!("no APT source file found under /etc/apt: cannot tell which Debian mirror to use");
    }
    Err(anyhow::anyhow!(
        "none of {} has a `deb` source for suite {suite} with component main",
        read.join(", ")
    ))
    .context("looking for the Debian mirror")
}

/// One-line format: `deb [options] URI SUITE COMPONENT...`.
fn from_one_line(text: &str, suite: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        if words.next() != Some("deb") {
            return None;
        }
        let mut rest: Vec<&str> = words.collect();
        if rest.first().is_some_and(|word| word.starts_with('[')) {
            let end = rest.iter().position(|word| word.ends_with(']'))?;
            rest.drain(..=end);
        }
        match rest.as_slice() {
            [uri, s, components @ ..] if *s == suite && components.contains(&"main") => {
                usable(uri).then(|| (*uri).to_owned())
            }
            _ => None,
        }
    })
}

/// deb822 format: stanzas of `Types:`, `URIs:`, `Suites:`, `Components:`, separated
/// by blank lines.
fn from_deb822(text: &str, suite: &str) -> Option<String> {
    let mut stanzas = vec![Vec::new()];
    for line in text.lines() {
        if line.trim().is_empty() {
            stanzas.push(Vec::new());
        } else if !line.trim_start().starts_with('#')
            && let Some(last) = stanzas.last_mut()
        {
            last.push(line);
        }
    }
    stanzas.iter().find_map(|lines| {
        let field = |name: &str| -> Vec<&str> {
            lines
                .iter()
                .filter_map(|line| line.split_once(':'))
                .filter(|(key, _)| key.trim().eq_ignore_ascii_case(name))
                .flat_map(|(_, value)| value.split_whitespace())
                .collect()
        };
        let enabled = field("Enabled").first().is_none_or(|v| *v != "no");
        let wanted = enabled
            && field("Types").contains(&"deb")
            && field("Suites").contains(&suite)
            && field("Components").contains(&"main");
        if !wanted {
            return None;
        }
        field("URIs")
            .into_iter()
            .find(|uri| usable(uri))
            .map(str::to_owned)
    })
}

/// debootstrap fetches over HTTP(S) (or from a local `file:` mirror).
fn usable(uri: &str) -> bool {
    ["http://", "https://", "file:/"]
        .iter()
        .any(|scheme| uri.starts_with(scheme))
}

#[cfg(test)]
mod tests {
    use super::{from_deb822, from_one_line};

    #[test]
    fn deb822_stanza_with_the_suite_and_main() {
        let text = "Types: deb\n\
                    # http://snapshot.example/archive/debian/20250520T000000Z\n\
                    URIs: http://deb.example/debian\n\
                    Suites: bookworm bookworm-updates\n\
                    Components: main\n\
                    \n\
                    Types: deb\n\
                    URIs: http://deb.example/debian-security\n\
                    Suites: bookworm-security\n\
                    Components: main\n";
        assert_eq!(
            from_deb822(text, "bookworm").as_deref(),
            Some("http://deb.example/debian")
        );
        assert_eq!(
            from_deb822(text, "bookworm-security").as_deref(),
            Some("http://deb.example/debian-security")
        );
        assert_eq!(from_deb822(text, "trixie"), None);
    }

    #[test]
    fn deb822_skips_disabled_and_source_only_stanzas() {
        let text = "Types: deb-src\nURIs: http://a.example/debian\nSuites: bookworm\nComponents: main\n\n\
                    Enabled: no\nTypes: deb\nURIs: http://b.example/debian\nSuites: bookworm\nComponents: main\n\n\
                    Types: deb\nURIs: http://c.example/debian\nSuites: bookworm\nComponents: main contrib\n";
        assert_eq!(
            from_deb822(text, "bookworm").as_deref(),
            Some("http://c.example/debian")
        );
    }

    #[test]
    fn one_line_sources_with_options_and_comments() {
        let text = "# deb http://old.example/debian bookworm main\n\
                    deb https://packages.example/apt cloud-sdk-bookworm main\n\
                    deb-src http://src.example/debian bookworm main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://deb.example/debian bookworm main contrib\n";
        assert_eq!(
            from_one_line(text, "bookworm").as_deref(),
            Some("http://deb.example/debian")
        );
        assert_eq!(
            from_one_line("deb http://x.example/debian bookworm contrib\n", "bookworm"),
            None
        );
    }
}
