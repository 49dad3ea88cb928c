//! The server side of the control socket (mode 0600, root only): one request line
//! per connection. Requests go to the main loop, which answers once it has applied
//! them (a command returns after the data-path map is written); an `events` request
//! is served here, from the [`EventBus`], and never reaches the loop.
//!
//! Connections are bounded ([`super::conns`]): the request line must arrive within
//! [`Limits::request`], a reader that stops reading is dropped after
//! [`Limits::write`], and at most half of the connections may be event streams (the
//! others are refused as busy).

use std::{
    io,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use serde::Serialize;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream, unix::OwnedWriteHalf},
    sync::{broadcast::error::RecvError, mpsc, oneshot},
};
use tracing::debug;

use super::{
    conns::{Bound, Pacer, Slot},
    events::{EventBus, Subscription},
};
use crate::proto::{
    ChangeReport, ErrorKind, ErrorReply, PROTOCOL, Reply, Request, RequestLine, Stats, Status,
    StreamItem, UnversionedError, VersionMismatch, protocol_of, socket::MAX_REQUEST,
};

/// An answer of the loop, as it goes on the wire (`ok` of the reply).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Answer {
    Status(Status),
    Stats(Stats),
    Change(ChangeReport),
}

/// A request for the loop with the channel its reply goes back on.
#[derive(Debug)]
pub struct Command {
    pub request: Request,
    pub reply: oneshot::Sender<Reply<Answer>>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot create the control socket {}", path.display())]
pub struct BindError {
    path: PathBuf,
    #[source]
    source: io::Error,
}

/// The longest path a Unix socket address holds (`sun_path` is 108 bytes with the
/// terminating NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// Why a control socket path cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SocketPathError {
    #[error(
        "the control socket path {} is {len} bytes long; a Unix socket path holds at most \
         {MAX_SOCKET_PATH}: choose a shorter `control_socket`",
        path.display()
    )]
    TooLong { path: PathBuf, len: usize },
    #[error(
        "the control socket path {} exists and is not a socket ({what}); ha never deletes \
         it: choose another `control_socket`",
        path.display()
    )]
    NotSocket { path: PathBuf, what: &'static str },
}

/// What is at `path`, if anything but a socket (`Ok(None)`: a socket or nothing).
fn not_a_socket(path: &Path) -> io::Result<Option<&'static str>> {
    use std::os::unix::fs::FileTypeExt as _;
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            let kind = meta.file_type();
            Ok((!kind.is_socket()).then(|| crate::config::file::kind_of(kind)))
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// Refuses a control socket path that cannot be bound, or whose binding would
/// replace something that is not a socket, before anything is created.
pub fn check_path(path: &Path) -> Result<(), SocketPathError> {
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(SocketPathError::TooLong {
            path: path.to_owned(),
            len,
        });
    }
    // An unreadable path is left to `bind`, which says why.
    if let Ok(Some(what)) = not_a_socket(path) {
        return Err(SocketPathError::NotSocket {
            path: path.to_owned(),
            what,
        });
    }
    Ok(())
}

/// Binds `path` with mode 0600, replacing a stale socket (the caller holds the
/// controller lock) and nothing else; a missing directory is made 0700.
pub fn bind(path: &Path) -> Result<UnixListener, BindError> {
    use std::os::unix::fs::DirBuilderExt as _;
    let bind_err = |source| BindError {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(bind_err)?;
    }
    match not_a_socket(path) {
        Ok(None) => {}
        Ok(Some(what)) => {
            let refused = SocketPathError::NotSocket {
                path: path.to_owned(),
                what,
            };
            return Err(bind_err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                refused,
            )));
        }
        Err(err) => return Err(bind_err(err)),
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(bind_err(err)),
    }
    let listener = UnixListener::bind(path).map_err(bind_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
    Ok(listener)
}

/// What every connection needs.
#[derive(Clone)]
pub struct Served {
    pub commands: mpsc::Sender<Command>,
    pub events: EventBus,
    /// Held by every subscription: the daemon waits for the last to drop before it
    /// exits, so the final events reach their readers.
    pub alive: mpsc::Sender<()>,
}

/// How the control socket bounds its clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The request line must arrive within this (the CLI sends it at once).
    pub request: Duration,
    /// A reader that has not taken a line within this is dropped.
    pub write: Duration,
    /// At most this many connections...
    pub connections: usize,
    /// ... and at most the descriptor limit divided by this.
    pub share: usize,
}

impl Default for Limits {
    /// 5 s for a request, 10 s for a write, 256 connections or a quarter of the
    /// descriptor limit.
    fn default() -> Limits {
        Limits {
            request: Duration::from_secs(5),
            write: Duration::from_secs(10),
            connections: 256,
            share: 4,
        }
    }
}

/// What the connections share: the bound and how many stream events.
#[derive(Clone)]
struct Shared {
    served: Served,
    limits: Limits,
    bound: Bound,
    subscribers: Arc<AtomicUsize>,
}

/// Accepts connections until the task is aborted, within the default [`Limits`].
pub async fn serve(listener: UnixListener, served: Served) {
    serve_within(listener, served, Limits::default()).await;
}

/// Accepts connections until the task is aborted, within `limits`.
pub async fn serve_within(listener: UnixListener, served: Served, limits: Limits) {
    let shared = Shared {
        served,
        limits,
        bound: Bound::new(limits.connections, limits.share),
        subscribers: Arc::default(),
    };
    let mut pacer = Pacer::new("the control socket");
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                pacer.accepted();
                stream
            }
            Err(err) => {
                tokio::time::sleep(pacer.failed(&err)).await;
                continue;
            }
        };
        let slot = shared.bound.admit().await;
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(err) = handle(stream, slot, &shared).await {
                debug!("control connection: {err}");
            }
        });
    }
}

fn refusal(kind: ErrorKind, message: impl Into<String>) -> Reply<Answer> {
    Reply::Error(ErrorReply {
        kind,
        message: message.into(),
    })
}

/// Writes `value` as one line; a reader that does not take it within `within` is
/// given up on (an error).
async fn write_line(
    write: &mut OwnedWriteHalf,
    value: &impl Serialize,
    within: Duration,
) -> io::Result<()> {
    let mut text = serde_json::to_vec(value).map_err(io::Error::other)?;
    text.push(b'\n');
    tokio::time::timeout(within, write.write_all(&text))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading"))?
}

/// A request line as the server reads it.
#[derive(Debug)]
pub enum Decoded {
    Request(Request),
    /// From a CLI before the versioned protocol: answered in the shape it reads.
    Unversioned(UnversionedError),
    /// Another protocol version, or not a request: the refusal to send back.
    Refused(Reply<Answer>),
}

/// Reads one request line: its protocol first, then the request.
pub fn decode_request(line: &str) -> Decoded {
    let request = match protocol_of(line) {
        Ok(None) => {
            return Decoded::Unversioned(UnversionedError {
                error: VersionMismatch::UnversionedClient.to_string(),
            });
        }
        Ok(Some(found)) if found != PROTOCOL => {
            let message = VersionMismatch::Client { found }.to_string();
            return Decoded::Refused(refusal(ErrorKind::ProtocolMismatch, message));
        }
        Ok(Some(_)) => serde_json::from_str::<RequestLine>(line).map(|line| line.request),
        Err(err) => Err(err),
    };
    match request {
        Ok(request) => Decoded::Request(request),
        Err(err) => Decoded::Refused(refusal(
            ErrorKind::BadRequest,
            format!("malformed request: {err}"),
        )),
    }
}

/// Reads one request line as bytes: text or the refusal to send back.
pub fn decode_bytes(line: &[u8]) -> Decoded {
    match std::str::from_utf8(line) {
        Ok(text) => decode_request(text),
        Err(err) => Decoded::Refused(refusal(
            ErrorKind::BadRequest,
            format!(
                "malformed request: not UTF-8 text (an invalid byte at offset {})",
                err.valid_up_to()
            ),
        )),
    }
}

async fn handle(stream: UnixStream, mut slot: Slot, shared: &Shared) -> io::Result<()> {
    let Shared {
        served,
        limits,
        bound,
        subscribers,
    } = shared;
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST as u64));
    slot.request(limits.request, reader.read_until(b'\n', &mut line))
        .await
        .map_err(|cut| io::Error::new(io::ErrorKind::TimedOut, cut))??;
    let request = match decode_bytes(&line) {
        Decoded::Request(request) => request,
        Decoded::Unversioned(error) => {
            write_line(&mut write, &error, limits.write).await?;
            return write.shutdown().await;
        }
        Decoded::Refused(reply) => {
            write_line(&mut write, &reply, limits.write).await?;
            return write.shutdown().await;
        }
    };
    if let Request::Events { since } = request {
        // Streams are never closed to make room: they may hold half the bound.
        let most = (bound.limit() / 2).max(1);
        let streaming = Streaming::enter(subscribers);
        if streaming.count > most {
            let reply = refusal(
                ErrorKind::Busy,
                format!("{most} event streams are open already; close one or try later"),
            );
            write_line(&mut write, &reply, limits.write).await?;
            return write.shutdown().await;
        }
        return stream_events(reader, write, served, since, limits.write).await;
    }
    let (reply, answer) = oneshot::channel();
    let response = if served
        .commands
        .send(Command { request, reply })
        .await
        .is_err()
    {
        refusal(ErrorKind::ShuttingDown, "the controller is shutting down")
    } else {
        answer.await.unwrap_or_else(|_| {
            refusal(
                ErrorKind::ShuttingDown,
                "the controller dropped the request",
            )
        })
    };
    write_line(&mut write, &response, limits.write).await?;
    write.shutdown().await
}

/// One event stream counted for as long as it lives.
struct Streaming<'a> {
    streams: &'a AtomicUsize,
    /// Streams open with this one.
    count: usize,
}

impl Streaming<'_> {
    fn enter(streams: &AtomicUsize) -> Streaming<'_> {
        let count = streams.fetch_add(1, Ordering::SeqCst) + 1;
        Streaming { streams, count }
    }
}

impl Drop for Streaming<'_> {
    fn drop(&mut self) {
        self.streams.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Sends the subscription's replay and then every event until the bus closes or the
/// reader goes away.
async fn stream_events(
    mut reader: impl tokio::io::AsyncRead + Unpin,
    mut write: OwnedWriteHalf,
    served: &Served,
    since: Option<u64>,
    within: Duration,
) -> io::Result<()> {
    let _alive = served.alive.clone();
    let Some(Subscription { replay, mut live }) = served.events.subscribe(since) else {
        let reply = refusal(ErrorKind::ShuttingDown, "the controller is shutting down");
        write_line(&mut write, &reply, within).await?;
        return write.shutdown().await;
    };
    let item = |item: StreamItem| Reply::Ok(item);
    write_line(
        &mut write,
        &item(StreamItem::Subscribed {
            replayed: replay.len() as u64,
        }),
        within,
    )
    .await?;
    for record in replay {
        write_line(
            &mut write,
            &item(StreamItem::Event((*record).clone())),
            within,
        )
        .await?;
    }
    let mut ignored = [0u8; 64];
    loop {
        let next = tokio::select! {
            next = live.recv() => next,
            // Anything the reader sends is ignored; its end ends the subscription.
            read = reader.read(&mut ignored) => match read {
                Ok(0) | Err(_) => return Ok(()),
                Ok(_) => continue,
            },
        };
        let line = match next {
            Ok(record) => item(StreamItem::Event((*record).clone())),
            Err(RecvError::Lagged(missed)) => item(StreamItem::Lagged { missed }),
            Err(RecvError::Closed) => break,
        };
        write_line(&mut write, &line, within).await?;
    }
    write.shutdown().await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncBufReadExt as _;

    use super::*;
    use crate::proto::{
        Event,
        socket::{Connection, ControlError},
    };

    struct Socket {
        dir: PathBuf,
        path: PathBuf,
    }

    impl Socket {
        fn new(name: &str) -> Socket {
            let dir = std::env::temp_dir().join(format!("ha-server-{name}-{}", std::process::id()));
            Socket {
                path: dir.join("ha.sock"),
                dir,
            }
        }
    }

    impl Drop for Socket {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// A server whose loop answers `drain` with an empty report and refuses the rest;
    /// the accept loop's task and the receiver of the subscriptions' tokens.
    fn start(
        socket: &Socket,
        events: EventBus,
    ) -> (tokio::task::JoinHandle<()>, mpsc::Receiver<()>) {
        start_within(socket, events, Limits::default())
    }

    /// [`start`] within `limits`.
    fn start_within(
        socket: &Socket,
        events: EventBus,
        limits: Limits,
    ) -> (tokio::task::JoinHandle<()>, mpsc::Receiver<()>) {
        let listener = bind(&socket.path).expect("bind");
        let mode = std::fs::metadata(&socket.path)
            .expect("stat")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "the control socket must be private");
        let (commands, mut requests) = mpsc::channel(1);
        let (alive, alive_rx) = mpsc::channel(1);
        let server = tokio::spawn(serve_within(
            listener,
            Served {
                commands,
                events,
                alive,
            },
            limits,
        ));
        tokio::spawn(async move {
            while let Some(Command { request, reply }) = requests.recv().await {
                let result = match request {
                    Request::Drain { host, .. } => Reply::Ok(Answer::Change(ChangeReport {
                        result: crate::proto::reports::ChangeResult::Drained { host },
                        changes: Vec::new(),
                    })),
                    _ => refusal(ErrorKind::UnknownHost, "unknown host `x`"),
                };
                let _ = reply.send(result);
            }
        });
        (server, alive_rx)
    }

    async fn raw(path: &Path, line: &str) -> String {
        let stream = UnixStream::connect(path).await.expect("connect");
        let (read, mut write) = stream.into_split();
        write.write_all(line.as_bytes()).await.expect("write");
        let mut answer = String::new();
        BufReader::new(read)
            .read_line(&mut answer)
            .await
            .expect("answer");
        answer
    }

    #[tokio::test]
    async fn requests_are_answered_typed_and_refusals_have_a_kind() {
        let socket = Socket::new("answer");
        let _alive = start(&socket, EventBus::default());
        let report: ChangeReport = Connection::open(&socket.path)
            .await
            .expect("connect")
            .ask(Request::Drain {
                host: "host3".into(),
                now: true,
            })
            .await
            .expect("answer");
        assert_eq!(report.result.to_string(), "host3 drained");
        let err = Connection::open(&socket.path)
            .await
            .expect("connect")
            .ask::<ChangeReport>(Request::Undrain { host: "x".into() })
            .await
            .expect_err("refused");
        let ControlError::Refused(reply) = err else {
            panic!("expected a refusal, got {err:?}");
        };
        assert_eq!(reply.kind, ErrorKind::UnknownHost);

        let bad = raw(
            &socket.path,
            "{\"protocol\":1,\"request\":{\"command\":\"reboot\"}}\n",
        )
        .await;
        assert!(
            bad.starts_with(r#"{"protocol":1,"error":{"kind":"bad-request""#),
            "{bad}"
        );
    }

    #[tokio::test]
    async fn other_versions_are_told_in_their_own_shape() {
        let socket = Socket::new("version");
        let _alive = start(&socket, EventBus::default());
        let newer = raw(
            &socket.path,
            "{\"protocol\":7,\"request\":{\"command\":\"status\"}}\n",
        )
        .await;
        let reply: Reply<Status> = serde_json::from_str(&newer).expect("a reply of ours");
        let Reply::Error(ErrorReply { kind, message }) = reply else {
            panic!("{newer}");
        };
        assert_eq!(kind, ErrorKind::ProtocolMismatch);
        assert!(
            message.contains("speaks control protocol 1, the request protocol 7"),
            "{message}"
        );
        // The CLIs before the versioned protocol sent `{"command":...}` and read
        // `{"error":"..."}`.
        let older = raw(&socket.path, "{\"command\":\"status\"}\n").await;
        let legacy: std::collections::BTreeMap<String, String> =
            serde_json::from_str(&older).expect("one string field");
        assert!(
            legacy["error"].contains("older ha-user without a protocol version"),
            "{older}"
        );
    }

    #[tokio::test]
    async fn a_subscriber_gets_the_replay_then_live_events_then_lag_notes() {
        let socket = Socket::new("events");
        let events = EventBus::with_capacity(8, 16);
        events.publish(Event::ReloadRefused { why: "boot".into() });
        events.started();
        let (server, mut alive) = start(&socket, events.clone());
        let mut stream = Connection::open(&socket.path)
            .await
            .expect("connect")
            .subscribe(Some(0))
            .await
            .expect("subscribed");
        assert_eq!(stream.replayed, 1);
        let first = stream.next().await.expect("read").expect("an item");
        assert!(
            matches!(&first, StreamItem::Event(record) if record.seq == 1),
            "{first:?}"
        );
        events.publish(Event::ReloadRefused { why: "live".into() });
        let live = stream.next().await.expect("read").expect("an item");
        assert!(
            matches!(&live, StreamItem::Event(r) if r.seq == 2),
            "{live:?}"
        );

        // A reader that does not read: the publisher never waits, the reader is told.
        for n in 0..20_000 {
            events.publish(Event::ReloadRefused {
                why: format!("flood {n} {}", "x".repeat(200)),
            });
        }
        let mut lagged = 0;
        let mut last = 0;
        while last < 20_002 {
            match tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .expect("the stream goes on")
                .expect("read")
                .expect("an item")
            {
                StreamItem::Lagged { missed } => lagged += missed,
                StreamItem::Event(record) => last = record.seq,
                other => panic!("{other:?}"),
            }
        }
        assert!(lagged > 0, "a reader 20,000 events behind missed some");
        events.close();
        assert_eq!(
            stream.next().await.expect("read"),
            None,
            "closed with the bus"
        );
        drop(stream);
        // Every subscription has let go of its token (the accept loop holds one too).
        server.abort();
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), alive.recv())
                .await
                .expect("the last subscription ends"),
            None
        );
    }

    #[test]
    fn request_lines_decode_or_are_refused_by_kind() {
        let kind = |line: &str| match decode_request(line) {
            Decoded::Refused(Reply::Error(error)) => Some(error.kind),
            Decoded::Refused(other) => panic!("a refusal that is not an error: {other:?}"),
            Decoded::Unversioned(_) | Decoded::Request(_) => None,
        };
        assert!(matches!(
            decode_request(r#"{"protocol":1,"request":{"command":"drain","host":"h"}}"#),
            Decoded::Request(Request::Drain { host, now: false }) if host == "h"
        ));
        assert!(matches!(
            decode_request(r#"{"command":"status"}"#),
            Decoded::Unversioned(_)
        ));
        assert_eq!(
            kind(r#"{"protocol":2,"request":{"command":"status"}}"#),
            Some(ErrorKind::ProtocolMismatch)
        );
        for bad in [
            "",
            "not json",
            r#"{"protocol":1}"#,
            r#"{"protocol":1,"request":{"command":"reboot"}}"#,
            r#"{"protocol":"1","request":{"command":"status"}}"#,
        ] {
            assert_eq!(kind(bad), Some(ErrorKind::BadRequest), "{bad}");
        }
    }

    /// A request line that is not UTF-8 gets a bad-request reply saying so, not an
    /// empty answer.
    #[tokio::test]
    async fn invalid_utf8_gets_a_clear_refusal() {
        let socket = Socket::new("utf8");
        let _alive = start(&socket, EventBus::default());
        let stream = UnixStream::connect(&socket.path).await.expect("connect");
        let (read, mut write) = stream.into_split();
        write
            .write_all(b"{\"protocol\":1,\"request\":{\"command\":\"st\xffatus\"}}\n")
            .await
            .expect("write");
        let mut answer = String::new();
        BufReader::new(read)
            .read_line(&mut answer)
            .await
            .expect("answer");
        let reply: Reply<Status> = serde_json::from_str(&answer)
            .unwrap_or_else(|e| panic!("not a reply ({e}): {answer:?}"));
        let Reply::Error(ErrorReply { kind, message }) = reply else {
            panic!("{answer}");
        };
        assert_eq!(kind, ErrorKind::BadRequest, "{message}");
        assert!(message.contains("not UTF-8"), "{message}");
    }

    /// A control socket path naming an existing regular file is refused by the
    /// check and by `bind`, and the file is never deleted.
    #[test]
    fn a_socket_path_over_a_regular_file_is_refused_and_kept() {
        let socket = Socket::new("file");
        std::fs::create_dir_all(&socket.dir).expect("dir");
        std::fs::write(&socket.path, "precious\n").expect("file");
        let checked = check_path(&socket.path).map_err(|e| e.to_string());
        let bound = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async {
                bind(&socket.path)
                    .map(drop)
                    .map_err(|e| format!("{:#}", anyhow::Error::from(e)))
            });
        let after = std::fs::read_to_string(&socket.path);
        assert_eq!(
            after.ok().as_deref(),
            Some("precious\n"),
            "the file was deleted"
        );
        for (what, result) in [("check_path", checked), ("bind", bound)] {
            match result {
                Err(err) if err.contains("exists and is not a socket") => {}
                other => panic!("{what}: expected a refusal, got {other:?}"),
            }
        }
    }

    /// A half-sent request is cut after the request timeout; with more idle
    /// connections than the bound, the idle ones make room, so a well-formed request
    /// is answered at once.
    #[tokio::test]
    async fn idle_and_half_sent_connections_neither_last_nor_hold_up_a_request() {
        use tokio::io::AsyncReadExt as _;
        let socket = Socket::new("idle");
        let limits = Limits {
            request: Duration::from_millis(300),
            write: Duration::from_secs(1),
            connections: 16,
            share: 1,
        };
        let _alive = start_within(&socket, EventBus::default(), limits);
        let mut half = UnixStream::connect(&socket.path).await.expect("connect");
        half.write_all(b"{\"protocol\":1").await.expect("half");
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), half.read_to_end(&mut rest))
            .await
            .expect("closed by the server within 5 s")
            .expect("read");
        assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));

        let mut idle = Vec::new();
        for _ in 0..200 {
            idle.push(UnixStream::connect(&socket.path).await.expect("connect"));
        }
        let started = std::time::Instant::now();
        let asked = async {
            Connection::open(&socket.path)
                .await?
                .ask::<ChangeReport>(Request::Drain {
                    host: "host3".into(),
                    now: true,
                })
                .await
        };
        tokio::time::timeout(Duration::from_secs(2), asked)
            .await
            .expect("answered within 2 s behind 200 idle connections")
            .expect("answer");
        assert!(
            started.elapsed() < limits.request,
            "waited {:?}: the idle connections held it up",
            started.elapsed()
        );
        drop(idle);
    }
}
