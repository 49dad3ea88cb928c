//! Why a probe failed: the `reason` of health events and the `last_error` of status.

use std::{io, net::Ipv4Addr};

/// Why a probe failed. [`ProbeError::reason`] (the message with its sources) is the
/// `reason` of events and the `last_error` of the status.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("timeout after {ms} ms")]
    Timeout { ms: u64 },
    /// RST in answer to the SYN: nothing listens (the server process is dead).
    #[error("connection refused")]
    Refused,
    #[error("connect")]
    Connect {
        #[source]
        source: io::Error,
    },
    #[error("http")]
    Http {
        #[source]
        source: io::Error,
    },
    #[error("http: connection closed before the status line")]
    Closed,
    #[error("http: malformed status line {line:?}")]
    StatusLine { line: String },
    #[error("http status {status}")]
    Status { status: u16 },
    #[error("icmp socket (needs CAP_NET_RAW)")]
    IcmpSocket {
        #[source]
        source: io::Error,
    },
    #[error("icmp")]
    Icmp {
        #[source]
        source: io::Error,
    },
    #[error("icmp {what} (code {code}) from {from}")]
    Unreachable {
        what: &'static str,
        code: u8,
        from: Ipv4Addr,
    },
}

impl ProbeError {
    /// The message followed by its sources, e.g. `connect: Network is unreachable (os error 101)`.
    pub fn reason(&self) -> String {
        let mut reason = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(err) = source {
            reason.push_str(": ");
            reason.push_str(&err.to_string());
            source = err.source();
        }
        reason
    }
}
