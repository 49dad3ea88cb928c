//! The context every xtask command runs in: the workspace root, the PATH its
//! children get, and whether it runs as root. The bottom of the xtask: it imports
//! nothing of the crate.

use std::{
    env,
    ffi::{OsStr, OsString},
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

/// What every child process of the xtask needs: the workspace root and a PATH that
/// finds our bpf-linker first.
pub struct Ctx {
    pub root: PathBuf,
    path: OsString,
    ld_library_path: Option<OsString>,
}

impl Ctx {
    /// The context for the workspace at `root`, with `first` (where our bpf-linker is
    /// installed) first in PATH.
    pub fn new(root: &Path, first: PathBuf) -> anyhow::Result<Self> {
        let mut dirs = vec![first];
        if let Some(path) = env::var_os("PATH") {
            dirs.extend(env::split_paths(&path));
        }
        // `ip`, `bpftool` and `ethtool` live in sbin, which a CI PATH may lack.
        for sbin in ["/usr/sbin", "/sbin"].map(PathBuf::from) {
            if !dirs.contains(&sbin) {
                dirs.push(sbin);
            }
        }
        let path = env::join_paths(dirs).context("cannot build PATH with the bpf-linker dir")?;
        Ok(Self {
            root: root.to_path_buf(),
            path,
            ld_library_path: inherited_ld_library_path(root),
        })
    }

    /// The PATH every child gets.
    pub fn path(&self) -> &OsStr {
        &self.path
    }

    /// A command with our PATH, run in the caller's working directory.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let Self {
            root: _,
            path,
            ld_library_path,
        } = self;
        let mut cmd = Command::new(program);
        cmd.env("PATH", path);
        match ld_library_path {
            Some(value) => cmd.env("LD_LIBRARY_PATH", value),
            None => cmd.env_remove("LD_LIBRARY_PATH"),
        };
        cmd
    }

    /// Where cargo puts what it builds: `CARGO_TARGET_DIR`, else `target/`.
    pub fn target_dir(&self) -> PathBuf {
        env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| self.root.join("target"))
    }

    /// `cargo` (the rustup proxy, so `+nightly` works) run from the workspace root.
    pub fn cargo(&self) -> Command {
        let mut cmd = self.command("cargo");
        cmd.current_dir(&self.root);
        cmd
    }
}

/// `cargo run` prepends the target dir and the running toolchain's lib dirs to
/// LD_LIBRARY_PATH. Children must not inherit those (a nightly tool would find the
/// stable toolchain's libraries first); whatever the user set is kept.
fn inherited_ld_library_path(root: &Path) -> Option<OsString> {
    let value = env::var_os("LD_LIBRARY_PATH")?;
    let mut added = vec![root.join("target")];
    if let Some(dir) = env::var_os("CARGO_TARGET_DIR") {
        added.push(PathBuf::from(dir));
    }
    if let Some(home) = env::var_os("RUSTUP_HOME") {
        added.push(PathBuf::from(home).join("toolchains"));
    }
    let kept: Vec<PathBuf> = env::split_paths(&value)
        .filter(|dir| !added.iter().any(|prefix| dir.starts_with(prefix)))
        .collect();
    if kept.is_empty() {
        return None;
    }
    env::join_paths(kept).ok()
}

/// Whether the effective user is root, from /proc/self/status (no unsafe FFI).
pub fn is_root() -> anyhow::Result<bool> {
    let status =
        fs::read_to_string("/proc/self/status").context("cannot read /proc/self/status")?;
    let uids = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .context("no Uid: line in /proc/self/status")?;
    // Real, effective, saved, file-system uid.
    let euid = uids
        .split_whitespace()
        .nth(1)
        .context("malformed Uid: line in /proc/self/status")?;
    Ok(euid == "0")
}
