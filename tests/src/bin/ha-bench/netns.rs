//! Named network namespaces (`ha-b-*`) deleted by a guard, a guard that moves the
//! calling thread into one and back, and the commands run inside them.

use std::{
    fs::File,
    os::fd::AsRawFd as _,
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail, ensure};

/// Every namespace the benchmark creates starts with this.
pub const PREFIX: &str = "ha-b-";

/// A network namespace under `/run/netns`, deleted (with all its links) on drop,
/// also when a benchmark panics.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `name` (which must start with [`PREFIX`]), replacing one left behind
    /// by an earlier run that was killed.
    pub fn create(name: &str) -> anyhow::Result<Self> {
        ensure!(
            name.starts_with(PREFIX),
            "benchmark namespaces are named {PREFIX}*: got {name:?}"
        );
        if std::path::Path::new("/run/netns").join(name).exists() {
            eprintln!("ha-bench: deleting namespace {name} left by an earlier run");
            run(Command::new("ip").args(["netns", "del", name]))?;
        }
        run(Command::new("ip").args(["netns", "add", name]))?;
        let netns = Self {
            name: name.to_owned(),
        };
        netns.ip(&["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS`.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// `ip netns exec NAME PROGRAM ARGS`: with the namespace's own /sys mounted, so
    /// `sysctl`, `ethtool` and writes under /sys/class/net see its devices.
    pub fn exec(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        run(Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args))
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
        set_netns(&format!("/run/netns/{}", self.name))?;
        Ok(Entered { home })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let status = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
        // Do not panic during a panic: say so and go on.
        if !matches!(status, Ok(status) if status.success()) {
            eprintln!(
                "ha-bench: warning: could not delete namespace {}: {status:?}",
                self.name
            );
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

/// Moves the calling thread into the network namespace at `path` for good (for
/// threads that live only inside it).
pub fn set_netns(path: &str) -> anyhow::Result<()> {
    let file = File::open(path).with_context(|| format!("opening {path}"))?;
    // SAFETY: `file` is an open namespace file; setns affects only this thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns({path}): {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Pins the calling thread (`pid` 0) or task `pid` to `cpu`.
pub fn pin_to_cpu(pid: i32, cpu: usize) -> anyhow::Result<()> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set; CPU_SET writes inside it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` < CPU_SETSIZE on any machine this runs on; checked by the kernel.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    if unsafe { libc::sched_setaffinity(pid, size_of::<libc::cpu_set_t>(), &set) } != 0 {
        bail!(
            "sched_setaffinity(pid {pid}, cpu {cpu}): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Makes task `pid` SCHED_FIFO at `priority`: it then runs whenever it has work,
/// ahead of every ordinary process on its CPU.
pub fn make_fifo(pid: i32, priority: i32) -> anyhow::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: `param` is a valid sched_param for the call.
    if unsafe { libc::sched_setscheduler(pid, libc::SCHED_FIFO, &param) } != 0 {
        bail!(
            "sched_setscheduler(pid {pid}, SCHED_FIFO {priority}): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Runs `cmd`; its stdout, or an error with its stderr.
pub fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let what = format!("{cmd:?}");
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start {what}"))?;
    ensure!(
        output.status.success(),
        "{what} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
