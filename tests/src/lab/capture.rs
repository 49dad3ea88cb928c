//! A packet capture on one interface of one namespace: an `AF_PACKET` socket read by
//! a thread, so a test sees the frames as they arrived (MAC addresses, TTL, or every
//! byte) without parsing tcpdump's text. The socket is bound before
//! [`Capture::start`] returns: nothing sent afterwards is missed.

use std::{
    fmt,
    net::Ipv4Addr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::Context as _;
use ha_user::model::Mac;

use super::ns;

/// One received frame, with the fields the tests look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub dst_mac: Mac,
    pub src_mac: Mac,
    pub ethertype: u16,
    /// IPv4 only.
    pub ip: Option<Ipv4Info>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Info {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    /// 6 TCP, 17 UDP, 1 ICMP.
    pub protocol: u8,
    /// TCP and UDP: (source port, destination port).
    pub ports: Option<(u16, u16)>,
}

impl Frame {
    /// The fields of a received frame, if it holds an Ethernet header.
    pub fn parse(bytes: &[u8]) -> Option<Frame> {
        let mac = |at: usize| -> Option<Mac> { Some(Mac(bytes.get(at..at + 6)?.try_into().ok()?)) };
        let dst_mac = mac(0)?;
        let src_mac = mac(6)?;
        let ethertype = u16::from_be_bytes(bytes.get(12..14)?.try_into().ok()?);
        let ip = (ethertype == 0x0800)
            .then(|| {
                let header = bytes.get(14..)?;
                let ihl = usize::from(header.first()? & 0x0f) * 4;
                let addr = |at: usize| -> Option<Ipv4Addr> {
                    let octets: [u8; 4] = header.get(at..at + 4)?.try_into().ok()?;
                    Some(Ipv4Addr::from(octets))
                };
                let protocol = *header.get(9)?;
                let ports = matches!(protocol, 6 | 17)
                    .then(|| {
                        let l4 = header.get(ihl..ihl + 4)?;
                        Some((
                            u16::from_be_bytes([l4[0], l4[1]]),
                            u16::from_be_bytes([l4[2], l4[3]]),
                        ))
                    })
                    .flatten();
                Some(Ipv4Info {
                    src: addr(12)?,
                    dst: addr(16)?,
                    ttl: *header.get(8)?,
                    protocol,
                    ports,
                })
            })
            .flatten();
        Some(Frame {
            dst_mac,
            src_mac,
            ethertype,
            ip,
        })
    }

    /// Whether this is UDP to `dst:port`.
    pub fn is_udp_to(&self, dst: Ipv4Addr, port: u16) -> bool {
        self.ip.is_some_and(|ip| {
            ip.protocol == 17 && ip.dst == dst && ip.ports.map(|p| p.1) == Some(port)
        })
    }

    /// Whether this is IPv4 to `dst`.
    pub fn is_ipv4_to(&self, dst: Ipv4Addr) -> bool {
        self.ip.is_some_and(|ip| ip.dst == dst)
    }
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} > {}", self.src_mac, self.dst_mac)?;
        match self.ip {
            Some(ip) => {
                write!(
                    f,
                    " {} > {} ttl {} proto {}",
                    ip.src, ip.dst, ip.ttl, ip.protocol
                )?;
                if let Some((sport, dport)) = ip.ports {
                    write!(f, " ports {sport} > {dport}")?;
                }
                Ok(())
            }
            None => write!(f, " ethertype {:#06x}", self.ethertype),
        }
    }
}

/// A running capture of the frames an interface receives (not those it sends).
pub struct Capture {
    frames: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    what: String,
}

/// How often the reader checks whether to stop.
const POLL: Duration = Duration::from_millis(20);
/// Receive buffer of the capture socket: bursts of large frames must not overflow it
/// while the reader thread waits for a CPU.
const RECEIVE_BUFFER: i32 = 8 << 20;

impl Capture {
    /// Starts capturing on `iface` in namespace `netns`.
    pub fn start(netns: &str, iface: &str) -> anyhow::Result<Capture> {
        let socket = ns::in_netns(netns, || open_socket(iface))?
            .with_context(|| format!("capturing on {iface} in {netns}"))?;
        let frames = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let frames = Arc::clone(&frames);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name(format!("capture-{netns}-{iface}"))
                .spawn(move || read_frames(&socket, &frames, &stop))
                .context("spawning the capture thread")?
        };
        Ok(Capture {
            frames,
            stop,
            thread: Some(thread),
            what: format!("{iface} in {netns}"),
        })
    }

    /// The frames received so far.
    pub fn frames(&self) -> Vec<Frame> {
        self.raw()
            .iter()
            .filter_map(|bytes| Frame::parse(bytes))
            .collect()
    }

    /// The frames received so far, every byte of each.
    pub fn raw(&self) -> Vec<Vec<u8>> {
        self.frames
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stops capturing (after frames already queued in the socket are read) and
    /// returns every frame received.
    pub fn stop(self) -> Vec<Frame> {
        self.stop_raw()
            .iter()
            .filter_map(|bytes| Frame::parse(bytes))
            .collect()
    }

    /// [`Capture::stop`], every byte of each frame.
    pub fn stop_raw(mut self) -> Vec<Vec<u8>> {
        self.finish();
        self.raw()
    }

    fn finish(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            eprintln!("warning: the capture on {} panicked", self.what);
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.finish();
    }
}

fn open_socket(iface: &str) -> anyhow::Result<OwnedFd> {
    let protocol = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(protocol)) };
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
    addr.sll_protocol = protocol;
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
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: POLL.as_micros() as libc::suseconds_t,
    };
    // SAFETY: a valid timeval of the size given.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const timeout).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("SO_RCVTIMEO");
    }
    let size = RECEIVE_BUFFER;
    // SAFETY: a valid int of the size given. FORCE: root may exceed rmem_max.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const size).cast(),
            std::mem::size_of::<i32>() as u32,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("SO_RCVBUFFORCE");
    }
    Ok(socket)
}

fn read_frames(socket: &OwnedFd, frames: &Mutex<Vec<Vec<u8>>>, stop: &AtomicBool) {
    let mut buffer = vec![0u8; 65_536];
    loop {
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut from_len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        // Once asked to stop, read only what is queued already: the interface may
        // never be quiet for a whole timeout (health checks).
        let stopping = stop.load(Ordering::Relaxed);
        let flags = if stopping { libc::MSG_DONTWAIT } else { 0 };
        // SAFETY: `buffer` and `from` are valid for the lengths given.
        let n = unsafe {
            libc::recvfrom(
                socket.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                flags,
                (&raw mut from).cast(),
                &mut from_len,
            )
        };
        if n < 0 {
            // Timeout or nothing queued (EAGAIN), or EINTR.
            if stopping {
                return;
            }
            continue;
        }
        if from.sll_pkttype == libc::PACKET_OUTGOING {
            continue;
        }
        let len = usize::try_from(n).unwrap_or(0);
        frames
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(buffer[..len].to_vec());
    }
}
