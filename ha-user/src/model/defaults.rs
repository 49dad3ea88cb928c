//! The defaults of the paths a configuration may set, in one place.

/// Where the configuration file is read from.
pub const CONFIG_PATH: &str = "/etc/ha/ha.toml";
/// bpffs directory of the pinned maps and links.
pub const PIN_DIR: &str = "/sys/fs/bpf/ha";
/// The control socket of a running controller.
pub const CONTROL_SOCKET: &str = "/run/ha/ha.sock";
/// Pins and drains, kept across restarts.
pub const STATE_FILE: &str = "/var/lib/ha/state.json";
