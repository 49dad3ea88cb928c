//! Raw Ethernet frames sent exactly as given from one interface of one namespace (an
//! `AF_PACKET` socket): frames no socket API would build, addressed to any MAC.

use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

use anyhow::{Context as _, ensure};

use super::ns;

/// A socket that sends whole frames, Ethernet header included, out of one interface.
pub struct RawSender {
    socket: OwnedFd,
    what: String,
}

impl RawSender {
    /// A sender on `iface` in namespace `netns`.
    pub fn open(netns: &str, iface: &str) -> anyhow::Result<RawSender> {
        let socket = ns::in_netns(netns, || open_socket(iface))?
            .with_context(|| format!("a raw socket on {iface} in {netns}"))?;
        Ok(RawSender {
            socket,
            what: format!("{iface} in {netns}"),
        })
    }

    /// Sends `frame` as it is. The kernel refuses frames shorter than an Ethernet
    /// header or longer than the interface's MTU plus the header.
    pub fn send(&self, frame: &[u8]) -> anyhow::Result<()> {
        // SAFETY: `frame` is valid for its length; the socket is bound.
        let sent = unsafe {
            libc::send(
                self.socket.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
            )
        };
        if sent < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("sending a {}-byte frame on {}", frame.len(), self.what));
        }
        ensure!(
            usize::try_from(sent).ok() == Some(frame.len()),
            "{} sent {sent} of {} bytes",
            self.what,
            frame.len()
        );
        Ok(())
    }
}

fn open_socket(iface: &str) -> anyhow::Result<OwnedFd> {
    // Protocol 0: this socket receives nothing.
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("socket(AF_PACKET)");
    }
    // SAFETY: a fresh descriptor we own.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = std::ffi::CString::new(iface).context("interface name")?;
    // SAFETY: valid NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("no interface {iface}"));
    }
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = i32::try_from(ifindex).context("ifindex")?;
    // SAFETY: `addr` is a valid sockaddr_ll of the size given.
    let rc = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&raw const addr).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("bind(AF_PACKET)");
    }
    Ok(socket)
}
