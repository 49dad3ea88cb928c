//! `ha-user plan` against golden files for the classic four-server network.
//!
//! The golden files in `tests/golden/` are the specification, checked line by line
//! against the article; `UPDATE_GOLDEN=1 cargo test -p ha-user --test plan` rewrites
//! them from the code, after which `git diff` must be read as carefully.

use std::path::{Path, PathBuf};

use clap::ValueEnum as _;
use ha_user::{
    config::Config,
    plan::{Format, render},
};

const CLASSIC: &str = include_str!("golden/classic.toml");

fn classic() -> Config {
    match Config::parse(Path::new("classic.toml"), CLASSIC) {
        Ok(config) => config,
        Err(err) => panic!("classic.toml is invalid:\n{err}"),
    }
}

fn name(format: Format) -> String {
    match format.to_possible_value() {
        Some(value) => value.get_name().to_owned(),
        None => panic!("{format:?} has no name"),
    }
}

fn golden_path(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(file)
}

/// Compares `actual` with the golden file, or rewrites it when `UPDATE_GOLDEN` is set.
/// Returns the difference, if any.
fn check_golden(file: &str, actual: &str) -> Option<String> {
    let path = golden_path(file);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return None;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "reading {}: {e} (UPDATE_GOLDEN=1 creates it)",
            path.display()
        )
    });
    (expected != actual).then(|| {
        format!(
            "--- {} (golden)\n+++ actual\n{}",
            path.display(),
            diff(&expected, actual)
        )
    })
}

/// Lines of context kept around each change.
const CONTEXT: usize = 3;

/// A line diff: the longest common subsequence, then `-`/`+`/` ` lines, with
/// [`CONTEXT`] unchanged lines around each change and `@@ line N` before each hunk.
fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    // lcs[i][j]: length of the LCS of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    // (mark, golden line number, text)
    let mut ops: Vec<(char, usize, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', i + 1, a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', i + 1, a[i]));
            i += 1;
        } else {
            ops.push(('+', i + 1, b[j]));
            j += 1;
        }
    }
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != ' ').collect();
    let near = |k: usize| {
        changed
            .iter()
            .any(|&c| c.saturating_sub(CONTEXT) <= k && k <= c + CONTEXT)
    };
    let mut out = String::new();
    let mut shown_last = false;
    for (k, &(mark, line, text)) in ops.iter().enumerate() {
        if near(k) {
            if !shown_last {
                out.push_str(&format!("@@ line {line}\n"));
            }
            out.push_str(&format!("{mark}{text}\n"));
        }
        shown_last = near(k);
    }
    if expected.ends_with('\n') != actual.ends_with('\n') {
        out.push_str("(the final newline differs)\n");
    }
    out
}

#[test]
fn every_format_matches_its_golden_file() {
    let config = classic();
    let failures: Vec<String> = Format::value_variants()
        .iter()
        .filter_map(|&format| {
            check_golden(
                &format!("plan-{}.txt", name(format)),
                &render(&config, format),
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "the output differs from golden files (UPDATE_GOLDEN=1 rewrites them):\n{}",
        failures.join("\n")
    );
}

#[test]
fn format_names() {
    let names: Vec<String> = Format::value_variants().iter().map(|&f| name(f)).collect();
    assert_eq!(
        names,
        [
            "all",
            "ifcfg",
            "ip-addr",
            "sysctl",
            "routes",
            "route-add",
            "cisco",
            "dns"
        ]
    );
}

/// The lab runs these outputs as they are: they must hold nothing but commands.
#[test]
fn command_formats_print_only_commands() {
    let config = classic();
    for (format, command, count) in [
        (Format::IpAddr, "ip ", 5),
        (Format::Sysctl, "sysctl -w ", 2),
        (Format::Routes, "ip route replace ", 4),
        (Format::RouteAdd, "/sbin/route add -net ", 4),
        (Format::Cisco, "ip route ", 4),
    ] {
        let text = render(&config, format);
        assert!(text.ends_with('\n'), "{format:?}: {text:?}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), count, "{format:?}:\n{text}");
        for line in lines {
            assert!(line.starts_with(command), "{format:?}: `{line}`");
            assert!(!line.contains('#'), "{format:?}: `{line}`");
        }
    }
}

/// `all` is the other formats put together, under headings: nothing is said twice
/// in two different ways.
#[test]
fn all_contains_every_part() {
    let config = classic();
    let all = render(&config, Format::All);
    for &format in Format::value_variants() {
        if format != Format::All {
            let part = render(&config, format);
            assert!(
                all.contains(&part),
                "`all` lacks the {format:?} part:\n{part}"
            );
        }
    }
}

#[test]
fn routes_without_lan_have_no_dev() {
    let config = Config {
        lan: None,
        ..classic()
    };
    assert_eq!(
        render(&config, Format::Routes),
        "ip route replace 192.168.1.32/27 via 192.168.1.2\n\
         ip route replace 192.168.1.64/27 via 192.168.1.3\n\
         ip route replace 192.168.1.96/27 via 192.168.1.4\n\
         ip route replace 192.168.1.128/27 via 192.168.1.5\n"
    );
}

/// Routes follow the configured owner, whatever the order of hosts and prefixes, and
/// VIP numbering follows the prefixes.
#[test]
fn other_owners_and_prefix_lengths() {
    let text = r#"
lan = "eth1"
[[host]]
name = "a"
address = "10.0.0.2"
[[host]]
name = "b"
address = "10.0.0.3"
[[prefix]]
cidr = "10.1.0.0/24"
owner = "b"
[[prefix]]
cidr = "10.2.0.0/16"
owner = "a"
[[prefix]]
cidr = "10.3.0.9/32"
owner = "b"
"#;
    let config = match Config::parse(Path::new("ha.toml"), text) {
        Ok(config) => config,
        Err(err) => panic!("{err}"),
    };
    assert_eq!(
        render(&config, Format::Ifcfg),
        "# /etc/sysconfig/network-scripts/ifcfg-lo:1\n\
         DEVICE=lo:1\n\
         IPADDR=10.1.0.1\n\
         NETMASK=255.255.255.0\n\
         NETWORK=10.1.0.0\n\
         BROADCAST=10.1.0.255\n\
         ONBOOT=yes\n\
         \n\
         # /etc/sysconfig/network-scripts/ifcfg-lo:2\n\
         DEVICE=lo:2\n\
         IPADDR=10.2.0.1\n\
         NETMASK=255.255.0.0\n\
         NETWORK=10.2.0.0\n\
         BROADCAST=10.2.255.255\n\
         ONBOOT=yes\n\
         \n\
         # /etc/sysconfig/network-scripts/ifcfg-lo:3\n\
         DEVICE=lo:3\n\
         IPADDR=10.3.0.9\n\
         NETMASK=255.255.255.255\n\
         NETWORK=10.3.0.9\n\
         BROADCAST=10.3.0.9\n\
         ONBOOT=yes\n"
    );
    assert_eq!(
        render(&config, Format::IpAddr),
        "ip link set dev lo up\n\
         ip addr add 10.1.0.1/24 dev lo label lo:1\n\
         ip addr add 10.2.0.1/16 dev lo label lo:2\n\
         ip addr add 10.3.0.9/32 dev lo label lo:3\n"
    );
    assert_eq!(
        render(&config, Format::Routes),
        "ip route replace 10.1.0.0/24 via 10.0.0.3 dev eth1\n\
         ip route replace 10.2.0.0/16 via 10.0.0.2 dev eth1\n\
         ip route replace 10.3.0.9/32 via 10.0.0.3 dev eth1\n"
    );
    assert_eq!(
        render(&config, Format::RouteAdd),
        "/sbin/route add -net 10.1.0.0 netmask 255.255.255.0 gw 10.0.0.3\n\
         /sbin/route add -net 10.2.0.0 netmask 255.255.0.0 gw 10.0.0.2\n\
         /sbin/route add -net 10.3.0.9 netmask 255.255.255.255 gw 10.0.0.3\n"
    );
    assert_eq!(
        render(&config, Format::Cisco),
        "ip route 10.1.0.0 255.255.255.0 10.0.0.3\n\
         ip route 10.2.0.0 255.255.0.0 10.0.0.2\n\
         ip route 10.3.0.9 255.255.255.255 10.0.0.3\n"
    );
}

#[test]
fn no_prefixes_renders_empty_parts() {
    let config = Config {
        prefixes: Vec::new(),
        ..classic()
    };
    assert_eq!(render(&config, Format::IpAddr), "ip link set dev lo up\n");
    for format in [
        Format::Ifcfg,
        Format::Routes,
        Format::RouteAdd,
        Format::Cisco,
    ] {
        assert_eq!(render(&config, format), "", "{format:?}");
    }
    assert_eq!(render(&config, Format::Dns).lines().count(), 1);
}

#[test]
fn diff_marks_changed_lines() {
    assert_eq!(
        diff("a\nb\nc\n", "a\nx\nc\n"),
        "@@ line 1\n a\n-b\n+x\n c\n"
    );
    assert_eq!(diff("a\n", "a"), "(the final newline differs)\n");
    let long: String = (1..=20).map(|n| format!("{n}\n")).collect();
    assert_eq!(
        diff(&long, &long.replace("\n10\n", "\nten\n")),
        "@@ line 7\n 7\n 8\n 9\n-10\n+ten\n 11\n 12\n 13\n"
    );
}

/// The article's own text, copied from "High Availability Linux Web Servers", must
/// appear in the output as it is, so the golden files cannot drift from it.
#[test]
fn matches_the_article() {
    let config = classic();
    let ifcfg = render(&config, Format::Ifcfg);
    for file in [
        "DEVICE=lo:1\nIPADDR=192.168.1.33\nNETMASK=255.255.255.224\n\
         NETWORK=192.168.1.32\nBROADCAST=192.168.1.63\nONBOOT=yes\n",
        "DEVICE=lo:2\nIPADDR=192.168.1.65\nNETMASK=255.255.255.224\n\
         NETWORK=192.168.1.64\nBROADCAST=192.168.1.95\nONBOOT=yes\n",
    ] {
        assert!(ifcfg.contains(file), "missing:\n{file}\nin:\n{ifcfg}");
    }
    assert_eq!(
        render(&config, Format::Cisco),
        "ip route 192.168.1.32 255.255.255.224 192.168.1.2\n\
         ip route 192.168.1.64 255.255.255.224 192.168.1.3\n\
         ip route 192.168.1.96 255.255.255.224 192.168.1.4\n\
         ip route 192.168.1.128 255.255.255.224 192.168.1.5\n"
    );
    // The article's net-tools lines, less the magazine's line breaks, plus `gw`.
    let route_add = render(&config, Format::RouteAdd);
    for (net, gw) in [
        ("192.168.1.32", "192.168.1.2"),
        ("192.168.1.64", "192.168.1.3"),
        ("192.168.1.96", "192.168.1.4"),
        ("192.168.1.128", "192.168.1.5"),
    ] {
        let line = format!("/sbin/route add -net {net} netmask 255.255.255.224 gw {gw}\n");
        assert!(route_add.contains(&line), "missing {line} in:\n{route_add}");
    }
    // The zone: `www IN A` and then continuation lines, whitespace aside.
    let records: Vec<Vec<String>> = render(&config, Format::Dns)
        .lines()
        .filter(|l| !l.starts_with(';'))
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect();
    let article = [
        "www IN A 192.168.1.33",
        "IN A 192.168.1.65",
        "IN A 192.168.1.97",
        "IN A 192.168.1.129",
    ];
    let article: Vec<Vec<String>> = article
        .iter()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect();
    assert_eq!(records, article);
}

/// The installed command prints exactly the golden files.
#[test]
fn the_command_prints_the_golden_files() {
    let exe = env!("CARGO_BIN_EXE_ha-user");
    let config = golden_path("classic.toml");
    for &format in Format::value_variants() {
        let output = std::process::Command::new(exe)
            .arg("--config")
            .arg(&config)
            .args(["plan", "--format", &name(format)])
            .output()
            .expect("running ha-user");
        assert!(output.status.success(), "{format:?}: {output:?}");
        let golden =
            std::fs::read(golden_path(&format!("plan-{}.txt", name(format)))).expect("golden file");
        assert!(
            output.stdout == golden,
            "{format:?}: stdout differs from the golden file"
        );
    }
    let output = std::process::Command::new(exe)
        .args(["plan", "--format", "ipaddr"])
        .output()
        .expect("running ha-user");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("a similar value exists: 'ip-addr'"),
        "{stderr}"
    );
}
