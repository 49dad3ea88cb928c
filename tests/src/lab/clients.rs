//! Traffic from the lab's clients: sockets created inside a namespace, one-shot UDP
//! and HTTP requests, packet captures, and `ha-stream` runs.

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};

use super::{Capture, Lab, Node, Proc, RawSender, StreamReport, describe_status, ns};

impl Lab {
    /// Makes `node` ignore ICMP redirects. While the kernel forwards a LAN client's
    /// datagrams (the fast path not steering yet), the router redirects it to the
    /// server on the same link; a client that obeyed would bypass the router from
    /// then on, and what the router does to its flow would no longer be measured.
    pub fn ignore_icmp_redirects(&self, node: Node) -> anyhow::Result<()> {
        self.exec_ok(
            node,
            &[
                "sysctl",
                "-qw",
                "net.ipv4.conf.all.accept_redirects=0",
                "net.ipv4.conf.eth0.accept_redirects=0",
            ],
        )
        .map(drop)
    }

    /// A UDP socket bound to an ephemeral port in `node`'s namespace (it stays there,
    /// whichever thread uses it).
    pub fn udp_socket(&self, node: Node) -> anyhow::Result<UdpSocket> {
        let socket = ns::in_netns(&self.ns(node), || UdpSocket::bind("0.0.0.0:0"))?
            .with_context(|| format!("binding a UDP socket in {node}"))?;
        Ok(socket)
    }

    /// Sends `payload` from `node` to `target` and returns the answer, as text
    /// (ha-webd answers `<host name> <payload>`).
    pub fn udp_ask(
        &self,
        node: Node,
        target: SocketAddrV4,
        payload: &str,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let socket = self.udp_socket(node)?;
        socket.set_read_timeout(Some(timeout))?;
        socket
            .send_to(payload.as_bytes(), target)
            .with_context(|| format!("sending to {target} from {node}"))?;
        let mut buffer = [0u8; 2048];
        let (n, _) = socket
            .recv_from(&mut buffer)
            .with_context(|| format!("no answer from {target} to {node} within {timeout:?}"))?;
        Ok(String::from_utf8_lossy(&buffer[..n]).into_owned())
    }

    /// The web server answering `vip` for UDP from `node`: the first word of the
    /// echo's answer.
    pub fn udp_who(&self, node: Node, vip: Ipv4Addr) -> anyhow::Result<String> {
        let target = SocketAddrV4::new(vip, self.spec.udp_port);
        let answer = self.udp_ask(node, target, "who", Duration::from_secs(1))?;
        match answer.split_once(' ') {
            Some((host, "who")) => Ok(host.to_owned()),
            _ => bail!("unexpected answer from {target}: {answer:?}"),
        }
    }

    /// `GET /` on `address` port 80 from `node`; the body (ha-webd: `<name>\n`).
    pub fn http_get(&self, node: Node, address: Ipv4Addr) -> anyhow::Result<String> {
        let target = SocketAddr::from((address, 80));
        let timeout = Duration::from_secs(2);
        let mut stream = ns::in_netns(&self.ns(node), || {
            TcpStream::connect_timeout(&target, timeout)
        })?
        .with_context(|| format!("connecting to {target} from {node}"))?;
        stream.set_read_timeout(Some(timeout))?;
        write!(stream, "GET / HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .with_context(|| format!("reading the answer of {target}"))?;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .with_context(|| format!("malformed HTTP answer from {target}: {response:?}"))?;
        ensure!(
            head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
            "{target} answered {head:?}"
        );
        Ok(body.to_owned())
    }

    /// Captures the frames `iface` of `node` receives.
    pub fn capture(&self, node: Node, iface: &str) -> anyhow::Result<Capture> {
        Capture::start(&self.ns(node), iface)
    }

    /// A sender of raw frames out of `iface` of `node`.
    pub fn raw_sender(&self, node: Node, iface: &str) -> anyhow::Result<RawSender> {
        RawSender::open(&self.ns(node), iface)
    }

    /// Starts `ha-stream` in `node` towards `target` at `rate` datagrams per second
    /// for `duration`, and returns once it is sending.
    pub fn stream(
        &self,
        node: Node,
        target: SocketAddrV4,
        rate: u64,
        duration: Duration,
    ) -> anyhow::Result<StreamRun> {
        let name = format!("stream-{}", unique());
        let json = self.dir.join(format!("{name}.json"));
        let stream = self.spec.bins.stream.to_string_lossy().into_owned();
        let (target_text, rate_text) = (target.to_string(), rate.to_string());
        let duration_text = duration.as_millis().to_string();
        let json_text = json.to_string_lossy().into_owned();
        let mut proc = self.spawn(
            node,
            &name,
            &[
                &stream,
                "--target",
                &target_text,
                "--rate",
                &rate_text,
                "--duration-ms",
                &duration_text,
                "--json",
                &json_text,
                "--answers",
            ],
        )?;
        proc.wait_for_line("sending", Duration::from_secs(5))?;
        Ok(StreamRun {
            proc,
            json,
            started: Instant::now(),
            duration,
        })
    }
}

/// A running `ha-stream`.
pub struct StreamRun {
    proc: Proc,
    json: PathBuf,
    started: Instant,
    duration: Duration,
}

impl StreamRun {
    /// Waits for the stream to end and returns its report.
    pub fn wait(mut self) -> anyhow::Result<StreamReport> {
        let left = self.duration.saturating_sub(self.started.elapsed());
        let status = self.proc.wait_timeout(left + Duration::from_secs(10))?;
        if !status.success() {
            bail!(
                "ha-stream failed ({}):\n{}",
                describe_status(status),
                self.proc.log()
            );
        }
        let text = std::fs::read_to_string(&self.json)
            .with_context(|| format!("reading {}", self.json.display()))?;
        StreamReport::from_json(&text)
    }

    /// When the stream started sending (about: after its `sending` line).
    pub fn started(&self) -> Instant {
        self.started
    }
}

/// A number unique within this process, for file names.
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
