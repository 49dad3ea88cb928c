//! Where the build scripts find `bpf-linker` (included by each with `#[path]`): on
//! PATH, or else the one `cargo xtask setup` builds in `.toolchain/`, which is then
//! put first on PATH for the cargo that builds the eBPF crate. Without either, the
//! build stops with one line saying what to run.

use std::{
    env,
    path::{Path, PathBuf},
};

/// The bpf-linker to use; exits the build script with a clear line when there is none.
pub fn find(manifest_dir: &Path) -> PathBuf {
    if let Ok(path) = which::which("bpf-linker") {
        return path;
    }
    let workspace = manifest_dir.parent().unwrap_or(manifest_dir);
    let dir = workspace.join(".toolchain/bpf-linker/bin");
    let linker = dir.join("bpf-linker");
    if !linker.is_file() {
        eprintln!(
            "error: bpf-linker is neither on PATH nor in {}: run `cargo xtask setup`",
            dir.display()
        );
        std::process::exit(1);
    }
    let mut paths = vec![dir];
    paths.extend(env::var_os("PATH").iter().flat_map(env::split_paths));
    match env::join_paths(paths) {
        // SAFETY: a build script's main thread, before it starts any other thread.
        Ok(path) => unsafe { env::set_var("PATH", path) },
        Err(err) => {
            eprintln!("error: cannot put {} on PATH: {err}", linker.display());
            std::process::exit(1);
        }
    }
    linker
}
