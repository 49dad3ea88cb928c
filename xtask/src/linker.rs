//! bpf-linker, built against the nightly rustc's own libLLVM so that the bitcode rustc
//! emits and the LLVM that links it always agree. No system LLVM is involved: a prefix
//! dir `.toolchain/llvm/lib` holds symlinks to the nightly's libLLVM, bpf-linker's
//! build links against it and keeps it as its rpath. A stamp records what the binary
//! was built against; when the nightly's libLLVM changes, it is rebuilt.

use std::{
    env,
    ffi::{OsStr, OsString},
    fs::{self, File},
    iter,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

use crate::{ctx::Ctx, exec};

const VERSION: &str = "0.13.0";

fn install_dir(root: &Path) -> PathBuf {
    root.join(".toolchain/bpf-linker")
}

/// The directory that must come first on PATH.
pub fn bin_dir(root: &Path) -> PathBuf {
    install_dir(root).join("bin")
}

fn prefix_dir(root: &Path) -> PathBuf {
    root.join(".toolchain/llvm")
}

/// The nightly's shared LLVM library.
struct Llvm {
    /// The real file, `<sysroot>/lib/libLLVM.so.<major>.<minor>-rust-<version>`.
    path: PathBuf,
    /// Its file name, which is also its soname.
    name: String,
    major: u32,
}

impl Llvm {
    /// Finds the real `libLLVM.so.*` (not the `libLLVM-NN-*.so` linker script).
    fn find(sysroot: &Path) -> anyhow::Result<Self> {
        let lib = sysroot.join("lib");
        let entries =
            fs::read_dir(&lib).with_context(|| format!("cannot list {}", lib.display()))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", lib.display()))?;
            if let Some(name) = entry.file_name().to_str()
                && name.starts_with("libLLVM.so.")
            {
                names.push(name.to_owned());
            }
        }
        let name = match names.as_slice() {
            [name] => name.clone(),
            [] => bail!(
                "no libLLVM.so.* in {}; reinstall nightly: `rustup toolchain install nightly \
                 --profile minimal --component rust-src,clippy --force`",
                lib.display()
            ),
            _ => bail!("several libLLVM.so.* in {}: {names:?}", lib.display()),
        };
        let major = llvm_major(&name)
            .with_context(|| format!("no LLVM major version in the file name {name}"))?;
        Ok(Self {
            path: lib.join(&name),
            name,
            major,
        })
    }

    /// What the installed binary must have been built with.
    fn stamp(&self, prefix: &Path) -> String {
        let Self {
            path,
            name: _,
            major,
        } = self;
        format!(
            "bpf-linker {VERSION}\nfeature llvm-{major}\nlibLLVM {}\nprefix {}\n",
            path.display(),
            prefix.display()
        )
    }
}

fn prepend_path(dir: &Path, path: &OsStr) -> anyhow::Result<OsString> {
    let dirs = iter::once(dir.to_path_buf()).chain(env::split_paths(path));
    env::join_paths(dirs).context("cannot build PATH")
}

/// `22` from `libLLVM.so.22.1-rust-1.97.0-nightly`.
fn llvm_major(file_name: &str) -> Option<u32> {
    let rest = file_name.strip_prefix("libLLVM.so.")?;
    rest.split(['.', '-']).next()?.parse().ok()
}

/// Builds bpf-linker unless the installed one matches the nightly's libLLVM.
pub fn ensure(ctx: &Ctx, nightly_sysroot: &Path) -> anyhow::Result<()> {
    let root = &ctx.root;
    let llvm = Llvm::find(nightly_sysroot)?;
    let stamp = llvm.stamp(&prefix_dir(root));
    if up_to_date(root, &llvm, &stamp) {
        return Ok(());
    }
    // Two setups at once must not build into the same directories.
    let toolchain = root.join(".toolchain");
    fs::create_dir_all(&toolchain)
        .with_context(|| format!("cannot create {}", toolchain.display()))?;
    let lock_path = toolchain.join("setup.lock");
    let lock = File::create(&lock_path)
        .with_context(|| format!("cannot create {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    if up_to_date(root, &llvm, &stamp) {
        return Ok(());
    }
    build(ctx, &llvm, &stamp)
}

fn up_to_date(root: &Path, llvm: &Llvm, stamp: &str) -> bool {
    let install = install_dir(root);
    let lib = prefix_dir(root).join("lib");
    fs::read_to_string(install.join("stamp")).is_ok_and(|found| found == stamp)
        && install.join("bin/bpf-linker").is_file()
        && [llvm.name.as_str(), "libLLVM.so"]
            .iter()
            .all(|link| fs::read_link(lib.join(link)).is_ok_and(|target| target == llvm.path))
}

fn build(ctx: &Ctx, llvm: &Llvm, stamp: &str) -> anyhow::Result<()> {
    let root = &ctx.root;
    eprintln!(
        "xtask: building bpf-linker {VERSION} against {} (LLVM {}); this takes a minute",
        llvm.path.display(),
        llvm.major
    );
    let prefix = prefix_dir(root);
    let lib = prefix.join("lib");
    if lib.exists() {
        fs::remove_dir_all(&lib).with_context(|| format!("cannot remove {}", lib.display()))?;
    }
    fs::create_dir_all(&lib).with_context(|| format!("cannot create {}", lib.display()))?;
    for link in [llvm.name.as_str(), "libLLVM.so"] {
        let link = lib.join(link);
        symlink(&llvm.path, &link).with_context(|| {
            format!("cannot link {} to {}", link.display(), llvm.path.display())
        })?;
    }

    // Build into a staging dir and move it into place at the end, so an interrupted
    // build never leaves a stamped but broken install.
    let install = install_dir(root);
    let staging = root.join(".toolchain/bpf-linker.new");
    if staging.exists() {
        fs::remove_dir_all(&staging)
            .with_context(|| format!("cannot remove {}", staging.display()))?;
    }
    let feature = format!("llvm-{}", llvm.major);
    let mut install_cmd = ctx.cargo();
    install_cmd
        .args(["install", "bpf-linker", "--version", VERSION, "--locked"])
        .args(["--no-default-features", "--features", &feature, "--root"])
        .arg(&staging)
        .env("LLVM_PREFIX", &prefix)
        // Otherwise cargo warns that the staging bin dir is not on PATH.
        .env("PATH", prepend_path(&staging.join("bin"), ctx.path())?);
    exec::run_checked(&mut install_cmd).with_context(|| {
        format!(
            "building bpf-linker failed; by hand (the links in {} are in place): \
             `LLVM_PREFIX={} cargo install bpf-linker --version {VERSION} --locked \
             --no-default-features --features {feature} --root {}`",
            lib.display(),
            prefix.display(),
            install.display()
        )
    })?;
    let binary = staging.join("bin/bpf-linker");
    exec::run_checked(ctx.command(&binary).arg("--version"))
        .context("the freshly built bpf-linker does not run")?;
    fs::write(staging.join("stamp"), stamp).context("cannot write the bpf-linker stamp")?;
    if install.exists() {
        fs::remove_dir_all(&install)
            .with_context(|| format!("cannot remove {}", install.display()))?;
    }
    fs::rename(&staging, &install)
        .with_context(|| format!("cannot move {} to {}", staging.display(), install.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::llvm_major;

    #[test]
    fn llvm_major_from_file_name() {
        assert_eq!(llvm_major("libLLVM.so.22.1-rust-1.97.0-nightly"), Some(22));
        assert_eq!(llvm_major("libLLVM.so.23-rust-1.99.0-nightly"), Some(23));
        assert_eq!(llvm_major("libLLVM-22-rust-1.97.0-nightly.so"), None);
        assert_eq!(llvm_major("libLLVM.so.x"), None);
    }
}
