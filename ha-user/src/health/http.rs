//! HTTP/1.1 checks over a kept-alive connection (as Envoy's health checker does with
//! `reuse_connection`).
//!
//! A [`Client`] keeps its host's connection open across probes: each probe sends one
//! `GET`, reads the status line and the headers, and consumes the body by its
//! `Content-Length`. A response without a `Content-Length` (or chunked, or larger
//! than [`MAX_KEPT_BODY`]), with `Connection: close`, from HTTP/1.0 without
//! `Connection: keep-alive`, or that fails the check ends the connection after the
//! probe; so does any error, and a timeout (the probe's future is dropped with the
//! connection it holds). Connections close with a zero linger (RST): the next probe
//! connects afresh.
//!
//! A kept connection the server closed while idle (a dead process, an idle timeout)
//! is noticed before it is used — the FIN makes it readable — and replaced by a new
//! one. If a kept connection fails before the first byte of the response (the close
//! crossed our request), the probe retries once on a new connection, so a dead
//! process reads as `connection refused` as without reuse.
//!
//! A VIP probe's client ([`Client::vip`]) connects anew every time, with the probe
//! mark: thousands of VIP pairs cannot each hold a connection.

use std::{io, net::SocketAddrV4, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

use super::{
    error::ProbeError,
    tcp::{Connected, connect},
};

/// Longest HTTP status line read before the response is called malformed.
const MAX_STATUS_LINE: usize = 1024;
/// Longest response head (status line and headers) kept for; a longer one is judged
/// by its status line and its connection closed.
const MAX_HEAD: usize = 16 * 1024;
/// Largest body read to keep the connection; a larger one closes it instead.
const MAX_KEPT_BODY: u64 = 64 * 1024;
/// The read buffer's initial size (it grows up to [`MAX_HEAD`] for long heads).
const INITIAL_BUFFER: usize = 1024;

/// One host's HTTP check and its kept connection.
#[derive(Debug)]
pub(super) struct Client {
    target: SocketAddrV4,
    expect: u16,
    /// The request, built once.
    request: Box<[u8]>,
    /// Open between probes when the last response allowed it; taken out by a probe
    /// and put back only when it ends cleanly.
    connection: Option<TcpStream>,
    buffer: Vec<u8>,
    /// The `skb->mark` of its connections (VIP probes).
    mark: Option<u32>,
    /// Keep the connection between probes when the response allows it.
    keep: bool,
    /// How late the controller noticed the last probe's new connection (zero when a
    /// kept one served): read after a timeout.
    pub(super) lag: Duration,
}

impl Client {
    /// `GET path` from `target`, on a kept connection; success iff the status code is
    /// `expect`.
    pub(super) fn new(target: SocketAddrV4, path: &str, expect: u16) -> Self {
        Self::build(target, path, expect, None, true)
    }

    /// The same check of a VIP through the host `mark` names, on a new connection
    /// each time.
    pub(super) fn vip(target: SocketAddrV4, path: &str, expect: u16, mark: u32) -> Self {
        Self::build(target, path, expect, Some(mark), false)
    }

    fn build(target: SocketAddrV4, path: &str, expect: u16, mark: Option<u32>, keep: bool) -> Self {
        let host = match target.port() {
            80 => target.ip().to_string(),
            _ => target.to_string(),
        };
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: ha-health\r\n\r\n");
        Self {
            target,
            expect,
            request: request.into_bytes().into_boxed_slice(),
            connection: None,
            buffer: vec![0; INITIAL_BUFFER],
            mark,
            keep,
            lag: Duration::ZERO,
        }
    }

    /// One request and its response, on the kept connection if there is a usable
    /// one. Unbounded: the caller applies the timeout.
    pub(super) async fn probe(&mut self) -> Result<(), ProbeError> {
        self.lag = Duration::ZERO;
        if let Some(stream) = self.connection.take().filter(still_open) {
            match self.exchange(stream).await {
                // Closed under us before answering: ask again on a new connection.
                Err(Failed { stale: true, .. }) => {}
                done => return self.finish(done),
            }
        }
        let Connected { stream, lag } = connect(self.target, self.mark).await?;
        self.lag = lag;
        let done = self.exchange(stream).await;
        self.finish(done)
    }

    /// Keeps the connection if the response allows it and the check passed.
    fn finish(&mut self, done: Result<Exchanged, Failed>) -> Result<(), ProbeError> {
        let Exchanged {
            stream,
            status,
            keep_alive,
        } = done.map_err(|failed| failed.error)?;
        if status != self.expect {
            return Err(ProbeError::Status { status });
        }
        if keep_alive && self.keep {
            self.connection = Some(stream);
        }
        Ok(())
    }

    async fn exchange(&mut self, mut stream: TcpStream) -> Result<Exchanged, Failed> {
        if let Err(source) = stream.write_all(&self.request).await {
            return Err(Failed {
                stale: is_reset(&source),
                error: ProbeError::Http { source },
            });
        }
        let (status, keep_alive) = read_response(&mut stream, &mut self.buffer).await?;
        Ok(Exchanged {
            stream,
            status,
            keep_alive,
        })
    }
}

/// A response read in full (or as far as the status decides).
struct Exchanged {
    stream: TcpStream,
    status: u16,
    keep_alive: bool,
}

/// A failed exchange; `stale` if nothing of a response came before the connection
/// was found closed (a retry on a new connection may succeed).
struct Failed {
    error: ProbeError,
    stale: bool,
}

impl From<ProbeError> for Failed {
    fn from(error: ProbeError) -> Self {
        Self {
            error,
            stale: false,
        }
    }
}

/// Whether a kept connection is still usable: nothing arrived on it since the last
/// response (no FIN, no RST, no stray bytes). Costs no system call while the socket
/// has not become readable.
fn still_open(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.try_read(&mut byte), Err(err) if err.kind() == io::ErrorKind::WouldBlock)
}

fn is_reset(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::NotConnected
    )
}

/// Reads one response into `buffer` (grown as needed up to [`MAX_HEAD`]) and returns
/// its status and whether the connection can carry the next request.
async fn read_response(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
) -> Result<(u16, bool), Failed> {
    let mut filled = 0;
    let head_len = loop {
        let received = buffer.get(..filled).unwrap_or_default();
        if let Some(end) = head_end(received) {
            break end;
        }
        if !received.contains(&b'\n') && filled > MAX_STATUS_LINE {
            return Err(malformed(received).into());
        }
        if filled == buffer.len() {
            if buffer.len() >= MAX_HEAD {
                // Judged by its status line alone; the rest is not worth reading.
                let status = status_of(received)?;
                return Ok((status.code, false));
            }
            buffer.resize((buffer.len() * 2).min(MAX_HEAD), 0);
        }
        let n = match stream
            .read(buffer.get_mut(filled..).unwrap_or_default())
            .await
        {
            Ok(n) => n,
            Err(source) => {
                return Err(Failed {
                    stale: filled == 0 && is_reset(&source),
                    error: ProbeError::Http { source },
                });
            }
        };
        if n == 0 {
            // Closed in the headers: the status line, if whole, still decides.
            return match status_of(buffer.get(..filled).unwrap_or_default()) {
                Ok(status) => Ok((status.code, false)),
                Err(ProbeError::Closed) => Err(Failed {
                    error: ProbeError::Closed,
                    stale: filled == 0,
                }),
                Err(error) => Err(error.into()),
            };
        }
        filled += n;
    };
    let head = parse_head(buffer.get(..head_len).unwrap_or_default())?;
    let mut keep_alive = head.keep_alive;
    let body_received = (filled - head_len) as u64;
    match head.body_len {
        Some(len) if keep_alive && len <= MAX_KEPT_BODY && body_received <= len => {
            let mut remaining = len - body_received;
            while remaining > 0 {
                // Never past the body: the connection must stay in step.
                let want = buffer
                    .len()
                    .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                match stream
                    .read(buffer.get_mut(..want).unwrap_or_default())
                    .await
                {
                    Ok(n) if n > 0 => remaining -= n as u64,
                    // Closed or reset in the body: the status still decides.
                    _ => {
                        keep_alive = false;
                        break;
                    }
                }
            }
        }
        // No length, too long, or more bytes than announced: not reusable.
        _ => keep_alive = false,
    }
    Ok((head.status, keep_alive))
}

/// Where the head ends (the index after its blank line), if it is all in `received`.
fn head_end(received: &[u8]) -> Option<usize> {
    let mut start = 0;
    for (at, _) in received.iter().enumerate().filter(|&(_, &b)| b == b'\n') {
        let line = received.get(start..at).unwrap_or_default();
        if start > 0 && (line.is_empty() || line == b"\r") {
            return Some(at + 1);
        }
        start = at + 1;
    }
    None
}

fn malformed(line: &[u8]) -> ProbeError {
    ProbeError::StatusLine {
        line: String::from_utf8_lossy(line.get(..80).unwrap_or(line)).into_owned(),
    }
}

/// The status line at the start of `received` if it is whole; [`ProbeError::Closed`]
/// if only part of it (or nothing) arrived.
fn status_of(received: &[u8]) -> Result<StatusLine, ProbeError> {
    match received.iter().position(|&b| b == b'\n') {
        Some(end) => parse_status_line(received.get(..end).unwrap_or_default()),
        None if received.len() > MAX_STATUS_LINE => Err(malformed(received)),
        None => Err(ProbeError::Closed),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct StatusLine {
    /// `x` of `HTTP/1.x`.
    minor: u8,
    code: u16,
}

/// `HTTP/1.x NNN reason` (the line without its `\n`; a `\r` is allowed).
fn parse_status_line(line: &[u8]) -> Result<StatusLine, ProbeError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let status = std::str::from_utf8(line).ok().and_then(|text| {
        let mut parts = text.splitn(3, ' ');
        let minor = parts.next()?.strip_prefix("HTTP/1.")?.parse().ok()?;
        let code = parts.next()?;
        let code = (code.len() == 3).then(|| code.parse().ok()).flatten()?;
        Some(StatusLine { minor, code })
    });
    status.ok_or_else(|| malformed(line))
}

/// What the head of a response says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Head {
    status: u16,
    /// `None`: delimited by the close of the connection (or chunked).
    body_len: Option<u64>,
    /// The server will take another request on this connection.
    keep_alive: bool,
}

/// Parses a whole head (the status line, the headers and the blank line).
fn parse_head(head: &[u8]) -> Result<Head, ProbeError> {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    let status = parse_status_line(lines.next().unwrap_or_default())?;
    let (mut close, mut keep_alive_token) = (false, false);
    let mut length: Option<Option<u64>> = None;
    let mut chunked = false;
    for line in lines.take_while(|line| !line.is_empty()) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line.get(colon + 1..).unwrap_or_default());
        let value = value.trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") {
            let parsed = std::str::from_utf8(value)
                .ok()
                .filter(|v| v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok());
            // Two different lengths (or one unreadable): the framing is unknown.
            length = match length {
                None => Some(parsed),
                Some(seen) if seen == parsed => Some(seen),
                Some(_) => Some(None),
            };
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    let body_len = match status.code {
        // No body, whatever the headers say (RFC 9112 §6.3).
        100..=199 | 204 | 304 => Some(0),
        _ if chunked => None,
        _ => length.flatten(),
    };
    let persistent = if status.minor >= 1 {
        !close
    } else {
        keep_alive_token && !close
    };
    // An interim 1xx is not the response to a GET without `Expect`: start afresh.
    let keep_alive = persistent && body_len.is_some() && status.code >= 200;
    Ok(Head {
        status: status.code,
        body_len,
        keep_alive,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        let code = |line: &[u8]| parse_status_line(line).ok().map(|s| s.code);
        assert_eq!(code(b"HTTP/1.1 200 OK\r"), Some(200));
        assert_eq!(code(b"HTTP/1.0 503"), Some(503));
        assert_eq!(
            parse_status_line(b"HTTP/1.0 200 OK").ok(),
            Some(StatusLine {
                minor: 0,
                code: 200
            })
        );
        for bad in [
            &b"HTTP/2 200 OK"[..],
            b"SSH-2.0-OpenSSH",
            b"HTTP/1.1 20 OK",
            b"HTTP/1. 200 OK",
            b"",
        ] {
            assert!(parse_status_line(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn finds_the_end_of_the_head() {
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\n\r\nbody"), Some(19));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\n\nbody"), Some(17));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\n"), Some(25));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\nA: b\r\n"), None);
        assert_eq!(head_end(b"\r\n"), None, "a blank first line is no head");
        assert_eq!(head_end(b""), None);
    }

    fn head(text: &str) -> Head {
        parse_head(text.as_bytes()).expect("a valid head")
    }

    #[test]
    fn heads_decide_the_body_and_the_connection() {
        let kept = |status, len| Head {
            status,
            body_len: Some(len),
            keep_alive: true,
        };
        assert_eq!(
            head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
            kept(200, 5)
        );
        assert_eq!(
            head("HTTP/1.1 503 Busy\r\ncontent-length:  12 \r\nX: y\r\n\r\n"),
            kept(503, 12)
        );
        assert_eq!(
            head("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"),
            kept(200, 0)
        );
        assert_eq!(head("HTTP/1.1 204 No Content\r\n\r\n"), kept(204, 0));
        assert_eq!(
            head("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n"),
            kept(304, 0)
        );

        let closed = |text: &str| {
            let head = head(text);
            assert!(!head.keep_alive, "{text:?}: {head:?}");
            head
        };
        assert_eq!(closed("HTTP/1.1 200 OK\r\n\r\n").body_len, None);
        closed("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n");
        closed("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: x, CLOSE\r\n\r\n");
        closed("HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n");
        closed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n");
        closed("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n");
        closed("HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n");
        closed("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n");
        closed("HTTP/1.1 100 Continue\r\n\r\n");
        assert_eq!(
            head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
            kept(200, 5),
            "a repeated, equal length"
        );
        assert!(parse_head(b"HTTP/2 200\r\n\r\n").is_err());
    }

    #[test]
    fn a_partial_or_long_status_line() {
        assert!(matches!(status_of(b""), Err(ProbeError::Closed)));
        assert!(matches!(status_of(b"HTTP/1.1 2"), Err(ProbeError::Closed)));
        assert_eq!(
            status_of(b"HTTP/1.1 200 OK\r\nContent-")
                .map(|s| s.code)
                .ok(),
            Some(200)
        );
        let long = vec![b'x'; MAX_STATUS_LINE + 1];
        let Err(ProbeError::StatusLine { line }) = status_of(&long) else {
            panic!("a malformed status line");
        };
        assert_eq!(line.len(), 80);
    }
}
