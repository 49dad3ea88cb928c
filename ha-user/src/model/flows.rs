//! Flow affinity and graceful drains: the configuration's `[flows]` table.

use std::time::Duration;

use super::defaults;

/// The `[flows]` table, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flows {
    /// How long a graceful `drain` lets the host's connections finish.
    pub drain_timeout_ms: u64,
    /// A TCP connection idle this long no longer counts.
    pub tcp_idle_ms: u64,
    /// A UDP flow is one with traffic within this.
    pub udp_idle_ms: u64,
    /// A closing TCP connection (FIN seen) counts until it is quiet this long.
    pub fin_linger_ms: u64,
    /// How often the flow table is read while anything moves.
    pub sweep_ms: u64,
}

impl Default for Flows {
    fn default() -> Self {
        Self {
            drain_timeout_ms: defaults::DRAIN_TIMEOUT_MS,
            tcp_idle_ms: defaults::TCP_IDLE_MS,
            udp_idle_ms: defaults::UDP_IDLE_MS,
            fin_linger_ms: defaults::FIN_LINGER_MS,
            sweep_ms: defaults::SWEEP_MS,
        }
    }
}

impl Flows {
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }

    pub fn sweep(&self) -> Duration {
        Duration::from_millis(self.sweep_ms)
    }
}
