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
    #[error(
        "the control socket's directory {} {why}: another user could replace the socket \
         under the controller; use a directory only root may write into",
        dir.display()
    )]
    UnsafeDir { dir: PathBuf, why: String },
}

/// Refuses the directories that would hold the socket at `path` (its directory and
/// every one above it) when one is another user's or open to others.
fn check_dirs(path: &Path) -> Result<(), SocketPathError> {
    super::dirs::check_above(path).map_err(|unsafe_dir| SocketPathError::UnsafeDir {
        dir: unsafe_dir.dir,
        why: unsafe_dir.why,
    })
}

/// Sets the process's umask until dropped, then puts the previous one back.
struct Umask(libc::mode_t);

impl Umask {
    fn set(mask: libc::mode_t) -> Umask {
        // SAFETY: umask has no preconditions and cannot fail.
        Umask(unsafe { libc::umask(mask) })
    }
}

impl Drop for Umask {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::umask(self.0) };
    }
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
    check_dirs(path)
}

/// Binds `path` with mode 0600, replacing a stale socket (the caller holds the
/// controller lock) and nothing else; a missing directory is made 0700. The socket
/// is created under umask 0177, so it is never anyone else's for a moment; a
/// directory of another user, or one others may write into, is refused.
pub fn bind(path: &Path) -> Result<UnixListener, BindError> {
    use std::os::unix::fs::DirBuilderExt as _;
    let bind_err = |source| BindError {
        path: path.to_owned(),
        source,
    };
    let refused =
        |why: SocketPathError| bind_err(io::Error::new(io::ErrorKind::PermissionDenied, why));
    check_dirs(path).map_err(refused)?;
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(bind_err)?;
    }
    // One made by someone else meanwhile is refused too.
    check_dirs(path).map_err(refused)?;
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
    let listener = {
        let _umask = Umask::set(0o177);
        UnixListener::bind(path)
    };
    listener.map_err(bind_err)
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
        let (stream, _) = pacer.next(|| listener.accept()).await;
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
mod tests;
