//! The router namespace of the forwarding tests, and the checks they share.

use std::{
    fs::File,
    io::Write as _,
    os::fd::AsRawFd as _,
    process::{Command, Stdio},
    sync::OnceLock,
};

use ha_user::kernel::forwarding::{Assessment, Facts, Gatherer, Reason};

pub const LAN: &str = "lan0";
pub const WAN: &str = "wan0";

/// Writes a line straight to stderr (the harness does not capture it).
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Whether the root-only test `test` may run; see the module documentation.
pub fn require_root(test: &str) -> bool {
    crate::root::require_root(test, "network namespaces, nftables, iptables, xfrm")
}

/// The kernel's configuration (`/proc/config.gz`), if it can be read.
pub fn kernel_config() -> Option<&'static str> {
    static CONFIG: OnceLock<Option<String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let out = Command::new("zcat").arg("/proc/config.gz").output().ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        })
        .as_deref()
}

/// Whether the kernel has every option in `options` (built in or as a module); a
/// test that needs a missing one prints why it is skipped. Without a readable
/// configuration the test runs (and fails if the feature is really missing).
pub fn require_kernel(test: &str, options: &[&str]) -> bool {
    let Some(config) = kernel_config() else {
        return true;
    };
    let missing: Vec<&str> = options
        .iter()
        .copied()
        .filter(|option| {
            !config
                .lines()
                .any(|line| line == format!("{option}=y") || line == format!("{option}=m"))
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    say(&format!(
        "SKIPPED: {test}: this kernel lacks {}",
        missing.join(", ")
    ));
    false
}

/// A router namespace, deleted on drop.
pub struct Router {
    pub name: String,
}

impl Router {
    /// The router of the module documentation, in `ha-fw-<tag>-<pid>`.
    pub fn new(tag: &str) -> Self {
        let router = Router {
            name: format!("ha-fw-{tag}-{}", std::process::id()),
        };
        run("ip", &["netns", "add", &router.name]);
        for cmd in [
            "link add name lan0 type veth peer name lan1",
            "link add name wan0 type veth peer name wan1",
            "addr add 192.168.77.1/27 dev lan0",
            "addr add 10.77.0.1/24 dev wan0",
            "link set lo up",
            "link set lan0 up",
            "link set lan1 up",
            "link set wan0 up",
            "link set wan1 up",
            "route add default via 10.77.0.2 dev wan0",
        ] {
            router.ip(cmd);
        }
        // IPv4 settings of a new namespace are copied from the host's: set each.
        router.sysctl(&[
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.all.accept_local=0",
            "net.ipv4.conf.all.route_localnet=0",
            "net.ipv4.conf.lan0.rp_filter=0",
            "net.ipv4.conf.wan0.rp_filter=0",
            "net.ipv4.conf.lan0.accept_local=0",
            "net.ipv4.conf.wan0.accept_local=0",
            "net.ipv4.conf.lan0.route_localnet=0",
            "net.ipv4.conf.wan0.route_localnet=0",
        ]);
        router
    }

    /// `ip -n <router> ARGS`, the arguments separated by spaces.
    pub fn ip(&self, args: &str) -> String {
        let mut all = vec!["-n", &self.name];
        all.extend(args.split_whitespace());
        run("ip", &all)
    }

    /// `COMMAND ARGS` inside the router namespace.
    pub fn exec(&self, command: &str, args: &[&str]) -> String {
        let mut all = vec!["netns", "exec", &self.name, command];
        all.extend(args);
        run("ip", &all)
    }

    pub fn sysctl(&self, settings: &[&str]) {
        let mut args = vec!["-qw"];
        args.extend(settings);
        self.exec("sysctl", &args);
    }

    /// Loads an nftables rule set (`nft -f -`) into the router.
    pub fn nft(&self, ruleset: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot run nft (`cargo xtask setup` installs it): {err}")
            });
        child
            .stdin
            .take()
            .expect("nft's stdin")
            .write_all(ruleset.as_bytes())
            .expect("writing the rule set to nft");
        let out = child.wait_with_output().expect("nft's exit");
        assert!(
            out.status.success(),
            "nft -f failed: {}\n{ruleset}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The facts for `lan0` with `wan0` as an extra ingress, gathered inside.
    pub fn facts(&self) -> Facts {
        self.within(|| {
            let mut gatherer = Gatherer::new().expect("a gatherer");
            gatherer
                .gather(LAN, &[WAN.to_owned()])
                .unwrap_or_else(|err| panic!("gathering: {}", chain(&err)))
        })
    }

    /// Runs `f` on a thread that entered the router namespace first.
    pub fn within<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        let thread = std::thread::spawn(move || {
            let file = File::open(&path).unwrap_or_else(|err| panic!("cannot open {path}: {err}"));
            // SAFETY: setns has no memory-safety preconditions; the descriptor is open,
            // and CLONE_NEWNET moves only this thread, which ends with `f`.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns({path}): {}", std::io::Error::last_os_error());
            f()
        });
        match thread.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        match Command::new("ip")
            .args(["netns", "del", &self.name])
            .output()
        {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "cannot delete network namespace {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(err) => eprintln!("cannot run `ip netns del {}`: {err}", self.name),
        }
    }
}

/// An error and its sources, one line.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(err) = source {
        text.push_str(&format!(": {err}"));
        source = err.source();
    }
    text
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

/// Whether `name` verifies, and its reasons as text.
pub fn decision(assessment: &Assessment, name: &str) -> (bool, Vec<String>) {
    let iface = assessment
        .interface(name)
        .unwrap_or_else(|| panic!("{name} not assessed: {assessment:#?}"));
    (
        iface.verify,
        iface.reasons.iter().map(ToString::to_string).collect(),
    )
}

pub fn open(assessment: &Assessment) {
    for name in [LAN, WAN] {
        assert_eq!(decision(assessment, name), (false, Vec::new()), "{name}");
    }
}

pub fn verifies_all_for(assessment: &Assessment, reason: impl Fn(&Reason) -> bool) {
    for iface in &assessment.interfaces {
        assert!(iface.verify, "{} is open: {assessment:#?}", iface.name);
        assert!(
            iface.reasons.iter().any(&reason),
            "{}: not the expected reason: {:#?}",
            iface.name,
            iface.reasons
        );
    }
}
