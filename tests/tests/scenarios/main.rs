//! Fault scenarios an operator meets (root, in the lab): a flapping web server, one
//! answering the wrong status or hanging, the controller killed in the middle of a
//! large reassignment, its pins removed by hand, its state file broken or replaced
//! by a symlink, and its control socket flooded. Each test builds its own lab and
//! removes it at the end; waits are scaled by `HA_LAB_TIME_SCALE` like the timers
//! they wait for. Run one at a time (`--test-threads=1`, as `cargo xtask test`
//! does).
//!
//! Outcomes:
//! - **A flapping host** (`servers.rs`): host2's link down and up every 100 ms for
//!   10 s. Every down phase outlasts `fall × interval + timeout` and every up phase
//!   `rise × interval`, so host2's health follows the flap; but a recovered owner
//!   takes its prefixes back only after `rise × interval + failback_delay_ms`
//!   (350 ms) of health, longer than any up phase: its prefix moves to the backup
//!   once and stays there until the flap ends, then comes back once. The test
//!   derives both bounds from the configuration: owner changes of the prefix
//!   during the flap at most one when an up phase is shorter than the failback
//!   time (else two per failback time), health changes at most two per
//!   `(fall + rise) × interval`; no other prefix moves.
//! - **A wrong status, a hang** (`servers.rs`): host2's web server, still running
//!   and accepting connections, switched to answering 500, then to reading
//!   requests and never answering: host2 is marked down (the reason names the
//!   status, then the timeout), its prefix fails over to the backup, and fails
//!   back once the server answers 200 again.
//! - **The controller SIGKILLed during a reassignment** (`restarts.rs`): 4,000
//!   more prefixes owned by host2, its web server killed, the controller killed
//!   as soon as the first of them has moved (the routes then half moved); the
//!   controller started again adopts the pins, sees host2 down and converges: every
//!   prefix with the backup, map and kernel routes in agreement, within a time the
//!   test prints.
//! - **Pins removed by hand** (`files.rs`, `rm -r` of the pin directory while the
//!   controller runs): the controller cannot steer without its maps and cannot
//!   know what else was done to them, so it stops: within about a second it logs
//!   an error naming the pin directory and what is missing, detaches and exits 1.
//!   It stops between two events, so no reassignment is left half done: the kernel
//!   routes are those of before, pointing at the current owners, and the kernel
//!   carries the traffic. A new `ha-user run` starts from scratch and steers.
//! - **The state file** (`files.rs`): corrupted, truncated, or a symlink at its
//!   path: `run` refuses to start with an error naming the file, without a panic
//!   and without changing the router; a symlink put in its place while the
//!   controller runs is replaced by the next save (`rename` over the link), never
//!   written through: its target stays the same byte for byte.
//! - **A flood of the control socket** (`control.rs`), at a limit of 256
//!   descriptors: 1,000 idle or half-sent connections held, and 10,000 `status`
//!   requests from 10 concurrent clients (at the lowest priority): every request
//!   is answered within 2 s, no host is marked down during the burst, and the
//!   controller is healthy afterwards (every host up, map and routes in
//!   agreement). The lab's web servers run under `SCHED_FIFO` for it, as if on
//!   machines of their own: without that, on a two-core machine busy with builds,
//!   one or two were marked down now and then by probes timing out after 5 ms
//!   while their own web server waited for a CPU.

use std::time::{Duration, Instant};

use ha_tests::lab::{Lab, time_scale};

#[path = "../common/mod.rs"]
mod common;

mod control;
mod files;
mod restarts;
mod servers;

/// `d` × `HA_LAB_TIME_SCALE`.
fn scaled(d: Duration) -> Duration {
    d * time_scale()
}

/// Polls `check` every 10 ms until it returns `Ok`, for at most `timeout`; how long
/// it took. Panics with the last error and the controller's log otherwise.
fn wait_until(
    lab: &Lab,
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> anyhow::Result<()>,
) -> Duration {
    let started = Instant::now();
    loop {
        match check() {
            Ok(()) => return started.elapsed(),
            Err(err) if started.elapsed() >= timeout => panic!(
                "{what}: not within {timeout:?}: {err:#}\ncontroller log:\n{}",
                lab.controller_log()
            ),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}
