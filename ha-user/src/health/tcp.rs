//! TCP connections of the probes. They are closed with a zero linger (RST): a probe
//! every few milliseconds would otherwise leave thousands of sockets in TIME_WAIT.

use std::{io, net::SocketAddrV4};

use tokio::net::TcpStream;
use tracing::debug;

use super::error::ProbeError;

/// A TCP connection to `target` that closes with RST.
pub(super) async fn connect(target: SocketAddrV4) -> Result<TcpStream, ProbeError> {
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
