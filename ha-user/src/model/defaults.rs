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

// ---- `[flows]`: flow affinity and graceful drains ----

/// How long `drain HOST` lets the host's connections finish before the rest are
/// moved: 5 minutes, the default deregistration delay of the common cloud load
/// balancers; longer than nginx's 75 s keep-alive and the browsers' idle-connection
/// limits, so an idle keep-alive connection closes by itself first.
pub const DRAIN_TIMEOUT_MS: u64 = 300_000;
/// A TCP connection without a packet for this long no longer holds its prefix in a
/// move (and its entry is removed): 5 minutes, a browser's limit for an idle
/// connection it has used (Chromium's `kUsedIdleSocketTimeout`).
pub const TCP_IDLE_MS: u64 = 300_000;
/// A UDP flow is one with traffic in the last 60 s: longer than QUIC's usual idle
/// timeouts (30 s in browsers, 60 s in nginx), like Cilium's non-TCP lifetime.
pub const UDP_IDLE_MS: u64 = 60_000;
/// A TCP connection whose client sent a FIN counts until it has been quiet this
/// long: room for the last ACK and for retransmitted FINs (Cilium's close timeout).
pub const FIN_LINGER_MS: u64 = 10_000;
/// How often the flow table is read while a prefix moves or a host drains; without
/// either it is read ten times less often, to remove idle entries.
pub const SWEEP_MS: u64 = 1000;
