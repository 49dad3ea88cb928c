//! Profiles for targets that are missed: `perf record -g` of the controller (or of
//! a command), reported by object, by symbol and for ha-user's own symbols.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, ensure};

/// `perf record -g` of `pid` for 5 s; the report goes to `out/lab-profile-NAME.txt`.
/// Returns where it went and its first lines.
pub fn profile(pid: u32, out: &Path, name: &str) -> anyhow::Result<String> {
    let perf = start_perf(pid, name, 5)?;
    perf.finish(out)
}

/// A running `perf record`.
pub struct Perf {
    child: std::process::Child,
    data: PathBuf,
    name: String,
}

pub fn start_perf(pid: u32, name: &str, seconds: u32) -> anyhow::Result<Perf> {
    let (pid, seconds) = (pid.to_string(), seconds.to_string());
    perf_record(name, &["-p", &pid, "--", "sleep", &seconds])
}

/// `perf record -g -o DATA TARGET...`, started.
pub fn perf_record(name: &str, target: &[&str]) -> anyhow::Result<Perf> {
    let data = std::env::temp_dir().join(format!("ha-bl-{name}.perf.data"));
    let child = std::process::Command::new("perf")
        .args(["record", "-F", "2999", "-g", "-o"])
        .arg(&data)
        .args(target)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("running perf record")?;
    Ok(Perf {
        child,
        data,
        name: name.to_owned(),
    })
}

impl Perf {
    /// Waits for the recording; writes `out/lab-profile-NAME.txt`.
    pub fn finish(mut self, out: &Path) -> anyhow::Result<String> {
        let status = self.child.wait().context("waiting for perf record")?;
        ensure!(status.success(), "perf record failed ({status})");
        let report = |extra: &[&str]| -> anyhow::Result<String> {
            let output = std::process::Command::new("perf")
                .arg("report")
                .arg("-i")
                .arg(&self.data)
                .args([
                    "--stdio",
                    "--no-children",
                    "-g",
                    "none",
                    "--percent-limit",
                    "0.5",
                ])
                .args(extra)
                .output()
                .context("running perf report")?;
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        };
        let by_dso = report(&["--sort", "dso"])?;
        let by_symbol = report(&["--sort", "dso,symbol"])?;
        let user = report(&["--sort", "symbol", "--dsos", "ha-user"])?;
        let text =
            format!("# By object\n{by_dso}\n# By symbol\n{by_symbol}\n# ha-user only\n{user}");
        let path = out.join(format!("lab-profile-{}.txt", self.name));
        std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
        let _ = std::fs::remove_file(&self.data);
        let lines = |text: &str, n: usize| -> Vec<String> {
            text.lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                .take(n)
                .map(|l| {
                    l.split_whitespace()
                        .filter(|w| *w != "-" && *w != "[.]" && *w != "[k]")
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect()
        };
        let top = [lines(&by_dso, 3), lines(&user, 6)].concat();
        Ok(format!("{} (top: {})", path.display(), top.join(" | ")))
    }
}
