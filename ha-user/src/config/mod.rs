//! The configuration file (TOML, default `/etc/ha/ha.toml`).
//!
//! Parsing happens in two stages: serde reads the file into `Raw*` structs that keep
//! the span of every value (unknown keys and wrong types fail here, with a line),
//! then [`Config::from_raw`] checks everything that crosses fields (hosts named by
//! prefixes, overlapping prefixes, zero intervals, ...) and collects every problem,
//! each naming the file, the line and the field. Nothing is applied before the whole
//! file is valid.

pub mod addresses;
pub mod adopt;
pub mod file;
mod flows;
mod tables;

use std::{
    collections::HashMap,
    fmt,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
};

use ipnet::Ipv4Net;
use serde::Deserialize;
use toml::Spanned;

pub use self::addresses::Router;

use crate::model::{
    Backups, CheckKind, FastPath, Flows, HealthCheck, Host, HostId, Mac, Prefix, PrefixId,
    VipCheck, XdpMode, defaults, vip,
};

/// A fully validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Interface facing the web servers; `--iface` overrides it.
    pub lan: Option<String>,
    /// More ingress interfaces whose steered traffic is redirected to `lan`.
    pub ingress: Vec<String>,
    pub xdp_mode: XdpMode,
    /// bpffs directory holding the pinned maps and links.
    pub pin_dir: PathBuf,
    pub control_socket: PathBuf,
    pub state_file: PathBuf,
    /// Optional Prometheus text endpoint.
    pub metrics: Option<SocketAddr>,
    /// The `[fast_path]` table: which interfaces verify flows, and for how long a
    /// kernel verdict on a flow holds.
    pub fast_path: FastPath,
    /// The `[flows]` table: flow affinity across moves, graceful drains.
    pub flows: Flows,
    /// The `[vip_check]` table: how each prefix's VIP is checked through its
    /// candidates.
    pub vip_check: VipCheck,
    /// Hosts in file order: the `HostId` of each is its position.
    pub hosts: Vec<Host>,
    /// Prefixes in file order: the `PrefixId` of each is its position.
    pub prefixes: Vec<Prefix>,
}

/// The `control_socket` a configuration file names (or the default), reading nothing
/// else: the CLI must reach a running controller even when the file on disk has
/// problems the controller refused.
pub fn control_socket_of(path: &Path) -> Result<PathBuf, ConfigError> {
    let text = file::read(path)?;
    /// Only the key wanted; every other key, valid or not, is ignored.
    #[derive(Deserialize)]
    struct Lenient {
        control_socket: Option<PathBuf>,
    }
    let socket = toml::from_str::<Lenient>(&text)
        .ok()
        .and_then(|lenient| lenient.control_socket);
    Ok(socket.unwrap_or_else(|| PathBuf::from(defaults::CONTROL_SOCKET)))
}

/// Parses `A.B.C.D/N` and insists that no host bits are set, so a typo such as
/// `192.168.1.65/27` is caught instead of silently meaning `192.168.1.64/27`.
pub fn parse_cidr(s: &str) -> Result<Ipv4Net, String> {
    if let Some(message) = addresses::prefix_leading_zero(s) {
        return Err(message);
    }
    let net: Ipv4Net = s
        .parse()
        .map_err(|_| format!("`{s}` is not an IPv4 prefix (expected A.B.C.D/N, N from 0 to 32)"))?;
    if net.trunc() != net {
        return Err(format!(
            "`{s}` has host bits set; the prefix is {}",
            net.trunc()
        ));
    }
    Ok(net)
}

/// Every problem found in a configuration file, each on its own line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} {why}: ha reads its configuration from a regular file", path.display())]
    NotAFile { path: PathBuf, why: String },
    #[error("{}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid { problems: Vec<Problem> },
}

/// One problem at one place of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub path: PathBuf,
    pub line: usize,
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            path,
            line,
            field,
            message,
        } = self;
        write!(f, "{}:{line}: {field}: {message}", path.display())
    }
}

// ---- raw file shape ----------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    lan: Option<Spanned<String>>,
    #[serde(default)]
    ingress: Vec<Spanned<String>>,
    #[serde(default)]
    xdp_mode: XdpMode,
    pin_dir: Option<PathBuf>,
    control_socket: Option<PathBuf>,
    state_file: Option<PathBuf>,
    metrics: Option<Spanned<String>>,
    fast_path: Option<Spanned<tables::RawFastPath>>,
    flows: Option<Spanned<flows::RawFlows>>,
    vip_check: Option<Spanned<tables::RawVipCheck>>,
    health: Option<Spanned<RawHealth>>,
    #[serde(default, rename = "host")]
    hosts: Vec<Spanned<RawHost>>,
    #[serde(default, rename = "prefix")]
    prefixes: Vec<Spanned<RawPrefix>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    kind: Option<CheckKind>,
    port: Option<u16>,
    path: Option<String>,
    expect_status: Option<u16>,
    interval_ms: Option<u64>,
    timeout_ms: Option<u64>,
    fall: Option<u32>,
    rise: Option<u32>,
    failback_delay_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    name: Spanned<String>,
    address: Spanned<String>,
    mac: Option<Spanned<String>>,
    health: Option<Spanned<RawHealth>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrefix {
    cidr: Spanned<String>,
    owner: Spanned<String>,
    backups: Option<Vec<Spanned<String>>>,
    vip: Option<Spanned<String>>,
}

impl RawHealth {
    /// `self` laid over `base`.
    fn merge(&self, base: &HealthCheck) -> HealthCheck {
        let Self {
            kind,
            port,
            path,
            expect_status,
            interval_ms,
            timeout_ms,
            fall,
            rise,
            failback_delay_ms,
        } = self;
        HealthCheck {
            kind: kind.unwrap_or(base.kind),
            port: port.unwrap_or(base.port),
            path: path.clone().unwrap_or_else(|| base.path.clone()),
            expect_status: expect_status.unwrap_or(base.expect_status),
            interval_ms: interval_ms.unwrap_or(base.interval_ms),
            timeout_ms: timeout_ms.unwrap_or(base.timeout_ms),
            fall: fall.unwrap_or(base.fall),
            rise: rise.unwrap_or(base.rise),
            failback_delay_ms: failback_delay_ms.unwrap_or(base.failback_delay_ms),
        }
    }
}

// ---- validation --------------------------------------------------------------------

/// The VIP of a prefix: `raw` if given (an address inside `net`, neither its network
/// nor its broadcast address when it has them), else its first usable address.
fn vip_of(
    checker: &mut Checker<'_>,
    net: Ipv4Net,
    raw: Option<&Spanned<String>>,
    field: String,
) -> Option<Ipv4Addr> {
    let Some(raw) = raw else {
        return Some(vip::default_vip(net));
    };
    let text = raw.get_ref();
    let problem = match addresses::parse_ipv4(text) {
        Err(message) => message,
        Ok(addr) if !net.contains(&addr) => {
            format!("{addr} is outside the prefix {net}: the VIP is an address of the prefix")
        }
        Ok(addr) if net.prefix_len() < 31 && addr == net.network() => {
            format!("{addr} is the network address of {net}; clients cannot use it")
        }
        Ok(addr) if net.prefix_len() < 31 && addr == net.broadcast() => {
            format!("{addr} is the broadcast address of {net}; clients cannot use it")
        }
        Ok(addr) => return Some(addr),
    };
    checker.report(raw.span(), field, problem);
    None
}

/// Collects problems with their line numbers.
struct Checker<'a> {
    path: &'a Path,
    /// Byte offset of every newline, for line numbers in O(log n).
    newlines: Vec<usize>,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.newlines.partition_point(|&newline| newline < offset) + 1
    }

    fn report(
        &mut self,
        span: std::ops::Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        let line = self.line_of(span.start);
        self.problems.push(Problem {
            path: self.path.to_owned(),
            line,
            field: field.into(),
            message: message.into(),
        });
    }

    /// The host named `name`, or a problem listing the known hosts.
    fn host(
        &mut self,
        hosts: &[Host],
        by_name: &HashMap<&str, HostId>,
        name: &Spanned<String>,
        field: String,
    ) -> Option<HostId> {
        let index = by_name.get(name.get_ref().as_str()).copied();
        if index.is_none() {
            let known: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
            let message = format!(
                "unknown host `{}` (hosts: {})",
                name.get_ref(),
                known.join(", ")
            );
            self.report(name.span(), field, message);
        }
        index
    }

    /// Merges `raw` over `base` and reports what is wrong with the result, except
    /// problems `base` already had (reported where they were written).
    fn health(&mut self, raw: &Spanned<RawHealth>, base: &HealthCheck, field: &str) -> HealthCheck {
        let health = raw.get_ref().merge(base);
        let inherited = health_problems(base);
        for (name, message) in health_problems(&health) {
            if !inherited.iter().any(|(n, _)| *n == name) {
                self.report(raw.span(), format!("{field}.{name}"), message);
            }
        }
        health
    }
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_on(path, None)
    }

    /// Reads and validates the file at `path`, for the router `router` if known.
    pub fn load_on(path: &Path, router: Option<&Router>) -> Result<Config, ConfigError> {
        let text = file::read(path)?;
        Config::parse_on(path, &text, router)
    }

    /// Validates `text`, naming `path` in every problem.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        Config::parse_on(path, text, None)
    }

    /// Validates `text` for the router `router` if known (its addresses are in no
    /// prefix and no host's: see [`addresses`]), naming `path` in every problem.
    pub fn parse_on(
        path: &Path,
        text: &str,
        router: Option<&Router>,
    ) -> Result<Config, ConfigError> {
        let mut checker = Checker {
            path,
            newlines: text
                .bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i)
                .collect(),
            problems: Vec::new(),
        };
        let raw: RawConfig = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(err) => {
                let span = err.span().unwrap_or(0..0);
                let message = err.message().to_owned();
                checker.report(span, "syntax", message);
                return Err(ConfigError::Invalid {
                    problems: checker.problems,
                });
            }
        };
        let config = Config::from_raw(&mut checker, raw, router);
        if checker.problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                problems: checker.problems,
            })
        }
    }

    fn from_raw(checker: &mut Checker<'_>, raw: RawConfig, router: Option<&Router>) -> Config {
        let RawConfig {
            lan,
            ingress,
            xdp_mode,
            pin_dir,
            control_socket,
            state_file,
            metrics,
            fast_path: raw_fast_path,
            flows: raw_flows,
            vip_check: raw_vip_check,
            health,
            hosts: raw_hosts,
            prefixes: raw_prefixes,
        } = raw;
        let fast_path = tables::fast_path_from_raw(checker, raw_fast_path.as_ref());
        let flows = flows::flows_from_raw(checker, raw_flows.as_ref());
        let vip_check = tables::vip_check_from_raw(checker, raw_vip_check.as_ref());

        let defaults = match &health {
            Some(health) => checker.health(health, &HealthCheck::default(), "health"),
            None => HealthCheck::default(),
        };

        let lan = lan.map(|lan| {
            check_iface_name(checker, &lan, "lan");
            lan.into_inner()
        });
        let ingress = ingress
            .into_iter()
            .map(|iface| {
                check_iface_name(checker, &iface, "ingress");
                iface.into_inner()
            })
            .collect();

        let metrics = metrics.and_then(|m| match m.get_ref().parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                let message = format!(
                    "`{}` is not an address:port such as 127.0.0.1:9120",
                    m.get_ref()
                );
                checker.report(m.span(), "metrics", message);
                None
            }
        });

        let hosts = hosts_from_raw(checker, &raw_hosts, &defaults);
        let prefixes = prefixes_from_raw(checker, &raw_prefixes, &hosts, &raw_hosts);
        if let Some(router) = router {
            addresses::check_router(checker, router, &raw_hosts, &hosts, &raw_prefixes);
        }

        Config {
            lan,
            ingress,
            xdp_mode,
            pin_dir: pin_dir.unwrap_or_else(|| PathBuf::from(defaults::PIN_DIR)),
            control_socket: control_socket
                .unwrap_or_else(|| PathBuf::from(defaults::CONTROL_SOCKET)),
            state_file: state_file.unwrap_or_else(|| PathBuf::from(defaults::STATE_FILE)),
            metrics,
            fast_path,
            flows,
            vip_check,
            hosts,
            prefixes,
        }
    }

    /// The host named `name_or_address` (its name, or its address in dotted form).
    pub fn host_id(&self, name_or_address: &str) -> Option<HostId> {
        self.hosts
            .iter()
            .position(|h| h.name == name_or_address || h.address.to_string() == name_or_address)
            .map(HostId::new)
    }

    /// The configured prefix `cidr`.
    pub fn prefix_id(&self, cidr: Ipv4Net) -> Option<PrefixId> {
        self.prefixes
            .iter()
            .position(|p| p.cidr == cidr)
            .map(PrefixId::new)
    }

    /// Host `id`. Ids come from this configuration (or one with as many hosts).
    pub fn host(&self, id: HostId) -> &Host {
        &self.hosts[id.index()]
    }

    /// Prefix `id`. Ids come from this configuration (or one with as many prefixes).
    pub fn prefix(&self, id: PrefixId) -> &Prefix {
        &self.prefixes[id.index()]
    }

    /// Every host with its id.
    pub fn host_ids(&self) -> impl Iterator<Item = (HostId, &Host)> {
        self.hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (HostId::new(i), h))
    }

    /// Every prefix with its id.
    pub fn prefix_ids(&self) -> impl Iterator<Item = (PrefixId, &Prefix)> {
        self.prefixes
            .iter()
            .enumerate()
            .map(|(i, p)| (PrefixId::new(i), p))
    }
}

/// What is wrong with a health check, by key.
fn health_problems(health: &HealthCheck) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    for (name, value) in [
        ("interval_ms", health.interval_ms),
        ("timeout_ms", health.timeout_ms),
        ("fall", u64::from(health.fall)),
        ("rise", u64::from(health.rise)),
    ] {
        if value == 0 {
            problems.push((name, "must be at least 1".to_owned()));
        }
    }
    if health.kind == CheckKind::Http && !health.path.starts_with('/') {
        problems.push(("path", format!("`{}` must start with `/`", health.path)));
    }
    if health.kind != CheckKind::Icmp && health.port == 0 {
        problems.push(("port", "must be 1 to 65535".to_owned()));
    }
    problems
}

fn check_iface_name(checker: &mut Checker<'_>, name: &Spanned<String>, field: &str) {
    let value = name.get_ref();
    // The kernel's dev_valid_name: IFNAMSIZ is 16 with the terminating NUL; no `/`,
    // `:` or whitespace; not `.` or `..`.
    let bad_char = |c: char| c == '/' || c == ':' || c == '\0' || c.is_whitespace();
    if value.is_empty()
        || value.len() > 15
        || value.contains(bad_char)
        || value == "."
        || value == ".."
    {
        let message = format!(
            "`{value}` is not an interface name (1 to 15 characters, no `/`, `:` or spaces, not `.` or `..`)"
        );
        checker.report(name.span(), field, message);
    }
}

fn hosts_from_raw(
    checker: &mut Checker<'_>,
    raw_hosts: &[Spanned<RawHost>],
    defaults: &HealthCheck,
) -> Vec<Host> {
    let mut hosts: Vec<Host> = Vec::new();
    let mut seen_names = HashMap::new();
    let mut seen_addresses = HashMap::new();
    for (i, raw) in raw_hosts.iter().enumerate() {
        let RawHost {
            name,
            address,
            mac,
            health,
        } = raw.get_ref();
        let field = |f: &str| format!("host[{i}].{f}");
        if name.get_ref().is_empty() {
            checker.report(name.span(), field("name"), "must not be empty");
        }
        if let Some(first) =
            seen_names.insert(name.get_ref().clone(), checker.line_of(name.span().start))
        {
            checker.report(
                name.span(),
                field("name"),
                format!(
                    "duplicate host name `{}` (first at line {first})",
                    name.get_ref()
                ),
            );
        }
        let parsed_address = match addresses::parse_ipv4(address.get_ref()) {
            Ok(addr) => {
                if let Some(message) = addresses::name_problem(name.get_ref(), addr) {
                    checker.report(name.span(), field("name"), message);
                }
                if let Some(message) = addresses::unusable_host(addr) {
                    checker.report(address.span(), field("address"), message);
                }
                if let Some(first) =
                    seen_addresses.insert(addr, checker.line_of(address.span().start))
                {
                    checker.report(
                        address.span(),
                        field("address"),
                        format!("duplicate host address {addr} (first at line {first})"),
                    );
                }
                addr
            }
            Err(message) => {
                checker.report(address.span(), field("address"), message);
                Ipv4Addr::UNSPECIFIED
            }
        };
        let mac = mac
            .as_ref()
            .and_then(|mac| match mac.get_ref().parse::<Mac>() {
                Ok(parsed) => Some(parsed),
                Err(err) => {
                    checker.report(mac.span(), field("mac"), err.to_string());
                    None
                }
            });
        let health = match health {
            Some(h) => checker.health(h, defaults, &field("health")),
            None => defaults.clone(),
        };
        hosts.push(Host {
            name: name.get_ref().clone(),
            address: parsed_address,
            mac,
            health,
        });
    }
    if hosts.len() > ha_common::MAX_HOSTS as usize {
        let message = format!(
            "{} hosts; at most {} are supported",
            hosts.len(),
            ha_common::MAX_HOSTS
        );
        checker.report(0..0, "host", message);
    }
    hosts
}

fn prefixes_from_raw(
    checker: &mut Checker<'_>,
    raw_prefixes: &[Spanned<RawPrefix>],
    hosts: &[Host],
    raw_hosts: &[Spanned<RawHost>],
) -> Vec<Prefix> {
    let mut by_name = HashMap::new();
    for (i, host) in hosts.iter().enumerate() {
        by_name.entry(host.name.as_str()).or_insert(HostId::new(i));
    }
    // (prefix, line, span of its cidr, index in the file)
    let mut prefixes: Vec<(Prefix, usize, std::ops::Range<usize>, usize)> = Vec::new();
    for (i, raw) in raw_prefixes.iter().enumerate() {
        let RawPrefix {
            cidr,
            owner,
            backups,
            vip,
        } = raw.get_ref();
        let field = |f: &str| format!("prefix[{i}].{f}");
        let line = checker.line_of(cidr.span().start);
        let net = match parse_cidr(cidr.get_ref()) {
            Ok(net) => Some(net),
            Err(message) => {
                checker.report(cidr.span(), field("cidr"), message);
                None
            }
        };
        let owner_index = checker.host(hosts, &by_name, owner, field("owner"));
        let backup_indices = match backups {
            Some(list) => {
                let mut indices = Vec::new();
                for backup in list {
                    let Some(index) = checker.host(hosts, &by_name, backup, field("backups"))
                    else {
                        continue;
                    };
                    if Some(index) == owner_index {
                        checker.report(
                            backup.span(),
                            field("backups"),
                            format!(
                                "`{}` is the owner; a backup must be another host",
                                backup.get_ref()
                            ),
                        );
                    } else if indices.contains(&index) {
                        checker.report(
                            backup.span(),
                            field("backups"),
                            format!("`{}` is listed twice", backup.get_ref()),
                        );
                    } else {
                        indices.push(index);
                    }
                }
                Backups::Listed(indices)
            }
            None => Backups::AllOthers,
        };
        let vip = net.and_then(|net| vip_of(checker, net, vip.as_ref(), field("vip")));
        let (Some(net), Some(owner), Some(vip)) = (net, owner_index, vip) else {
            continue;
        };
        prefixes.push((
            Prefix {
                cidr: net,
                owner,
                backups: backup_indices,
                vip,
            },
            line,
            cidr.span(),
            i,
        ));
    }
    if prefixes.len() > ha_common::MAX_PREFIXES as usize {
        let message = format!(
            "{} prefixes; at most {} are supported",
            prefixes.len(),
            ha_common::MAX_PREFIXES
        );
        checker.report(0..0, "prefix", message);
    }
    // Overlaps, in O(n log n): sorted by network then length, a prefix that contains
    // another also contains its immediate successor.
    let mut order: Vec<usize> = (0..prefixes.len()).collect();
    order.sort_by_key(|&i| {
        (
            u32::from(prefixes[i].0.cidr.network()),
            prefixes[i].0.cidr.prefix_len(),
            prefixes[i].1,
        )
    });
    let mut rejected = vec![false; prefixes.len()];
    for pair in order.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if !prefixes[a].0.cidr.contains(&prefixes[b].0.cidr.network()) {
            continue;
        }
        let (first, second) = if prefixes[a].1 <= prefixes[b].1 {
            (a, b)
        } else {
            (b, a)
        };
        let (net, other, other_line) = (
            prefixes[second].0.cidr,
            prefixes[first].0.cidr,
            prefixes[first].1,
        );
        let message = if other == net {
            format!("duplicate prefix {net} (first at line {other_line})")
        } else {
            format!("{net} overlaps {other} (line {other_line}); each address must have one owner")
        };
        checker.report(
            prefixes[second].2.clone(),
            format!("prefix[{}].cidr", prefixes[second].3),
            message,
        );
        rejected[second] = true;
    }
    // A host inside a steered prefix would have its own probes and routes looped.
    let sorted: Vec<Ipv4Net> = order.iter().map(|&i| prefixes[i].0.cidr).collect();
    for (i, host) in hosts.iter().enumerate() {
        let at = sorted.partition_point(|net| u32::from(net.network()) <= u32::from(host.address));
        if let Some(net) = sorted[..at]
            .iter()
            .rev()
            .take(2)
            .find(|net| net.contains(&host.address))
        {
            let message = format!(
                "{} is inside the steered prefix {net}; a host must be reachable outside the VIP prefixes",
                host.address
            );
            let span = raw_hosts
                .get(i)
                .map_or(0..0, |raw| raw.get_ref().address.span());
            checker.report(span, format!("host[{i}].address"), message);
        }
    }
    prefixes
        .into_iter()
        .zip(rejected)
        .filter(|(_, rejected)| !rejected)
        .map(|((p, ..), _)| p)
        .collect()
}
