//! Where the measuring threads run: pinned to one CPU, at SCHED_FIFO.

use anyhow::bail;

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
