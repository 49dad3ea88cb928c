//! Probes: one request from a client of the lab to an address behind the router, by a
//! real tool where one exists (`ping`, `curl`), and what came of it, as the tool saw
//! it. The same probe gives the same [`Outcome`] whichever forwarding carried it, or
//! the fast path differs from the kernel.

use std::{
    fmt,
    io::ErrorKind,
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use ha_tests::lab::{Lab, Node};

/// How long a probe waits for its answer. Answers in the lab take well under 10 ms;
/// only a refused probe waits this long.
pub const WAIT: Duration = Duration::from_secs(1);

/// One request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// `ping -c 1 -M do|dont -s SIZE TO`: one echo request with `size` bytes of data.
    Ping {
        from: Node,
        to: Ipv4Addr,
        size: u32,
        df: bool,
    },
    /// `curl http://TO:PORT/`.
    Http { from: Node, to: Ipv4Addr, port: u16 },
    /// One datagram of `size` bytes to the UDP echo at `to:port`, from a connected
    /// socket (so ICMP errors come back as errors).
    Udp {
        from: Node,
        to: Ipv4Addr,
        port: u16,
        size: usize,
    },
}

impl Probe {
    pub fn ping(from: Node, to: Ipv4Addr, size: u32, df: bool) -> Probe {
        Probe::Ping { from, to, size, df }
    }

    pub fn http(from: Node, to: Ipv4Addr, port: u16) -> Probe {
        Probe::Http { from, to, port }
    }

    pub fn udp(from: Node, to: Ipv4Addr, port: u16) -> Probe {
        Probe::Udp {
            from,
            to,
            port,
            size: 64,
        }
    }

    pub fn udp_sized(from: Node, to: Ipv4Addr, port: u16, size: usize) -> Probe {
        Probe::Udp {
            from,
            to,
            port,
            size,
        }
    }

    pub fn from(&self) -> Node {
        match self {
            Probe::Ping { from, .. } | Probe::Http { from, .. } | Probe::Udp { from, .. } => *from,
        }
    }

    /// Sends the probe and waits for its outcome (at most about [`WAIT`]).
    ///
    /// The sender's route cache is flushed first: a "fragmentation needed" leaves a
    /// path MTU there (the next DF ping would fail locally without leaving), and an
    /// ICMP redirect the router sent a LAN client earlier a next hop that bypasses
    /// the router; each probe starts from the routes alone.
    pub fn run(&self, lab: &Lab) -> anyhow::Result<Outcome> {
        flush_route_cache(lab, self.from())?;
        match *self {
            Probe::Ping { from, to, size, df } => ping(lab, from, to, size, df),
            Probe::Http { from, to, port } => http(lab, from, to, port),
            Probe::Udp {
                from,
                to,
                port,
                size,
            } => udp(lab, from, SocketAddrV4::new(to, port), size),
        }
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Ping { from, to, size, df } => write!(
                f,
                "{from}: ping -M {} -s {size} {to}",
                if *df { "do" } else { "dont" }
            ),
            Probe::Http { from, to, port } => write!(f, "{from}: curl http://{to}:{port}/"),
            Probe::Udp {
                from,
                to,
                port,
                size,
            } => write!(f, "{from}: UDP {size} bytes to {to}:{port}"),
        }
    }
}

/// What a probe's tool reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered: what the answer says (ping: its size and source; HTTP and UDP: the
    /// answering web server's name).
    Answered(String),
    /// An ICMP "fragmentation needed and DF set" from `from` with next-hop MTU `mtu`.
    FragNeeded { from: Ipv4Addr, mtu: u32 },
    /// Another ICMP error, or a TCP reset, as the tool words it.
    Error(String),
    /// Nothing came back within [`WAIT`].
    NoAnswer,
}

impl Outcome {
    pub fn answered(&self) -> bool {
        matches!(self, Outcome::Answered(_))
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Answered(what) => write!(f, "answered ({what})"),
            Outcome::FragNeeded { from, mtu } => write!(f, "frag needed from {from}, mtu {mtu}"),
            Outcome::Error(what) => write!(f, "error ({what})"),
            Outcome::NoAnswer => f.write_str("no answer"),
        }
    }
}

/// Empties `node`'s route cache (path MTUs and redirects learned from ICMP).
pub fn flush_route_cache(lab: &Lab, node: Node) -> anyhow::Result<()> {
    lab.ip(node, &["route", "flush", "cache"])?;
    Ok(())
}

fn ping(lab: &Lab, from: Node, to: Ipv4Addr, size: u32, df: bool) -> anyhow::Result<Outcome> {
    let (size, to_text) = (size.to_string(), to.to_string());
    let wait = WAIT.as_secs().max(1).to_string();
    let pmtu = if df { "do" } else { "dont" };
    let output = lab.exec(
        from,
        &[
            "ping", "-n", "-c", "1", "-W", &wait, "-M", pmtu, "-s", &size, &to_text,
        ],
    )?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    parse_ping(&stdout, &stderr)
        .with_context(|| format!("ping {to_text} from {from}: {stdout}{stderr}"))
}

/// The outcome of one `ping -c 1` from its output.
///
/// ICMP redirects (`From 192.168.1.1: icmp_seq=1 Redirect Host(New nexthop: ...)`)
/// are advice, not an outcome: the router sends one when it forwards a LAN client's
/// datagram back out of the LAN, at most 9 per peer and then nothing for a while, so
/// whether one comes depends on timing (the oracle leaves them out for the same
/// reason); the echo is answered either way.
fn parse_ping(stdout: &str, stderr: &str) -> anyhow::Result<Outcome> {
    // `3008 bytes from 192.168.1.65: icmp_seq=1 ttl=63 time=0.105 ms`
    if let Some((bytes, rest)) = stdout.lines().find_map(|l| l.split_once(" bytes from ")) {
        let source = rest.split(':').next().unwrap_or(rest);
        return Ok(Outcome::Answered(format!("{bytes} bytes from {source}")));
    }
    for line in stdout.lines().filter(|l| !l.contains(" Redirect ")) {
        // `From 10.0.0.1 icmp_seq=1 Frag needed and DF set (mtu = 1500)`
        if let Some(rest) = line.strip_prefix("From ") {
            let source = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .trim_end_matches(':');
            let message = rest.split_once(' ').map_or("", |(_, m)| m);
            let message = message
                .split_once(' ')
                .filter(|(seq, _)| seq.starts_with("icmp_seq="))
                .map_or(message, |(_, m)| m);
            if let Some(mtu) = message
                .strip_prefix("Frag needed and DF set (mtu = ")
                .and_then(|m| m.strip_suffix(')'))
            {
                return Ok(Outcome::FragNeeded {
                    from: source.parse().context("the error's source")?,
                    mtu: mtu.parse().context("the error's MTU")?,
                });
            }
            return Ok(Outcome::Error(format!("{message} from {source}")));
        }
    }
    if let Some(line) = stderr.lines().find(|l| l.starts_with("ping: ")) {
        return Ok(Outcome::Error(line.to_owned()));
    }
    Ok(Outcome::NoAnswer)
}

fn http(lab: &Lab, from: Node, to: Ipv4Addr, port: u16) -> anyhow::Result<Outcome> {
    let url = format!("http://{to}:{port}/");
    let wait = format!("{:.1}", WAIT.as_secs_f64());
    let output = lab.exec(
        from,
        &["curl", "-sS", "--fail", "--max-time", &wait, "--", &url],
    )?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    Ok(match output.status.code() {
        Some(0) => Outcome::Answered(String::from_utf8_lossy(&output.stdout).trim().to_owned()),
        // Operation timed out.
        Some(28) => Outcome::NoAnswer,
        // Could not connect: refused (a reset), or an ICMP error.
        Some(7) => Outcome::Error(
            stderr
                .rsplit(": ")
                .next()
                .unwrap_or(&stderr)
                .trim()
                .to_owned(),
        ),
        _ => Outcome::Error(format!("curl {}: {}", output.status, stderr.trim())),
    })
}

fn udp(lab: &Lab, from: Node, target: SocketAddrV4, size: usize) -> anyhow::Result<Outcome> {
    let socket = lab.udp_socket(from)?;
    udp_exchange(&socket, target, size)
}

/// Sends one datagram of `size` bytes (`probe ...` padded) on `socket` to the echo at
/// `target` and reads the answer: the first word of an `ha-webd` echo is its name.
pub fn udp_exchange(
    socket: &UdpSocket,
    target: SocketAddrV4,
    size: usize,
) -> anyhow::Result<Outcome> {
    socket
        .connect(target)
        .with_context(|| format!("connecting a UDP socket to {target}"))?;
    socket.set_read_timeout(Some(WAIT))?;
    let mut payload = b"probe ".to_vec();
    payload.resize(size.max(payload.len()), b'.');
    match socket.send(&payload) {
        Ok(_) => {}
        Err(err) => return Ok(Outcome::Error(format!("send: {err}"))),
    }
    let mut buffer = vec![0u8; size + 64];
    let started = Instant::now();
    loop {
        match socket.recv(&mut buffer) {
            Ok(n) => {
                let answer = String::from_utf8_lossy(&buffer[..n]);
                let (name, echoed) = answer.split_once(' ').unwrap_or((&answer, ""));
                let intact = echoed.as_bytes() == payload.as_slice();
                return Ok(Outcome::Answered(if intact {
                    name.to_owned()
                } else {
                    format!(
                        "{name}, payload changed: {} of {} bytes",
                        echoed.len(),
                        payload.len()
                    )
                }));
            }
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ok(Outcome::NoAnswer);
            }
            Err(err) if err.kind() == ErrorKind::Interrupted && started.elapsed() < WAIT => {}
            Err(err) => return Ok(Outcome::Error(err.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_outputs() {
        let answered = "PING 192.168.1.65 (192.168.1.65) 3000(3028) bytes of data.\n\
             3008 bytes from 192.168.1.65: icmp_seq=1 ttl=63 time=0.105 ms\n";
        assert_eq!(
            parse_ping(answered, "").expect("parses"),
            Outcome::Answered("3008 bytes from 192.168.1.65".into())
        );
        let frag = "From 10.0.0.1 icmp_seq=1 Frag needed and DF set (mtu = 1500)\n";
        assert_eq!(
            parse_ping(frag, "").expect("parses"),
            Outcome::FragNeeded {
                from: Ipv4Addr::new(10, 0, 0, 1),
                mtu: 1500
            }
        );
        let unreachable = "From 10.0.0.1 icmp_seq=1 Destination Host Unreachable\n";
        assert_eq!(
            parse_ping(unreachable, "").expect("parses"),
            Outcome::Error("Destination Host Unreachable from 10.0.0.1".into())
        );
        let local = "ping: local error: message too long, mtu=1500\n";
        assert_eq!(
            parse_ping("", local).expect("parses"),
            Outcome::Error("ping: local error: message too long, mtu=1500".into())
        );
        assert_eq!(
            parse_ping("PING x\n", "").expect("parses"),
            Outcome::NoAnswer
        );
        let redirected = "From 192.168.1.1: icmp_seq=1 Redirect Host(New nexthop: 192.168.1.3)\n\
             8008 bytes from 192.168.1.65: icmp_seq=1 ttl=64 time=0.2 ms\n";
        assert_eq!(
            parse_ping(redirected, "").expect("parses"),
            Outcome::Answered("8008 bytes from 192.168.1.65".into())
        );
    }
}
