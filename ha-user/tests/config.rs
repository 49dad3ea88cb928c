//! The configuration file: parsing, defaults and every validation problem, each with
//! the line and field it names. The problem cases, each a small file and its exact
//! report, are in `golden/config-problems.txt`. No root needed.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
};

use ha_user::{
    config::{Config, ConfigError, Problem},
    model::{
        Backups, CheckKind, FastPath, Flows, HealthCheck, Host, HostId, Mac, Prefix, VerifyMode,
        VipCheck, XdpMode, vip::default_vip,
    },
};

/// The documented example extended to the classic four-server network.
const CLASSIC: &str = include_str!("golden/classic.toml");

/// Two hosts and a prefix, everything else left to the defaults.
const MINIMAL: &str = r#"[[host]]
name = "host1"
address = "192.168.1.2"

[[host]]
name = "host2"
address = "192.168.1.3"

[[prefix]]
cidr = "192.168.1.32/27"
owner = "host1"
"#;

fn parse(text: &str) -> Config {
    match Config::parse(Path::new("ha.toml"), text) {
        Ok(config) => config,
        Err(err) => panic!("expected a valid configuration, got:\n{err}\n--- file ---\n{text}"),
    }
}

fn problems(text: &str) -> Vec<Problem> {
    match Config::parse(Path::new("ha.toml"), text) {
        Ok(config) => panic!("expected problems, got {config:#?}\n--- file ---\n{text}"),
        Err(ConfigError::Invalid { problems }) => problems,
        Err(err @ (ConfigError::Read { .. } | ConfigError::NotAFile { .. })) => {
            panic!("unexpected {err}")
        }
    }
}

fn assert_problem(problem: &Problem, line: usize, field: &str, message: &str) {
    let Problem {
        path,
        line: got_line,
        field: got_field,
        message: got_message,
    } = problem;
    assert_eq!(path, Path::new("ha.toml"), "{problem}");
    assert_eq!(*got_line, line, "line of {problem}");
    assert_eq!(got_field, field, "field of {problem}");
    assert!(
        got_message.contains(message),
        "message of {problem} should contain `{message}`"
    );
}

fn host(name: &str, address: [u8; 4]) -> Host {
    Host {
        name: name.to_owned(),
        address: Ipv4Addr::from(address),
        mac: None,
        health: HealthCheck::default(),
    }
}

fn prefix(cidr: &str, owner: usize, backups: &[usize]) -> Prefix {
    let (owner, backups): (HostId, Vec<HostId>) = (
        HostId::new(owner),
        backups.iter().copied().map(HostId::new).collect(),
    );
    let cidr = cidr.parse().expect("test prefix");
    Prefix {
        cidr,
        owner,
        backups: Backups::Listed(backups),
        vip: default_vip(cidr),
    }
}

/// A prefix without a `backups` list.
fn default_prefix(cidr: &str, owner: usize) -> Prefix {
    let cidr = cidr.parse().expect("test prefix");
    Prefix {
        cidr,
        owner: HostId::new(owner),
        backups: Backups::AllOthers,
        vip: default_vip(cidr),
    }
}

// ---- valid files -------------------------------------------------------------------

#[test]
fn classic_example_parses_with_every_field() {
    let expected = Config {
        lan: Some("eth1".to_owned()),
        ingress: vec!["eth0".to_owned()],
        xdp_mode: XdpMode::Native,
        pin_dir: PathBuf::from("/sys/fs/bpf/ha"),
        control_socket: PathBuf::from("/run/ha/ha.sock"),
        state_file: PathBuf::from("/var/lib/ha/state.json"),
        metrics: Some(SocketAddr::from(([127, 0, 0, 1], 9120))),
        fast_path: FastPath {
            verify: VerifyMode::Auto,
            refresh_ms: 1000,
        },
        flows: Flows {
            drain_timeout_ms: 300_000,
            tcp_idle_ms: 300_000,
            udp_idle_ms: 60_000,
            fin_linger_ms: 10_000,
            sweep_ms: 1000,
        },
        vip_check: VipCheck {
            enabled: true,
            interval_ms: 1000,
            sweep_ms: 10_000,
            timeout_ms: 50,
            max_rate: 1000,
        },
        hosts: vec![
            host("host1", [192, 168, 1, 2]),
            host("host2", [192, 168, 1, 3]),
            host("host3", [192, 168, 1, 4]),
            host("host4", [192, 168, 1, 5]),
        ],
        prefixes: vec![
            prefix("192.168.1.32/27", 0, &[1, 2, 3]),
            prefix("192.168.1.64/27", 1, &[2, 3, 0]),
            prefix("192.168.1.96/27", 2, &[3, 0, 1]),
            prefix("192.168.1.128/27", 3, &[0, 1, 2]),
        ],
    };
    assert_eq!(parse(CLASSIC), expected);
}

#[test]
fn every_field_with_non_default_values() {
    let text = r#"
lan = "veth-lan"
ingress = ["eth0", "eth2"]
xdp_mode = "skb"
pin_dir = "/sys/fs/bpf/other"
control_socket = "/tmp/ha.sock"
state_file = "/tmp/state.json"
metrics = "[::1]:9999"

[fast_path]
verify = "always"
refresh_ms = 250

[flows]
drain_timeout_ms = 30000
tcp_idle_ms = 120000
udp_idle_ms = 20000
fin_linger_ms = 5000
sweep_ms = 500

[vip_check]
enabled = false
interval_ms = 500
sweep_ms = 5000
timeout_ms = 100
max_rate = 200

[health]
kind = "tcp"
port = 8080
path = "/health"
expect_status = 204
interval_ms = 100
timeout_ms = 50
fall = 2
rise = 4
failback_delay_ms = 0

[[host]]
name = "web1"
address = "10.0.0.2"
mac = "02:00:00:00:0A:fe"

[host.health]
kind = "icmp"

[[host]]
name = "web2"
address = "10.0.0.3"

[[prefix]]
cidr = "10.0.1.0/24"
owner = "web2"
backups = ["web1"]
vip = "10.0.1.80"
"#;
    let global = HealthCheck {
        kind: CheckKind::Tcp,
        port: 8080,
        path: "/health".to_owned(),
        expect_status: 204,
        interval_ms: 100,
        timeout_ms: 50,
        fall: 2,
        rise: 4,
        failback_delay_ms: 0,
    };
    let expected = Config {
        lan: Some("veth-lan".to_owned()),
        ingress: vec!["eth0".to_owned(), "eth2".to_owned()],
        xdp_mode: XdpMode::Skb,
        pin_dir: PathBuf::from("/sys/fs/bpf/other"),
        control_socket: PathBuf::from("/tmp/ha.sock"),
        state_file: PathBuf::from("/tmp/state.json"),
        metrics: Some("[::1]:9999".parse().expect("socket address")),
        fast_path: FastPath {
            verify: VerifyMode::Always,
            refresh_ms: 250,
        },
        flows: Flows {
            drain_timeout_ms: 30_000,
            tcp_idle_ms: 120_000,
            udp_idle_ms: 20_000,
            fin_linger_ms: 5_000,
            sweep_ms: 500,
        },
        vip_check: VipCheck {
            enabled: false,
            interval_ms: 500,
            sweep_ms: 5000,
            timeout_ms: 100,
            max_rate: 200,
        },
        hosts: vec![
            Host {
                name: "web1".to_owned(),
                address: Ipv4Addr::new(10, 0, 0, 2),
                mac: Some(Mac([0x02, 0, 0, 0, 0x0a, 0xfe])),
                health: HealthCheck {
                    kind: CheckKind::Icmp,
                    ..global.clone()
                },
            },
            Host {
                name: "web2".to_owned(),
                address: Ipv4Addr::new(10, 0, 0, 3),
                mac: None,
                health: global,
            },
        ],
        prefixes: vec![Prefix {
            vip: Ipv4Addr::new(10, 0, 1, 80),
            ..prefix("10.0.1.0/24", 1, &[0])
        }],
    };
    assert_eq!(parse(text), expected);
}

#[test]
fn defaults() {
    let config = parse(MINIMAL);
    assert_eq!(config.lan, None);
    assert!(config.ingress.is_empty());
    assert_eq!(config.xdp_mode, XdpMode::Native);
    assert_eq!(config.pin_dir, Path::new("/sys/fs/bpf/ha"));
    assert_eq!(config.control_socket, Path::new("/run/ha/ha.sock"));
    assert_eq!(config.state_file, Path::new("/var/lib/ha/state.json"));
    assert_eq!(config.metrics, None);
    let health = HealthCheck {
        kind: CheckKind::Http,
        port: 80,
        path: "/".to_owned(),
        expect_status: 200,
        interval_ms: 10,
        timeout_ms: 5,
        fall: 3,
        rise: 5,
        failback_delay_ms: 2000,
    };
    assert_eq!(HealthCheck::default(), health);
    for host in &config.hosts {
        assert_eq!(host.health, health, "{}", host.name);
        assert_eq!(host.mac, None, "{}", host.name);
    }
    // An empty [health] table changes nothing.
    assert_eq!(parse(&format!("[health]\n{MINIMAL}")), config);
}

#[test]
fn default_backups_are_the_other_hosts_in_config_order() {
    let text = r#"
[[host]]
name = "a"
address = "10.0.0.1"
[[host]]
name = "b"
address = "10.0.0.2"
[[host]]
name = "c"
address = "10.0.0.3"
[[host]]
name = "d"
address = "10.0.0.4"

[[prefix]]
cidr = "10.1.0.0/24"
owner = "c"

[[prefix]]
cidr = "10.2.0.0/24"
owner = "a"

[[prefix]]
cidr = "10.3.0.0/24"
owner = "d"
backups = []
"#;
    let config = parse(text);
    assert_eq!(
        config.prefixes,
        vec![
            default_prefix("10.1.0.0/24", 2),
            default_prefix("10.2.0.0/24", 0),
            // An explicit empty list means no backups, not the default.
            prefix("10.3.0.0/24", 3, &[]),
        ]
    );
    let backups: Vec<Vec<usize>> = (config.prefixes.iter())
        .map(|p| {
            p.backup_hosts(config.hosts.len())
                .map(HostId::index)
                .collect()
        })
        .collect();
    assert_eq!(backups, [vec![0, 1, 3], vec![1, 2, 3], vec![]]);
}

#[test]
fn host_health_overrides_merge_over_global_health() {
    let text = r#"
[health]
port = 8080
interval_ms = 20
path = "/ping"

[[host]]
name = "a"
address = "10.0.0.1"
[host.health]
kind = "tcp"
fall = 1

[[host]]
name = "b"
address = "10.0.0.2"
health = { path = "/status", rise = 9 }

[[host]]
name = "c"
address = "10.0.0.3"
"#;
    let config = parse(text);
    let global = HealthCheck {
        port: 8080,
        interval_ms: 20,
        path: "/ping".to_owned(),
        ..HealthCheck::default()
    };
    let healths: Vec<&HealthCheck> = config.hosts.iter().map(|h| &h.health).collect();
    assert_eq!(
        healths,
        [
            &HealthCheck {
                kind: CheckKind::Tcp,
                fall: 1,
                ..global.clone()
            },
            &HealthCheck {
                path: "/status".to_owned(),
                rise: 9,
                ..global.clone()
            },
            &global,
        ]
    );
}

#[test]
fn host_id_finds_a_host_by_name_or_address() {
    let config = parse(CLASSIC);
    assert_eq!(config.host_id("host3"), Some(HostId::new(2)));
    assert_eq!(config.host_id("192.168.1.5"), Some(HostId::new(3)));
    assert_eq!(config.host_id("host9"), None);
    assert_eq!(config.host_id("192.168.1.9"), None);
}

#[test]
fn mac_display_round_trips() {
    let mac: Mac = "02:AB:cd:00:00:0f".parse().expect("valid MAC");
    assert_eq!(mac, Mac([0x02, 0xab, 0xcd, 0, 0, 0x0f]));
    assert_eq!(mac.to_string(), "02:ab:cd:00:00:0f");
}

// ---- every problem -------------------------------------------------------------------

/// One case of `golden/config-problems.txt`.
struct Case<'a> {
    name: &'a str,
    file: String,
    expected: String,
}

/// Splits the cases file: `=== name`, the file, `---`, the expected error text.
fn cases(text: &str) -> Vec<Case<'_>> {
    let mut cases = Vec::new();
    let mut lines = text
        .lines()
        .skip_while(|l| !l.starts_with("=== "))
        .peekable();
    while let Some(header) = lines.next() {
        let name = header.trim_start_matches("=== ");
        let mut file = String::new();
        for line in lines.by_ref().take_while(|l| *l != "---") {
            file.push_str(line);
            file.push('\n');
        }
        let mut expected = Vec::new();
        while let Some(line) = lines.next_if(|l| !l.starts_with("=== ")) {
            expected.push(line);
        }
        let expected = expected.join("\n").trim_end().to_owned();
        cases.push(Case {
            name,
            file,
            expected,
        });
    }
    cases
}

/// Every case of `golden/config-problems.txt`: the file yields exactly the expected
/// problems, in order. Reports every failing case at once.
#[test]
fn every_problem_case() {
    let text = include_str!("golden/config-problems.txt");
    let cases = cases(text);
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for Case {
        name,
        file,
        expected,
    } in &cases
    {
        assert!(!expected.is_empty(), "{name}: nothing expected");
        let actual = match Config::parse(Path::new("ha.toml"), file) {
            Ok(_) => "(valid)".to_owned(),
            Err(err) => err.to_string(),
        };
        if actual != *expected {
            let numbered: Vec<String> = file
                .lines()
                .enumerate()
                .map(|(i, l)| format!("{:>3} | {l}", i + 1))
                .collect();
            failures.push(format!(
                "=== {name}\n{}\n--- expected\n{expected}\n--- actual\n{actual}",
                numbered.join("\n")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

// ---- regressions: each of these was once a bug --------------------------------------------

/// BUG (config.rs, `Mac::from_str`): `u8::from_str_radix` accepts a leading `+`, so
/// `+2` passes the two-character check and `02:00:00:00:00:+2` is taken as
/// 02:00:00:00:00:02. Fix: require `part.bytes().all(|b| b.is_ascii_hexdigit())`.
#[test]
fn bug_mac_with_plus_sign_is_rejected() {
    let text = "host = [{ name = \"a\", address = \"10.0.0.1\", mac = \"02:00:00:00:00:+2\" }]\n";
    let found = problems(text);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_problem(&found[0], 1, "host[0].mac", "is not a MAC address");
}

/// BUG (config.rs, `hosts_from_raw`/`Checker::health`): a zero value in [health] is
/// reported once for [health] (right) and again for every host with its own
/// [host.health] table, on that table's line, although the host never set the key.
/// Fix: check the global values once, and a host's merged values only for the keys
/// its own table sets.
#[test]
fn bug_inherited_zero_health_value_is_reported_once() {
    let text = "[health]\ninterval_ms = 0\n\
                [[host]]\nname = \"a\"\naddress = \"10.0.0.1\"\n[host.health]\nport = 8080\n";
    let found = problems(text);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_problem(&found[0], 1, "health.interval_ms", "must be at least 1");
}

/// BUG (config.rs, `check_iface_name`): the kernel's `dev_valid_name` also rejects
/// `.`, `..`, `:` and any whitespace, so `lan = "eth1:1"` (an alias label, easy to
/// write in a setup full of `lo:1` aliases) passes validation and only fails when
/// `run` looks the interface up. Fix: also reject `.`, `..`, `:` and
/// `char::is_ascii_whitespace`.
#[test]
fn bug_interface_names_the_kernel_rejects() {
    let text = "ingress = [\"eth1:1\", \"eth\\t1\", \".\", \"..\"]\n";
    let found = problems(text);
    assert_eq!(found.len(), 4, "{found:#?}");
    for problem in &found {
        assert_problem(problem, 1, "ingress", "is not an interface name");
    }
}

/// BUG (config.rs, `ConfigError::Read`): the message includes `{source}` and the
/// field is also `#[source]`, so any report that walks the chain (anyhow's `{:#}`,
/// which `main` uses) says it twice: `ha-user: /x.toml: cannot read: No such file or
/// directory (os error 2): No such file or directory (os error 2)`. Fix: drop
/// `: {source}` from the `#[error]` text (or the `#[source]` attribute).
#[test]
fn bug_read_error_chain_names_the_cause_once() {
    let err = Config::load(Path::new("/nonexistent/ha.toml")).expect_err("missing");
    let mut chain = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        chain.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    assert_eq!(chain.matches("No such file").count(), 1, "{chain}");
}

// ---- display, reading ----------------------------------------------------------------

#[test]
fn problems_display_as_path_line_field_message() {
    let text = "lan = \"\"\nmetrics = \"x\"\n";
    let err = Config::parse(Path::new("/etc/ha/ha.toml"), text).expect_err("invalid");
    assert_eq!(
        err.to_string(),
        "/etc/ha/ha.toml:1: lan: `` is not an interface name (1 to 15 characters, no `/`, `:` or spaces, not `.` or `..`)\n\
         /etc/ha/ha.toml:2: metrics: `x` is not an address:port such as 127.0.0.1:9120"
    );
}

#[test]
fn missing_file() {
    let path = Path::new("/nonexistent/ha/ha.toml");
    match Config::load(path) {
        Err(ConfigError::Read { path: got, source }) => {
            assert_eq!(got, path);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected ConfigError::Read, got {other:?}"),
    }
    let err = Config::load(path).expect_err("missing");
    assert_eq!(err.to_string(), "/nonexistent/ha/ha.toml: cannot read");
    let chain = format!("{:#}", anyhow::Error::from(err));
    assert_eq!(chain.matches("No such file").count(), 1, "{chain}");
}

#[test]
fn load_reads_the_file() {
    let dir = std::env::temp_dir().join(format!("ha-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("ha.toml");
    std::fs::write(&path, CLASSIC).expect("write config");
    let loaded = Config::load(&path);
    std::fs::remove_dir_all(&dir).expect("remove temp dir");
    assert_eq!(loaded.expect("valid"), parse(CLASSIC));
}

/// `Config::load` (and `control_socket_of`) of `path` on another thread: its result,
/// or `None` if it had not returned within five seconds (it blocked).
fn load_within(path: &Path) -> Option<(Result<Config, String>, Result<PathBuf, String>)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = path.to_owned();
    std::thread::spawn(move || {
        let config = Config::load(&path).map_err(|e| e.to_string());
        let socket = ha_user::config::control_socket_of(&path).map_err(|e| e.to_string());
        let _ = tx.send((config, socket));
    });
    rx.recv_timeout(std::time::Duration::from_secs(5)).ok()
}

/// What is wrong with how `load` and `control_socket_of` treat `path`: each must
/// return at once with an error that `refused` accepts (one saying `says`).
fn refusals(path: &Path, says: &str, refused: impl Fn(&str) -> bool) -> Vec<String> {
    let Some((config, socket)) = load_within(path) else {
        return vec![format!("{}: blocked for 5 s", path.display())];
    };
    let mut failures = Vec::new();
    for (what, result) in [
        ("load", config.map(|_| ())),
        ("control_socket_of", socket.map(|_| ())),
    ] {
        match result {
            Err(err) if refused(&err) => {}
            other => failures.push(format!(
                "{what}({}): expected an error saying `{says}`, got {other:?}",
                path.display()
            )),
        }
    }
    failures
}

/// A configuration path that is a FIFO or a device is refused at once, naming what
/// it is, by `load` (run, check-config, SIGHUP) and `control_socket_of` (the CLI):
/// never read (a FIFO blocks its reader until a writer comes; `/dev/urandom` never
/// ends).
#[test]
fn a_fifo_or_a_device_is_refused_without_blocking() {
    let dir = std::env::temp_dir().join(format!("ha-config-fifo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let fifo = dir.join("ha.toml");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
    let cases = [
        (fifo.as_path(), "is a FIFO, not a regular file"),
        (
            Path::new("/dev/null"),
            "is a character device, not a regular file",
        ),
    ];
    let mut failures = Vec::new();
    for (path, says) in cases {
        let named = path.display().to_string();
        failures.extend(refusals(path, says, |err| {
            err.contains(says) && err.contains(&named)
        }));
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A configuration path into /proc or /sys is refused without being read, naming the
/// file system: those files are the kernel's, not configurations.
#[test]
fn a_file_of_proc_or_sys_is_refused_without_being_read() {
    let mut failures = Vec::new();
    for (path, says) in [
        ("/proc/self/status", "is a file of procfs"),
        ("/sys/kernel/uevent_seqnum", "is a file of sysfs"),
    ] {
        let path = Path::new(path);
        if !path.is_file() {
            eprintln!("SKIPPED (part): {} does not exist here", path.display());
            continue;
        }
        failures.extend(refusals(path, says, |err| err.contains(says)));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
