//! Why a prefix is where it is: the policy decides it, status, events and metrics
//! show it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a prefix's holder holds it (or why nobody does).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// The configured owner, as at start-up.
    Initial,
    /// Found in the running data path when the controller started (restart).
    Running,
    /// The previous holder went down; this is the first usable candidate.
    Failover,
    /// The previous holder is up but does not answer on the prefix's VIP; this is
    /// the first usable candidate.
    VipNotAnswered,
    /// No candidate is usable (down, drained, or not answering on the VIP): the
    /// prefix follows the kernel route.
    AllDown,
    /// Nobody held the prefix and this candidate became usable.
    Recovered,
    /// The configured owner was up for its whole failback delay and took it back.
    Failback,
    /// The pinned host was up for its whole failback delay and took it back.
    PinResumed,
    /// Pinned by the admin.
    AdminPin,
    /// Pinned by the admin with force: steered there whatever its health.
    AdminForce,
    /// Pinned elsewhere, but the pinned host is down, drained or in its hold-down:
    /// this holder keeps the prefix meanwhile.
    PinWaiting,
    /// The admin cleared the pin.
    AdminClear,
    /// The previous holder was drained.
    Drain,
    /// The admin undrained this host.
    Undrain,
    /// The configuration was reloaded.
    Reconfigured,
}

impl Reason {
    /// Whether this reason only makes sense while the prefix is pinned.
    pub fn is_pin(self) -> bool {
        matches!(
            self,
            Reason::AdminPin | Reason::AdminForce | Reason::PinResumed
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::Initial => "configured owner",
            Reason::Running => "kept from the running data path",
            Reason::Failover => "failover: previous holder down",
            Reason::VipNotAnswered => "failover: previous holder does not answer on the VIP",
            Reason::AllDown => {
                "no usable host: owner and backups down, drained or not answering on the VIP"
            }
            Reason::Recovered => "first usable host after none was",
            Reason::Failback => "failback: owner up for its failback delay",
            Reason::PinResumed => "pinned host up for its failback delay",
            Reason::AdminPin => "pinned by set-owner",
            Reason::AdminForce => "pinned by set-owner --force, whatever its health",
            Reason::PinWaiting => "kept while the pinned host is down, drained or held down",
            Reason::AdminClear => "pin cleared",
            Reason::Drain => "previous holder drained",
            Reason::Undrain => "host undrained",
            Reason::Reconfigured => "configuration reloaded",
        })
    }
}
