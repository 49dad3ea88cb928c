//! Descriptor limits and timed requests for the suites that abuse a live controller
//! (`hardening.rs`, `scenarios/`): the controller's limit lowered with prlimit(1),
//! the test's own raised so it can hold thousands of connections, a process put
//! ahead of every normal one (as if it had a machine of its own), and a `status`
//! whose round trip is measured.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::net::UnixStream,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use ha_user::proto::{Reply, Status};

/// Raises this process's descriptor limit (soft and hard) to `to`, so that a test
/// can hold many connections.
pub fn raise_own_limit(to: u64) -> anyhow::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: to,
        rlim_max: to,
    };
    // SAFETY: a valid rlimit value; setrlimit has no memory preconditions.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    ensure!(
        rc == 0,
        "raising RLIMIT_NOFILE to {to}: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// Sets the descriptor limit (soft and hard) of process `pid` with prlimit(1).
pub fn limit_descriptors(pid: u32, nofile: u64) -> anyhow::Result<()> {
    let output = Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={nofile}:{nofile}"),
        ])
        .output()
        .context("running prlimit")?;
    ensure!(
        output.status.success(),
        "prlimit --pid {pid}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// Puts every thread of process `pid` under `SCHED_FIFO` at priority 1, so that
/// no normal process delays it when it wakes (threads it starts later inherit the
/// policy). The lab's web servers share the router's CPUs; under this policy a
/// test that loads those CPUs sees them answer as machines of their own would.
pub fn realtime(pid: u32) -> anyhow::Result<()> {
    let tasks = format!("/proc/{pid}/task");
    for task in std::fs::read_dir(&tasks).with_context(|| format!("reading {tasks}"))? {
        let name = task
            .with_context(|| format!("reading {tasks}"))?
            .file_name();
        let tid: libc::pid_t = name
            .to_str()
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("a task {name:?} in {tasks}"))?;
        let param = libc::sched_param { sched_priority: 1 };
        // SAFETY: a valid sched_param; sched_setscheduler has no memory preconditions.
        let rc = unsafe { libc::sched_setscheduler(tid, libc::SCHED_FIFO, &param) };
        ensure!(
            rc == 0,
            "SCHED_FIFO for task {tid} of process {pid}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// `status` on a connection of its own, with its round trip; an error if no
/// answer came within `timeout`.
pub fn timed_status(socket: &Path, timeout: Duration) -> anyhow::Result<(Status, Duration)> {
    let started = Instant::now();
    let mut stream = UnixStream::connect(socket).context("connect")?;
    stream.set_read_timeout(Some(timeout))?;
    stream
        .write_all(b"{\"protocol\":1,\"request\":{\"command\":\"status\"}}\n")
        .context("send")?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .with_context(|| format!("no answer within {timeout:?}"))?;
    match Reply::<Status>::decode(&line) {
        Ok(Reply::Ok(status)) => Ok((status, started.elapsed())),
        other => bail!("not a status: {other:?} ({line:?})"),
    }
}
