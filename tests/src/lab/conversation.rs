//! Long-lived conversations of a lab client with a VIP, as a person's browser or a
//! QUIC client would hold them: one TCP connection carrying an HTTP/1.1 keep-alive
//! request every `period` (ha-webd answers each with its name), or one UDP socket
//! exchanging a datagram with the echo every `period`. Each conversation runs on its
//! own thread and records who answered every exchange, the longest silence, every
//! stall (no answer within [`STALL`]) and how it ended (a reset, an error, or closed
//! by the test with a FIN).

use std::{
    collections::BTreeMap,
    fmt,
    io::{ErrorKind, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use super::{Lab, Node, ns};

/// An exchange without an answer for this long is a stall.
pub const STALL: Duration = Duration::from_secs(1);
/// A conversation silent this long (several stalls in a row) gives up.
const GIVE_UP: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

/// What a conversation lived through so far.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub transport: Transport,
    pub from: Node,
    /// The client's own address and port (the flow's key with the VIP's).
    pub local: Option<SocketAddrV4>,
    /// Answered exchanges.
    pub exchanges: u64,
    /// Answers per host, and each answer's host with its time since the start (ms).
    pub hosts: BTreeMap<String, u64>,
    pub answers: Vec<(f64, String)>,
    /// Exchanges not answered within [`STALL`].
    pub stalls: u64,
    /// The longest wait for an answer, in ms.
    pub longest_wait_ms: f64,
    /// The connection was reset (TCP), and when (ms since the start).
    pub reset_ms: Option<f64>,
    /// Any other end than the test's: the error.
    pub failed: Option<String>,
    /// When the last answer came (ms since the start).
    pub last_answer_ms: Option<f64>,
}

impl Record {
    /// The hosts that answered, in the order they first did.
    pub fn answering_hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = Vec::new();
        for (_, host) in &self.answers {
            if !hosts.contains(host) {
                hosts.push(host.clone());
            }
        }
        hosts
    }

    /// Answers received after `ms` since the start, per host.
    pub fn answers_after(&self, ms: f64) -> BTreeMap<String, u64> {
        let mut hosts = BTreeMap::new();
        for (at, host) in &self.answers {
            if *at >= ms {
                *hosts.entry(host.clone()).or_default() += 1;
            }
        }
        hosts
    }

    /// Neither reset nor failed.
    pub fn alive(&self) -> bool {
        self.reset_ms.is_none() && self.failed.is_none()
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Record {
            transport,
            from,
            local,
            exchanges,
            hosts,
            stalls,
            longest_wait_ms,
            reset_ms,
            failed,
            ..
        } = self;
        write!(
            f,
            "{transport:?} from {from} ({}): {exchanges} exchanges {hosts:?}, {stalls} stalls, longest wait {longest_wait_ms:.1} ms",
            local.map_or("-".to_owned(), |l| l.to_string())
        )?;
        if let Some(at) = reset_ms {
            write!(f, ", RESET at {at:.0} ms")?;
        }
        if let Some(why) = failed {
            write!(f, ", FAILED: {why}")?;
        }
        Ok(())
    }
}

/// A running conversation.
pub struct Conversation {
    record: Arc<Mutex<Record>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    started: Instant,
}

impl Conversation {
    /// What it lived through so far.
    pub fn record(&self) -> Record {
        self.record
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Milliseconds since it started (the time base of its record).
    pub fn ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1e3
    }

    /// Tells it to end at its next exchange, without waiting (see [`Conversation::close`]).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Ends it (a TCP connection closes with a FIN) and returns its record.
    pub fn close(mut self) -> Record {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.record()
    }
}

impl Drop for Conversation {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Lab {
    /// Opens a TCP connection from `node` to `vip` port 80 and sends a keep-alive
    /// request on it every `period`; returns once the first answer came.
    pub fn converse_tcp(
        &self,
        node: Node,
        vip: Ipv4Addr,
        period: Duration,
    ) -> anyhow::Result<Conversation> {
        let target = SocketAddr::from((vip, 80));
        let stream = ns::in_netns(&self.ns(node), || {
            TcpStream::connect_timeout(&target, Duration::from_secs(2))
        })?
        .with_context(|| format!("connecting to {target} from {node}"))?;
        stream.set_read_timeout(Some(STALL))?;
        stream.set_nodelay(true)?;
        let local = match stream.local_addr()? {
            SocketAddr::V4(v4) => Some(v4),
            SocketAddr::V6(_) => None,
        };
        let exchange = TcpExchange {
            stream,
            vip,
            buffer: Vec::new(),
        };
        start(Transport::Tcp, node, local, period, exchange)
    }

    /// A UDP socket in `node` connected to `vip`'s echo, exchanging a datagram every
    /// `period`; returns once the first answer came.
    pub fn converse_udp(
        &self,
        node: Node,
        vip: Ipv4Addr,
        period: Duration,
    ) -> anyhow::Result<Conversation> {
        let target = SocketAddrV4::new(vip, self.spec.udp_port);
        let socket = self.udp_socket(node)?;
        socket
            .connect(target)
            .with_context(|| format!("connecting a UDP socket to {target}"))?;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let local = match socket.local_addr()? {
            SocketAddr::V4(v4) => Some(v4),
            SocketAddr::V6(_) => None,
        };
        start(
            Transport::Udp,
            node,
            local,
            period,
            UdpExchange { socket, seq: 0 },
        )
    }
}

/// How one exchange ended.
enum Outcome {
    Answer(String),
    /// Nothing within [`STALL`]: keep waiting.
    Late,
    Reset,
    Failed(String),
}

trait Exchange: Send + 'static {
    /// Sends one request.
    fn ask(&mut self) -> Outcome;
    /// Waits for its answer, up to [`STALL`].
    fn answer(&mut self) -> Outcome;
    /// After a stall: send the request again (UDP) rather than wait on (TCP).
    fn asks_again(&self) -> bool;
}

struct TcpExchange {
    stream: TcpStream,
    vip: Ipv4Addr,
    buffer: Vec<u8>,
}

fn io_outcome(err: &std::io::Error) -> Outcome {
    match err.kind() {
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted => {
            Outcome::Reset
        }
        ErrorKind::WouldBlock | ErrorKind::TimedOut => Outcome::Late,
        _ => Outcome::Failed(err.to_string()),
    }
}

impl Exchange for TcpExchange {
    fn ask(&mut self) -> Outcome {
        let request = format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", self.vip);
        match self.stream.write_all(request.as_bytes()) {
            Ok(()) => Outcome::Late,
            Err(err) => io_outcome(&err),
        }
    }

    fn asks_again(&self) -> bool {
        false
    }

    fn answer(&mut self) -> Outcome {
        let started = Instant::now();
        loop {
            if let Some(body) = take_response(&mut self.buffer) {
                return body;
            }
            if started.elapsed() >= STALL {
                return Outcome::Late;
            }
            let mut chunk = [0u8; 2048];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Outcome::Failed("closed by the server".to_owned()),
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                Err(err) => return io_outcome(&err),
            }
        }
    }
}

/// One whole HTTP response off the front of `buffer`: its body (the host's name).
fn take_response(buffer: &mut Vec<u8>) -> Option<Outcome> {
    let text = String::from_utf8_lossy(buffer).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n")?;
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    if rest.len() < length {
        return None;
    }
    let body = rest[..length].trim().to_owned();
    let consumed = head.len() + 4 + length;
    buffer.drain(..consumed.min(buffer.len()));
    if !head.starts_with("HTTP/1.1 200") {
        return Some(Outcome::Failed(format!("answered {head:?}")));
    }
    Some(Outcome::Answer(body))
}

struct UdpExchange {
    socket: UdpSocket,
    seq: u64,
}

impl Exchange for UdpExchange {
    fn ask(&mut self) -> Outcome {
        self.seq += 1;
        match self.socket.send(self.seq.to_string().as_bytes()) {
            Ok(_) => Outcome::Late,
            Err(err) => Outcome::Failed(err.to_string()),
        }
    }

    fn asks_again(&self) -> bool {
        true
    }

    fn answer(&mut self) -> Outcome {
        let started = Instant::now();
        let wanted = self.seq.to_string();
        while started.elapsed() < STALL {
            let mut buffer = [0u8; 512];
            match self.socket.recv(&mut buffer) {
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buffer[..n]).into_owned();
                    // `<host> <seq>`: an answer to an earlier datagram is skipped.
                    if let Some((host, seq)) = text.split_once(' ')
                        && seq == wanted
                    {
                        return Outcome::Answer(host.to_owned());
                    }
                }
                Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                // An ICMP error from an earlier datagram: try again.
                Err(err) if err.kind() == ErrorKind::ConnectionRefused => {}
                Err(err) => return Outcome::Failed(err.to_string()),
            }
        }
        // Late: UDP does not retransmit, so the next exchange asks again.
        Outcome::Late
    }
}

fn start(
    transport: Transport,
    from: Node,
    local: Option<SocketAddrV4>,
    period: Duration,
    mut exchange: impl Exchange,
) -> anyhow::Result<Conversation> {
    let record = Arc::new(Mutex::new(Record {
        transport,
        from,
        local,
        exchanges: 0,
        hosts: BTreeMap::new(),
        answers: Vec::new(),
        stalls: 0,
        longest_wait_ms: 0.0,
        reset_ms: None,
        failed: None,
        last_answer_ms: None,
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let (shared, stopping) = (Arc::clone(&record), Arc::clone(&stop));
    let thread = std::thread::Builder::new()
        .name(format!("conversation-{from}"))
        .spawn(move || run(&mut exchange, period, started, &shared, &stopping))
        .context("spawning a conversation")?;
    let conversation = Conversation {
        record,
        stop,
        thread: Some(thread),
        started,
    };
    // The first answer, so that the flow exists before the caller goes on.
    let deadline = Instant::now() + GIVE_UP;
    loop {
        let now = conversation.record();
        if now.exchanges > 0 {
            return Ok(conversation);
        }
        if !now.alive() || Instant::now() >= deadline {
            anyhow::bail!("the conversation never got an answer: {now}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn run(
    exchange: &mut dyn Exchange,
    period: Duration,
    started: Instant,
    record: &Mutex<Record>,
    stop: &AtomicBool,
) {
    let lock = || {
        record
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let since = |at: Instant| at.saturating_duration_since(started).as_secs_f64() * 1e3;
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let asked = Instant::now();
        let mut outcome = exchange.ask();
        let mut stalled = false;
        while matches!(outcome, Outcome::Late) && !stop.load(Ordering::Relaxed) {
            outcome = exchange.answer();
            if matches!(outcome, Outcome::Late) {
                if !stalled {
                    stalled = true;
                    lock().stalls += 1;
                }
                if asked.elapsed() >= GIVE_UP {
                    outcome = Outcome::Failed(format!("no answer for {GIVE_UP:?}"));
                } else if exchange.asks_again() {
                    // UDP: the datagram or its answer is lost, ask again. TCP
                    // retransmits by itself: keep waiting.
                    outcome = exchange.ask();
                }
            }
        }
        let waited = asked.elapsed().as_secs_f64() * 1e3;
        let now = Instant::now();
        let mut r = lock();
        match outcome {
            Outcome::Answer(host) => {
                r.exchanges += 1;
                *r.hosts.entry(host.clone()).or_default() += 1;
                r.answers.push((since(now), host));
                r.last_answer_ms = Some(since(now));
                r.longest_wait_ms = r.longest_wait_ms.max(waited);
            }
            Outcome::Late => return, // stopped while waiting
            Outcome::Reset => {
                r.reset_ms = Some(since(now));
                return;
            }
            Outcome::Failed(why) => {
                r.failed = Some(why);
                return;
            }
        }
        drop(r);
        next += period;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}
