//! `cargo xtask dist [--check]`: the Debian package `target/dist/ha_<version>_<arch>.deb`,
//! built with `dpkg-deb` from the release `ha-user` (the eBPF object is embedded in
//! it), the files of `packaging/` and the man pages and completions `ha-user-docs`
//! writes from the clap definitions. `--check` lists the package (`dpkg-deb -c`)
//! against what it must hold and runs `systemd-analyze verify` on its unit.

mod check;

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::{ctx::Ctx, exec};

#[derive(clap::Args)]
pub struct Args {
    /// After building, check the package's file list and its unit.
    #[arg(long)]
    check: bool,
    /// The package version (default: ha-user's crate version).
    #[arg(long)]
    version: Option<String>,
    /// Package the dev-profile binary instead of a release build: the same files and
    /// scripts, unoptimized (what `cargo xtask test` checks, without a release build).
    #[arg(long)]
    dev: bool,
}

impl Args {
    /// What `cargo xtask test` builds: the crate's version, from the dev profile, checked.
    pub fn for_tests() -> Self {
        Self {
            check: true,
            version: None,
            dev: true,
        }
    }
}

/// Where each packaged file goes: (path in the package, mode).
pub const FILES: &[(&str, u32)] = &[
    ("usr/sbin/ha-user", 0o755),
    ("lib/systemd/system/ha.service", 0o644),
    ("etc/ha/ha.toml", 0o644),
    ("etc/iproute2/rt_protos.d/ha.conf", 0o644),
    ("usr/share/bash-completion/completions/ha-user", 0o644),
    ("usr/share/zsh/vendor-completions/_ha-user", 0o644),
    ("usr/share/fish/vendor_completions.d/ha-user.fish", 0o644),
    ("usr/share/doc/ha/copyright", 0o644),
    ("usr/share/doc/ha/changelog.gz", 0o644),
];

/// The man pages: `ha-user(8)` and one per subcommand.
pub const SUBCOMMANDS: &[&str] = &[
    "run",
    "set-owner",
    "clear-owner",
    "drain",
    "undrain",
    "status",
    "stats",
    "events",
    "simulate",
    "plan",
    "check-config",
    "detach",
];

pub fn run(ctx: &Ctx, args: &Args) -> anyhow::Result<()> {
    let mut build = ctx.cargo();
    build.arg("build");
    if !args.dev {
        build.arg("--release");
    }
    build.args(["-p", "ha-user", "--bin", "ha-user", "--bin", "ha-user-docs"]);
    exec::run_checked(&mut build)?;
    let release = ctx
        .target_dir()
        .join(if args.dev { "debug" } else { "release" });
    let version = match &args.version {
        Some(version) => version.clone(),
        None => crate_version(&ctx.root.join("ha-user/Cargo.toml"))?,
    };
    let arch = "amd64";
    let dist = ctx.target_dir().join("dist");
    let stage = dist.join(format!("ha_{version}_{arch}"));
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    }
    let docs = dist.join("docs");
    if docs.exists() {
        fs::remove_dir_all(&docs).with_context(|| format!("removing {}", docs.display()))?;
    }
    exec::run_checked(ctx.command(release.join("ha-user-docs")).arg(&docs))?;

    let packaging = ctx.root.join("packaging");
    let sources: Vec<(PathBuf, &str)> = vec![
        (release.join("ha-user"), "usr/sbin/ha-user"),
        (
            packaging.join("ha.service"),
            "lib/systemd/system/ha.service",
        ),
        (packaging.join("ha.toml"), "etc/ha/ha.toml"),
        (
            packaging.join("rt_protos.conf"),
            "etc/iproute2/rt_protos.d/ha.conf",
        ),
        (
            docs.join("completions/ha-user.bash"),
            "usr/share/bash-completion/completions/ha-user",
        ),
        (
            docs.join("completions/_ha-user"),
            "usr/share/zsh/vendor-completions/_ha-user",
        ),
        (
            docs.join("completions/ha-user.fish"),
            "usr/share/fish/vendor_completions.d/ha-user.fish",
        ),
        (
            packaging.join("debian/copyright"),
            "usr/share/doc/ha/copyright",
        ),
    ];
    for (from, to) in &sources {
        install(from, &stage.join(to), mode_of(to)?)?;
    }
    strip(ctx, &stage.join("usr/sbin/ha-user"))?;
    let changelog = fs::read_to_string(packaging.join("debian/changelog"))
        .context("reading packaging/debian/changelog")?
        .replace("@VERSION@", &version);
    write_gz(
        ctx,
        &stage.join("usr/share/doc/ha/changelog.gz"),
        &changelog,
    )?;
    let man_dir = stage.join("usr/share/man/man8");
    for page in man_pages() {
        let text = fs::read_to_string(docs.join("man8").join(&page))
            .with_context(|| format!("reading the generated {page}"))?;
        write_gz(ctx, &man_dir.join(format!("{page}.gz")), &text)?;
    }

    let debian = stage.join("DEBIAN");
    for script in ["postinst", "prerm", "postrm"] {
        install(
            &packaging.join("debian").join(script),
            &debian.join(script),
            0o755,
        )?;
    }
    install(
        &packaging.join("debian/conffiles"),
        &debian.join("conffiles"),
        0o644,
    )?;
    let installed_kib = du_kib(&stage)?;
    let control = fs::read_to_string(packaging.join("debian/control.in"))
        .context("reading packaging/debian/control.in")?
        .replace("@VERSION@", &version)
        .replace("@ARCH@", arch)
        .replace("@INSTALLED_SIZE@", &installed_kib.to_string());
    write_file(&debian.join("control"), control.as_bytes(), 0o644)?;
    write_file(
        &debian.join("md5sums"),
        md5sums(ctx, &stage)?.as_bytes(),
        0o644,
    )?;

    let deb = dist.join(format!("ha_{version}_{arch}.deb"));
    exec::run_checked(
        ctx.command("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&stage)
            .arg(&deb),
    )?;
    let size = fs::metadata(&deb)
        .with_context(|| format!("{} is missing after dpkg-deb", deb.display()))?
        .len();
    println!(
        "xtask: dist: {} ({} KiB, {installed_kib} KiB installed)",
        deb.display(),
        size / 1024
    );
    if args.check {
        check::run(ctx, &deb, &stage)?;
    }
    Ok(())
}

/// `ha-user.8` and `ha-user-<subcommand>.8` for each subcommand.
pub fn man_pages() -> Vec<String> {
    let mut pages = vec!["ha-user.8".to_owned()];
    pages.extend(SUBCOMMANDS.iter().map(|sub| format!("ha-user-{sub}.8")));
    pages
}

fn mode_of(path: &str) -> anyhow::Result<u32> {
    FILES
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, mode)| *mode)
        .with_context(|| format!("{path} is not in dist::FILES"))
}

fn crate_version(manifest: &Path) -> anyhow::Result<String> {
    let text =
        fs::read_to_string(manifest).with_context(|| format!("reading {}", manifest.display()))?;
    text.lines()
        .find_map(|line| {
            let value = line
                .strip_prefix("version")?
                .trim_start()
                .strip_prefix('=')?;
            Some(value.trim().trim_matches('"').to_owned())
        })
        .with_context(|| format!("no version in {}", manifest.display()))
}

fn install(from: &Path, to: &Path, mode: u32) -> anyhow::Result<()> {
    let bytes = fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    write_file(to, &bytes, mode)
}

fn write_file(to: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(to, bytes).with_context(|| format!("writing {}", to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", to.display()))
}

/// Writes `text` gzip-compressed (`gzip -9n`: no name or time stamp, reproducible).
fn write_gz(ctx: &Ctx, to: &Path, text: &str) -> anyhow::Result<()> {
    let plain = to.with_extension("");
    write_file(&plain, text.as_bytes(), 0o644)?;
    exec::run_checked(ctx.command("gzip").args(["-9nf"]).arg(&plain))?;
    if !to.is_file() {
        bail!("gzip did not write {}", to.display());
    }
    Ok(())
}

/// The binary without its symbols (the package ships no debug information).
fn strip(ctx: &Ctx, binary: &Path) -> anyhow::Result<()> {
    let mut cmd = ctx.command("strip");
    cmd.arg("--strip-unneeded").arg(binary);
    match exec::output(&mut cmd) {
        Ok((true, _, _)) => Ok(()),
        Ok((false, _, err)) => bail!("`{}` failed: {}", exec::describe(&cmd), err.trim()),
        // No binutils: ship it as cargo built it.
        Err(err) => {
            eprintln!("xtask: dist: not stripped ({err:#})");
            Ok(())
        }
    }
}

fn du_kib(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in walk(dir)? {
        if !entry.starts_with(dir.join("DEBIAN")) {
            total += fs::metadata(&entry)?.len().div_ceil(1024);
        }
    }
    Ok(total)
}

fn md5sums(ctx: &Ctx, stage: &Path) -> anyhow::Result<String> {
    let mut files: Vec<PathBuf> = walk(stage)?
        .into_iter()
        .filter(|p| !p.starts_with(stage.join("DEBIAN")))
        .map(|p| p.strip_prefix(stage).map(Path::to_path_buf))
        .collect::<Result<_, _>>()?;
    files.sort();
    let mut cmd: Command = ctx.command("md5sum");
    cmd.current_dir(stage).args(&files);
    let (ok, out, err) = exec::output(&mut cmd)?;
    if !ok {
        bail!("md5sum failed: {}", err.trim());
    }
    Ok(out)
}

/// Every regular file under `dir`.
fn walk(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                todo.push(path);
            } else {
                files.push(path);
            }
        }
    }
    Ok(files)
}
