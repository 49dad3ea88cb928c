//! What the kernel tests of ha-user (root) share: network namespaces deleted on
//! drop, running rtnetlink calls inside one, small command helpers.
//!
//! Not root: the tests fail, unless `HA_SKIP_ROOT_TESTS=1`, which prints
//! `SKIPPED: <test> needs root` instead.

#![allow(dead_code, reason = "each test crate uses a part of these helpers")]

use std::{fs::File, future::Future, net::Ipv4Addr, os::fd::AsRawFd as _, process::Command};

use ha_user::kernel::routes::{self, KernelRoute};
use ipnet::Ipv4Net;

mod root;

/// Whether the root-only test `test` may run; see the module documentation.
pub fn require_root(test: &str) -> bool {
    root::require_root(test, "network namespaces, route and neighbour writes")
}

/// Named network namespaces created by a test, deleted on drop.
pub struct Netns {
    names: Vec<String>,
}

impl Netns {
    /// Creates `ha-nl-<tag>-<pid>` for each tag; the first is "the" namespace.
    pub fn new(tags: &[&str]) -> Self {
        let mut netns = Netns { names: Vec::new() };
        for tag in tags {
            let name = format!("ha-nl-{tag}-{}", std::process::id());
            run("ip", &["netns", "add", &name]);
            // Owned from here on: deleted even if a later step fails.
            netns.names.push(name);
        }
        netns
    }

    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// `ip -n <namespace i> ARGS`.
    pub fn ip(&self, i: usize, args: &str) -> String {
        ip_in(self.name(i), args)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for name in &self.names {
            match Command::new("ip").args(["netns", "del", name]).output() {
                Ok(out) if out.status.success() => {}
                Ok(out) => eprintln!(
                    "cannot delete network namespace {name}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ),
                Err(err) => eprintln!("cannot run `ip netns del {name}`: {err}"),
            }
        }
    }
}

/// `ip -n NS ARGS`, the arguments separated by spaces.
pub fn ip_in(ns: &str, args: &str) -> String {
    let mut all = vec!["-n", ns];
    all.extend(args.split_whitespace());
    run("ip", &all)
}

/// Runs a command, panicking with its stderr when it fails; returns its stdout.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run `{program} {}`: {err}", args.join(" ")));
    assert!(
        out.status.success(),
        "`{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `f` on a new thread that entered namespace `ns` first, on a tokio runtime
/// created there; a panic is resumed on the caller's thread.
pub fn in_netns<T, F, Fut>(ns: &str, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
{
    let path = format!("/run/netns/{ns}");
    let thread = std::thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|err| panic!("cannot open {path}: {err}"));
        // SAFETY: setns has no memory-safety preconditions; the descriptor is open,
        // and CLONE_NEWNET moves only this thread, which ends with `f`.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns({path}): {}", std::io::Error::last_os_error());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(f())
    });
    match thread.join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

pub fn net(s: &str) -> Ipv4Net {
    s.parse().expect("a prefix")
}

pub fn addr(s: &str) -> Ipv4Addr {
    s.parse().expect("an address")
}

/// One namespace with a veth pair `lan0`/`lan1`, 10.77.0.1/24 on `lan0`.
pub fn route_lab(tag: &str) -> Netns {
    let netns = Netns::new(&[tag]);
    netns.ip(0, "link add name lan0 type veth peer name lan1");
    netns.ip(0, "addr add 10.77.0.1/24 dev lan0");
    netns.ip(0, "link set lan0 up");
    netns.ip(0, "link set lan1 up");
    netns
}

/// Two namespaces: the router (`lan0`, 10.78.0.1/24) and a peer (`peer0`,
/// 10.78.0.2/24, MAC [`PEER_MAC`]) on one veth pair.
pub fn neigh_lab(tag: &str) -> Netns {
    let netns = Netns::new(&[tag, &format!("{tag}-p")]);
    let peer_ns = netns.name(1).to_owned();
    netns.ip(
        0,
        &format!("link add name lan0 type veth peer name peer0 netns {peer_ns}"),
    );
    netns.ip(0, "addr add 10.78.0.1/24 dev lan0");
    netns.ip(0, "link set lan0 up");
    netns.ip(1, &format!("link set peer0 address {PEER_MAC}"));
    netns.ip(1, "addr add 10.78.0.2/24 dev peer0");
    netns.ip(1, "link set peer0 up");
    netns
}

pub const PEER_MAC: &str = "02:00:00:00:78:02";

/// Routes of protocol `proto` as `ip route show` prints them, one a line.
pub fn shown(netns: &Netns, proto: &str) -> Vec<String> {
    netns
        .ip(0, &format!("route show proto {proto}"))
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

pub async fn route_for(handle: &rtnetlink::Handle, prefix: Ipv4Net) -> Option<KernelRoute> {
    routes::list(handle)
        .await
        .expect("listing routes")
        .into_iter()
        .find(|r| r.prefix == prefix)
}
