//! One probe of one host: a TCP connect, an HTTP/1.1 GET, or an ICMP echo.
//!
//! A [`Prober`] holds what its host's probes keep from one to the next: the HTTP
//! check's connection ([`http`](super::http)), the ICMP check's identifier on the
//! socket shared by every host ([`icmp`](super::icmp)). Every probe is bounded by the
//! check's `timeout_ms`; what it saw becomes a [`Probe`] with its
//! [`ProbeOutcome`](crate::model::ProbeOutcome) (see [`outcome`](super::outcome)), and
//! TCP connections come from [`connect`](super::tcp::connect).
//!
//! [`Prober::vip`] is the same check aimed at a prefix's VIP through one host: its
//! packets carry `PROBE_MARK_TAG | host id`, so the data path delivers them to that
//! host, and it keeps nothing between probes.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    sync::{Arc, OnceLock},
    time::Duration,
};

use ha_common::PROBE_MARK_TAG;
use tokio::time::Instant;

use super::{http, icmp, iface::Lan, outcome::Probe, tcp::connect};
use crate::model::{CheckKind, HealthCheck, HostId};

/// What the probes of all hosts share: the ICMP sockets (one for host checks, one for
/// marked VIP probes), opened by the first icmp probe and closed when the checker and
/// every prober are gone, and the LAN interface whose state decides whether a failure
/// is the host's.
#[derive(Clone, Debug)]
pub(super) struct Shared {
    icmp: Arc<icmp::Lazy>,
    icmp_marked: Arc<icmp::Lazy>,
    pub(super) lan: Arc<Lan>,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            icmp: Arc::default(),
            icmp_marked: Arc::new(icmp::Lazy::marked()),
            lan: Arc::default(),
        }
    }
}

/// One host's probes.
#[derive(Debug)]
pub(super) struct Prober {
    timeout: Duration,
    kind: Kind,
    lan: Arc<Lan>,
}

#[derive(Debug)]
enum Kind {
    Tcp(SocketAddrV4, Option<u32>),
    Http(http::Client),
    Icmp(icmp::Echo),
}

/// The `skb->mark` of a VIP probe through `host`.
pub(super) fn probe_mark(host: HostId) -> u32 {
    PROBE_MARK_TAG | (host.raw() & !ha_common::PROBE_MARK_MASK)
}

impl Prober {
    /// The check of a host's own `address`.
    pub(super) fn new(address: Ipv4Addr, check: &HealthCheck, shared: &Shared) -> Self {
        let target = SocketAddrV4::new(address, check.port);
        let kind = match check.kind {
            CheckKind::Tcp => Kind::Tcp(target, None),
            CheckKind::Http => {
                Kind::Http(http::Client::new(target, &check.path, check.expect_status))
            }
            CheckKind::Icmp => Kind::Icmp(icmp::Echo::new(shared.icmp.clone(), address)),
        };
        Self {
            timeout: Duration::from_millis(check.timeout_ms),
            kind,
            lan: shared.lan.clone(),
        }
    }

    /// `host`'s check (kind, port, path, status) aimed at `vip` through `host`, with
    /// `timeout`.
    pub(super) fn vip(
        vip: Ipv4Addr,
        host: HostId,
        check: &HealthCheck,
        timeout: Duration,
        shared: &Shared,
    ) -> Self {
        let target = SocketAddrV4::new(vip, check.port);
        let mark = probe_mark(host);
        let kind = match check.kind {
            CheckKind::Tcp => Kind::Tcp(target, Some(mark)),
            CheckKind::Http => Kind::Http(http::Client::vip(
                target,
                &check.path,
                check.expect_status,
                mark,
            )),
            CheckKind::Icmp => Kind::Icmp(icmp::Echo::with_mark(
                shared.icmp_marked.clone(),
                vip,
                Some(mark),
            )),
        };
        Self {
            timeout,
            kind,
            lan: shared.lan.clone(),
        }
    }

    /// Probes once; what it saw and when.
    pub(super) async fn probe(&mut self) -> Probe {
        let started = Instant::now();
        let sent = OnceLock::new();
        let work = async {
            let _first = sent.set(Instant::now());
            match &mut self.kind {
                Kind::Tcp(target, mark) => connect(*target, *mark).await.map(drop),
                Kind::Http(client) => client.probe().await,
                Kind::Icmp(echo) => echo.probe().await,
            }
        };
        let result = tokio::time::timeout(self.timeout, work).await.ok();
        let sent_lag = sent
            .get()
            .map_or(Duration::ZERO, |at| at.saturating_duration_since(started));
        let step_lag = match &self.kind {
            Kind::Http(client) => client.lag,
            Kind::Tcp(..) | Kind::Icmp(_) => Duration::ZERO,
        };
        let probe = Probe::judge(result, self.timeout, started, sent_lag, step_lag);
        if probe.outcome.verdict() == Some(false) && self.lan.explains(probe.started) {
            return probe.interface_down();
        }
        probe
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    };

    use socket2::{Domain, Protocol, Socket, Type};
    use tokio::{
        io::{AsyncReadExt as _, AsyncWriteExt as _},
        net::{TcpListener, TcpStream},
        task::JoinHandle,
    };

    use super::*;
    use crate::model::ProbeOutcome;

    /// How the test HTTP server answers the next request.
    #[derive(Clone, Copy, Debug)]
    pub enum Reply {
        /// This status, `Content-Length: 0`, and the connection kept open.
        Status(u16),
        /// This status with `Connection: close`, then the server closes.
        Close(u16),
        /// Reads the request and closes without answering, once; then `Status(200)`.
        DropOnce,
        /// These bytes, written one part at a time 5 ms apart; the connection is
        /// kept open.
        Raw(&'static [&'static str]),
        /// Never answers (a hung server).
        Hang,
    }

    /// An HTTP/1.1 server on 127.0.0.1 and an ephemeral port with keep-alive; its
    /// reply can be changed and it counts connections and requests.
    pub struct TestServer {
        pub port: u16,
        shared: Arc<Served>,
        task: JoinHandle<()>,
    }

    struct Served {
        reply: Mutex<Reply>,
        last_request: Mutex<String>,
        connections: AtomicUsize,
        requests: AtomicUsize,
        tasks: Mutex<Vec<JoinHandle<()>>>,
    }

    impl TestServer {
        pub async fn start(reply: Reply) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let port = listener.local_addr().expect("local address").port();
            let shared = Arc::new(Served {
                reply: Mutex::new(reply),
                last_request: Mutex::new(String::new()),
                connections: AtomicUsize::new(0),
                requests: AtomicUsize::new(0),
                tasks: Mutex::new(Vec::new()),
            });
            let served = shared.clone();
            let task = tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    served.connections.fetch_add(1, Ordering::Relaxed);
                    let task = tokio::spawn(serve(stream, served.clone()));
                    served.tasks.lock().expect("tasks lock").push(task);
                }
            });
            Self { port, shared, task }
        }

        pub fn set(&self, reply: Reply) {
            *self.shared.reply.lock().expect("reply lock") = reply;
        }

        fn last_request(&self) -> String {
            self.shared
                .last_request
                .lock()
                .expect("request lock")
                .clone()
        }

        /// (connections accepted, requests read) so far.
        fn counts(&self) -> (usize, usize) {
            (
                self.shared.connections.load(Ordering::Relaxed),
                self.shared.requests.load(Ordering::Relaxed),
            )
        }

        /// Closes the listening socket and every connection (as if the process died);
        /// returns once they are closed.
        pub async fn stop(mut self) {
            self.task.abort();
            let _cancelled = (&mut self.task).await;
            self.close_connections().await;
        }

        /// Closes every open connection (as a server's idle timeout would); returns
        /// once they are closed.
        async fn close_connections(&self) {
            let tasks = std::mem::take(&mut *self.shared.tasks.lock().expect("tasks lock"));
            for task in tasks {
                task.abort();
                let _cancelled = task.await;
            }
        }
    }

    async fn serve(mut stream: TcpStream, served: Arc<Served>) {
        let mut request = Vec::new();
        let mut chunk = [0u8; 512];
        loop {
            while !request.ends_with(b"\r\n\r\n") {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => request.extend_from_slice(&chunk[..n]),
                }
            }
            *served.last_request.lock().expect("request lock") =
                String::from_utf8_lossy(&request).into();
            request.clear();
            served.requests.fetch_add(1, Ordering::Relaxed);
            let reply = *served.reply.lock().expect("reply lock");
            let written = match reply {
                Reply::Hang => {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    return;
                }
                Reply::DropOnce => {
                    *served.reply.lock().expect("reply lock") = Reply::Status(200);
                    return;
                }
                Reply::Status(code) => {
                    let response = format!("HTTP/1.1 {code} Test\r\nContent-Length: 0\r\n\r\n");
                    stream.write_all(response.as_bytes()).await
                }
                Reply::Close(code) => {
                    let response = format!(
                        "HTTP/1.1 {code} Test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let _ignored = stream.write_all(response.as_bytes()).await;
                    return;
                }
                Reply::Raw(parts) => {
                    let mut written = Ok(());
                    for (i, part) in parts.iter().enumerate() {
                        if i > 0 {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        written = stream.write_all(part.as_bytes()).await;
                    }
                    written
                }
            };
            if written.is_err() {
                return;
            }
        }
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

    fn prober(kind: CheckKind, port: u16, timeout_ms: u64) -> Prober {
        Prober::new(
            LOCALHOST,
            &check(kind, port, timeout_ms),
            &Shared::default(),
        )
    }

    /// A failed probe, as the tests look at it.
    #[derive(Debug)]
    pub struct Failed {
        pub outcome: ProbeOutcome,
        reason: String,
    }

    impl Failed {
        pub fn reason(&self) -> String {
            self.reason.clone()
        }
    }

    impl Prober {
        /// One probe as a result: the time it took, or why it failed.
        pub async fn result(&mut self) -> Result<Duration, Failed> {
            let probe = self.probe().await;
            match probe.outcome {
                ProbeOutcome::Answered => Ok(probe.waited),
                outcome => Err(Failed {
                    outcome,
                    reason: probe.error.unwrap_or_default(),
                }),
            }
        }
    }

    async fn probe_once(kind: CheckKind, port: u16, timeout_ms: u64) -> Result<Duration, Failed> {
        prober(kind, port, timeout_ms).result().await
    }

    #[tokio::test]
    async fn tcp_connects_to_a_listener() {
        let server = TestServer::start(Reply::Status(200)).await;
        let rtt = probe_once(CheckKind::Tcp, server.port, 500)
            .await
            .expect("tcp probe");
        println!("tcp probe took {rtt:?}");
    }

    #[tokio::test]
    async fn tcp_to_a_closed_port_is_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("local address").port();
        drop(listener);
        let err = probe_once(CheckKind::Tcp, port, 500)
            .await
            .expect_err("nothing listens");
        assert!(err.outcome == ProbeOutcome::Refused, "{err:?}");
        assert_eq!(err.reason(), "connection refused");
    }

    #[tokio::test]
    async fn http_200_succeeds_and_sends_host() {
        let server = TestServer::start(Reply::Status(200)).await;
        probe_once(CheckKind::Http, server.port, 500)
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
        assert!(!request.contains("Connection:"), "keep-alive: {request:?}");
    }

    #[tokio::test]
    async fn http_503_fails() {
        let server = TestServer::start(Reply::Status(503)).await;
        let err = probe_once(CheckKind::Http, server.port, 500)
            .await
            .expect_err("503 is not 200");
        assert_eq!(err.reason(), "http status 503");
    }

    #[tokio::test]
    async fn http_to_a_hung_server_times_out() {
        let server = TestServer::start(Reply::Hang).await;
        let started = Instant::now();
        let err = probe_once(CheckKind::Http, server.port, 50)
            .await
            .expect_err("no answer");
        let took = started.elapsed();
        assert_eq!(err.reason(), "timeout after 50 ms");
        assert!(
            took >= Duration::from_millis(50) && took < Duration::from_millis(500),
            "{took:?}"
        );
    }

    /// Probes `times` times; every probe must pass.
    async fn probe_ok(prober: &mut Prober, times: usize) {
        for i in 0..times {
            if let Err(err) = prober.result().await {
                panic!("probe {i}: {}", err.reason());
            }
        }
    }

    #[tokio::test]
    async fn http_keeps_its_connection_across_probes() {
        let server = TestServer::start(Reply::Status(200)).await;
        let mut prober = prober(CheckKind::Http, server.port, 500);
        probe_ok(&mut prober, 5).await;
        assert_eq!(server.counts(), (1, 5), "(connections, requests)");
    }

    #[tokio::test]
    async fn http_reconnects_when_the_server_closes() {
        let server = TestServer::start(Reply::Close(200)).await;
        let mut prober = prober(CheckKind::Http, server.port, 500);
        probe_ok(&mut prober, 3).await;
        assert_eq!(server.counts(), (3, 3), "Connection: close");

        // The server closes a kept connection between probes (an idle timeout).
        let server = TestServer::start(Reply::Status(200)).await;
        let mut prober = self::prober(CheckKind::Http, server.port, 500);
        probe_ok(&mut prober, 2).await;
        let kept = server.counts();
        server.close_connections().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        probe_ok(&mut prober, 2).await;
        assert_eq!((kept, server.counts()), ((1, 2), (2, 4)));
    }

    #[tokio::test]
    async fn http_retries_once_when_a_kept_connection_closes_under_the_request() {
        let server = TestServer::start(Reply::Status(200)).await;
        let mut prober = prober(CheckKind::Http, server.port, 500);
        probe_ok(&mut prober, 1).await;
        server.set(Reply::DropOnce);
        probe_ok(&mut prober, 2).await;
        assert_eq!(
            server.counts(),
            (2, 4),
            "dropped request retried on a new connection"
        );

        // A fresh connection is not retried: the server really closes on requests.
        server.set(Reply::DropOnce);
        let mut fresh = self::prober(CheckKind::Http, server.port, 500);
        let err = fresh.result().await.expect_err("closed without an answer");
        assert_eq!(
            err.reason(),
            "http: connection closed before the status line"
        );
    }

    #[tokio::test]
    async fn http_reports_a_killed_server_as_refused() {
        let server = TestServer::start(Reply::Status(200)).await;
        let mut prober = prober(CheckKind::Http, server.port, 500);
        probe_ok(&mut prober, 2).await;
        server.stop().await;
        let err = prober.result().await.expect_err("server gone");
        assert_eq!(err.reason(), "connection refused");
    }

    #[tokio::test]
    async fn http_consumes_the_body_by_content_length() {
        // The body comes in two segments, after the head: a client that did not read
        // it would take " world" for the next status line.
        let server = TestServer::start(Reply::Raw(&[
            "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello",
            " world",
        ]))
        .await;
        let mut prober = prober(CheckKind::Http, server.port, 500);
        probe_ok(&mut prober, 3).await;
        assert_eq!(server.counts(), (1, 3));

        // Head split in the middle of a header line, then more than a buffer of body.
        const BIG: &str = concat!("HTTP/1.1 200 OK\r\nContent-Len", "gth: 3000\r\n\r\n",);
        let body: &'static str = "x".repeat(3000).leak();
        let parts: &'static [&'static str] = vec![BIG, body].leak();
        server.set(Reply::Raw(parts));
        probe_ok(&mut prober, 3).await;
        assert_eq!(server.counts(), (1, 6));
    }

    #[tokio::test]
    async fn http_without_a_length_closes_after_the_response() {
        let server = TestServer::start(Reply::Raw(&["HTTP/1.1 200 OK\r\n\r\nbody"])).await;
        let mut prober = prober(CheckKind::Http, server.port, 500);
        probe_ok(&mut prober, 3).await;
        assert_eq!(server.counts(), (3, 3));
    }

    #[tokio::test]
    async fn http_failure_drops_the_connection() {
        let server = TestServer::start(Reply::Status(503)).await;
        let mut prober = prober(CheckKind::Http, server.port, 500);
        for _ in 0..2 {
            let err = prober.result().await.expect_err("503");
            assert_eq!(err.reason(), "http status 503");
        }
        server.set(Reply::Status(200));
        probe_ok(&mut prober, 2).await;
        assert_eq!(
            server.counts(),
            (3, 4),
            "a new connection after each failure"
        );

        server.set(Reply::Hang);
        let err = prober.result().await.expect_err("hung");
        assert_eq!(err.reason(), "timeout after 500 ms");
        server.set(Reply::Status(200));
        probe_ok(&mut prober, 1).await;
        assert_eq!(server.counts(), (4, 6), "a new connection after a timeout");
    }

    fn can_open_raw_sockets() -> bool {
        match Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)) {
            Ok(_) => true,
            Err(err) => {
                println!("SKIPPED: icmp probe needs root (CAP_NET_RAW): {err}");
                false
            }
        }
    }

    #[tokio::test]
    async fn icmp_echo_to_localhost() {
        if !can_open_raw_sockets() {
            return;
        }
        let rtt = probe_once(CheckKind::Icmp, 0, 500)
            .await
            .expect("echo reply");
        println!("icmp probe took {rtt:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn icmp_probes_share_one_socket() {
        if !can_open_raw_sockets() {
            return;
        }
        let shared = Shared::default();
        let icmp = check(CheckKind::Icmp, 0, 500);
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let mut prober = Prober::new(LOCALHOST, &icmp, &shared);
                tokio::spawn(async move {
                    probe_ok(&mut prober, 20).await;
                    prober
                })
            })
            .collect();
        let mut sockets = Vec::new();
        let mut idents = Vec::new();
        for task in tasks {
            let prober = task.await.expect("probes pass");
            let Kind::Icmp(echo) = &prober.kind else {
                panic!("an icmp prober");
            };
            let (socket, ident) = echo.registration().expect("registered");
            sockets.push(socket);
            idents.push(ident);
        }
        sockets.dedup();
        assert_eq!(sockets.len(), 1, "one socket for all: {sockets:?}");
        idents.sort_unstable();
        idents.dedup();
        assert_eq!(idents.len(), 16, "an identifier each: {idents:?}");
    }
}
