//! The one loop that follows a kernel table through rtnetlink's multicast groups,
//! shared by the neighbour watch ([`super::neigh`]) and the LAN watch ([`super::lan`]).
//!
//! The socket subscribes before the first read of the table, so no change falls
//! between the two. A notification the kernel could not deliver (the socket's
//! buffer overran) is survived by reading the table again: the follower reports the
//! differences, so what it last reported is always the kernel's state. A failed read
//! is retried every [`RESYNC_RETRY`]. The loop ends when the follower's receiver is
//! gone or the socket closes.

use std::{future::Future, io, time::Duration};

use futures::{Stream, StreamExt as _};
use rtnetlink::{
    Handle, MulticastGroup,
    packet_core::{NetlinkMessage, NetlinkPayload},
    packet_route::RouteNetlinkMessage,
    sys::AsyncSocket as _,
};

use super::AbortOnDrop;

/// Wait before retrying a failed read of the table.
const RESYNC_RETRY: Duration = Duration::from_secs(1);

/// What one watch follows, and what it makes of the kernel's messages.
pub(crate) trait Follower: Send + 'static {
    /// A full read of what is followed.
    type Table: Send;

    /// What is followed, for log lines: "the neighbour table".
    fn what(&self) -> &'static str;

    /// Reads the whole table.
    fn read(
        &self,
        handle: &Handle,
    ) -> impl Future<Output = Result<Self::Table, rtnetlink::Error>> + Send;

    /// Applies a full read; `first`: the one at the start. False once nobody listens.
    fn resynced(&mut self, table: Self::Table, first: bool) -> impl Future<Output = bool> + Send;

    /// Applies one notification. False once nobody listens.
    fn notified(&mut self, message: RouteNetlinkMessage) -> impl Future<Output = bool> + Send;

    /// Resolves once nobody listens any more.
    fn closed(&self) -> impl Future<Output = ()> + Send;
}

/// Starts following `follower`'s table through `groups`, with a receive buffer of
/// `rx_buffer` bytes if given (a burst of changes fits; an overrun is survived
/// anyway). Must be called inside a tokio runtime.
pub(crate) fn spawn<F: Follower>(
    groups: &[MulticastGroup],
    rx_buffer: Option<usize>,
    follower: F,
) -> io::Result<()> {
    let (mut connection, handle, messages) = rtnetlink::new_multicast_connection(groups)?;
    if let Some(size) = rx_buffer
        && let Err(err) = connection.socket_mut().socket_mut().set_rx_buf_sz(size)
    {
        // The default buffer works; an overrun is recovered from by re-reading.
        tracing::debug!(
            "cannot enlarge the receive buffer of the watch of {}: {err}",
            follower.what()
        );
    }
    let connection = AbortOnDrop(tokio::spawn(connection));
    tokio::spawn(run(follower, handle, messages, connection));
    Ok(())
}

async fn run<F, S>(mut follower: F, handle: Handle, mut messages: S, _connection: AbortOnDrop)
where
    F: Follower,
    S: Stream<
            Item = (
                NetlinkMessage<RouteNetlinkMessage>,
                rtnetlink::sys::SocketAddr,
            ),
        > + Unpin
        + Send,
{
    let mut first = true;
    let mut resync = true;
    loop {
        if resync {
            match follower.read(&handle).await {
                Ok(table) => {
                    resync = false;
                    if !follower.resynced(table, first).await {
                        return;
                    }
                    first = false;
                }
                Err(err) => {
                    tracing::warn!(
                        "reading {} failed; retrying in a second: {err}",
                        follower.what()
                    );
                    tokio::select! {
                        () = tokio::time::sleep(RESYNC_RETRY) => continue,
                        () = follower.closed() => return,
                    }
                }
            }
        }
        let message = tokio::select! {
            message = messages.next() => message,
            () = follower.closed() => return,
        };
        let Some((message, _)) = message else {
            tracing::warn!(
                "the netlink socket of the watch of {} closed",
                follower.what()
            );
            return;
        };
        let message = match message.payload {
            NetlinkPayload::InnerMessage(message) => message,
            NetlinkPayload::Overrun(_) => {
                tracing::warn!(
                    "notifications about {} were lost; reading it again",
                    follower.what()
                );
                resync = true;
                continue;
            }
            _ => continue,
        };
        if !follower.notified(message).await {
            return;
        }
    }
}
