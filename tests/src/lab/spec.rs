//! What a lab is built from: [`LabSpec`], the binaries it runs ([`Bins`]), and the
//! controller configuration it writes for its network.

use std::{
    fmt::Write as _,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, bail};
use ha_user::model::VipCheck;
pub use ha_user::model::XdpMode;
use ipnet::Ipv4Net;

/// The web servers, in configuration order (their data-path host ids are 0..4).
pub const HOSTS: [&str; 4] = ["host1", "host2", "host3", "host4"];

/// The address of web server `host` (`host1` → 192.168.1.2, ..., `host4` → .5).
pub fn host_address(host: &str) -> Option<Ipv4Addr> {
    let index = HOSTS.iter().position(|h| *h == host)?;
    Some(Ipv4Addr::new(192, 168, 1, 2 + index as u8))
}

/// The VIP of `prefix`: its first usable address (192.168.1.65 for 192.168.1.64/27),
/// as `ha-user plan` binds it.
pub fn vip(prefix: Ipv4Net) -> Ipv4Addr {
    ha_user::plan::vip(prefix)
}

/// Parses `A.B.C.D/N`, panicking on a typo in a literal.
pub fn net(text: &str) -> Ipv4Net {
    text.parse()
        .unwrap_or_else(|e| panic!("{text:?} is not a prefix: {e}"))
}

/// The controller's health checks (`[health]` of the configuration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthSpec {
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub fall: u32,
    pub rise: u32,
    pub failback_delay_ms: u64,
}

impl Default for HealthSpec {
    /// HTTP on port 80 every 10 ms, 5 ms timeout, down after 3 failures, up after 5
    /// successes, 2 s failback delay; the times × [`time_scale`].
    fn default() -> Self {
        let scale = u64::from(time_scale());
        Self {
            interval_ms: 10 * scale,
            timeout_ms: 5 * scale,
            fall: 3,
            rise: 5,
            failback_delay_ms: 2000 * scale,
        }
    }
}

/// The variable that stretches the lab's times on a slow machine (a guest under
/// software emulation): a whole number from 1 to 100, 1 when unset.
pub const TIME_SCALE_ENV: &str = "HA_LAB_TIME_SCALE";

/// `$HA_LAB_TIME_SCALE`: the factor applied to the default health-check timers (and
/// by the suites to the failback delays they choose). It stretches what the
/// controller is configured with; the bounds the tests assert follow from that
/// configuration, with their margins unchanged. Panics on a value that is not a
/// whole number from 1 to 100.
pub fn time_scale() -> u32 {
    let Some(value) = std::env::var_os(TIME_SCALE_ENV) else {
        return 1;
    };
    let text = value.to_string_lossy();
    match text.trim().parse::<u32>() {
        Ok(scale @ 1..=100) => scale,
        _ => panic!("{TIME_SCALE_ENV} must be a whole number from 1 to 100, not {text:?}"),
    }
}

impl HealthSpec {
    /// The configured detection time: `fall × interval + timeout`, the longest a
    /// failure can take to be declared when `timeout ≤ interval` (see ha-user's
    /// health module).
    pub fn detection_time(&self) -> Duration {
        Duration::from_millis(u64::from(self.fall) * self.interval_ms + self.timeout_ms)
    }

    /// From a recovered owner's first good probe to it taking its prefixes back:
    /// `rise × interval + failback delay`.
    pub fn failback_time(&self) -> Duration {
        Duration::from_millis(u64::from(self.rise) * self.interval_ms + self.failback_delay_ms)
    }
}

/// One `[[prefix]]` of the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrefixSpec {
    pub cidr: Ipv4Net,
    pub owner: String,
    /// `None`: the controller's default (the other hosts in file order).
    pub backups: Option<Vec<String>>,
}

impl PrefixSpec {
    pub fn new(cidr: &str, owner: &str) -> PrefixSpec {
        PrefixSpec {
            cidr: net(cidr),
            owner: owner.to_owned(),
            backups: None,
        }
    }

    pub fn with_backups(mut self, backups: &[&str]) -> PrefixSpec {
        self.backups = Some(backups.iter().map(|&b| b.to_owned()).collect());
        self
    }

    /// The article's four VIP subnets, owned by host1..host4.
    pub fn classic() -> Vec<PrefixSpec> {
        vec![
            PrefixSpec::new("192.168.1.32/27", "host1"),
            PrefixSpec::new("192.168.1.64/27", "host2"),
            PrefixSpec::new("192.168.1.96/27", "host3"),
            PrefixSpec::new("192.168.1.128/27", "host4"),
        ]
    }
}

/// The programs the lab runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bins {
    /// The controller and CLI.
    pub ha_user: PathBuf,
    /// The web server each host runs (`tests/src/bin/ha-webd.rs`).
    pub webd: PathBuf,
    /// The UDP stream generator (`tests/src/bin/ha-stream.rs`).
    pub stream: PathBuf,
}

impl Bins {
    /// `$HA_USER_BIN`, `$HA_WEBD_BIN` and `$HA_STREAM_BIN`, else the debug builds in
    /// the workspace's target directory (`$CARGO_TARGET_DIR` if set). A default
    /// `ha-user` older than its sources is refused: see [`Bins::ha_user`].
    pub fn locate() -> anyhow::Result<Bins> {
        Ok(Bins {
            ha_user: Bins::ha_user()?,
            webd: from_env_or_target("HA_WEBD_BIN", "ha-webd"),
            stream: from_env_or_target("HA_STREAM_BIN", "ha-stream"),
        })
    }

    /// `$HA_USER_BIN`, else `target/debug/ha-user`, which must exist and be newer
    /// than every source file of ha-user, ha-common and ha-ebpf: `cargo test -p
    /// ha-tests` does not build other packages' binaries, and a stale controller
    /// would make every result meaningless.
    pub fn ha_user() -> anyhow::Result<PathBuf> {
        if let Some(path) = std::env::var_os("HA_USER_BIN") {
            return Ok(PathBuf::from(path));
        }
        let path = target_dir().join("debug/ha-user");
        let built = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .with_context(|| {
                format!(
                    "{} is missing: run `cargo build -p ha-user` (or set HA_USER_BIN)",
                    path.display()
                )
            })?;
        let root = workspace_root();
        let sources = [
            "ha-user/src",
            "ha-user/build.rs",
            "ha-user/Cargo.toml",
            "ha-common/src",
            "ha-ebpf/src",
        ];
        let mut newest: Option<(SystemTime, PathBuf)> = None;
        for source in sources {
            newest_file(&root.join(source), &mut newest);
        }
        if let Some((modified, file)) = newest
            && modified > built
        {
            bail!(
                "{} is older than {}: run `cargo build -p ha-user` (or set HA_USER_BIN)",
                path.display(),
                file.display()
            );
        }
        Ok(path)
    }
}

/// The workspace root, as this crate was built.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .to_owned()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn from_env_or_target(var: &str, name: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(|| target_dir().join("debug").join(name), PathBuf::from)
}

fn newest_file(path: &Path, newest: &mut Option<(SystemTime, PathBuf)>) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            newest_file(&entry.path(), newest);
        }
    } else if let Ok(modified) = meta.modified()
        && newest.as_ref().is_none_or(|(t, _)| modified > *t)
    {
        *newest = Some((modified, path.to_owned()));
    }
}

/// How to build a lab.
#[derive(Clone, Debug)]
pub struct LabSpec {
    /// Start of every namespace name (`{prefix}router`, ...); must start with `ha-`.
    /// The pin directory is `/sys/fs/bpf/{prefix}lab`, the work directory
    /// `$TMPDIR/{prefix}lab`.
    pub prefix: String,
    pub xdp_mode: XdpMode,
    pub health: HealthSpec,
    pub prefixes: Vec<PrefixSpec>,
    pub bins: Bins,
    /// Start `ha-user run` and wait until every host is up with a known MAC and every
    /// prefix is with its configured owner. Otherwise the network is left as the
    /// classic static setup: kernel routes only.
    pub start_controller: bool,
    /// UDP echo port of every web server.
    pub udp_port: u16,
}

impl LabSpec {
    /// The classic network: four prefixes owned by host1..host4, default health
    /// checks, the controller started.
    pub fn new(prefix: &str, xdp_mode: XdpMode, bins: Bins) -> LabSpec {
        LabSpec {
            prefix: prefix.to_owned(),
            xdp_mode,
            health: HealthSpec::default(),
            prefixes: PrefixSpec::classic(),
            bins,
            start_controller: true,
            udp_port: 9000,
        }
    }
}

/// Paths a configuration names.
#[derive(Clone, Debug)]
pub struct ConfigPaths {
    pub pin_dir: PathBuf,
    pub control_socket: PathBuf,
    pub state_file: PathBuf,
}

/// The `[vip_check]` table: none at scale 1 (the controller's defaults), else the
/// defaults' times × `scale`, as [`HealthSpec::default`] stretches the host checks
/// (a VIP probe's 50 ms timeout would otherwise stay that of a fast machine).
fn vip_check_table(scale: u32) -> String {
    if scale <= 1 {
        return String::new();
    }
    let scale = u64::from(scale);
    let VipCheck {
        interval_ms,
        sweep_ms,
        timeout_ms,
        ..
    } = VipCheck::default();
    format!(
        "\n[vip_check]\n\
         interval_ms = {}\n\
         sweep_ms = {}\n\
         timeout_ms = {}\n",
        interval_ms * scale,
        sweep_ms * scale,
        timeout_ms * scale,
    )
}

/// The controller configuration of the lab network: LAN `eth1`, ingress `eth0`, the
/// four hosts without MACs (learned from the neighbour table), HTTP checks on port 80,
/// VIP checks stretched by [`time_scale`].
pub fn render_config(
    xdp_mode: XdpMode,
    paths: &ConfigPaths,
    health: &HealthSpec,
    prefixes: &[PrefixSpec],
) -> String {
    render_config_at(time_scale(), xdp_mode, paths, health, prefixes)
}

/// [`render_config`] with the VIP checks stretched by `scale` (the host checks come
/// stretched in `health`).
fn render_config_at(
    scale: u32,
    xdp_mode: XdpMode,
    paths: &ConfigPaths,
    health: &HealthSpec,
    prefixes: &[PrefixSpec],
) -> String {
    let HealthSpec {
        interval_ms,
        timeout_ms,
        fall,
        rise,
        failback_delay_ms,
    } = health;
    let mut text = format!(
        "# Written by the ha lab.\n\
         lan = \"eth1\"\n\
         ingress = [\"eth0\"]\n\
         xdp_mode = \"{xdp_mode}\"\n\
         pin_dir = \"{}\"\n\
         control_socket = \"{}\"\n\
         state_file = \"{}\"\n\
         \n\
         [health]\n\
         kind = \"http\"\n\
         port = 80\n\
         interval_ms = {interval_ms}\n\
         timeout_ms = {timeout_ms}\n\
         fall = {fall}\n\
         rise = {rise}\n\
         failback_delay_ms = {failback_delay_ms}\n",
        paths.pin_dir.display(),
        paths.control_socket.display(),
        paths.state_file.display(),
    );
    text.push_str(&vip_check_table(scale));
    for host in HOSTS {
        let address = host_address(host).unwrap_or(Ipv4Addr::UNSPECIFIED);
        let _ = write!(
            text,
            "\n[[host]]\nname = \"{host}\"\naddress = \"{address}\"\n"
        );
    }
    for prefix in prefixes {
        let _ = write!(
            text,
            "\n[[prefix]]\ncidr = \"{}\"\nowner = \"{}\"\n",
            prefix.cidr, prefix.owner
        );
        if let Some(backups) = &prefix.backups {
            let list: Vec<String> = backups.iter().map(|b| format!("\"{b}\"")).collect();
            let _ = writeln!(text, "backups = [{}]", list.join(", "));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use ha_user::config::Config;

    use super::*;

    fn config_at(scale: u32) -> Config {
        let paths = ConfigPaths {
            pin_dir: "/sys/fs/bpf/ha-spec-test".into(),
            control_socket: "/run/ha-spec-test.sock".into(),
            state_file: "/var/lib/ha-spec-test.json".into(),
        };
        let health = HealthSpec::default();
        let prefixes = [PrefixSpec {
            cidr: net("192.168.1.32/27"),
            owner: "host1".into(),
            backups: None,
        }];
        let text = render_config_at(scale, XdpMode::Skb, &paths, &health, &prefixes);
        Config::parse(Path::new("lab.toml"), &text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn vip_checks_stretch_with_the_time_scale() {
        let plain = config_at(1).vip_check;
        assert_eq!(plain, VipCheck::default());
        let stretched = config_at(10).vip_check;
        assert_eq!(stretched.timeout_ms, plain.timeout_ms * 10);
        assert_eq!(stretched.interval_ms, plain.interval_ms * 10);
        assert_eq!(stretched.sweep_ms, plain.sweep_ms * 10);
        assert_eq!(stretched.max_rate, plain.max_rate);
    }
}
