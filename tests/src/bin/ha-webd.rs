//! `ha-webd`: the lab's web server. HTTP answers every request with `200` and
//! `<name>\n`; the UDP echo answers every datagram with `<name> <payload>`, from the
//! address the datagram was sent to (the VIP), so connected clients accept it.
//!
//! ```text
//! ha-webd --name host1 [--http 0.0.0.0:80] [--udp 0.0.0.0:9000]
//! ```
//!
//! Prints `ready ...` on stderr once both sockets are bound.

use std::{
    io::{Read as _, Write as _},
    mem::{size_of, zeroed},
    net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd as _,
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context as _, bail};

const USAGE: &str = "usage: ha-webd --name NAME [--http ADDR:PORT] [--udp ADDR:PORT]";

struct Args {
    name: String,
    http: SocketAddrV4,
    udp: SocketAddrV4,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut name = None;
    let mut http = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80);
    let mut udp = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 9000);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--name" => name = Some(value()?),
            "--http" => http = value()?.parse().context("--http")?,
            "--udp" => udp = value()?.parse().context("--udp")?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let name = name.with_context(|| format!("--name is required\n{USAGE}"))?;
    Ok(Args { name, http, udp })
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
    let Args { name, http, udp } = parse_args()?;
    let listener = TcpListener::bind(http).with_context(|| format!("binding {http}"))?;
    let socket = UdpSocket::bind(udp).with_context(|| format!("binding {udp}"))?;
    set_pktinfo(&socket).context("IP_PKTINFO")?;
    eprintln!("ready name={name} http={http} udp={udp}");
    let udp_name = name.clone();
    std::thread::Builder::new()
        .name("udp".into())
        .spawn(move || udp_echo(&socket, &udp_name))
        .context("spawning the UDP thread")?;
    let body = format!("{name}\n");
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let body = body.clone();
        // One short-lived thread per connection: health checks arrive every few ms
        // and may go away after the status line.
        let _ = std::thread::Builder::new().spawn(move || answer_http(stream, &body));
    }
    Ok(())
}

/// Reads the request head (up to a blank line) and answers 200 with `body`.
fn answer_http(mut stream: TcpStream, body: &str) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    // The peer may have gone (health checks reset after the status line).
    let _ = stream.write_all(response.as_bytes());
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
