//! `cargo xtask dist --check`: what `dpkg-deb` says the package holds, against
//! [`super::FILES`] and the man pages; its control fields; `systemd-analyze verify`
//! on its unit.

use std::path::Path;

use anyhow::{Context as _, bail};

use crate::{ctx::Ctx, exec};

pub fn run(ctx: &Ctx, deb: &Path, stage: &Path) -> anyhow::Result<()> {
    let (ok, listing, err) = exec::output(ctx.command("dpkg-deb").arg("-c").arg(deb))?;
    if !ok {
        bail!("dpkg-deb -c {} failed: {}", deb.display(), err.trim());
    }
    // `-rwxr-xr-x root/root 123 2026-01-01 00:00 ./usr/sbin/ha-user`
    let listed: Vec<(String, String)> = listing
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let mode = fields.next()?.to_owned();
            let owner = fields.next()?;
            let path = fields.nth(3)?.trim_start_matches("./").to_owned();
            (owner == "root/root").then_some((mode, path))
        })
        .collect();
    let mut expected: Vec<(String, u32)> = super::FILES
        .iter()
        .map(|(path, mode)| ((*path).to_owned(), *mode))
        .collect();
    expected.extend(
        super::man_pages()
            .into_iter()
            .map(|page| (format!("usr/share/man/man8/{page}.gz"), 0o644)),
    );
    let mut problems = Vec::new();
    for (path, mode) in &expected {
        let want = if *mode == 0o755 {
            "-rwxr-xr-x"
        } else {
            "-rw-r--r--"
        };
        match listed.iter().find(|(_, p)| p == path) {
            None => problems.push(format!("{path} is missing (or not root/root)")),
            Some((got, _)) if got != want => problems.push(format!("{path} is {got}, not {want}")),
            Some(_) => {}
        }
    }
    let files: Vec<&str> = listed
        .iter()
        .filter(|(mode, _)| !mode.starts_with('d'))
        .map(|(_, p)| p.as_str())
        .collect();
    for path in &files {
        if !expected.iter().any(|(p, _)| p == path) {
            problems.push(format!("{path} is in the package but not expected"));
        }
    }
    let (ok, control, err) = exec::output(ctx.command("dpkg-deb").arg("-I").arg(deb))?;
    if !ok {
        bail!("dpkg-deb -I failed: {}", err.trim());
    }
    for needed in [
        "postinst",
        "prerm",
        "postrm",
        "conffiles",
        "md5sums",
        "Package: ha",
    ] {
        if !control.contains(needed) {
            problems.push(format!("the control part has no {needed}"));
        }
    }
    if !problems.is_empty() {
        bail!(
            "the package is not what it should be:\n  {}",
            problems.join("\n  ")
        );
    }
    println!("xtask: dist --check: {} files, as expected", files.len());
    verify_unit(ctx, stage)
}

/// `systemd-analyze verify` on the unit, with its binary and man pages where the
/// staged package has them: the unit's `ExecStart=` path is rewritten to the staged
/// binary (the only change), and `MANPATH` points at the staged man pages. A machine
/// without systemd-analyze skips it, saying so.
fn verify_unit(ctx: &Ctx, stage: &Path) -> anyhow::Result<()> {
    let unit = stage.join("lib/systemd/system/ha.service");
    let text =
        std::fs::read_to_string(&unit).with_context(|| format!("reading {}", unit.display()))?;
    let binary = stage.join("usr/sbin/ha-user");
    let rewritten = text.replace("/usr/sbin/ha-user", &binary.to_string_lossy());
    let dir = stage
        .parent()
        .context("the stage has no parent")?
        .join("verify");
    std::fs::create_dir_all(&dir)?;
    let copy = dir.join("ha.service");
    std::fs::write(&copy, rewritten)?;
    let mut cmd = ctx.command("systemd-analyze");
    cmd.arg("verify")
        .arg(&copy)
        .env("MANPATH", stage.join("usr/share/man"));
    let (ok, out, err) = match exec::output(&mut cmd) {
        Ok(result) => result,
        Err(err) => {
            println!("xtask: dist --check: systemd-analyze verify SKIPPED: {err:#}");
            return Ok(());
        }
    };
    let said = format!("{out}{err}");
    if !ok || !said.trim().is_empty() {
        bail!("systemd-analyze verify ha.service:\n{}", said.trim());
    }
    println!("xtask: dist --check: systemd-analyze verify ha.service: clean");
    Ok(())
}
