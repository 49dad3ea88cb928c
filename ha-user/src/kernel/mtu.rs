//! The LAN interface's MTU, followed through rtnetlink's `RTNLGRP_LINK` group.
//!
//! Every host entry carries the egress MTU (the data path passes a longer datagram
//! to the kernel, which fragments it or answers "fragmentation needed"), so when
//! `ip link set LAN mtu N` changes it the controller must rewrite them. [`watch`]
//! reports each change of one interface's MTU: the kernel sends `RTM_NEWLINK` to the
//! group on every change of a link's attributes; the watcher keeps those whose MTU
//! differs from the last it reported. A lost notification (socket buffer overrun) is
//! survived by reading the link again.

use std::time::Duration;

use futures::{Stream, StreamExt as _, TryStreamExt as _};
use rtnetlink::{
    Handle, MulticastGroup,
    packet_core::{NetlinkMessage, NetlinkPayload},
    packet_route::{
        RouteNetlinkMessage,
        link::{LinkAttribute, LinkMessage},
    },
};
use tokio::sync::mpsc;

use super::AbortOnDrop;

/// Wait before retrying a failed read of the link.
const RESYNC_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum MtuError {
    #[error("cannot open a netlink socket to follow the LAN interface's MTU")]
    Connect(#[source] std::io::Error),
}

/// The MTU of interface `ifindex` is now `mtu`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MtuEvent {
    pub ifindex: u32,
    pub mtu: u32,
}

/// Watches the MTU of interface `ifindex`, which the caller last read as `known`:
/// the channel carries an event whenever it changes (including a change between the
/// caller's read and this call). The watch ends when the receiver is dropped. Must
/// be called inside a tokio runtime.
pub fn watch(
    ifindex: u32,
    known: u32,
    capacity: usize,
) -> Result<mpsc::Receiver<MtuEvent>, MtuError> {
    let (connection, handle, messages) =
        rtnetlink::new_multicast_connection(&[MulticastGroup::Link]).map_err(MtuError::Connect)?;
    let connection = AbortOnDrop(tokio::spawn(connection));
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let watcher = Watcher {
        ifindex,
        last: known,
        tx,
    };
    tokio::spawn(watcher.run(handle, messages, connection));
    Ok(rx)
}

struct Watcher {
    ifindex: u32,
    /// The MTU last reported (or known to the caller).
    last: u32,
    tx: mpsc::Sender<MtuEvent>,
}

impl Watcher {
    async fn run<S>(mut self, handle: Handle, mut messages: S, _connection: AbortOnDrop)
    where
        S: Stream<
                Item = (
                    NetlinkMessage<RouteNetlinkMessage>,
                    rtnetlink::sys::SocketAddr,
                ),
            > + Unpin,
    {
        // Subscribed before the first read: no change falls between the two.
        let mut resync = true;
        loop {
            if resync {
                match read(&handle, self.ifindex).await {
                    Ok(mtu) => {
                        resync = false;
                        if let Some(mtu) = mtu
                            && !self.update(mtu).await
                        {
                            return;
                        }
                    }
                    Err(err) => {
                        tracing::warn!("cannot read the LAN interface's MTU, retrying: {err}");
                        tokio::select! {
                            () = tokio::time::sleep(RESYNC_RETRY) => continue,
                            () = self.tx.closed() => return,
                        }
                    }
                }
            }
            let message = tokio::select! {
                message = messages.next() => message,
                () = self.tx.closed() => return,
            };
            let Some((message, _)) = message else {
                tracing::warn!("the link watch's netlink socket closed");
                return;
            };
            match message.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
                    if let Some(mtu) = mtu_of(&link, self.ifindex)
                        && !self.update(mtu).await
                    {
                        return;
                    }
                }
                NetlinkPayload::Overrun(_) => {
                    tracing::warn!("link notifications were lost; reading the LAN interface again");
                    resync = true;
                }
                _ => {}
            }
        }
    }

    /// Reports `mtu` if it changed. False once the receiver is gone.
    async fn update(&mut self, mtu: u32) -> bool {
        if mtu == self.last {
            return true;
        }
        self.last = mtu;
        let event = MtuEvent {
            ifindex: self.ifindex,
            mtu,
        };
        self.tx.send(event).await.is_ok()
    }
}

/// The MTU of interface `ifindex` now (`None`: it is gone).
async fn read(handle: &Handle, ifindex: u32) -> Result<Option<u32>, rtnetlink::Error> {
    let mut links = handle.link().get().match_index(ifindex).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(mtu_of(&link, ifindex)),
        Ok(None) => Ok(None),
        Err(rtnetlink::Error::NetlinkError(err)) if err.raw_code() == -libc::ENODEV => Ok(None),
        Err(err) => Err(err),
    }
}

/// The MTU `link` reports, if it is interface `ifindex`.
fn mtu_of(link: &LinkMessage, ifindex: u32) -> Option<u32> {
    if link.header.index != ifindex {
        return None;
    }
    link.attributes.iter().find_map(|attr| match attr {
        LinkAttribute::Mtu(mtu) => Some(*mtu),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, mtu: Option<u32>) -> LinkMessage {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message
            .attributes
            .push(LinkAttribute::IfName("eth1".to_owned()));
        message.attributes.extend(mtu.map(LinkAttribute::Mtu));
        message
    }

    #[test]
    fn only_the_watched_interface_counts() {
        assert_eq!(mtu_of(&link(4, Some(9000)), 4), Some(9000));
        assert_eq!(mtu_of(&link(5, Some(9000)), 4), None);
        assert_eq!(mtu_of(&link(4, None), 4), None);
    }

    #[tokio::test]
    async fn only_changes_are_reported() {
        let (tx, mut rx) = mpsc::channel(4);
        let mut watcher = Watcher {
            ifindex: 4,
            last: 1500,
            tx,
        };
        assert!(watcher.update(1500).await);
        assert!(rx.try_recv().is_err(), "the known MTU is not news");
        assert!(watcher.update(9000).await);
        assert!(watcher.update(9000).await);
        assert_eq!(
            rx.try_recv().expect("one change"),
            MtuEvent {
                ifindex: 4,
                mtu: 9000
            }
        );
        assert!(rx.try_recv().is_err(), "only one change");
        drop(rx);
        assert!(!watcher.update(1400).await, "the receiver is gone");
    }
}
