//! The health checks' own thread: a current-thread tokio runtime on an OS thread of
//! its own, so that the controller's other work (netlink, the control socket,
//! thousands of route writes after a failure) never delays a probe, and a probe's
//! timer is the only thing its thread waits for.
//!
//! The thread asks for `SCHED_FIFO` priority [`FIFO_PRIORITY`] (it needs
//! `CAP_SYS_NICE`; without it the thread keeps the default policy): it then runs as
//! soon as a probe's answer or deadline wakes it, whatever else is runnable on the
//! machine. It sleeps between probes, so it takes the CPU only for the probes'
//! own work (see `docs/BENCHMARKS.md` for what that bought in the soak).

use std::io;

use tokio::{runtime::Handle, sync::oneshot};
use tracing::{debug, warn};

/// The real-time priority of the health thread: the lowest, above every normal
/// thread and below the kernel's own real-time threads.
pub const FIFO_PRIORITY: i32 = 1;

/// The running thread; it ends (and every task on it is dropped) when this is
/// dropped.
#[derive(Debug)]
pub(super) struct Runtime {
    pub handle: Handle,
    _stop: Option<oneshot::Sender<()>>,
}

impl Runtime {
    /// Starts the thread. Should it fail, the checks run on the caller's runtime
    /// instead (must be called inside one), and the log says so.
    pub(super) fn start() -> Runtime {
        match start_thread() {
            Ok(runtime) => runtime,
            Err(err) => {
                warn!(%err, "no thread of its own for the health checks: they share the controller's");
                Runtime {
                    handle: Handle::current(),
                    _stop: None,
                }
            }
        }
    }
}

fn start_thread() -> io::Result<Runtime> {
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("ha-health".to_owned())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    let _ = started_tx.send(Err(err));
                    return;
                }
            };
            raise_priority();
            let _ = started_tx.send(Ok(runtime.handle().clone()));
            // Until the checker is dropped (the sender goes: an error, as good).
            let _ = runtime.block_on(stop_rx);
        })?;
    let handle = started_rx
        .recv()
        .map_err(|_| io::Error::other("the health thread ended while starting"))??;
    Ok(Runtime {
        handle,
        _stop: Some(stop_tx),
    })
}

/// `SCHED_FIFO` at [`FIFO_PRIORITY`] for the calling thread, if allowed.
fn raise_priority() {
    let param = libc::sched_param {
        sched_priority: FIFO_PRIORITY,
    };
    // SAFETY: 0 names the calling thread; `param` lives across the call.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &raw const param) };
    if rc == 0 {
        debug!(priority = FIFO_PRIORITY, "health thread runs at SCHED_FIFO");
    } else {
        debug!(err = %io::Error::last_os_error(), "health thread keeps the default scheduling policy");
    }
}
