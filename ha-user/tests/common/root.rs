//! The root requirement of ha-user's kernel tests, shared by its test crates (ha-user
//! cannot use `ha-tests`' check: that package depends on ha-user).
//!
//! Not root: the test fails, unless `HA_SKIP_ROOT_TESTS=1`, which prints
//! `SKIPPED: <test> needs root` instead.

use std::io::Write as _;

/// Whether the root-only test `test`, which needs root for `needs`, may run.
pub fn require_root(test: &str, needs: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("HA_SKIP_ROOT_TESTS").is_some_and(|v| v == "1") {
        // Straight to the handle: the harness does not capture it, so the skip shows.
        let _ = writeln!(std::io::stderr().lock(), "SKIPPED: {test} needs root");
        return false;
    }
    panic!(
        "{test} needs root ({needs}): run it as root, or set HA_SKIP_ROOT_TESTS=1 to skip \
         it explicitly"
    );
}
