//! What one probe says: the taxonomy every check (a host's own, a VIP's) reports in.
//!
//! Three outcomes are about the host: it answered, it refused (RST, an ICMP
//! unreachable, a wrong HTTP status, a malformed or cut answer), or it was silent (no
//! answer within the timeout while the controller was listening). The others are
//! local failures, about the controller or the router, and never count for or
//! against the host: the controller was late (not scheduled while the probe ran, so
//! the host's time to answer cannot be judged), a socket or descriptor could not be
//! had, the LAN interface is down, or the router does not let the probe out (no
//! route, its own firewall).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The outcome of one probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeOutcome {
    /// The host answered as the check expects.
    Answered,
    /// The host answered, but not as a serving host does: RST, an ICMP error, a
    /// wrong HTTP status, a malformed or cut response.
    Refused,
    /// No answer within the timeout, with the controller listening throughout.
    Silent,
    /// The controller itself was held up while the probe ran (measured: the timeout
    /// observed late, a step of the exchange noticed late): discarded.
    Late,
    /// No socket could be had (descriptors, buffers, memory, local ports): discarded.
    NoSocket,
    /// The router's LAN interface is down or has no carrier: discarded.
    InterfaceDown,
    /// The router has no route for the probe, or its own rules (or the controller's
    /// privileges) do not let it out: discarded.
    NoRoute,
}

impl ProbeOutcome {
    /// Every outcome, in this order (the index of [`ProbeOutcome::index`]).
    pub const ALL: [ProbeOutcome; 7] = [
        ProbeOutcome::Answered,
        ProbeOutcome::Refused,
        ProbeOutcome::Silent,
        ProbeOutcome::Late,
        ProbeOutcome::NoSocket,
        ProbeOutcome::InterfaceDown,
        ProbeOutcome::NoRoute,
    ];

    /// Position in [`ProbeOutcome::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// What the outcome says about the host: `Some(true)` answered, `Some(false)`
    /// refused or silent, `None` for a local failure (discarded).
    pub fn verdict(self) -> Option<bool> {
        match self {
            ProbeOutcome::Answered => Some(true),
            ProbeOutcome::Refused | ProbeOutcome::Silent => Some(false),
            ProbeOutcome::Late
            | ProbeOutcome::NoSocket
            | ProbeOutcome::InterfaceDown
            | ProbeOutcome::NoRoute => None,
        }
    }

    /// The name on the wire and in metrics.
    pub fn name(self) -> &'static str {
        match self {
            ProbeOutcome::Answered => "answered",
            ProbeOutcome::Refused => "refused",
            ProbeOutcome::Silent => "silent",
            ProbeOutcome::Late => "late",
            ProbeOutcome::NoSocket => "no-socket",
            ProbeOutcome::InterfaceDown => "interface-down",
            ProbeOutcome::NoRoute => "no-route",
        }
    }
}

impl fmt::Display for ProbeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_host_outcomes_count() {
        for (i, outcome) in ProbeOutcome::ALL.into_iter().enumerate() {
            assert_eq!(outcome.index(), i);
            let wire = serde_json::to_string(&outcome).expect("serialize");
            assert_eq!(wire, format!("\"{}\"", outcome.name()));
        }
        let counted: Vec<_> = ProbeOutcome::ALL
            .into_iter()
            .filter(|o| o.verdict().is_some())
            .collect();
        assert_eq!(
            counted,
            [
                ProbeOutcome::Answered,
                ProbeOutcome::Refused,
                ProbeOutcome::Silent
            ]
        );
    }
}
