//! TCP connections of the probes. They are closed with a zero linger (RST): a probe
//! every few milliseconds would otherwise leave thousands of sockets in TIME_WAIT.
//!
//! A VIP probe's socket carries `skb->mark = PROBE_MARK_TAG | host id`, so that the
//! data path sends it to that host whatever the VIP's route says (see
//! `ha-ebpf/src/learn.rs`).

use std::{io, mem::size_of, net::SocketAddrV4, os::fd::AsRawFd as _, time::Duration};

use socket2::SockRef;
use tokio::{
    net::{TcpSocket, TcpStream},
    time::Instant,
};
use tracing::debug;

use super::error::ProbeError;

/// A connection and how late the controller noticed it was up.
pub(super) struct Connected {
    pub stream: TcpStream,
    /// From the SYN-ACK's arrival (the SYN sent + the kernel's measured round trip)
    /// to the controller noticing the connection.
    pub lag: Duration,
}

/// A TCP connection to `target` that closes with RST; with `mark`, its packets carry
/// that `skb->mark`.
pub(super) async fn connect(
    target: SocketAddrV4,
    mark: Option<u32>,
) -> Result<Connected, ProbeError> {
    let connect_error = |source: io::Error| match source.kind() {
        io::ErrorKind::ConnectionRefused => ProbeError::Refused,
        _ => ProbeError::Connect { source },
    };
    let socket = TcpSocket::new_v4().map_err(connect_error)?;
    if let Some(mark) = mark {
        SockRef::from(&socket)
            .set_mark(mark)
            .map_err(connect_error)?;
    }
    let sent = Instant::now();
    let stream = socket.connect(target.into()).await.map_err(connect_error)?;
    let noticed = sent.elapsed();
    // Not fatal: without it the socket closes with FIN and lingers in TIME_WAIT.
    if let Err(err) = stream.set_zero_linger() {
        debug!(%target, %err, "cannot set SO_LINGER 0 on a probe socket");
    }
    let lag = round_trip(&stream).map_or(Duration::ZERO, |rtt| noticed.saturating_sub(rtt));
    Ok(Connected { stream, lag })
}

/// The kernel's smoothed round-trip time of `stream` (`TCP_INFO`); right after the
/// handshake, the SYN's round trip.
fn round_trip(stream: &TcpStream) -> Option<Duration> {
    // SAFETY: tcp_info is plain old data; zero is a valid value of every field.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the size of a small struct"
    )]
    let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: a valid socket; `info` and `len` live across the call and `len` is the
    // size of `info`.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &raw mut len,
        )
    };
    (rc == 0).then(|| Duration::from_micros(u64::from(info.tcpi_rtt)))
}
