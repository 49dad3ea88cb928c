//! `ha-webd`: the lab's web server. HTTP answers every request with `200` and
//! `<name>\n` (with its `Content-Length`), several requests per connection as HTTP/1.1
//! keep-alive wants (HTTP/1.0 and `Connection: close` requests get one answer and the
//! connection closes); the UDP echo answers every datagram with `<name> <payload>`,
//! from the address the datagram was sent to (the VIP), so connected clients accept
//! it.
//!
//! ```text
//! ha-webd --name host1 [--http 0.0.0.0:80] [--udp 0.0.0.0:9000] [--delay-ms N]
//!         [--fault status:CODE|hang]
//! ```
//!
//! `--fault` names a failure the server suffers while it is switched on, without
//! the server stopping (its port keeps accepting): SIGUSR1 switches it on, SIGUSR2
//! off. `status:CODE` answers every request with that status instead of 200 (a
//! misconfigured server); `hang` accepts connections and reads their requests but
//! never answers (workers stuck).
//!
//! Prints `ready ...` on stderr once both sockets are bound.

use std::{
    io::{Read as _, Write as _},
    mem::{size_of, zeroed},
    net::{SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd as _,
    process::ExitCode,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use anyhow::Context as _;
use clap::Parser as _;

/// A kept connection idle this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A request head longer than this closes the connection.
const MAX_HEAD: usize = 16 * 1024;

/// The lab's web server: HTTP and a UDP echo, both answering with its name.
#[derive(clap::Parser)]
#[command(name = "ha-webd")]
struct Args {
    /// The name every answer carries.
    #[arg(long)]
    name: String,
    /// Where HTTP listens.
    #[arg(long, default_value = "0.0.0.0:80")]
    http: SocketAddrV4,
    /// Where the UDP echo listens.
    #[arg(long, default_value = "0.0.0.0:9000")]
    udp: SocketAddrV4,
    /// Answer every HTTP request this many milliseconds late (a slow server).
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// The failure SIGUSR1 switches on (SIGUSR2 off): `status:CODE` or `hang`.
    #[arg(long, value_parser = parse_fault)]
    fault: Option<Fault>,
}

/// A failure of the HTTP server while switched on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// Every request answered with this status.
    Status(u16),
    /// Requests read, never answered.
    Hang,
}

fn parse_fault(text: &str) -> Result<Fault, String> {
    if text == "hang" {
        return Ok(Fault::Hang);
    }
    text.strip_prefix("status:")
        .and_then(|code| code.parse::<u16>().ok())
        .filter(|code| (100..=599).contains(code))
        .map(Fault::Status)
        .ok_or_else(|| format!("{text:?}: expected status:CODE (100-599) or hang"))
}

/// Whether the configured fault is on (SIGUSR1) or off (SIGUSR2).
static FAULTY: AtomicBool = AtomicBool::new(false);

extern "C" fn fault_on(_: libc::c_int) {
    FAULTY.store(true, Ordering::SeqCst);
}

extern "C" fn fault_off(_: libc::c_int) {
    FAULTY.store(false, Ordering::SeqCst);
}

/// SIGUSR1 and SIGUSR2 switch the fault on and off.
fn install_fault_signals() -> anyhow::Result<()> {
    for (signal, handler) in [
        (libc::SIGUSR1, fault_on as extern "C" fn(libc::c_int)),
        (libc::SIGUSR2, fault_off as extern "C" fn(libc::c_int)),
    ] {
        // SAFETY: the handlers only store into an atomic, which is signal-safe.
        let old = unsafe { libc::signal(signal, handler as libc::sighandler_t) };
        anyhow::ensure!(
            old != libc::SIG_ERR,
            "installing the handler of signal {signal}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ha-webd: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let Args {
        name,
        http,
        udp,
        delay_ms,
        fault,
    } = Args::parse();
    if fault.is_some() {
        install_fault_signals()?;
    }
    let listener = TcpListener::bind(http).with_context(|| format!("binding {http}"))?;
    let socket = UdpSocket::bind(udp).with_context(|| format!("binding {udp}"))?;
    set_pktinfo(&socket).context("IP_PKTINFO")?;
    eprintln!("ready name={name} http={http} udp={udp}");
    let udp_name = name.clone();
    std::thread::Builder::new()
        .name("udp".into())
        .spawn(move || udp_echo(&socket, &udp_name))
        .context("spawning the UDP thread")?;
    let head = |connection: &str| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{connection}\r\n{name}\n",
            name.len() + 1
        )
        .into_bytes()
    };
    let responses: &'static Responses = Box::leak(Box::new(Responses {
        keep: head(""),
        close: head("Connection: close\r\n"),
        delay: Duration::from_millis(delay_ms),
        fault,
        failed: fault.and_then(|fault| match fault {
            Fault::Status(code) => Some(
                format!(
                    "HTTP/1.1 {code} Fault\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}\n",
                    name.len() + 1
                )
                .into_bytes(),
            ),
            Fault::Hang => None,
        }),
    }));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        // A thread per connection: health checks keep theirs open (keep-alive), TCP
        // checks reset theirs at once.
        let _ = std::thread::Builder::new().spawn(move || answer_http(stream, responses));
    }
    Ok(())
}

/// The whole response, for a connection kept open and for one that closes after it.
struct Responses {
    keep: Vec<u8>,
    close: Vec<u8>,
    /// How long each request waits for its answer.
    delay: Duration,
    /// What SIGUSR1 switches on.
    fault: Option<Fault>,
    /// The response of a `status:CODE` fault (the connection closes after it).
    failed: Option<Vec<u8>>,
}

/// Answers every request of the connection with 200 until the client closes, asks to
/// close, idles for [`IDLE_TIMEOUT`] or sends something that is not a request head.
/// Request bodies are not expected (GET) and not read.
fn answer_http(mut stream: TcpStream, responses: &Responses) {
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let mut received = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let Some(end) = head_end(&received) else {
            if received.len() >= MAX_HEAD {
                return;
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        if FAULTY.load(Ordering::SeqCst) {
            match responses.fault {
                Some(Fault::Hang) => {
                    // Read (and drop) whatever comes until the client gives up.
                    received.clear();
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => continue,
                    }
                }
                Some(Fault::Status(_)) => {
                    if let Some(failed) = &responses.failed {
                        let _ = stream.write_all(failed);
                    }
                    return;
                }
                None => {}
            }
        }
        let keep_alive = wants_keep_alive(&received[..end]);
        received.drain(..end);
        let response = if keep_alive {
            &responses.keep
        } else {
            &responses.close
        };
        if !responses.delay.is_zero() {
            std::thread::sleep(responses.delay);
        }
        // The peer may have gone (TCP checks reset at once).
        if stream.write_all(response).is_err() || !keep_alive {
            return;
        }
    }
}

/// The length of the request head at the start of `received` (through its blank
/// line), if it is all there.
fn head_end(received: &[u8]) -> Option<usize> {
    received
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// HTTP/1.1 keeps the connection unless the request says `Connection: close`;
/// HTTP/1.0 closes it unless it says `Connection: keep-alive`.
fn wants_keep_alive(head: &[u8]) -> bool {
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let http11 = lines
        .next()
        .is_some_and(|request| request.ends_with("HTTP/1.1"));
    let mut tokens = lines
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("connection"))
        .flat_map(|(_, value)| value.split(','))
        .map(str::trim);
    if http11 {
        !tokens.any(|token| token.eq_ignore_ascii_case("close"))
    } else {
        tokens.any(|token| token.eq_ignore_ascii_case("keep-alive"))
    }
}

fn set_pktinfo(socket: &UdpSocket) -> std::io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket and a c_int option value of the size given.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_PKTINFO,
            (&raw const on).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Space for one `in_pktinfo` control message.
const CMSG_SPACE: usize = 64;

fn udp_echo(socket: &UdpSocket, name: &str) {
    let mut buffer = [0u8; 65_536];
    let prefix = format!("{name} ");
    loop {
        let Some((len, peer, local)) = recv_with_dst(socket, &mut buffer) else {
            continue;
        };
        let mut answer = Vec::with_capacity(prefix.len() + len);
        answer.extend_from_slice(prefix.as_bytes());
        answer.extend_from_slice(&buffer[..len]);
        send_from(socket, &answer, peer, local);
    }
}

/// One datagram: its length, its source, and the local address it was sent to.
fn recv_with_dst(
    socket: &UdpSocket,
    buffer: &mut [u8],
) -> Option<(usize, libc::sockaddr_in, libc::in_addr)> {
    // SAFETY: all-zero is valid for these C structs.
    let mut peer: libc::sockaddr_in = unsafe { zeroed() };
    let mut control = [0u8; CMSG_SPACE];
    let mut iov = libc::iovec {
        iov_base: buffer.as_mut_ptr().cast(),
        iov_len: buffer.len(),
    };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_name = (&raw mut peer).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len();
    // SAFETY: every pointer in `msg` points at live buffers of the lengths given.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &raw mut msg, 0) };
    if n < 0 {
        return None;
    }
    let mut local = None;
    // SAFETY: walking the control messages the kernel wrote into `control`, within
    // `msg_controllen`, with the libc macros made for it.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::IPPROTO_IP && (*cmsg).cmsg_type == libc::IP_PKTINFO {
                let info: libc::in_pktinfo = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                local = Some(info.ipi_addr);
            }
            cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
        }
    }
    Some((usize::try_from(n).ok()?, peer, local?))
}

/// Sends `data` to `peer` with source address `local`.
fn send_from(socket: &UdpSocket, data: &[u8], mut peer: libc::sockaddr_in, local: libc::in_addr) {
    let mut control = [0u8; CMSG_SPACE];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    // SAFETY: all-zero is valid for msghdr.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_name = (&raw mut peer).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure computation; the control buffer is large enough
    // for one in_pktinfo (checked by the assertion), and the pointers come from the
    // libc macros over `msg`, which points at `control`.
    unsafe {
        let space = libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as u32) as usize;
        assert!(space <= control.len());
        msg.msg_controllen = space;
        let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        (*cmsg).cmsg_level = libc::IPPROTO_IP;
        (*cmsg).cmsg_type = libc::IP_PKTINFO;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as usize;
        let info = libc::in_pktinfo {
            ipi_ifindex: 0,
            ipi_spec_dst: local,
            ipi_addr: libc::in_addr { s_addr: 0 },
        };
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast(), info);
        // Best effort: a lost answer is what the stream measures anyway.
        libc::sendmsg(socket.as_raw_fd(), &raw const msg, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_by_version_and_connection_header() {
        let keep = |head: &str| wants_keep_alive(head.as_bytes());
        assert!(keep("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(!keep("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
        assert!(!keep("GET / HTTP/1.1\r\nconnection: TE, Close\r\n\r\n"));
        assert!(!keep("GET / HTTP/1.0\r\nHost: a\r\n\r\n"));
        assert!(keep("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    }

    #[test]
    fn faults_parse() {
        assert_eq!(parse_fault("hang"), Ok(Fault::Hang));
        assert_eq!(parse_fault("status:503"), Ok(Fault::Status(503)));
        assert!(parse_fault("status:99").is_err());
        assert!(parse_fault("status:").is_err());
        assert!(parse_fault("slow").is_err());
    }

    #[test]
    fn request_heads_end_at_the_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nGET"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
    }
}
