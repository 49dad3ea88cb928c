//! A host's health and how it is checked.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A host's health: what the checks last decided.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// No decision yet: fewer than `rise` successes or `fall` failures in a row since
    /// the checks started (start-up, or a host new in the configuration).
    #[default]
    Unknown,
    Up,
    Down,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Down => "down",
        })
    }
}

/// How a host is probed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// A TCP connect to `port`.
    Tcp,
    /// An HTTP/1.1 GET of `path` on `port`, expecting `expect_status`.
    Http,
    /// An ICMP echo.
    Icmp,
}

/// One host's health check, defaults and overrides merged. [`HealthCheck::default`]
/// holds the defaults of the configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    pub kind: CheckKind,
    pub port: u16,
    pub path: String,
    pub expect_status: u16,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// Consecutive failures before a host is down.
    pub fall: u32,
    /// Consecutive successes before it is up again.
    pub rise: u32,
    /// Hold-down before a recovered owner takes its prefixes back.
    pub failback_delay_ms: u64,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            kind: CheckKind::Http,
            port: 80,
            path: "/".to_owned(),
            expect_status: 200,
            interval_ms: 10,
            timeout_ms: 5,
            fall: 3,
            rise: 5,
            failback_delay_ms: 2000,
        }
    }
}
