//! Long-lived flows: a sequence-numbered UDP stream (`ha-stream`) and a paced HTTP/1.1
//! keep-alive session (many requests on one TCP connection), each long enough to
//! span several of the fast path's verification periods.

use std::{
    fmt,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use ha_tests::lab::{Lab, Node, StreamReport, ns};

use crate::probe::{WAIT, flush_route_cache};

/// A long-lived flow from a client to a VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// `ha-stream` at `rate` datagrams per second for `duration` to the UDP echo.
    Udp {
        from: Node,
        to: SocketAddrV4,
        rate: u64,
        duration: Duration,
    },
    /// `requests` HTTP GETs on one connection to `to`, one every `interval`.
    Http {
        from: Node,
        to: SocketAddrV4,
        requests: u32,
        interval: Duration,
    },
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Flow::Udp {
                from,
                to,
                rate,
                duration,
            } => write!(f, "{from}: UDP stream to {to}, {rate}/s for {duration:?}"),
            Flow::Http {
                from,
                to,
                requests,
                interval,
            } => write!(
                f,
                "{from}: {requests} HTTP requests on one connection to {to}, one every {interval:?}"
            ),
        }
    }
}

/// What a flow achieved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Datagrams or requests sent.
    pub sent: u64,
    /// Answered (distinct sequence numbers; answered requests).
    pub answered: u64,
    /// Who answered, as one word (`host2`), or several joined.
    pub by: String,
    /// Why the flow could not start (an HTTP session whose connection failed).
    pub failed: Option<String>,
}

impl Delivery {
    pub fn all(&self) -> bool {
        self.sent > 0 && self.answered == self.sent
    }
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {} answered", self.answered, self.sent)?;
        if !self.by.is_empty() {
            write!(f, " by {}", self.by)?;
        }
        if let Some(why) = &self.failed {
            write!(f, " ({why})")?;
        }
        Ok(())
    }
}

/// A flow under way.
pub enum Running {
    Udp(ha_tests::lab::StreamRun),
    Http(std::thread::JoinHandle<anyhow::Result<Delivery>>),
}

impl Flow {
    pub fn from(&self) -> Node {
        match self {
            Flow::Udp { from, .. } | Flow::Http { from, .. } => *from,
        }
    }

    /// Packets the client sends towards the server, at least: one per datagram or
    /// request.
    pub fn requests(&self) -> u64 {
        match *self {
            Flow::Udp { rate, duration, .. } => rate * duration.as_millis() as u64 / 1000,
            Flow::Http { requests, .. } => u64::from(requests),
        }
    }

    pub fn duration(&self) -> Duration {
        match *self {
            Flow::Udp { duration, .. } => duration,
            Flow::Http {
                requests, interval, ..
            } => interval * requests,
        }
    }

    /// Starts the flow (the sender's route cache flushed first, as for probes).
    pub fn start(&self, lab: &Lab) -> Running {
        flush_route_cache(lab, self.from()).unwrap_or_else(|e| panic!("{e:#}"));
        match *self {
            Flow::Udp {
                from,
                to,
                rate,
                duration,
            } => Running::Udp(
                lab.stream(from, to, rate, duration)
                    .unwrap_or_else(|e| panic!("{self}: {e:#}")),
            ),
            Flow::Http {
                from,
                to,
                requests,
                interval,
            } => {
                let stream = ns::in_netns(&lab.ns(from), || {
                    TcpStream::connect_timeout(&SocketAddr::V4(to), WAIT)
                })
                .and_then(|s| s.with_context(|| format!("connecting to {to}")));
                Running::Http(std::thread::spawn(move || {
                    session(stream?, *to.ip(), requests, interval)
                }))
            }
        }
    }
}

impl Running {
    /// Waits for the flow to end.
    pub fn wait(self) -> Delivery {
        match self {
            Running::Udp(run) => {
                let report: StreamReport = run.wait().unwrap_or_else(|e| panic!("{e:#}"));
                Delivery {
                    sent: report.sent,
                    answered: report.answered,
                    by: report
                        .per_host
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("+"),
                    failed: None,
                }
            }
            Running::Http(thread) => match thread.join() {
                Ok(result) => result.unwrap_or_else(|e| Delivery {
                    sent: 0,
                    answered: 0,
                    by: String::new(),
                    failed: Some(format!("{e:#}")),
                }),
                Err(panic) => std::panic::resume_unwind(panic),
            },
        }
    }

    /// The UDP stream's whole report (`None` for other flows).
    pub fn wait_report(self) -> StreamReport {
        match self {
            Running::Udp(run) => run.wait().unwrap_or_else(|e| panic!("{e:#}")),
            Running::Http(_) => panic!("only UDP streams have a stream report"),
        }
    }
}

/// `requests` GETs on `stream`, one every `interval`; stops at the first request not
/// answered within [`WAIT`].
fn session(
    stream: TcpStream,
    host: Ipv4Addr,
    requests: u32,
    interval: Duration,
) -> anyhow::Result<Delivery> {
    stream.set_read_timeout(Some(WAIT))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let start = Instant::now();
    let mut answered = 0;
    let mut by = String::new();
    for n in 0..requests {
        if let Some(wait) = (start + interval * n).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let sent = write!(writer, "GET /{n} HTTP/1.1\r\nHost: {host}\r\n\r\n");
        match sent
            .map_err(anyhow::Error::from)
            .and_then(|()| response(&mut reader))
        {
            Ok(body) => {
                answered += 1;
                by = body;
            }
            Err(_) => {
                return Ok(Delivery {
                    sent: u64::from(n) + 1,
                    answered,
                    by,
                    failed: None,
                });
            }
        }
    }
    Ok(Delivery {
        sent: u64::from(requests),
        answered,
        by,
        failed: None,
    })
}

/// One HTTP response's body (ha-webd's: its name), by its `Content-Length`.
fn response(reader: &mut BufReader<TcpStream>) -> anyhow::Result<String> {
    let mut status = String::new();
    reader.read_line(&mut status)?;
    if !status.starts_with("HTTP/1.1 200") {
        bail!("unexpected status line {status:?}");
    }
    let mut length = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            bail!("connection closed in the response head");
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = Some(value.trim().parse::<usize>().context("Content-Length")?);
        }
    }
    let mut body = vec![0; length.context("no Content-Length")?];
    reader.read_exact(&mut body)?;
    Ok(String::from_utf8_lossy(&body).trim().to_owned())
}
