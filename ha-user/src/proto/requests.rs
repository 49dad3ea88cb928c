//! What the CLI asks of a running controller.

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// One request. The answer (`ok` of the reply) is, by request: [`Status`] for
/// `status`, [`Stats`] for `stats`, [`ChangeReport`] for the admin commands, and for
/// `events` a stream of [`StreamItem`]s.
///
/// [`Status`]: super::Status
/// [`Stats`]: super::Stats
/// [`ChangeReport`]: super::ChangeReport
/// [`StreamItem`]: super::StreamItem
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// Pin `prefix` to `host` (a name or an address) until `clear-owner`.
    SetOwner {
        prefix: Ipv4Net,
        host: String,
        /// Keep it there even while the host is down or drained.
        force: bool,
    },
    /// Release the pin of `prefix`.
    ClearOwner { prefix: Ipv4Net },
    /// Move every prefix off `host` until `undrain`: new connections go elsewhere at
    /// once, established ones may finish for up to `drain_timeout_ms`; `now`: move
    /// them too, at once.
    Drain {
        host: String,
        #[serde(default)]
        now: bool,
    },
    /// Let `host` take prefixes again.
    Undrain { host: String },
    /// Each prefix's owner and why, each host's health.
    Status,
    /// The data path's counters.
    Stats,
    /// Follow the daemon's events. `since`: first replay the events the daemon still
    /// holds whose sequence number is above it (`0`: all of them); none: only what
    /// happens from now on.
    Events { since: Option<u64> },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_tagged_json() {
        let request = Request::SetOwner {
            prefix: "192.168.1.64/27".parse().expect("prefix"),
            host: "host2".into(),
            force: false,
        };
        let text = serde_json::to_string(&request).expect("serialize");
        assert_eq!(
            text,
            r#"{"command":"set-owner","prefix":"192.168.1.64/27","host":"host2","force":false}"#
        );
        assert_eq!(
            serde_json::from_str::<Request>(&text).expect("parse"),
            request
        );
        let events = Request::Events { since: Some(0) };
        let text = serde_json::to_string(&events).expect("serialize");
        assert_eq!(text, r#"{"command":"events","since":0}"#);
    }

    #[test]
    fn unknown_commands_and_fields_are_refused() {
        for bad in [
            r#"{"command":"reboot"}"#,
            r#"{"command":"drain","host":"h","x":1}"#,
            r#"{"command":"clear-owner","prefix":"not a prefix"}"#,
        ] {
            assert!(serde_json::from_str::<Request>(bad).is_err(), "{bad}");
        }
    }
}
