//! One probe of one host: a TCP connect, an HTTP/1.1 GET, or an ICMP echo.
//!
//! Every probe is bounded by the check's `timeout_ms`. TCP connections are closed with
//! a zero linger (RST): a probe every few milliseconds would otherwise leave thousands
//! of sockets in TIME_WAIT.

use std::{
    io::{self, Read as _},
    net::{Ipv4Addr, SocketAddrV4},
    time::Duration,
};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, unix::AsyncFd},
    net::TcpStream,
    time::Instant,
};
use tracing::debug;

use crate::config::{CheckKind, HealthCheck};

/// Longest HTTP status line read before the response is called malformed.
const MAX_STATUS_LINE: usize = 1024;

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_DEST_UNREACHABLE: u8 = 3;
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_TIME_EXCEEDED: u8 = 11;

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

/// Probes `address` once as `check` says and returns how long the probe took.
/// `ident` and `seq` are the ICMP echo identifier and sequence (unused by tcp and http).
pub(super) async fn run(
    address: Ipv4Addr,
    check: &HealthCheck,
    ident: u16,
    seq: u16,
) -> Result<Duration, ProbeError> {
    let started = Instant::now();
    let target = SocketAddrV4::new(address, check.port);
    let work = async {
        match check.kind {
            CheckKind::Tcp => connect(target).await.map(drop),
            CheckKind::Http => http(target, &check.path, check.expect_status).await,
            CheckKind::Icmp => icmp(address, ident, seq).await,
        }
    };
    match tokio::time::timeout(Duration::from_millis(check.timeout_ms), work).await {
        Ok(Ok(())) => Ok(started.elapsed()),
        Ok(Err(err)) => Err(err),
        Err(_elapsed) => Err(ProbeError::Timeout {
            ms: check.timeout_ms,
        }),
    }
}

async fn connect(target: SocketAddrV4) -> Result<TcpStream, ProbeError> {
    let stream = TcpStream::connect(target)
        .await
        .map_err(|source| match source.kind() {
            io::ErrorKind::ConnectionRefused => ProbeError::Refused,
            _ => ProbeError::Connect { source },
        })?;
    // Not fatal: without it the socket closes with FIN and lingers in TIME_WAIT.
    if let Err(err) = stream.set_zero_linger() {
        debug!(%target, %err, "cannot set SO_LINGER 0 on a probe socket");
    }
    Ok(stream)
}

/// `GET path` with `Connection: close`; success iff the status code is `expect`.
/// Only the status line is read; dropping the socket then resets the connection.
async fn http(target: SocketAddrV4, path: &str, expect: u16) -> Result<(), ProbeError> {
    let mut stream = connect(target).await?;
    let host = match target.port() {
        80 => target.ip().to_string(),
        _ => target.to_string(),
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: ha-health\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|source| ProbeError::Http { source })?;
    match read_status(&mut stream).await? {
        status if status == expect => Ok(()),
        status => Err(ProbeError::Status { status }),
    }
}

/// Reads up to the end of the status line and returns its code.
async fn read_status(reader: &mut (impl AsyncRead + Unpin)) -> Result<u16, ProbeError> {
    let mut line = Vec::with_capacity(128);
    let mut chunk = [0u8; 512];
    loop {
        if let Some(end) = line.iter().position(|&b| b == b'\n') {
            return parse_status_line(&line[..end]);
        }
        if line.len() > MAX_STATUS_LINE {
            return Err(ProbeError::StatusLine {
                line: String::from_utf8_lossy(&line[..80]).into_owned(),
            });
        }
        let n = reader
            .read(&mut chunk)
            .await
            .map_err(|source| ProbeError::Http { source })?;
        if n == 0 {
            return Err(ProbeError::Closed);
        }
        line.extend_from_slice(&chunk[..n]);
    }
}

/// The code of `HTTP/1.x NNN reason` (the line without its `\n`; a `\r` is allowed).
fn parse_status_line(line: &[u8]) -> Result<u16, ProbeError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let code = std::str::from_utf8(line).ok().and_then(|text| {
        let mut parts = text.splitn(3, ' ');
        let version = parts.next()?;
        let code = parts.next()?;
        let valid = version.starts_with("HTTP/1.") && code.len() == 3;
        valid.then(|| code.parse::<u16>().ok()).flatten()
    });
    code.ok_or_else(|| ProbeError::StatusLine {
        line: String::from_utf8_lossy(line).into_owned(),
    })
}

/// One echo request on its own raw socket, then waits for the matching reply (or for
/// an ICMP error quoting the request).
async fn icmp(address: Ipv4Addr, ident: u16, seq: u16) -> Result<(), ProbeError> {
    let socket_error = |source| ProbeError::IcmpSocket { source };
    let socket =
        Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).map_err(socket_error)?;
    socket.set_nonblocking(true).map_err(socket_error)?;
    // SAFETY: the `Socket` owns its descriptor and returns that same descriptor from
    // `as_raw_fd` until it is dropped, which happens only with the `AsyncFd`.
    let socket = unsafe { AsyncFd::register(socket) }.map_err(|err| socket_error(err.into()))?;
    let icmp_error = |source| ProbeError::Icmp { source };

    let request = echo_request(ident, seq);
    let destination = SockAddr::from(SocketAddrV4::new(address, 0));
    loop {
        let mut guard = socket.writable().await.map_err(icmp_error)?;
        if let Ok(sent) = guard.try_io(|s| s.get_ref().send_to(&request, &destination)) {
            sent.map_err(icmp_error)?;
            break;
        }
    }
    // A raw socket sees every ICMP packet the host receives: keep the one about us.
    let mut packet = [0u8; 1500];
    loop {
        let mut guard = socket.readable().await.map_err(icmp_error)?;
        let Ok(received) = guard.try_io(|s| s.get_ref().read(&mut packet)) else {
            continue;
        };
        let len = received.map_err(icmp_error)?;
        if let Some(result) = classify(packet.get(..len).unwrap_or_default(), address, ident, seq) {
            return result;
        }
    }
}

fn echo_request(ident: u16, seq: u16) -> [u8; 16] {
    let mut message = [0u8; 16];
    message[0] = ICMP_ECHO_REQUEST;
    message[4..6].copy_from_slice(&ident.to_be_bytes());
    message[6..8].copy_from_slice(&seq.to_be_bytes());
    message[8..].copy_from_slice(b"ha-healt");
    let checksum = internet_checksum(&message);
    message[2..4].copy_from_slice(&checksum.to_be_bytes());
    message
}

/// RFC 1071 checksum.
fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|pair| {
            u32::from(u16::from_be_bytes([
                pair[0],
                pair.get(1).copied().unwrap_or(0),
            ]))
        })
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// What a received IPv4 packet means for the echo `ident`/`seq` sent to `address`:
/// `None` if it is about something else.
fn classify(
    packet: &[u8],
    address: Ipv4Addr,
    ident: u16,
    seq: u16,
) -> Option<Result<(), ProbeError>> {
    let header_len = usize::from(packet.first()? & 0x0f) * 4;
    let source: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
    let source = Ipv4Addr::from(source);
    let icmp = packet.get(header_len..)?;
    let ours = |echo: &[u8]| {
        echo.get(4..6) == Some(&ident.to_be_bytes()[..])
            && echo.get(6..8) == Some(&seq.to_be_bytes()[..])
    };
    let (&kind, &code) = (icmp.first()?, icmp.get(1)?);
    match kind {
        ICMP_ECHO_REPLY => (source == address && ours(icmp)).then_some(Ok(())),
        ICMP_DEST_UNREACHABLE | ICMP_TIME_EXCEEDED => {
            // The error quotes our request's IP header and the first 8 bytes of the echo.
            let quoted = icmp.get(8..)?;
            let quoted_len = usize::from(quoted.first()? & 0x0f) * 4;
            let destination: [u8; 4] = quoted.get(16..20)?.try_into().ok()?;
            let echo = quoted.get(quoted_len..)?;
            let about_us = Ipv4Addr::from(destination) == address
                && echo.first() == Some(&ICMP_ECHO_REQUEST)
                && ours(echo);
            let what = match kind {
                ICMP_DEST_UNREACHABLE => "destination unreachable",
                _ => "time exceeded",
            };
            about_us.then_some(Err(ProbeError::Unreachable {
                what,
                code,
                from: source,
            }))
        }
        _ => None,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::{net::TcpListener, task::JoinHandle};

    use super::*;

    /// How the test HTTP server answers a new connection.
    #[derive(Clone, Copy, Debug)]
    pub enum Reply {
        Status(u16),
        /// Accepts and never answers (a hung server).
        Hang,
    }

    /// An HTTP server on 127.0.0.1 and an ephemeral port; its reply can be changed.
    pub struct TestServer {
        pub port: u16,
        reply: Arc<Mutex<Reply>>,
        last_request: Arc<Mutex<String>>,
        task: JoinHandle<()>,
    }

    impl TestServer {
        pub async fn start(reply: Reply) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let port = listener.local_addr().expect("local address").port();
            let reply = Arc::new(Mutex::new(reply));
            let last_request = Arc::new(Mutex::new(String::new()));
            let (shared_reply, shared_request) = (reply.clone(), last_request.clone());
            let task = tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let reply = *shared_reply.lock().expect("reply lock");
                    tokio::spawn(serve(stream, reply, shared_request.clone()));
                }
            });
            Self {
                port,
                reply,
                last_request,
                task,
            }
        }

        pub fn set(&self, reply: Reply) {
            *self.reply.lock().expect("reply lock") = reply;
        }

        fn last_request(&self) -> String {
            self.last_request.lock().expect("request lock").clone()
        }

        /// Closes the listening socket (as if the process died); returns once it is closed.
        pub async fn stop(self) {
            self.task.abort();
            let _cancelled = self.task.await;
        }
    }

    async fn serve(mut stream: TcpStream, reply: Reply, last_request: Arc<Mutex<String>>) {
        let code = match reply {
            Reply::Hang => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                return;
            }
            Reply::Status(code) => code,
        };
        let mut request = Vec::new();
        let mut chunk = [0u8; 512];
        while !request.ends_with(b"\r\n\r\n") {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&chunk[..n]),
            }
        }
        *last_request.lock().expect("request lock") = String::from_utf8_lossy(&request).into();
        let response =
            format!("HTTP/1.1 {code} Test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        let _ignored = stream.write_all(response.as_bytes()).await;
    }

    pub fn check(kind: CheckKind, port: u16, timeout_ms: u64) -> HealthCheck {
        HealthCheck {
            kind,
            port,
            path: "/health".into(),
            timeout_ms,
            ..HealthCheck::default()
        }
    }

    const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

    #[tokio::test]
    async fn tcp_connects_to_a_listener() {
        let server = TestServer::start(Reply::Status(200)).await;
        let rtt = run(LOCALHOST, &check(CheckKind::Tcp, server.port, 500), 1, 1)
            .await
            .expect("tcp probe");
        println!("tcp probe took {rtt:?}");
    }

    #[tokio::test]
    async fn tcp_to_a_closed_port_is_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("local address").port();
        drop(listener);
        let err = run(LOCALHOST, &check(CheckKind::Tcp, port, 500), 1, 1)
            .await
            .expect_err("nothing listens");
        assert!(matches!(err, ProbeError::Refused), "{err:?}");
        assert_eq!(err.reason(), "connection refused");
    }

    #[tokio::test]
    async fn http_200_succeeds_and_sends_host_and_close() {
        let server = TestServer::start(Reply::Status(200)).await;
        run(LOCALHOST, &check(CheckKind::Http, server.port, 500), 1, 1)
            .await
            .expect("http probe");
        let request = server.last_request();
        assert!(
            request.starts_with("GET /health HTTP/1.1\r\n"),
            "{request:?}"
        );
        assert!(
            request.contains(&format!("\r\nHost: 127.0.0.1:{}\r\n", server.port)),
            "{request:?}"
        );
        assert!(request.contains("\r\nConnection: close\r\n"), "{request:?}");
    }

    #[tokio::test]
    async fn http_503_fails() {
        let server = TestServer::start(Reply::Status(503)).await;
        let err = run(LOCALHOST, &check(CheckKind::Http, server.port, 500), 1, 1)
            .await
            .expect_err("503 is not 200");
        assert_eq!(err.reason(), "http status 503");
    }

    #[tokio::test]
    async fn http_to_a_hung_server_times_out() {
        let server = TestServer::start(Reply::Hang).await;
        let started = Instant::now();
        let err = run(LOCALHOST, &check(CheckKind::Http, server.port, 50), 1, 1)
            .await
            .expect_err("no answer");
        let took = started.elapsed();
        assert_eq!(err.reason(), "timeout after 50 ms");
        assert!(
            took >= Duration::from_millis(50) && took < Duration::from_millis(500),
            "{took:?}"
        );
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r").ok(), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 503").ok(), Some(503));
        for bad in [
            &b"HTTP/2 200 OK"[..],
            b"SSH-2.0-OpenSSH",
            b"HTTP/1.1 20 OK",
            b"",
        ] {
            assert!(parse_status_line(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn echo_request_checksum_verifies() {
        let message = echo_request(0x1234, 7);
        assert_eq!(internet_checksum(&message), 0, "{message:02x?}");
        assert_eq!(&message[4..8], &[0x12, 0x34, 0, 7]);
    }

    #[tokio::test]
    async fn icmp_echo_to_localhost() {
        if let Err(err) = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)) {
            println!("SKIPPED: icmp probe needs root (CAP_NET_RAW): {err}");
            return;
        }
        let icmp = check(CheckKind::Icmp, 0, 500);
        let rtt = run(LOCALHOST, &icmp, 0x4841, 1).await.expect("echo reply");
        println!("icmp probe took {rtt:?}");
    }

    /// An IPv4 header (no options) from `source` to `destination`, then `payload`.
    fn ipv4(source: [u8; 4], destination: [u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut packet = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0];
        packet.extend_from_slice(&source);
        packet.extend_from_slice(&destination);
        packet.extend_from_slice(payload);
        packet
    }

    #[test]
    fn classifies_replies_and_errors() {
        let (us, server, router) = ([10, 0, 0, 1], [10, 0, 0, 2], [10, 0, 0, 254]);
        let address = Ipv4Addr::from(server);
        let request = echo_request(0x4841, 7);
        let mut reply = request;
        reply[0] = ICMP_ECHO_REPLY;
        let ours =
            |packet: &[u8]| classify(packet, address, 0x4841, 7).map(|r| r.map_err(|e| e.reason()));

        assert_eq!(ours(&ipv4(server, us, &reply)), Some(Ok(())));
        assert_eq!(
            ours(&ipv4(router, us, &reply)),
            None,
            "reply from another address"
        );
        assert_eq!(ours(&ipv4(us, server, &request)), None, "our own request");
        let mut other_seq = reply;
        other_seq[7] = 6;
        assert_eq!(ours(&ipv4(server, us, &other_seq)), None, "a late reply");
        assert_eq!(ours(&ipv4(server, us, &reply[..5])), None, "truncated");

        let mut unreachable = vec![ICMP_DEST_UNREACHABLE, 1, 0, 0, 0, 0, 0, 0];
        unreachable.extend_from_slice(&ipv4(us, server, &request[..8]));
        let want = "icmp destination unreachable (code 1) from 10.0.0.254";
        assert_eq!(
            ours(&ipv4(router, us, &unreachable)),
            Some(Err(want.into()))
        );
        unreachable[8 + 12 + 7] = 0x63;
        assert_eq!(
            ours(&ipv4(router, us, &unreachable)),
            None,
            "about another echo"
        );
    }
}
