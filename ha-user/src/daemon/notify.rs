//! The service manager's readiness protocol (`sd_notify(3)`): one datagram to the
//! socket named by `$NOTIFY_SOCKET`, when there is one. systemd's `Type=notify` unit
//! waits for `READY=1` (the maps, routes and fast path in place) before it counts
//! the start as done; `STOPPING=1` says the stop has begun. Without the variable (not
//! started by systemd) nothing is sent.

use std::os::unix::net::{SocketAddr, UnixDatagram};

use tracing::warn;

/// The start-up is done: maps written, routes in place, the fast path attached.
pub fn ready() {
    send("READY=1\nSTATUS=steering");
}

/// The controller is stopping.
pub fn stopping() {
    send("STOPPING=1");
}

fn send(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(err) = send_to(&path, state) {
        warn!(
            socket = %path.to_string_lossy(),
            "cannot tell the service manager {state:?}: {err}"
        );
    }
}

fn send_to(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::{linux::net::SocketAddrExt as _, unix::ffi::OsStrExt as _};
    let bytes = path.as_bytes();
    // A leading '@' names a socket of the abstract namespace.
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(path)?,
    };
    let socket = UnixDatagram::unbound()?;
    socket.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::linux::net::SocketAddrExt as _;

    use super::*;

    #[test]
    fn sends_one_datagram_to_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("ha-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).expect("bind");
        send_to(path.as_os_str(), "READY=1").expect("send");
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        let name = format!("ha-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let server = UnixDatagram::bind_addr(&addr).expect("bind");
        send_to(std::ffi::OsStr::new(&format!("@{name}")), "STOPPING=1").expect("send");
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"STOPPING=1");
    }
}
