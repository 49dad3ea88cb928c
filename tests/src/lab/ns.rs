//! Named network namespaces (`ip netns`, `/run/netns/NAME`): creating and deleting
//! them, running commands and threads inside them.
//!
//! Commands run through `nsenter --net=/run/netns/NAME`, not `ip netns exec`: the
//! latter remounts `/sys` without bpffs, where pinning fails, and costs a mount
//! namespace per command. `ip` itself is run as `ip -n NAME`.

use std::{
    fs::File,
    os::fd::AsRawFd as _,
    path::PathBuf,
    process::{Command, Output},
};

use anyhow::{Context as _, bail};

/// Where `ip netns` keeps the namespace files.
pub const NETNS_DIR: &str = "/run/netns";

/// The file naming namespace `name`.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(name)
}

/// Whether namespace `name` exists.
pub fn exists(name: &str) -> bool {
    path(name).exists()
}

/// Creates namespace `name` (`ip netns add`).
pub fn add(name: &str) -> anyhow::Result<()> {
    check(Command::new("ip").args(["netns", "add", name]))?;
    Ok(())
}

/// Deletes namespace `name` (`ip netns del`). The kernel tears the namespace and its
/// links down once no process is left in it.
pub fn delete(name: &str) -> anyhow::Result<()> {
    check(Command::new("ip").args(["netns", "del", name]))?;
    Ok(())
}

/// `args[0] args[1..]` inside namespace `ns`, not started yet.
pub fn command(ns: &str, args: &[&str]) -> Command {
    let mut command = Command::new("nsenter");
    command
        .arg(format!("--net={}", path(ns).display()))
        .arg("--")
        .args(args);
    command
}

/// `ip -n NS ARGS`, not started yet.
pub fn ip(ns: &str, args: &[&str]) -> Command {
    let mut command = Command::new("ip");
    command.args(["-n", ns]).args(args);
    command
}

/// Runs `command` to completion; its output whatever its exit status.
pub fn output(command: &mut Command) -> anyhow::Result<Output> {
    command
        .output()
        .with_context(|| format!("cannot run {}", describe(command)))
}

/// Runs `command`; fails with its stderr unless it succeeds. Returns its stdout.
pub fn check(command: &mut Command) -> anyhow::Result<String> {
    let output = output(command)?;
    if !output.status.success() {
        bail!(
            "{} failed ({}): {}",
            describe(command),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `command` as a shell would show it.
pub fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `f` on a new thread that has entered namespace `ns`, and returns its result.
///
/// Sockets `f` creates stay in `ns` for their whole life, whichever thread uses them
/// afterwards: this is how the lab hands out client sockets. Do not start child
/// processes from `f` if they are meant to outlive it: the lab's children are told
/// to die with the thread that started them.
pub fn in_netns<T, F>(ns: &str, f: F) -> anyhow::Result<T>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    let file = File::open(path(ns)).with_context(|| format!("opening namespace {ns}"))?;
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name(format!("netns-{ns}"))
            .spawn_scoped(scope, move || {
                // SAFETY: a valid open descriptor of a namespace file; setns only
                // changes this thread's network namespace.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(f())
            })
            .context("spawning a thread")?;
        match thread.join() {
            Ok(result) => result.with_context(|| format!("entering namespace {ns}")),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// A named namespace owned by the caller: created with its loopback up (replacing
/// one of the same name left by a run that was killed), deleted with all its links
/// on drop, also when the owner panics.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `name`, which must start with `ha-` so that anything left
    /// behind is recognisably ours.
    pub fn create(name: &str) -> anyhow::Result<Netns> {
        if !name.starts_with("ha-") {
            bail!(
                "namespaces of the tests, the lab and the benchmarks are named ha-*: got {name:?}"
            );
        }
        if exists(name) {
            eprintln!("deleting namespace {name} left by an earlier run");
            delete(name)?;
        }
        add(name)?;
        // Owned from here on: deleted even if bringing lo up fails.
        let netns = Netns {
            name: name.to_owned(),
        };
        netns.ip(&["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NAME ARGS`; its stdout.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        check(&mut ip(&self.name, args))
    }

    /// Runs `ip netns exec NAME PROGRAM ARGS`: with the namespace's own /sys mounted,
    /// so `sysctl`, `ethtool` and writes under /sys/class/net see its devices (and
    /// bpffs is not there). Its stdout.
    pub fn exec(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        check(
            Command::new("ip")
                .args(["netns", "exec", &self.name, program])
                .args(args),
        )
    }

    /// Writes `value` to the sysfs file `path` as seen inside the namespace.
    pub fn write_sysfs(&self, path: &str, value: &str) -> anyhow::Result<()> {
        let script = format!("echo {value} > {path}");
        self.exec("sh", &["-c", &script]).map(drop)
    }

    /// Moves the calling thread into the namespace until the guard is dropped.
    pub fn enter(&self) -> anyhow::Result<Entered> {
        let home = File::open("/proc/thread-self/ns/net")
            .context("opening this thread's network namespace")?;
        set_netns(&self.name)?;
        Ok(Entered { home })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Do not panic during a panic: say so and go on.
        if let Err(err) = delete(&self.name) {
            eprintln!("warning: {err:#}");
        }
    }
}

/// The calling thread is inside a namespace; dropping this takes it back.
#[must_use = "the thread leaves the namespace when this is dropped"]
pub struct Entered {
    home: File,
}

impl Drop for Entered {
    fn drop(&mut self) {
        // SAFETY: `home` is an open namespace file; setns has no memory effects.
        if unsafe { libc::setns(self.home.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            // The thread would go on in the wrong namespace: nothing sane is left.
            panic!(
                "setns back to the original network namespace: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Moves the calling thread into namespace `name` for good (for threads that live
/// only inside it).
pub fn set_netns(name: &str) -> anyhow::Result<()> {
    let path = path(name);
    let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: `file` is an open namespace file; setns affects only this thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!(
            "setns({}): {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}
