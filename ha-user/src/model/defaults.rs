//! The defaults a configuration may override, in one place.

/// Where the configuration file is read from.
pub const CONFIG_PATH: &str = "/etc/ha/ha.toml";
/// bpffs directory of the pinned maps and links.
pub const PIN_DIR: &str = "/sys/fs/bpf/ha";
/// The control socket of a running controller.
pub const CONTROL_SOCKET: &str = "/run/ha/ha.sock";
/// Pins and drains, kept across restarts.
pub const STATE_FILE: &str = "/var/lib/ha/state.json";
/// How long the kernel's forwarding of one packet vouches for a flow on an
/// interface that verifies flows (`[fast_path] refresh_ms`): one packet per flow and
/// second goes through the kernel, well within every conntrack timeout.
pub const REFRESH_MS: u64 = 1000;
