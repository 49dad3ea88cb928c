//! The root requirement of the kernel tests, the lab and the benchmarks.
//!
//! Loading programs, creating maps and network namespaces needs CAP_BPF,
//! CAP_NET_ADMIN and CAP_SYS_ADMIN: in practice, root. A test that cannot run fails
//! and says how to run it, unless the caller skips root tests explicitly with
//! `HA_SKIP_ROOT_TESTS=1`; a skip is printed, never silent.

use std::io::Write as _;

/// Environment variable that turns "not root" from a failure into a printed skip.
pub const SKIP_ENV: &str = "HA_SKIP_ROOT_TESTS";

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// For programs: an error saying that `what` needs root (for `why`), unless it runs
/// as root.
pub fn ensure_root(what: &str, why: &str) -> anyhow::Result<()> {
    anyhow::ensure!(is_root(), "{what} needs root ({why}): run it as root");
    Ok(())
}

/// Whether the root-only test `test` may run.
///
/// Root: `true`. Not root: panics with how to run the test, or, with
/// `HA_SKIP_ROOT_TESTS=1`, prints `SKIPPED: ...` to stderr and returns `false`.
/// The message goes straight to the stderr handle, which the test harness does not
/// capture, so a skip shows up even in a passing run.
#[must_use]
pub fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    let reason = format!("{test}: needs root: run as root or via `cargo xtask test`");
    if std::env::var_os(SKIP_ENV).is_some_and(|value| value == "1") {
        let mut stderr = std::io::stderr().lock();
        // Nothing better to do if stderr is gone: the skip is still not a pass
        // anyone relies on, since the caller asked for it explicitly.
        let _ = writeln!(stderr, "SKIPPED: {reason} ({SKIP_ENV}=1)");
        return false;
    }
    panic!("{reason}; set {SKIP_ENV}=1 to skip the root tests explicitly");
}
