//! The router's LAN interface, as the probes see it: a probe that fails while the
//! interface is down (or has no carrier) says nothing about the host.
//!
//! The state is asked of the kernel (`SIOCGIFFLAGS` on a datagram socket of the
//! controller's namespace) only when a probe failed, so it costs nothing while the
//! hosts answer.
//!
//! The interface back is not the path back: the kernel flushes the interface's
//! neighbours when its carrier goes, and a neighbour asked for while it was down
//! resolves again only at its next solicitation (ARP retransmits once a second by
//! default). So a failure of a probe that started within [`SETTLE`] of the last time
//! the interface was seen down is the interface's too.

use std::{
    ffi::CString,
    os::fd::AsRawFd as _,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use socket2::{Domain, Socket, Type};
use tokio::time::Instant;
use tracing::debug;

/// How long after the interface was last seen down a failed probe is still its:
/// the kernel's default ARP retransmit time (1 s), twice.
pub(super) const SETTLE: Duration = Duration::from_secs(2);

/// The LAN interface to look at, once known, and when it was last seen down.
#[derive(Debug, Default)]
pub(super) struct Lan {
    watched: Mutex<Option<Watched>>,
    last_down: Mutex<Option<Instant>>,
}

#[derive(Debug)]
struct Watched {
    name: CString,
    /// Opened with the name: asking must not need a descriptor the probes ran out of.
    socket: Socket,
}

impl Lan {
    /// Watches `name` from now on. A name the kernel cannot hold, or no socket to
    /// ask with, leaves the interface unwatched (failures then count as before).
    pub(super) fn set(&self, name: &str) {
        let watched = CString::new(name).ok().and_then(|name| {
            match Socket::new(Domain::IPV4, Type::DGRAM, None) {
                Ok(socket) => Some(Watched { name, socket }),
                Err(err) => {
                    debug!(%err, "no socket to ask the LAN interface's state with");
                    None
                }
            }
        });
        *self.watched.lock().unwrap_or_else(PoisonError::into_inner) = watched;
    }

    /// Whether a probe that started at `started` and failed now failed because of the
    /// interface: it is down or without carrier now, or was seen so less than
    /// [`SETTLE`] before the probe started.
    pub(super) fn explains(&self, started: Instant) -> bool {
        let mut last_down = self
            .last_down
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.is_down() {
            *last_down = Some(Instant::now());
            return true;
        }
        last_down.is_some_and(|at| started < at + SETTLE)
    }

    /// Whether the interface is down or without carrier (not `IFF_UP` and
    /// `IFF_RUNNING`), or gone (no interface has its name). `false` when unknown.
    pub(super) fn is_down(&self) -> bool {
        let watched = self.watched.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(Watched { name, socket }) = watched.as_ref() else {
            return false;
        };
        // SAFETY: ifreq is plain old data; zero is a valid value of every field.
        let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
        let bytes = name.as_bytes_with_nul();
        if bytes.len() > request.ifr_name.len() {
            return false;
        }
        for (slot, &byte) in request.ifr_name.iter_mut().zip(bytes) {
            *slot = byte as libc::c_char;
        }
        // SAFETY: a valid socket; `request` lives across the call and has the layout
        // SIOCGIFFLAGS reads and writes.
        let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &raw mut request) };
        if rc != 0 {
            // No interface of that name (deleted, renamed away): the LAN is gone, as
            // much the router's own trouble as an interface down. Any other error
            // is not a state we can judge.
            return std::io::Error::last_os_error().raw_os_error() == Some(libc::ENODEV);
        }
        // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
        let flags = i32::from(unsafe { request.ifr_ifru.ifru_flags });
        let wanted = libc::IFF_UP | libc::IFF_RUNNING;
        flags & wanted != wanted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_up_and_a_missing_interface_is_down() {
        let lan = Lan::default();
        assert!(!lan.is_down(), "unwatched");
        lan.set("lo");
        assert!(!lan.is_down(), "lo is up");
        assert!(!lan.explains(Instant::now()), "never seen down");
        // The LAN deleted: a probe failing meanwhile is the router's trouble.
        lan.set("ha-no-such-if0");
        assert!(lan.is_down(), "no such interface");
        assert!(lan.explains(Instant::now()));
    }

    #[test]
    fn failures_soon_after_the_interface_was_down_are_its() {
        let lan = Lan::default();
        let seen = Instant::now();
        *lan.last_down.lock().unwrap_or_else(PoisonError::into_inner) = Some(seen);
        assert!(lan.explains(seen), "started as it was seen down");
        assert!(lan.explains(seen + SETTLE - Duration::from_millis(1)));
        assert!(!lan.explains(seen + SETTLE), "started after it settled");
    }
}
