//! From what a probe saw to its [`ProbeOutcome`]: which failures are the host's and
//! which are the controller's own (see [`crate::model::ProbeOutcome`]).
//!
//! A timed-out probe is the host's (silent) only if the controller was listening
//! throughout. Three delays of the controller are measured on every probe, and a
//! timeout with any of them above [`late_limit`] is discarded as late:
//!
//! - the request sent late: the deadline was armed, then the thread was held up
//!   before the request left (`sent_lag`);
//! - a step of the exchange noticed late: a new TCP connection's handshake finished
//!   in the kernel (SYN sent + the kernel's own round-trip measurement, `TCP_INFO`)
//!   well before the controller noticed and sent the request on it (`step_lag`);
//! - the timeout itself observed late: the deadline passed while the controller was
//!   not running (`late_by`).
//!
//! An answer that was in the socket when the controller woke up is never a timeout:
//! tokio polls the probe before its timer, and its reactor records the socket's
//! readiness before it fires timers, so such a probe completes as answered.

use std::{io, time::Duration};

use tokio::time::Instant;

use super::error::ProbeError;
use crate::model::ProbeOutcome;

/// What one probe saw, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub outcome: ProbeOutcome,
    /// Why, unless answered: `connection refused`, `timeout after 5 ms`, ...
    pub error: Option<String>,
    /// When its deadline was armed (the probe started).
    pub started: Instant,
    /// From `started` to the outcome: the answer read, the refusal seen, the timeout
    /// observed.
    pub waited: Duration,
    /// From `started` to the request sent.
    pub sent_lag: Duration,
    /// The controller's delay noticed inside the exchange (see the module docs).
    pub step_lag: Duration,
    /// How long after its deadline a timeout was observed (zero otherwise).
    pub late_by: Duration,
}

impl Probe {
    /// The probe's outcome from what it returned: `Ok` (answered), an error, or
    /// `None` for a timeout after `timeout`.
    pub fn judge(
        result: Option<Result<(), ProbeError>>,
        timeout: Duration,
        started: Instant,
        sent_lag: Duration,
        step_lag: Duration,
    ) -> Probe {
        let now = Instant::now();
        let waited = now.saturating_duration_since(started);
        let late_by = match result {
            None => waited.saturating_sub(timeout),
            Some(_) => Duration::ZERO,
        };
        let (outcome, error) = match result {
            Some(Ok(())) => (ProbeOutcome::Answered, None),
            Some(Err(err)) => (classify(&err), Some(err.reason())),
            None => {
                let limit = late_limit(timeout);
                let late = sent_lag > limit || step_lag > limit || late_by > limit;
                let outcome = if late {
                    ProbeOutcome::Late
                } else {
                    ProbeOutcome::Silent
                };
                let error = ProbeError::Timeout {
                    ms: timeout.as_millis() as u64,
                };
                (outcome, Some(error.reason()))
            }
        };
        Probe {
            outcome,
            error,
            started,
            waited,
            sent_lag,
            step_lag,
            late_by,
        }
    }

    /// The probe after a look at the LAN interface: a refusal or a silence while it
    /// is down is the interface's, not the host's.
    pub fn interface_down(mut self) -> Probe {
        if self.outcome.verdict() == Some(false) {
            self.outcome = ProbeOutcome::InterfaceDown;
        }
        self
    }
}

/// How much of the controller's own delay a timed-out probe tolerates before it is
/// discarded: half its timeout, and at least 2 ms (tokio's timer rounds deadlines up
/// to the next millisecond, so up to ~1 ms late is the timer, not a stall).
pub fn late_limit(timeout: Duration) -> Duration {
    (timeout / 2).max(Duration::from_millis(2))
}

/// The outcome a probe's error means.
pub fn classify(err: &ProbeError) -> ProbeOutcome {
    match err {
        ProbeError::Timeout { .. } => ProbeOutcome::Silent,
        ProbeError::Refused
        | ProbeError::Closed
        | ProbeError::StatusLine { .. }
        | ProbeError::Status { .. }
        | ProbeError::Unreachable { .. } => ProbeOutcome::Refused,
        ProbeError::IcmpSocket { .. } => ProbeOutcome::NoSocket,
        ProbeError::Connect { source }
        | ProbeError::Http { source }
        | ProbeError::Icmp { source } => local_cause(source).unwrap_or(ProbeOutcome::Refused),
    }
}

/// The local failure an I/O error is, if it is one: no descriptor, buffer, memory or
/// local port (`NoSocket`), the interface down, no route or the router's own rules
/// refusing the probe (`NoRoute`).
pub fn local_cause(err: &io::Error) -> Option<ProbeOutcome> {
    match err.raw_os_error()? {
        libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EADDRNOTAVAIL => {
            Some(ProbeOutcome::NoSocket)
        }
        libc::ENETDOWN => Some(ProbeOutcome::InterfaceDown),
        // No route, or the router's own rules (or privileges) refuse the probe.
        libc::ENETUNREACH | libc::EPERM | libc::EACCES => Some(ProbeOutcome::NoRoute),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn os(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    #[test]
    fn errors_of_the_host_and_of_the_controller() {
        let refused = [
            ProbeError::Refused,
            ProbeError::Closed,
            ProbeError::Status { status: 503 },
            ProbeError::Connect {
                source: os(libc::EHOSTUNREACH),
            },
            ProbeError::Http {
                source: os(libc::ECONNRESET),
            },
        ];
        for err in refused {
            assert_eq!(classify(&err), ProbeOutcome::Refused, "{}", err.reason());
        }
        let local = [
            (os(libc::EMFILE), ProbeOutcome::NoSocket),
            (os(libc::ENFILE), ProbeOutcome::NoSocket),
            (os(libc::ENOBUFS), ProbeOutcome::NoSocket),
            (os(libc::EADDRNOTAVAIL), ProbeOutcome::NoSocket),
            (os(libc::ENETDOWN), ProbeOutcome::InterfaceDown),
            (os(libc::ENETUNREACH), ProbeOutcome::NoRoute),
            (os(libc::EPERM), ProbeOutcome::NoRoute),
        ];
        for (source, want) in local {
            let err = ProbeError::Connect { source };
            assert_eq!(classify(&err), want, "{}", err.reason());
        }
        let socket = ProbeError::IcmpSocket {
            source: os(libc::EPERM),
        };
        assert_eq!(classify(&socket), ProbeOutcome::NoSocket);
    }

    #[test]
    fn a_timeout_is_silent_unless_the_controller_was_held_up() {
        let timeout = ms(5);
        let judge = |elapsed: u64, sent_lag: u64, step_lag: u64| {
            let started = Instant::now() - ms(elapsed);
            Probe::judge(None, timeout, started, ms(sent_lag), ms(step_lag))
        };
        // On time (the timer's millisecond of rounding is not a stall).
        let on_time = judge(6, 0, 0);
        assert_eq!(on_time.outcome, ProbeOutcome::Silent, "{on_time:?}");
        assert!(
            on_time.late_by >= ms(1) && on_time.late_by < ms(2),
            "{on_time:?}"
        );
        assert_eq!(on_time.error.as_deref(), Some("timeout after 5 ms"));
        // The timeout observed 25 ms after its deadline.
        assert_eq!(judge(30, 0, 0).outcome, ProbeOutcome::Late);
        // The handshake noticed 3 ms after the kernel completed it.
        assert_eq!(judge(5, 0, 3).outcome, ProbeOutcome::Late);
        // The request sent 3 ms after the deadline was armed.
        assert_eq!(judge(5, 3, 0).outcome, ProbeOutcome::Late);
        // Lateness within the limit.
        assert_eq!(late_limit(timeout), Duration::from_micros(2500));
        assert_eq!(late_limit(ms(1)), ms(2));
        assert_eq!(judge(7, 2, 2).outcome, ProbeOutcome::Silent);
        assert_eq!(late_limit(ms(100)), ms(50));

        let answered = Probe::judge(Some(Ok(())), timeout, Instant::now(), ms(0), ms(0));
        assert_eq!(
            (answered.outcome, answered.error),
            (ProbeOutcome::Answered, None)
        );
        let refused = Probe::judge(
            Some(Err(ProbeError::Refused)),
            timeout,
            Instant::now(),
            ms(0),
            ms(0),
        );
        assert_eq!(refused.outcome, ProbeOutcome::Refused);
        assert_eq!(
            refused.clone().interface_down().outcome,
            ProbeOutcome::InterfaceDown
        );
        assert_eq!(
            answered_interface(),
            ProbeOutcome::Answered,
            "an answer stays an answer"
        );
    }

    fn answered_interface() -> ProbeOutcome {
        Probe::judge(Some(Ok(())), ms(5), Instant::now(), ms(0), ms(0))
            .interface_down()
            .outcome
    }
}
