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
