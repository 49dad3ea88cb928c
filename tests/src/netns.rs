//! Network isolation for kernel tests: a thread in a network namespace of its own,
//! and veth pairs created inside it.
//!
//! The namespace has no name and no file under `/run/netns`: it belongs to one
//! thread and the kernel tears it down, with every link in it, when that thread
//! exits, whether the test passed, panicked or was killed. Nothing outside the
//! namespace is ever touched.

use std::{ffi::CString, marker::PhantomData, process::Command};

use crate::packet::Mac;

/// Runs `f` on a new thread inside a new network namespace private to that thread
/// and returns its result; a panic in `f` is resumed on the caller's thread, with its
/// message.
///
/// Inside, BPF_PROG_TEST_RUN for XDP sees the namespace's own loopback (ifindex 1)
/// as the ingress interface, and child processes (`ip`) inherit the namespace.
pub fn in_private_netns<T, F>(f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let thread = std::thread::Builder::new()
        .name("ha-private-netns".to_owned())
        .spawn(move || {
            // SAFETY: unshare has no memory-safety preconditions. CLONE_NEWNET affects
            // only the calling thread, which is ours and ends with `f`.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                panic!(
                    "unshare(CLONE_NEWNET) failed: {} (needs CAP_SYS_ADMIN)",
                    std::io::Error::last_os_error()
                );
            }
            f()
        })
        .expect("spawning the private network namespace thread");
    match thread.join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// A veth pair created by the test, deleted on drop (deleting one end deletes both).
///
/// Only valid on the thread that created it: the thread's network namespace is
/// where the link lives, hence `!Send`.
#[derive(Debug)]
pub struct Veth {
    name: String,
    /// Interface index of the end called `name`.
    pub ifindex: u32,
    /// Interface index of the peer.
    pub peer_ifindex: u32,
    _same_thread: PhantomData<*const ()>,
}

impl Veth {
    /// Creates the pair `name` (with MAC `mac`) / `peer`. Names must start with
    /// `ha-` so that anything left behind is recognisably ours.
    pub fn create(name: &str, mac: Mac, peer: &str) -> Self {
        assert!(
            name.starts_with("ha-") && peer.starts_with("ha-"),
            "test links are named ha-*: got {name:?} and {peer:?}"
        );
        let mac = mac.map(|b| format!("{b:02x}")).join(":");
        ip(&[
            "link", "add", name, "address", &mac, "type", "veth", "peer", "name", peer,
        ]);
        // Owned from here on: delete it even if a later step fails.
        let mut veth = Self {
            name: name.to_owned(),
            ifindex: 0,
            peer_ifindex: 0,
            _same_thread: PhantomData,
        };
        ip(&["link", "set", name, "up"]);
        ip(&["link", "set", peer, "up"]);
        veth.ifindex = ifindex(name);
        veth.peer_ifindex = ifindex(peer);
        veth
    }

    /// Name of the end whose index is [`Veth::ifindex`].
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let status = Command::new("ip")
            .args(["link", "del", &self.name])
            .status();
        // Not fatal: the namespace goes away with its thread anyway. Do not panic
        // during a panic.
        if !matches!(status, Ok(status) if status.success()) {
            eprintln!(
                "warning: could not delete test link {}: {status:?}",
                self.name
            );
        }
    }
}

/// Runs `ip ARGS`, panicking with its stderr on failure.
fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().unwrap_or_else(|e| {
        panic!(
            "running `ip {}` (is iproute2 installed?): {e}",
            args.join(" ")
        )
    });
    assert!(
        output.status.success(),
        "`ip {}` failed ({}): {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

/// Index of interface `name` in the calling thread's network namespace.
pub fn ifindex(name: &str) -> u32 {
    let c_name = CString::new(name).expect("interface names contain no NUL");
    // SAFETY: `c_name` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    assert_ne!(
        index,
        0,
        "if_nametoindex({name}): {}",
        std::io::Error::last_os_error()
    );
    index
}
