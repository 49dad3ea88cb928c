//! The control socket's server, against a stand-in loop.

use std::{os::unix::fs::PermissionsExt as _, time::Duration};

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
fn start(socket: &Socket, events: EventBus) -> (tokio::task::JoinHandle<()>, mpsc::Receiver<()>) {
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

/// Asks the server at `path` to drain host3 now, the request the stub answers.
async fn drain_host3(path: &Path) -> Result<ChangeReport, ControlError> {
    Connection::open(path)
        .await?
        .ask(Request::Drain {
            host: "host3".into(),
            now: true,
        })
        .await
}

#[tokio::test]
async fn requests_are_answered_typed_and_refusals_have_a_kind() {
    let socket = Socket::new("answer");
    let _alive = start(&socket, EventBus::default());
    let report = drain_host3(&socket.path).await.expect("answer");
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
    let reply: Reply<Status> =
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("not a reply ({e}): {answer:?}"));
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
    tokio::time::timeout(Duration::from_secs(2), drain_host3(&socket.path))
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

/// Binds `path` on a throwaway runtime: the listener dropped, or the error's chain.
fn bind_now(path: &Path) -> Result<(), String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            bind(path)
                .map(drop)
                .map_err(|e| format!("{:#}", anyhow::Error::from(e)))
        })
}

/// The control socket is private from the moment it exists: it is created with mode
/// 0600 (under a umask), never created wider and then narrowed. inotify sees every
/// change of a file's attributes (`IN_ATTRIB`), so a `chmod` after the `bind` shows.
#[test]
fn the_control_socket_is_created_private_not_chmod_ed_after() {
    let socket = Socket::new("umask");
    std::fs::create_dir_all(&socket.dir).expect("dir");
    let dir = std::ffi::CString::new(socket.dir.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: plain system calls on a descriptor this test owns.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    assert!(fd >= 0, "inotify_init1: {}", io::Error::last_os_error());
    // SAFETY: a valid descriptor and NUL-terminated path.
    let watch =
        unsafe { libc::inotify_add_watch(fd, dir.as_ptr(), libc::IN_CREATE | libc::IN_ATTRIB) };
    assert!(
        watch >= 0,
        "inotify_add_watch: {}",
        io::Error::last_os_error()
    );
    bind_now(&socket.path).expect("bind");
    let mut buf = [0u8; 4096];
    // SAFETY: `buf` is writable for its length.
    let len = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    // SAFETY: the descriptor is this test's.
    unsafe { libc::close(fd) };
    assert!(len > 0, "no inotify event: {}", io::Error::last_os_error());
    let mut events = Vec::new();
    let mut at = 0;
    let header = std::mem::size_of::<libc::inotify_event>();
    while at + header <= len as usize {
        // SAFETY: the kernel wrote a whole event at `at`.
        let event: libc::inotify_event =
            unsafe { std::ptr::read_unaligned(buf[at..].as_ptr().cast()) };
        let name = &buf[at + header..at + header + event.len as usize];
        let name = String::from_utf8_lossy(name)
            .trim_end_matches('\0')
            .to_owned();
        events.push((event.mask & (libc::IN_CREATE | libc::IN_ATTRIB), name));
        at += header + event.len as usize;
    }
    assert_eq!(
        events,
        vec![(libc::IN_CREATE, "ha.sock".to_owned())],
        "the socket must be created private, with no attribute change after"
    );
    let mode = std::fs::metadata(&socket.path)
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o600);
}

/// A control socket directory that another user owns, or that other users may
/// write into, is refused before anything is bound in it.
#[test]
fn a_control_socket_directory_of_another_user_is_refused() {
    let socket = Socket::new("foreign");
    std::fs::create_dir_all(&socket.dir).expect("dir");
    std::fs::set_permissions(&socket.dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    match bind_now(&socket.path) {
        Err(err) if err.contains("writable by other users") => {}
        other => panic!("a directory of mode 0777: expected a refusal, got {other:?}"),
    }
    assert!(!socket.path.exists(), "bound in the open directory");
    std::fs::set_permissions(&socket.dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED (part): a directory of another user needs root to chown");
        return;
    }
    let dir = std::ffi::CString::new(socket.dir.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(
        unsafe { libc::chown(dir.as_ptr(), 65534, 65534) },
        0,
        "chown"
    );
    match bind_now(&socket.path) {
        Err(err) if err.contains("owned by uid 65534") => {}
        other => panic!("a directory of uid 65534: expected a refusal, got {other:?}"),
    }
    assert!(!socket.path.exists(), "bound in the foreign directory");
}

/// A request line longer than the protocol allows (1 MiB against 64 KiB) is refused
/// as a bad request at once, without being buffered whole, and the server goes on
/// answering the next client.
#[tokio::test]
async fn an_oversized_request_is_refused_and_the_server_goes_on() {
    let socket = Socket::new("oversized");
    let _alive = start(&socket, EventBus::default());
    let stream = UnixStream::connect(&socket.path).await.expect("connect");
    let (read, mut write) = stream.into_split();
    let mut line = String::from("{\"protocol\":1,\"request\":{\"command\":\"drain\",\"host\":\"");
    line.push_str(&"a".repeat(1 << 20));
    line.push_str("\"}}\n");
    // The server stops reading at its bound: the rest of the write may fail.
    let writer = tokio::spawn(async move {
        let _ = write.write_all(line.as_bytes()).await;
    });
    let mut answer = String::new();
    tokio::time::timeout(
        Duration::from_secs(2),
        BufReader::new(read).read_line(&mut answer),
    )
    .await
    .expect("answered within 2 s")
    .expect("read");
    writer.abort();
    let reply: Reply<Status> =
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("not a reply ({e}): {answer:?}"));
    let Reply::Error(ErrorReply { kind, message }) = reply else {
        panic!("an oversized request was accepted: {answer}");
    };
    assert_eq!(kind, ErrorKind::BadRequest, "{message}");
    let report = drain_host3(&socket.path)
        .await
        .expect("the next request is answered");
    assert!(report.changes.is_empty());
}
