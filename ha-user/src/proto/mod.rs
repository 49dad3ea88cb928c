//! The control protocol between the CLI and the daemon, as types: serde derives the
//! wire form from them, and both sides (and the tests) decode into the same types,
//! refusing fields they do not know.
//!
//! On the control socket (a Unix stream socket, mode 0600) each side writes one JSON
//! object per line. The client sends one [`RequestLine`]:
//!
//! ```json
//! {"protocol":1,"request":{"command":"set-owner","prefix":"192.168.1.64/27","host":"host2","force":false}}
//! ```
//!
//! and the daemon answers with one [`Reply`], once what was asked is applied:
//!
//! ```json
//! {"protocol":1,"ok":{"result":{"kind":"steered","host":"host2"},"changes":[...]}}
//! {"protocol":1,"error":{"kind":"unknown-host","message":"unknown host `host9` (hosts: host1, host2)"}}
//! ```
//!
//! `ok` holds the answer the request names ([`reports::Status`], [`reports::Stats`],
//! [`reports::ChangeReport`]); `--json` prints exactly that. An
//! [`events`](requests::Request::Events) request keeps the connection open: the
//! daemon answers [`StreamItem::Subscribed`], then sends one [`StreamItem`] per line
//! (events, or how many a slow reader missed) until it shuts down.
//!
//! Both sides check [`PROTOCOL`] before decoding anything else, so a CLI and a daemon
//! of different versions say so instead of misreading each other. A request line
//! without `protocol` comes from a CLI older than the versioned protocol: it gets an
//! answer in the shape that CLI reads (`{"error":"..."}`).

pub mod events;
pub mod reports;
pub mod requests;
pub mod socket;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::DeserializeOwned};

pub use self::{
    events::{Event, EventRecord, StreamItem},
    reports::{ChangeReport, Stats, Status},
    requests::Request,
};

/// The version of the control protocol this build speaks. Every change of a type of
/// this module that an older peer would misread (a field renamed, removed, or
/// retyped, a new required field) must bump it.
pub const PROTOCOL: u32 = 1;

/// The version of `ha-user` this build is, named in mismatch messages.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the client sends: one line per connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestLine {
    pub protocol: u32,
    pub request: Request,
}

impl RequestLine {
    /// `request` in this build's protocol.
    pub fn new(request: Request) -> Self {
        Self {
            protocol: PROTOCOL,
            request,
        }
    }
}

/// Why a request was refused: a kind scripts can match and a message that names
/// what was wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(deny_unknown_fields)]
#[error("{message}")]
pub struct ErrorReply {
    pub kind: ErrorKind,
    pub message: String,
}

/// The kinds of [`ErrorReply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The request line is not a request of this protocol (malformed JSON, an
    /// unknown command or field, a line too long).
    BadRequest,
    /// The client speaks another protocol version.
    ProtocolMismatch,
    /// No configured host has that name or address.
    UnknownHost,
    /// The prefix is not configured.
    UnknownPrefix,
    /// The prefix has host bits set (`192.168.1.65/27` for `192.168.1.64/27`).
    HostBits,
    /// The change was applied but the pins and drains could not be saved: they will
    /// not survive a restart.
    StateNotSaved,
    /// The data path's maps could not be read.
    Datapath,
    /// The controller is stopping.
    ShuttingDown,
    /// Too many connections of that kind are open (event streams): try later.
    Busy,
    /// A fault of the controller itself (a bug): the message says what.
    Internal,
}

/// What the daemon answers: `{"protocol":1,"ok":...}` or
/// `{"protocol":1,"error":{...}}`.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply<T> {
    Ok(T),
    Error(ErrorReply),
}

/// A peer of another protocol version.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VersionMismatch {
    #[error(
        "the controller speaks control protocol {found}, this ha-user (version {VERSION}) \
         speaks protocol {PROTOCOL}: use the ha-user that came with the running \
         controller, or restart the controller with this version"
    )]
    Daemon { found: u32 },
    #[error(
        "the controller speaks an older control protocol (one without a version number; \
         this ha-user, version {VERSION}, speaks protocol {PROTOCOL}): use the ha-user that \
         came with the running controller, or restart the controller with this version"
    )]
    UnversionedDaemon,
    #[error(
        "this controller (version {VERSION}) speaks control protocol {PROTOCOL}, the \
         request protocol {found}: use the ha-user that came with the running controller \
         (`ha-user --version` prints {VERSION})"
    )]
    Client { found: u32 },
    #[error(
        "this controller (version {VERSION}) speaks control protocol {PROTOCOL}, the request \
         came from an older ha-user without a protocol version: use the ha-user that came \
         with the running controller (`ha-user --version` prints {VERSION})"
    )]
    UnversionedClient,
}

/// Why a line from the daemon could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Version(#[from] VersionMismatch),
    #[error("the controller sent an answer this ha-user cannot read ({source}): {line}")]
    Malformed {
        line: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The `protocol` field of a line, reading nothing else: `Ok(None)` when the line is
/// a JSON object without one.
pub fn protocol_of(line: &str) -> Result<Option<u32>, serde_json::Error> {
    /// Only the key wanted; everything else is ignored.
    #[derive(Deserialize)]
    struct Peek {
        protocol: Option<u32>,
    }
    serde_json::from_str::<Peek>(line).map(|peek| peek.protocol)
}

impl<T: DeserializeOwned> Reply<T> {
    /// Reads one line from the daemon: its protocol first, then the whole line as a
    /// reply carrying `T`, unknown fields refused.
    pub fn decode(line: &str) -> Result<Self, DecodeError> {
        let malformed = |source| DecodeError::Malformed {
            line: line.trim_end().to_owned(),
            source,
        };
        match protocol_of(line) {
            Ok(Some(PROTOCOL)) => {}
            Ok(Some(found)) => return Err(VersionMismatch::Daemon { found }.into()),
            // The daemons before the versioned protocol answered {"ok":..} or
            // {"error":"..."}, without a version.
            Ok(None) => return Err(VersionMismatch::UnversionedDaemon.into()),
            Err(source) => return Err(malformed(source)),
        }
        serde_json::from_str(line).map_err(malformed)
    }
}

impl<T> Reply<T> {
    /// The answer, or the daemon's refusal as an error.
    pub fn into_result(self) -> Result<T, ErrorReply> {
        match self {
            Reply::Ok(answer) => Ok(answer),
            Reply::Error(error) => Err(error),
        }
    }
}

/// The wire form of [`Reply`]: exactly one of `ok` and `error`.
#[derive(Serialize)]
struct WireRef<'a, T> {
    protocol: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    ok: Option<&'a T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a ErrorReply>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire<T> {
    protocol: u32,
    ok: Option<T>,
    error: Option<ErrorReply>,
}

impl<T: Serialize> Serialize for Reply<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (ok, error) = match self {
            Reply::Ok(answer) => (Some(answer), None),
            Reply::Error(error) => (None, Some(error)),
        };
        WireRef {
            protocol: PROTOCOL,
            ok,
            error,
        }
        .serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Reply<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let Wire {
            protocol,
            ok,
            error,
        } = Wire::deserialize(deserializer)?;
        if protocol != PROTOCOL {
            return Err(D::Error::custom(format!(
                "protocol {protocol}, expected {PROTOCOL}"
            )));
        }
        match (ok, error) {
            (Some(answer), None) => Ok(Reply::Ok(answer)),
            (None, Some(error)) => Ok(Reply::Error(error)),
            (Some(_), Some(_)) => Err(D::Error::custom("both `ok` and `error`")),
            (None, None) => Err(D::Error::custom("neither `ok` nor `error`")),
        }
    }
}

/// The answer a daemon of this version gives a request without `protocol` (from a
/// CLI older than the versioned protocol), in the shape that CLI reads.
#[derive(Debug, Serialize)]
pub struct UnversionedError {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_flat_and_checked_both_ways() {
        let ok: Reply<Vec<u32>> = Reply::Ok(vec![1, 2]);
        let text = serde_json::to_string(&ok).expect("serialize");
        assert_eq!(text, r#"{"protocol":1,"ok":[1,2]}"#);
        assert_eq!(Reply::<Vec<u32>>::decode(&text).expect("decode"), ok);

        let error: Reply<Vec<u32>> = Reply::Error(ErrorReply {
            kind: ErrorKind::UnknownHost,
            message: "unknown host `h9`".into(),
        });
        let text = serde_json::to_string(&error).expect("serialize");
        assert_eq!(
            text,
            r#"{"protocol":1,"error":{"kind":"unknown-host","message":"unknown host `h9`"}}"#
        );
        assert_eq!(Reply::<Vec<u32>>::decode(&text).expect("decode"), error);

        for bad in [
            r#"{"protocol":1}"#,
            r#"{"protocol":1,"ok":[],"error":{"kind":"datapath","message":"x"}}"#,
            r#"{"protocol":1,"ok":[],"extra":true}"#,
            r#"{"protocol":1,"error":{"kind":"nope","message":"x"}}"#,
            "not json",
        ] {
            let err = Reply::<Vec<u32>>::decode(bad).expect_err(bad);
            assert!(matches!(err, DecodeError::Malformed { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn another_version_is_named_not_misread() {
        let err = Reply::<Vec<u32>>::decode(r#"{"protocol":2,"ok":{"whatever":1}}"#)
            .expect_err("version 2");
        assert!(
            matches!(
                err,
                DecodeError::Version(VersionMismatch::Daemon { found: 2 })
            ),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains("protocol 2") && message.contains("speaks protocol 1"),
            "{message}"
        );
        // The daemons before the versioned protocol.
        let err =
            Reply::<Vec<u32>>::decode(r#"{"error":"malformed request"}"#).expect_err("unversioned");
        assert!(
            matches!(
                err,
                DecodeError::Version(VersionMismatch::UnversionedDaemon)
            ),
            "{err:?}"
        );
    }

    #[test]
    fn request_lines_carry_the_version() {
        let line = RequestLine::new(Request::Status);
        let text = serde_json::to_string(&line).expect("serialize");
        assert_eq!(text, r#"{"protocol":1,"request":{"command":"status"}}"#);
        assert_eq!(protocol_of(&text).expect("json"), Some(1));
        assert_eq!(protocol_of(r#"{"command":"status"}"#).expect("json"), None);
        assert!(
            serde_json::from_str::<RequestLine>(
                r#"{"protocol":1,"request":{"command":"status"},"x":1}"#
            )
            .is_err()
        );
    }
}
