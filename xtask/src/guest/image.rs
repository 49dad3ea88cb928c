//! The guest's disk image: a Debian 12 root file system made by debootstrap from
//! Debian's packages, with Debian's kernel (`linux-image-amd64`), systemd as init, the
//! packages the tests call and a boot agent (a systemd unit that runs what
//! `cargo xtask guest` hands in, see [`super::qemu`]). It holds none of the project's
//! binaries: those are shared in at each boot, so rebuilding the code never rebuilds
//! the image.
//!
//! Cached in `target/guest/image/`: `rootfs.img` (ext4, made with `mkfs.ext4 -d`, no
//! loop mount), `vmlinuz` and `initrd.img` (booted directly by QEMU), `release` (the
//! kernel release) and `key`, the text of everything that went in (recipe version,
//! suite, mirror, package list, the agent). A different key rebuilds the image.

use std::{
    fs,
    os::unix::{
        fs::{PermissionsExt as _, symlink},
        process::CommandExt as _,
    },
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::mirror;
use crate::{
    ctx::{Ctx, is_root},
    exec, packages,
};

/// Debian 12.
pub const SUITE: &str = "bookworm";
/// Bump when the recipe below changes in a way the key does not show.
const RECIPE: u32 = 1;
/// What the guest needs beyond the host test packages of [`packages::PACKAGES`]: the
/// kernel, systemd as init, module loading, and the tools of the checks run there.
const GUEST_PACKAGES: &[&str] = &[
    "linux-image-amd64",
    "systemd",
    "systemd-sysv",
    "udev",
    "kmod",
    "procps",
    "iputils-ping",
    "nftables",
];
/// debootstrap took about 3 minutes here; a stalled mirror must not hang the build.
const DEBOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Free space left in the root file system for what the guest writes (logs, /tmp).
const FREE_SPACE: u64 = 1 << 30;
/// Units that only slow a short-lived guest down: nobody logs in (the serial getty
/// waited 90 s for a `dev-ttyS0.device` that never came under TCG), nothing is kept.
const MASKED: &[&str] = &[
    "getty.target",
    "getty@.service",
    "serial-getty@.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
];

/// The boot agent: mounts the per-boot share and runs its `agent.sh`; powers off
/// whatever happens, so QEMU exits.
const AGENT: &str = "#!/bin/sh
# Runs what `cargo xtask guest` hands in on the ha_run share, then powers off.
mkdir -p /run/ha-guest
if mount -t 9p -o trans=virtio,version=9p2000.L,ro ha_run /run/ha-guest; then
    /bin/sh /run/ha-guest/agent.sh
else
    echo 'ha-guest-agent: cannot mount the ha_run share' >&2
fi
sync
echo o >/proc/sysrq-trigger
";

/// `Type=simple`: the boot is finished (`systemctl is-system-running` says
/// `running`) while the command runs.
const UNIT: &str = "[Unit]
Description=Run the command handed in by cargo xtask guest, then power off
After=multi-user.target

[Service]
Type=simple
ExecStart=/usr/local/sbin/ha-guest-agent
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
";

/// A built image.
pub struct Image {
    pub rootfs: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The guest kernel's release, e.g. `6.1.0-50-amd64`.
    pub release: String,
}

/// Where the guest's files live: `target/guest`.
pub fn guest_dir(ctx: &Ctx) -> PathBuf {
    ctx.target_dir().join("guest")
}

/// The image, built first when it is missing, its key differs, or `rebuild` is set.
pub fn ensure(ctx: &Ctx, rebuild: bool) -> anyhow::Result<Image> {
    let dir = guest_dir(ctx).join("image");
    let mirror = mirror::find(SUITE)?;
    let key = key(&mirror);
    if !rebuild && let Some(image) = cached(&dir, &key) {
        return Ok(image);
    }
    if !is_root()? {
        bail!(
            "building the guest image (debootstrap, chroot) needs root: run as root, e.g. \
             `sudo -E env \"PATH=$PATH\" cargo xtask guest`"
        );
    }
    let why = if rebuild {
        "--rebuild given"
    } else if dir.join("key").exists() {
        "what goes into it changed"
    } else {
        "none built yet"
    };
    eprintln!(
        "xtask: guest: building the Debian 12 image from {mirror} ({why}); this takes minutes"
    );
    let start = Instant::now();
    build(ctx, &dir, &mirror, &key)?;
    let image = cached(&dir, &key).context("the image just built is incomplete")?;
    let size = fs::metadata(&image.rootfs)
        .map(|meta| meta.len())
        .unwrap_or(0);
    let used = disk_usage(&image.rootfs).unwrap_or(0);
    eprintln!(
        "xtask: guest: image built in {:.0?}: kernel {}, {} ({} MiB file, {} MiB on disk)",
        start.elapsed(),
        image.release,
        image.rootfs.display(),
        size >> 20,
        used >> 20,
    );
    Ok(image)
}

/// The package list: the host test packages, then the guest's own.
pub fn package_list() -> Vec<&'static str> {
    let mut list: Vec<&str> = packages::PACKAGES.iter().map(|(pkg, _)| *pkg).collect();
    for pkg in GUEST_PACKAGES {
        if !list.contains(pkg) {
            list.push(pkg);
        }
    }
    list
}

/// Everything that goes into the image, as text.
fn key(mirror: &str) -> String {
    format!(
        "recipe {RECIPE}\nsuite {SUITE}\nmirror {mirror}\npackages {}\nmasked {}\n\
         --- agent\n{AGENT}--- unit\n{UNIT}",
        package_list().join(" "),
        MASKED.join(" "),
    )
}

fn cached(dir: &Path, key: &str) -> Option<Image> {
    let found = fs::read_to_string(dir.join("key")).ok()?;
    if found != key {
        return None;
    }
    let image = Image {
        rootfs: dir.join("rootfs.img"),
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initrd.img"),
        release: fs::read_to_string(dir.join("release"))
            .ok()?
            .trim()
            .to_owned(),
    };
    let complete = [&image.rootfs, &image.kernel, &image.initrd]
        .iter()
        .all(|path| path.is_file());
    complete.then_some(image)
}

/// Builds into a sibling directory and renames it over `dir` when complete.
fn build(ctx: &Ctx, dir: &Path, mirror: &str, key: &str) -> anyhow::Result<()> {
    let parent = dir.parent().context("image directory without parent")?;
    let work = parent.join("image.new");
    if work.exists() {
        fs::remove_dir_all(&work)
            .with_context(|| format!("cannot remove the unfinished {}", work.display()))?;
    }
    let root = work.join("root");
    fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let log = work.join("debootstrap.log");
    let mut debootstrap = ctx.command("debootstrap");
    debootstrap
        .arg("--variant=minbase")
        .arg("--components=main")
        .arg(format!("--include={}", package_list().join(",")))
        .arg(SUITE)
        .arg(&root)
        .arg(mirror);
    eprintln!(
        "xtask: guest: {} (log: {})",
        exec::describe(&debootstrap),
        log.display()
    );
    let log_file =
        fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let log_err = log_file
        .try_clone()
        .context("cannot duplicate the log file")?;
    // Its own process group, so that a run past the bound is stopped with the
    // downloads and dpkg runs it started.
    let mut child = debootstrap
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        .process_group(0)
        .spawn()
        .context("cannot start debootstrap")?;
    let until = Instant::now() + DEBOOTSTRAP_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for debootstrap")? {
            break status;
        }
        if Instant::now() >= until {
            let group = format!("-{}", child.id());
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &group])
                .status();
            let _ = child.wait();
            bail!(
                "debootstrap did not finish within {DEBOOTSTRAP_TIMEOUT:?} (a stalled \
                 mirror?); stopped it. Its log: {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if !status.success() {
        let text = fs::read_to_string(&log).unwrap_or_default();
        bail!(
            "debootstrap failed ({status}); the end of {}:\n{}",
            log.display(),
            tail(&text, 20)
        );
    }
    configure(&root)?;
    let release = take_kernel(&root, &work)?;
    make_ext4(ctx, &root, &work.join("rootfs.img"))?;
    fs::remove_dir_all(&root).with_context(|| format!("cannot remove {}", root.display()))?;
    fs::write(work.join("release"), format!("{release}\n"))
        .context("cannot write the kernel release")?;
    fs::write(work.join("key"), key).context("cannot write the image key")?;
    if dir.exists() {
        fs::remove_dir_all(dir)
            .with_context(|| format!("cannot remove the old {}", dir.display()))?;
    }
    fs::rename(&work, dir)
        .with_context(|| format!("cannot rename {} to {}", work.display(), dir.display()))
}

/// Host name, the boot agent and its unit, masked timers, no package caches.
fn configure(root: &Path) -> anyhow::Result<()> {
    let write = |path: &str, text: &str| {
        let path = root.join(path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    write("etc/hostname", "ha-guest\n")?;
    write("etc/hosts", "127.0.0.1 localhost\n127.0.1.1 ha-guest\n")?;
    write(
        "etc/fstab",
        "# The root file system is /dev/vda, mounted read-write by the kernel command line.\n",
    )?;
    write("usr/local/sbin/ha-guest-agent", AGENT)?;
    let agent = root.join("usr/local/sbin/ha-guest-agent");
    fs::set_permissions(&agent, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make {} executable", agent.display()))?;
    write("etc/systemd/system/ha-guest-agent.service", UNIT)?;
    let wants = root.join("etc/systemd/system/multi-user.target.wants");
    fs::create_dir_all(&wants).with_context(|| format!("cannot create {}", wants.display()))?;
    link(
        "/etc/systemd/system/ha-guest-agent.service",
        &wants.join("ha-guest-agent.service"),
    )?;
    for unit in MASKED {
        link("/dev/null", &root.join("etc/systemd/system").join(unit))?;
    }
    for cache in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        let dir = root.join(cache);
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file() {
                fs::remove_file(&path)
                    .with_context(|| format!("cannot remove {}", path.display()))?;
            }
        }
    }
    Ok(())
}

fn link(target: &str, at: &Path) -> anyhow::Result<()> {
    if at.symlink_metadata().is_ok() {
        fs::remove_file(at).with_context(|| format!("cannot replace {}", at.display()))?;
    }
    symlink(target, at).with_context(|| format!("cannot link {} to {target}", at.display()))
}

/// Copies the one installed kernel and its initramfs out of `/boot`; returns its release.
fn take_kernel(root: &Path, work: &Path) -> anyhow::Result<String> {
    let boot = root.join("boot");
    let mut releases: Vec<String> = fs::read_dir(&boot)
        .with_context(|| format!("cannot list {}", boot.display()))?
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            name.strip_prefix("vmlinuz-").map(str::to_owned)
        })
        .collect();
    releases.sort();
    let release = match releases.as_slice() {
        [one] => one.clone(),
        [] => bail!(
            "linux-image-amd64 installed no kernel in {}",
            boot.display()
        ),
        more => bail!(
            "more than one kernel in {}: {}",
            boot.display(),
            more.join(", ")
        ),
    };
    for (from, to) in [("vmlinuz", "vmlinuz"), ("initrd.img", "initrd.img")] {
        let source = boot.join(format!("{from}-{release}"));
        fs::copy(&source, work.join(to)).with_context(|| {
            format!(
                "cannot copy {} (did update-initramfs run?)",
                source.display()
            )
        })?;
    }
    for module in ["veth", "8021q", "nf_conntrack", "9pnet_virtio", "9p"] {
        if !module_present(&root.join("lib/modules").join(&release), module) {
            bail!("the guest kernel {release} has no {module} module");
        }
    }
    Ok(release)
}

/// Whether `modules.dep` under `dir` lists `NAME.ko` (compressed or not).
fn module_present(dir: &Path, name: &str) -> bool {
    let Ok(deps) = fs::read_to_string(dir.join("modules.dep")) else {
        return false;
    };
    deps.lines().any(|line| {
        let file = line.split(':').next().unwrap_or("");
        let base = file.rsplit('/').next().unwrap_or("");
        [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
            .iter()
            .any(|ext| base.strip_suffix(ext) == Some(name))
    })
}

/// An ext4 file system filled from `root` (`mkfs.ext4 -d`): its contents plus
/// [`FREE_SPACE`], in a sparse file.
fn make_ext4(ctx: &Ctx, root: &Path, image: &Path) -> anyhow::Result<()> {
    let used = disk_usage(root)?;
    let size = (used + used / 5 + FREE_SPACE).next_multiple_of(1 << 20);
    let file =
        fs::File::create(image).with_context(|| format!("cannot create {}", image.display()))?;
    file.set_len(size)
        .with_context(|| format!("cannot size {}", image.display()))?;
    drop(file);
    let mut mkfs = ctx.command("mkfs.ext4");
    mkfs.args(["-q", "-F", "-L", "ha-guest", "-d"])
        .arg(root)
        .arg(image);
    let (ok, out, err) = exec::output(&mut mkfs)?;
    if !ok {
        bail!("`{}` failed:\n{out}{err}", exec::describe(&mkfs));
    }
    Ok(())
}

/// Bytes on disk under `path` (`du -s`).
fn disk_usage(path: &Path) -> anyhow::Result<u64> {
    let mut du = std::process::Command::new("du");
    du.args(["-s", "--block-size=1", "-x"]).arg(path);
    let (ok, out, err) = exec::output(&mut du)?;
    if !ok {
        bail!("`{}` failed: {err}", exec::describe(&du));
    }
    out.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("unexpected output of `{}`: {out}", exec::describe(&du)))
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
