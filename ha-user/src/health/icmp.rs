//! ICMP echo checks over one raw socket shared by every host.
//!
//! Every raw ICMP socket gets a copy of every ICMP packet of the namespace, so a
//! socket per probe costs a copy of each reply per probe in flight. Instead the first
//! icmp probe opens one socket ([`Lazy`]) for the life of the checker; an
//! `ICMP_FILTER` keeps only echo replies, destination unreachables and time
//! exceededs. One receive task reads it and hands each packet to the probe waiting
//! for its echo identifier and sequence ([`Dispatch`]). Each host task holds an
//! [`Echo`]: its identifier (unique among the checker's echoes) and its slot.
//!
//! VIP probes go out on a second socket of the same kind ([`Lazy::marked`]), which
//! sets `SO_MARK` to the probe's mark before each send (under a lock, so two sends
//! cannot interleave their marks): one socket, whatever the number of hosts.

use std::{
    collections::{HashMap, hash_map::Entry},
    io::{self, Read as _},
    mem::size_of,
    net::{Ipv4Addr, SocketAddrV4},
    os::fd::AsRawFd as _,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU16, Ordering},
    },
    time::Duration,
};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::{io::unix::AsyncFd, sync::Notify, task::AbortHandle};
use tracing::debug;

use super::error::ProbeError;

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_DEST_UNREACHABLE: u8 = 3;
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_TIME_EXCEEDED: u8 = 11;

/// `ICMP_FILTER` of `<linux/icmp.h>` (level `SOL_RAW`): a bit set per ICMP type the
/// socket must not receive. Not in the libc crate.
const ICMP_FILTER: libc::c_int = 1;

/// Receive buffer asked for: the replies to a whole round of probes (1,024 hosts
/// started at once) may queue before the receive task runs, about 1 KiB each. Forced
/// past `net.core.rmem_max` with CAP_NET_ADMIN (which the controller has for XDP);
/// capped at `rmem_max` without it.
const RECV_BUFFER: libc::c_int = 1 << 20;

/// Where the next socket's echo identifiers start, from the pid's 16 bits.
static NEXT_WINDOW: AtomicU16 = AtomicU16::new(0);
/// Identifiers between two sockets of this process: more than the hosts of a config.
const IDENT_WINDOW: u16 = 4096;

/// The shared socket, opened by the first icmp probe and kept for the life of the
/// checker (every [`Echo`] and the checker hold this).
#[derive(Debug, Default)]
pub(super) struct Lazy {
    pinger: Mutex<Option<Arc<Pinger>>>,
    /// Sends carry a mark: each sets `SO_MARK` first.
    marked: bool,
}

impl Lazy {
    /// The socket of marked sends (VIP probes).
    pub(super) fn marked() -> Self {
        Self {
            pinger: Mutex::new(None),
            marked: true,
        }
    }

    /// The open socket, opening it (and starting its receive task) if needed. Must be
    /// called inside a tokio runtime. A failure is not remembered: the next probe
    /// tries again.
    fn get(&self) -> Result<Arc<Pinger>, ProbeError> {
        let mut pinger = self.pinger.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(pinger) = &*pinger {
            return Ok(pinger.clone());
        }
        let opened = Arc::new(Pinger::open(self.marked)?);
        *pinger = Some(opened.clone());
        Ok(opened)
    }
}

/// The raw socket and its receive task, which ends when this is dropped.
#[derive(Debug)]
struct Pinger {
    shared: Arc<Shared>,
    receiver: AbortHandle,
}

#[derive(Debug)]
struct Shared {
    socket: AsyncFd<Socket>,
    dispatch: Dispatch,
    /// Held from setting a send's `SO_MARK` to the send (marked sockets only).
    marking: Option<Mutex<()>>,
}

impl Shared {
    /// Sends `request` to `destination` with `mark` (on a marked socket).
    fn send(&self, request: &[u8], destination: &SockAddr, mark: Option<u32>) -> io::Result<usize> {
        let socket = self.socket.get_ref();
        match (&self.marking, mark) {
            (Some(lock), Some(mark)) => {
                let _held = lock.lock().unwrap_or_else(PoisonError::into_inner);
                socket.set_mark(mark)?;
                socket.send_to(request, destination)
            }
            _ => socket.send_to(request, destination),
        }
    }
}

impl Pinger {
    fn open(marked: bool) -> Result<Self, ProbeError> {
        let socket_error = |source| ProbeError::IcmpSocket { source };
        let socket =
            Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).map_err(socket_error)?;
        socket.set_nonblocking(true).map_err(socket_error)?;
        // Neither is needed for correctness: without the filter the receive task reads
        // and drops more packets; without the buffer a burst of replies may overflow.
        if let Err(err) = set_icmp_filter(&socket) {
            debug!(%err, "cannot set ICMP_FILTER on the icmp socket");
        }
        if let Err(err) = set_option(&socket, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RECV_BUFFER)
            .or_else(|_| set_option(&socket, libc::SOL_SOCKET, libc::SO_RCVBUF, RECV_BUFFER))
        {
            debug!(%err, "cannot enlarge the icmp socket's receive buffer");
        }
        // SAFETY: the `Socket` owns its descriptor and returns that same descriptor from
        // `as_raw_fd` until it is dropped, which happens only with the `AsyncFd`.
        let socket =
            unsafe { AsyncFd::register(socket) }.map_err(|err| socket_error(err.into()))?;
        // Every raw ICMP socket of the namespace gets every reply: identifiers should
        // differ from another process's (any 16 bits of the pid do, most of the time)
        // and from another checker's in this process (tests run several): each socket
        // starts [`IDENT_WINDOW`] further.
        #[expect(clippy::cast_possible_truncation, reason = "see above")]
        let first_ident = (std::process::id() as u16)
            .wrapping_add(NEXT_WINDOW.fetch_add(IDENT_WINDOW, Ordering::Relaxed));
        let shared = Arc::new(Shared {
            socket,
            dispatch: Dispatch::new(first_ident),
            marking: marked.then(|| Mutex::new(())),
        });
        let receiver = tokio::spawn(receive(shared.clone())).abort_handle();
        debug!("icmp socket open");
        Ok(Self { shared, receiver })
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        self.receiver.abort();
    }
}

/// Keep echo replies, destination unreachables and time exceededs; drop the rest
/// (echo requests to us, redirects, ...) before they are queued.
fn set_icmp_filter(socket: &Socket) -> io::Result<()> {
    let wanted = [ICMP_ECHO_REPLY, ICMP_DEST_UNREACHABLE, ICMP_TIME_EXCEEDED];
    let filter: u32 = !wanted.iter().fold(0, |mask, &kind| mask | (1 << kind));
    set_option(socket, libc::SOL_RAW, ICMP_FILTER, filter)
}

/// `setsockopt` with an integer value (`int` or `u32`, as the option wants).
fn set_option<T: Copy>(
    socket: &Socket,
    level: libc::c_int,
    name: libc::c_int,
    value: T,
) -> io::Result<()> {
    #[expect(clippy::cast_possible_truncation, reason = "the size of an integer")]
    let len = size_of::<T>() as libc::socklen_t;
    // SAFETY: a valid socket; `value` lives across the call and `len` is its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads the socket until the checker is dropped and dispatches every packet.
async fn receive(shared: Arc<Shared>) {
    let mut packet = [0u8; 1500];
    loop {
        let Ok(mut guard) = shared.socket.readable().await else {
            // The runtime is shutting down.
            return;
        };
        // Everything queued, then wait again (`try_io` clears the readiness on
        // EWOULDBLOCK).
        loop {
            match guard.try_io(|socket| socket.get_ref().read(&mut packet)) {
                Ok(Ok(len)) => {
                    if let Some(icmp) = parse(packet.get(..len).unwrap_or_default()) {
                        shared.dispatch.deliver(&icmp);
                    }
                }
                Ok(Err(err)) if err.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(err)) => {
                    // Not expected on an unconnected raw socket; do not spin on it.
                    debug!(%err, "icmp socket: receive");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    break;
                }
                Err(_would_block) => break,
            }
        }
    }
}

/// One host's echo check: its identifier and the slot its replies are delivered to.
/// Registered on the first probe; unregistered when dropped.
#[derive(Debug)]
pub(super) struct Echo {
    lazy: Arc<Lazy>,
    address: Ipv4Addr,
    /// The `skb->mark` of its requests (VIP probes, on a [`Lazy::marked`] socket).
    mark: Option<u32>,
    seq: u16,
    registered: Option<Registered>,
}

#[derive(Debug)]
struct Registered {
    pinger: Arc<Pinger>,
    ident: u16,
    slot: Arc<Slot>,
}

impl Echo {
    pub(super) fn new(lazy: Arc<Lazy>, address: Ipv4Addr) -> Self {
        Self::with_mark(lazy, address, None)
    }

    /// Echoes to `address` whose requests carry `mark` (`lazy` must be marked).
    pub(super) fn with_mark(lazy: Arc<Lazy>, address: Ipv4Addr, mark: Option<u32>) -> Self {
        Self {
            lazy,
            address,
            mark,
            seq: 0,
            registered: None,
        }
    }

    /// Sends one echo request and waits for the reply to it, or for an ICMP error
    /// quoting it. Unbounded: the caller applies the timeout.
    pub(super) async fn probe(&mut self) -> Result<(), ProbeError> {
        let registered = match &mut self.registered {
            Some(registered) => registered,
            None => {
                let pinger = self.lazy.get()?;
                let (ident, slot) = pinger.shared.dispatch.register();
                self.registered.insert(Registered {
                    pinger,
                    ident,
                    slot,
                })
            }
        };
        let Registered {
            pinger,
            ident,
            slot,
        } = registered;
        self.seq = self.seq.wrapping_add(1);
        slot.expect(self.address, self.seq);
        let icmp_error = |source| ProbeError::Icmp { source };
        let request = echo_request(*ident, self.seq);
        let destination = SockAddr::from(SocketAddrV4::new(self.address, 0));
        let shared = &pinger.shared;
        loop {
            let mut guard = shared.socket.writable().await.map_err(icmp_error)?;
            if let Ok(sent) = guard.try_io(|_| shared.send(&request, &destination, self.mark)) {
                sent.map_err(icmp_error)?;
                break;
            }
        }
        slot.wait().await
    }
}

#[cfg(test)]
impl Echo {
    /// The descriptor of the socket it sends on and its identifier, once registered.
    pub(super) fn registration(&self) -> Option<(std::os::fd::RawFd, u16)> {
        let Registered { pinger, ident, .. } = self.registered.as_ref()?;
        Some((pinger.shared.socket.as_raw_fd(), *ident))
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        if let Some(Registered { pinger, ident, .. }) = &self.registered {
            pinger.shared.dispatch.unregister(*ident);
        }
    }
}

/// Where replies go: a slot per registered echo identifier.
#[derive(Debug)]
struct Dispatch {
    slots: Mutex<Slots>,
}

#[derive(Debug)]
struct Slots {
    by_ident: HashMap<u16, Arc<Slot>>,
    next_ident: u16,
}

impl Dispatch {
    fn new(first_ident: u16) -> Self {
        Self {
            slots: Mutex::new(Slots {
                by_ident: HashMap::new(),
                next_ident: first_ident,
            }),
        }
    }

    /// A free identifier and its new slot.
    fn register(&self) -> (u16, Arc<Slot>) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = Arc::new(Slot::default());
        // 65,536 identifiers; the config holds far fewer hosts than that.
        loop {
            let ident = slots.next_ident;
            slots.next_ident = ident.wrapping_add(1);
            if let Entry::Vacant(entry) = slots.by_ident.entry(ident) {
                entry.insert(slot.clone());
                return (ident, slot);
            }
        }
    }

    fn unregister(&self, ident: u16) {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_ident
            .remove(&ident);
    }

    /// Hands `icmp` to the echo it answers, if any is waiting for it. Returns whether
    /// it did.
    fn deliver(&self, icmp: &Icmp) -> bool {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_ident
            .get(&icmp.ident)
            .cloned();
        slot.is_some_and(|slot| slot.deliver(icmp))
    }
}

/// What one echo waits for, and its outcome once known.
#[derive(Debug, Default)]
struct Slot {
    state: Mutex<SlotState>,
    ready: Notify,
}

#[derive(Debug, Default)]
struct SlotState {
    /// The destination and sequence of the request in flight.
    expected: Option<(Ipv4Addr, u16)>,
    outcome: Option<Outcome>,
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new request is in flight: forget anything about the previous one.
    fn expect(&self, address: Ipv4Addr, seq: u16) {
        *self.lock() = SlotState {
            expected: Some((address, seq)),
            outcome: None,
        };
    }

    /// Keeps `icmp` if it is about the request in flight and the first such packet.
    fn deliver(&self, icmp: &Icmp) -> bool {
        let mut state = self.lock();
        if state.expected != Some((icmp.about, icmp.seq)) || state.outcome.is_some() {
            return false;
        }
        state.outcome = Some(icmp.outcome);
        drop(state);
        self.ready.notify_one();
        true
    }

    /// Waits for the outcome of the request in flight.
    async fn wait(&self) -> Result<(), ProbeError> {
        loop {
            // A permit left by a late answer to an earlier request wakes this once for
            // nothing; the loop then waits again.
            if let Some(outcome) = self.lock().outcome {
                return outcome.into_result();
            }
            self.ready.notified().await;
        }
    }
}

/// An ICMP packet about one of our echo requests (identifier and sequence not yet
/// matched).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Icmp {
    ident: u16,
    seq: u16,
    /// The address the request was sent to: the source of a reply, the quoted
    /// destination of an error.
    about: Ipv4Addr,
    outcome: Outcome,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Reply,
    Error {
        what: &'static str,
        code: u8,
        from: Ipv4Addr,
    },
}

impl Outcome {
    fn into_result(self) -> Result<(), ProbeError> {
        match self {
            Outcome::Reply => Ok(()),
            Outcome::Error { what, code, from } => {
                Err(ProbeError::Unreachable { what, code, from })
            }
        }
    }
}

pub(super) fn echo_request(ident: u16, seq: u16) -> [u8; 16] {
    let mut message = [0u8; 16];
    message[0] = ICMP_ECHO_REQUEST;
    message[4..6].copy_from_slice(&ident.to_be_bytes());
    message[6..8].copy_from_slice(&seq.to_be_bytes());
    message[8..].copy_from_slice(b"ha-healt");
    let checksum = internet_checksum(&message);
    message[2..4].copy_from_slice(&checksum.to_be_bytes());
    message
}

/// RFC 1071 checksum.
fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|pair| {
            u32::from(u16::from_be_bytes([
                pair[0],
                pair.get(1).copied().unwrap_or(0),
            ]))
        })
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A received IPv4 packet (as a raw socket reads it: with its IP header) if it is an
/// echo reply or an ICMP error quoting an echo request; `None` otherwise.
fn parse(packet: &[u8]) -> Option<Icmp> {
    let header_len = usize::from(packet.first()? & 0x0f) * 4;
    let source: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
    let source = Ipv4Addr::from(source);
    let icmp = packet.get(header_len..)?;
    let ident_seq = |echo: &[u8]| -> Option<(u16, u16)> {
        let ident = u16::from_be_bytes(echo.get(4..6)?.try_into().ok()?);
        let seq = u16::from_be_bytes(echo.get(6..8)?.try_into().ok()?);
        Some((ident, seq))
    };
    let (&kind, &code) = (icmp.first()?, icmp.get(1)?);
    match kind {
        ICMP_ECHO_REPLY => {
            let (ident, seq) = ident_seq(icmp)?;
            Some(Icmp {
                ident,
                seq,
                about: source,
                outcome: Outcome::Reply,
            })
        }
        ICMP_DEST_UNREACHABLE | ICMP_TIME_EXCEEDED => {
            // The error quotes the request's IP header and the first 8 bytes of the echo.
            let quoted = icmp.get(8..)?;
            let quoted_len = usize::from(quoted.first()? & 0x0f) * 4;
            let destination: [u8; 4] = quoted.get(16..20)?.try_into().ok()?;
            let echo = quoted.get(quoted_len..)?;
            if echo.first() != Some(&ICMP_ECHO_REQUEST) {
                return None;
            }
            let (ident, seq) = ident_seq(echo)?;
            let what = match kind {
                ICMP_DEST_UNREACHABLE => "destination unreachable",
                _ => "time exceeded",
            };
            Some(Icmp {
                ident,
                seq,
                about: Ipv4Addr::from(destination),
                outcome: Outcome::Error {
                    what,
                    code,
                    from: source,
                },
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_checksum_verifies() {
        let message = echo_request(0x1234, 7);
        assert_eq!(internet_checksum(&message), 0, "{message:02x?}");
        assert_eq!(&message[4..8], &[0x12, 0x34, 0, 7]);
    }

    /// An IPv4 header (no options) from `source` to `destination`, then `payload`.
    fn ipv4(source: [u8; 4], destination: [u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut packet = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0];
        packet.extend_from_slice(&source);
        packet.extend_from_slice(&destination);
        packet.extend_from_slice(payload);
        packet
    }

    const US: [u8; 4] = [10, 0, 0, 1];
    const SERVER: [u8; 4] = [10, 0, 0, 2];
    const ROUTER: [u8; 4] = [10, 0, 0, 254];

    fn reply_to(request: [u8; 16]) -> [u8; 16] {
        let mut reply = request;
        reply[0] = ICMP_ECHO_REPLY;
        reply
    }

    fn unreachable_about(request: &[u8; 16], code: u8) -> Vec<u8> {
        let mut unreachable = vec![ICMP_DEST_UNREACHABLE, code, 0, 0, 0, 0, 0, 0];
        unreachable.extend_from_slice(&ipv4(US, SERVER, &request[..8]));
        unreachable
    }

    #[test]
    fn parses_replies_and_errors() {
        let request = echo_request(0x4841, 7);
        let reply = reply_to(request);
        assert_eq!(
            parse(&ipv4(SERVER, US, &reply)),
            Some(Icmp {
                ident: 0x4841,
                seq: 7,
                about: Ipv4Addr::from(SERVER),
                outcome: Outcome::Reply
            })
        );
        assert_eq!(parse(&ipv4(US, SERVER, &request)), None, "a request");
        assert_eq!(parse(&ipv4(SERVER, US, &reply[..5])), None, "truncated");
        assert_eq!(parse(&[0x4f, 0, 0]), None, "header longer than the packet");

        let unreachable = unreachable_about(&request, 1);
        let Some(icmp) = parse(&ipv4(ROUTER, US, &unreachable)) else {
            panic!("an error about our echo");
        };
        assert_eq!((icmp.ident, icmp.seq), (0x4841, 7));
        assert_eq!(icmp.about, Ipv4Addr::from(SERVER));
        assert_eq!(
            icmp.outcome
                .into_result()
                .map_err(|err| err.reason())
                .expect_err("an error"),
            "icmp destination unreachable (code 1) from 10.0.0.254"
        );
        let mut about_a_reply = unreachable.clone();
        about_a_reply[8 + 20] = ICMP_ECHO_REPLY;
        assert_eq!(parse(&ipv4(ROUTER, US, &about_a_reply)), None);
        assert_eq!(
            parse(&ipv4(ROUTER, US, &unreachable[..8 + 20 + 6])),
            None,
            "quote cut in the identifier"
        );
    }

    #[test]
    fn dispatch_by_identifier_and_sequence() {
        let dispatch = Dispatch::new(0xfffe);
        let (a, slot_a) = dispatch.register();
        let (b, slot_b) = dispatch.register();
        assert_eq!((a, b), (0xfffe, 0xffff));
        let (server, other) = (Ipv4Addr::from(SERVER), Ipv4Addr::from(ROUTER));
        slot_a.expect(server, 7);
        slot_b.expect(other, 7);
        let packet = |ident, seq| parse(&ipv4(SERVER, US, &reply_to(echo_request(ident, seq))));
        let deliver = |ident, seq| packet(ident, seq).is_some_and(|icmp| dispatch.deliver(&icmp));

        assert!(!deliver(a, 6), "a late reply to an earlier request");
        assert!(!deliver(0x1234, 7), "another identifier");
        assert!(!deliver(b, 7), "b's sequence but from a's address");
        assert!(slot_b.lock().outcome.is_none());
        assert!(deliver(a, 7));
        assert!(!deliver(a, 7), "a duplicate");
        assert_eq!(slot_a.lock().outcome, Some(Outcome::Reply));

        let error = parse(&ipv4(
            ROUTER,
            US,
            &unreachable_about(&echo_request(a, 8), 3),
        ));
        slot_a.expect(server, 8);
        assert!(error.is_some_and(|icmp| dispatch.deliver(&icmp)));
        assert!(matches!(
            slot_a.lock().outcome,
            Some(Outcome::Error { code: 3, .. })
        ));

        dispatch.unregister(a);
        slot_a.expect(server, 9);
        assert!(!deliver(a, 9), "unregistered");
        assert_eq!(dispatch.register().0, 0, "wraps around");
        dispatch.slots.lock().expect("slots").next_ident = a;
        assert_eq!(dispatch.register().0, a, "a free identifier again");
        dispatch.slots.lock().expect("slots").next_ident = b;
        assert_eq!(dispatch.register().0, 1, "skips b and 0, in use");
    }

    #[tokio::test]
    async fn a_slot_wakes_its_waiter_once_per_request() {
        let slot = Arc::new(Slot::default());
        let server = Ipv4Addr::from(SERVER);
        let answer = |seq| Icmp {
            ident: 1,
            seq,
            about: server,
            outcome: Outcome::Reply,
        };
        slot.expect(server, 1);
        let waiter = tokio::spawn({
            let slot = slot.clone();
            async move { slot.wait().await.map_err(|err| err.reason()) }
        });
        tokio::task::yield_now().await;
        assert!(slot.deliver(&answer(1)));
        assert_eq!(waiter.await.expect("waiter"), Ok(()));

        // A late answer to request 2 leaves a permit; request 3 must still wait.
        slot.expect(server, 2);
        assert!(slot.deliver(&answer(2)));
        slot.expect(server, 3);
        let waited = tokio::time::timeout(Duration::from_millis(20), slot.wait()).await;
        assert!(waited.is_err(), "no answer to request 3 yet");
    }
}
