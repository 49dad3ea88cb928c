//! The fast path's own settings: the configuration's `[fast_path]` table.

use serde::{Deserialize, Serialize};

use super::defaults;

/// How the controller chooses between interfaces that steer every frame of a steered
/// prefix ("open") and interfaces that steer only flows the kernel forwarded
/// recently ("verify"); see the README's "The firewall and the rest of the kernel's
/// forwarding".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMode {
    /// Verify exactly the interfaces where the kernel's forwarding differs from the
    /// fast path's.
    #[default]
    Auto,
    /// Verify every interface.
    Always,
    /// Verify none: the fast path bypasses whatever the reasons name.
    Never,
}

/// The `[fast_path]` table, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastPath {
    pub verify: VerifyMode,
    /// How long the kernel's forwarding of one packet vouches for a flow on a
    /// verifying interface.
    pub refresh_ms: u64,
}

impl Default for FastPath {
    fn default() -> Self {
        Self {
            verify: VerifyMode::default(),
            refresh_ms: defaults::REFRESH_MS,
        }
    }
}
