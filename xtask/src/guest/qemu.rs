//! Booting the guest with QEMU and running one command in it.
//!
//! Each boot gets a directory `target/guest/run-PID/` shared read-only into the guest
//! (9p, tag `ha_run`): `agent.sh`, which the image's boot agent runs once systemd has
//! reached multi-user, and `command.sh`, the command. The workspace is shared read-only
//! at its own path (tag `ha_repo`; the target directory too when it lies outside),
//! so the binaries built on the host, and the absolute paths compiled into the test
//! binaries, work unchanged. The root disk is opened with `-snapshot`: every boot
//! starts from the same image and nothing is written back.
//!
//! The command's output comes back through a virtio serial port, read from QEMU's
//! stdout line by line; the kernel console goes to `console.log`. Marker lines with a
//! per-boot nonce say when the guest is ready (with its `uname -r`) and how the
//! command exited. Every wait is bounded: the boot, the command, the power-off.
//!
//! Acceleration: KVM when `/dev/kvm` can be opened, falling back to software
//! emulation (TCG) when the guest does not boot with it; a failed KVM boot is
//! remembered per host kernel in `target/guest/kvm-failed`, so later runs go straight
//! to TCG (and say so) until `--accel kvm` tries again.

use std::{
    fmt, fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc::{self, RecvTimeoutError},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, bail};

use super::image::{Image, guest_dir, tail};
use crate::ctx::Ctx;

/// Guest memory (MiB).
const MEMORY_MIB: u32 = 2048;
/// A KVM boot that has not reached the agent in this time is taken as not working.
const KVM_BOOT_TIMEOUT: Duration = Duration::from_secs(90);
/// Debian's boot to multi-user under TCG: about 2 minutes on an idle 2-core machine.
const TCG_BOOT_TIMEOUT: Duration = Duration::from_secs(900);
/// From the command's end to QEMU's exit (the agent powers off at once).
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AccelChoice {
    /// KVM if it boots the guest, else software emulation (TCG).
    Auto,
    /// KVM only (fails if it does not boot the guest).
    Kvm,
    /// Software emulation only.
    Tcg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// As the guest sees it in `$HA_GUEST_ACCEL`.
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    fn boot_timeout(self) -> Duration {
        match self {
            Accel::Kvm => KVM_BOOT_TIMEOUT,
            Accel::Tcg => TCG_BOOT_TIMEOUT,
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "KVM",
            Accel::Tcg => "software emulation (TCG)",
        })
    }
}

/// What to run in the guest.
pub struct Request {
    /// Shell text run by `/bin/sh` in the workspace root, as root.
    pub script: String,
    /// Exported before the script runs (besides `HA_GUEST_ACCEL`).
    pub env: Vec<(String, String)>,
    /// The most the command may take once the guest is up.
    pub timeout: Duration,
    pub accel: AccelChoice,
}

/// How a run went.
pub struct Finished {
    /// The command's exit status.
    pub status: i32,
    pub accel: Accel,
    /// From starting QEMU to the guest's agent running.
    pub boot: Duration,
    /// From the agent running to the command's end.
    pub ran: Duration,
    /// `uname -r` in the guest.
    pub release: String,
}

/// Boots the guest, runs `request` and hands each line of its output to `on_line`.
pub fn run(
    ctx: &Ctx,
    image: &Image,
    request: &Request,
    on_line: &mut dyn FnMut(&str),
) -> anyhow::Result<Finished> {
    let dir = guest_dir(ctx);
    let run_dir = dir.join(format!("run-{}", std::process::id()));
    if run_dir.exists() {
        fs::remove_dir_all(&run_dir)
            .with_context(|| format!("cannot remove {}", run_dir.display()))?;
    }
    fs::create_dir_all(&run_dir).with_context(|| format!("cannot create {}", run_dir.display()))?;
    fs::write(run_dir.join("command.sh"), &request.script).context("cannot write command.sh")?;
    let shares = shares(ctx);
    let kvm_failed = dir.join("kvm-failed");
    let host = host_release();

    let candidates = match request.accel {
        AccelChoice::Tcg => vec![Accel::Tcg],
        AccelChoice::Kvm => {
            kvm_usable()?;
            vec![Accel::Kvm]
        }
        AccelChoice::Auto => match (kvm_usable(), fs::read_to_string(&kvm_failed)) {
            (Err(why), _) => {
                eprintln!("xtask: guest: no KVM ({why:#}): using software emulation (TCG)");
                vec![Accel::Tcg]
            }
            (Ok(()), Ok(text)) if text.lines().next() == Some(host.as_str()) => {
                eprintln!(
                    "xtask: guest: KVM did not boot the guest on this host kernel before \
                     ({}): using software emulation (TCG); `--accel kvm` tries KVM again",
                    kvm_failed.display()
                );
                vec![Accel::Tcg]
            }
            (Ok(()), _) => vec![Accel::Kvm, Accel::Tcg],
        },
    };

    let mut kvm_failure: Option<String> = None;
    for (i, &accel) in candidates.iter().enumerate() {
        let last = i + 1 == candidates.len();
        match boot(ctx, image, request, accel, &run_dir, &shares, on_line) {
            Ok(finished) => {
                if let Some(why) = &kvm_failure {
                    remember_kvm_failure(&kvm_failed, &host, why);
                }
                let _ = fs::rename(run_dir.join("console.log"), dir.join("console.log"));
                let _ = fs::remove_dir_all(&run_dir);
                return Ok(finished);
            }
            Err(Failure::Boot(why)) if !last => {
                eprintln!(
                    "xtask: guest: {accel} did not boot the guest: {why}\n\
                     xtask: guest: falling back to {} (much slower)",
                    candidates[i + 1]
                );
                let _ = fs::rename(
                    run_dir.join("console.log"),
                    run_dir.join(format!("console-{}.log", accel.name())),
                );
                if accel == Accel::Kvm {
                    kvm_failure = Some(why);
                }
            }
            Err(Failure::Boot(why)) => {
                bail!(
                    "the guest did not boot with {accel}: {why}\n(files kept in {})",
                    run_dir.display()
                )
            }
            Err(Failure::Run(why)) => {
                if let Some(failure) = &kvm_failure {
                    remember_kvm_failure(&kvm_failed, &host, failure);
                }
                bail!("{why}\n(files kept in {})", run_dir.display())
            }
        }
    }
    bail!("no way to boot the guest")
}

enum Failure {
    /// Before the guest's agent ran: another accelerator may do better.
    Boot(String),
    /// After: the command or the guest failed while running it.
    Run(String),
}

/// A directory shared into the guest at the same path.
struct Share {
    tag: &'static str,
    path: PathBuf,
}

fn shares(ctx: &Ctx) -> Vec<Share> {
    let mut shares = vec![Share {
        tag: "ha_repo",
        path: ctx.root.clone(),
    }];
    let target = ctx.target_dir();
    if !target.starts_with(&ctx.root) {
        shares.push(Share {
            tag: "ha_target",
            path: target,
        });
    }
    shares
}

fn kvm_usable() -> anyhow::Result<()> {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(drop)
        .context("cannot open /dev/kvm read-write")
}

fn host_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|text| text.trim().to_owned())
        .unwrap_or_default()
}

fn remember_kvm_failure(file: &Path, host: &str, why: &str) {
    let text = format!("{host}\nKVM did not boot the guest on host kernel {host}: {why}\n");
    if let Err(err) = fs::write(file, text) {
        eprintln!("xtask: guest: cannot write {}: {err}", file.display());
    }
}

/// One boot with `accel`.
fn boot(
    ctx: &Ctx,
    image: &Image,
    request: &Request,
    accel: Accel,
    run_dir: &Path,
    shares: &[Share],
    on_line: &mut dyn FnMut(&str),
) -> Result<Finished, Failure> {
    let nonce = nonce();
    let marker = format!("@@ha-guest-{nonce} ");
    let agent = agent_script(&marker, accel, shares, &ctx.root, &request.env);
    fs::write(run_dir.join("agent.sh"), agent)
        .map_err(|e| Failure::Boot(format!("cannot write agent.sh: {e}")))?;
    let console = run_dir.join("console.log");
    let qemu_log = run_dir.join("qemu.log");
    let mut cmd = qemu_command(ctx, image, accel, run_dir, shares, &console);
    let stderr = fs::File::create(&qemu_log)
        .map_err(|e| Failure::Boot(format!("cannot create {}: {e}", qemu_log.display())))?;
    eprintln!(
        "xtask: guest: booting Debian 12 ({}) with {accel}",
        image.release
    );
    let started = Instant::now();
    // QEMU's stdio chardev closes the port on EOF of stdin, and a closed port blocks
    // the guest's writes: the pipe stays open (and empty) until QEMU has exited.
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| Failure::Boot(format!("cannot start qemu-system-x86_64: {e}")))?;
    let Some(stdout) = child.stdout.take() else {
        kill(&mut child);
        return Err(Failure::Boot("no stdout pipe from QEMU".into()));
    };
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    if tx
                        .send(text.trim_end_matches(['\n', '\r']).to_owned())
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    });

    let diagnose = |what: &str| -> String {
        let console_text = fs::read_to_string(&console).unwrap_or_default();
        let qemu_text = fs::read_to_string(&qemu_log).unwrap_or_default();
        let console_tail = if console_text.trim().is_empty() {
            "(empty: the guest kernel printed nothing)".to_owned()
        } else {
            tail(&console_text, 25)
        };
        let mut text = format!(
            "{what}\n--- the end of the kernel console ({}):\n{console_tail}",
            console.display(),
        );
        if !qemu_text.trim().is_empty() {
            text.push_str(&format!("\n--- QEMU said:\n{}", tail(&qemu_text, 10)));
        }
        text
    };

    let mut ready: Option<(Instant, String)> = None;
    let status = loop {
        let deadline = match &ready {
            None => started + accel.boot_timeout(),
            Some((since, _)) => *since + request.timeout,
        };
        let line = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                kill(&mut child);
                return Err(match ready {
                    None => Failure::Boot(diagnose(&format!(
                        "the guest's agent did not start within {:?}",
                        accel.boot_timeout()
                    ))),
                    Some(_) => Failure::Run(diagnose(&format!(
                        "the command did not finish within {:?} (--timeout); QEMU stopped",
                        request.timeout
                    ))),
                });
            }
            Err(RecvTimeoutError::Disconnected) => {
                let exit = wait_exit(&mut child, POWEROFF_TIMEOUT);
                let what = format!("QEMU ended ({exit}) before the command had finished");
                return Err(match ready {
                    None => Failure::Boot(diagnose(&what)),
                    Some(_) => Failure::Run(diagnose(&what)),
                });
            }
        };
        let Some(at) = line.find(&marker) else {
            on_line(&line);
            continue;
        };
        if at > 0 {
            on_line(&line[..at]);
        }
        let message = &line[at + marker.len()..];
        if let Some(release) = message.strip_prefix("ready ") {
            let boot = started.elapsed();
            eprintln!(
                "xtask: guest: up in {:.1} s with {accel}: kernel {release}",
                boot.as_secs_f64()
            );
            ready = Some((Instant::now(), release.to_owned()));
        } else if let Some(code) = message.strip_prefix("exit ") {
            match code.trim().parse::<i32>() {
                Ok(code) => break code,
                Err(_) => {
                    kill(&mut child);
                    return Err(Failure::Run(format!("unreadable exit marker: {line}")));
                }
            }
        } else if let Some(why) = message.strip_prefix("fail ") {
            kill(&mut child);
            let what = format!("the guest's agent failed: {why}");
            return Err(match ready {
                None => Failure::Boot(diagnose(&what)),
                Some(_) => Failure::Run(diagnose(&what)),
            });
        }
    };
    let Some((since, release)) = ready else {
        kill(&mut child);
        return Err(Failure::Boot(
            "the command ended before the guest said it was ready".into(),
        ));
    };
    let ran = since.elapsed();
    let boot = since.duration_since(started);
    if wait_exit(&mut child, POWEROFF_TIMEOUT).starts_with("still running") {
        eprintln!("xtask: guest: QEMU did not exit after the command; stopped it");
    }
    Ok(Finished {
        status,
        accel,
        boot,
        ran,
        release,
    })
}

fn qemu_command(
    ctx: &Ctx,
    image: &Image,
    accel: Accel,
    run_dir: &Path,
    shares: &[Share],
    console: &Path,
) -> Command {
    let mut cmd = ctx.command("qemu-system-x86_64");
    let (machine, cpu) = match accel {
        Accel::Kvm => ("q35,accel=kvm", "host"),
        // The baseline CPU model. With `max` (QEMU 7.2) the guest kernel printed every
        // mount point in /proc/self/mountinfo as x's ("/sys" as "xxxx"), so systemd
        // failed its own mounts and could not start udevd; and the emulated SVM made
        // the guest load kvm_amd, which once hung the boot.
        Accel::Tcg => ("q35,accel=tcg", "qemu64,-svm"),
    };
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get().min(2))
        .unwrap_or(1);
    cmd.args(["-name", "ha-guest", "-machine", machine, "-cpu", cpu]);
    cmd.args(["-m", &MEMORY_MIB.to_string(), "-smp", &cpus.to_string()]);
    cmd.args(["-nodefaults", "-display", "none", "-no-reboot", "-snapshot"]);
    cmd.arg("-kernel").arg(&image.kernel);
    cmd.arg("-initrd").arg(&image.initrd);
    cmd.args([
        "-append",
        "root=/dev/vda rw console=ttyS0 panic=-1 net.ifnames=0",
    ]);
    cmd.arg("-drive").arg(format!(
        "file={},format=raw,if=virtio",
        image.rootfs.display()
    ));
    cmd.arg("-serial")
        .arg(format!("file:{}", console.display()));
    cmd.args(["-device", "virtio-serial-pci"]);
    cmd.args(["-chardev", "stdio,id=ha_out"]);
    cmd.args(["-device", "virtserialport,chardev=ha_out,name=ha.out"]);
    let mut share = |tag: &str, path: &Path| {
        cmd.arg("-fsdev").arg(format!(
            "local,id={tag},path={},security_model=none,readonly=on",
            path.display()
        ));
        cmd.arg("-device")
            .arg(format!("virtio-9p-pci,fsdev={tag},mount_tag={tag}"));
    };
    share("ha_run", run_dir);
    for Share { tag, path } in shares {
        share(tag, path);
    }
    cmd
}

/// The per-boot script the image's agent runs: finds the output port, sends the
/// guest's output there, mounts the shares, says `ready`, runs `command.sh` in the
/// workspace and reports its exit status.
fn agent_script(
    marker: &str,
    accel: Accel,
    shares: &[Share],
    root: &Path,
    env: &[(String, String)],
) -> String {
    let mut text = format!(
        "# Written by cargo xtask guest for one boot.\n\
         M='{}'\n\
         modprobe virtio_console 2>/dev/null\n\
         dev=\n\
         i=0\n\
         while [ -z \"$dev\" ] && [ $i -lt 300 ]; do\n\
         \x20   for p in /sys/class/virtio-ports/*; do\n\
         \x20       [ \"$(cat \"$p/name\" 2>/dev/null)\" = ha.out ] && [ -e \"/dev/${{p##*/}}\" ] && dev=\"/dev/${{p##*/}}\"\n\
         \x20   done\n\
         \x20   [ -n \"$dev\" ] || {{ sleep 0.1; i=$((i + 1)); }}\n\
         done\n\
         if [ -z \"$dev\" ]; then echo 'ha-guest: no virtio port ha.out' >&2; exit 1; fi\n\
         exec >\"$dev\" 2>&1 </dev/null\n\
         failed=$(systemctl --failed --plain --no-legend 2>/dev/null | cut -d' ' -f1 | tr '\\n' ' ')\n\
         [ -z \"$failed\" ] || echo \"ha-guest: units that failed to start: $failed\"\n\
         share() {{\n\
         \x20   mkdir -p \"$2\" && mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose \"$1\" \"$2\" \\\n\
         \x20       || {{ echo \"${{M}}fail cannot mount the $1 share at $2\"; exit 1; }}\n\
         }}\n",
        marker.trim_end()
    )
    .replace("${M}fail", "$M fail");
    for Share { tag, path } in shares {
        text.push_str(&format!("share {tag} {}\n", quote(&path.to_string_lossy())));
    }
    text.push_str("echo \"$M ready $(uname -r)\"\n");
    text.push_str(&format!(
        "cd {} || exit 1\n",
        quote(&root.to_string_lossy())
    ));
    text.push_str("export HOME=/root\n");
    text.push_str(&format!("export HA_GUEST_ACCEL={}\n", accel.name()));
    for (key, value) in env {
        text.push_str(&format!("export {key}={}\n", quote(value)));
    }
    text.push_str("/bin/sh /run/ha-guest/command.sh\necho \"$M exit $?\"\n");
    text
}

/// `text` as one single-quoted shell word.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn nonce() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}", std::process::id(), nanos)
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits up to `limit` for `child` to exit; kills it after that.
fn wait_exit(child: &mut Child, limit: Duration) -> String {
    let until = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.to_string(),
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                kill(child);
                return format!("still running after {limit:?}, killed");
            }
            Err(err) => return format!("cannot wait for QEMU: {err}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(quote("plain"), "'plain'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
    }
}
