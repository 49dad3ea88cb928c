//! Running child processes: checked runs, and a tee that streams a child's stdout
//! through while collecting `cargo test`'s result lines.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    process::{Command, ExitStatus, Stdio},
};

use anyhow::{Context as _, bail};

/// The command line of `cmd`, for messages (without the environment).
pub fn describe(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|arg| arg.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// Runs `cmd` with inherited stdio; an error unless it exits with success.
pub fn run_checked(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{}`", describe(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(cmd));
    }
    Ok(())
}

/// Runs `cmd` and returns its stdout and stderr and whether it succeeded.
pub fn output(cmd: &mut Command) -> anyhow::Result<(bool, String, String)> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{}`", describe(cmd)))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Test counts summed over the `test result:` lines of a `cargo test` run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
    /// How many `test result:` lines were seen (one per test binary or doc-test run).
    pub results: u64,
}

impl Tally {
    /// Adds the counts of a libtest line such as
    /// `test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s`.
    pub fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        let Some((_status, counts)) = rest.split_once(". ") else {
            return;
        };
        self.results += 1;
        for part in counts.split(';') {
            let Some((number, label)) = part.trim().split_once(' ') else {
                continue;
            };
            let Ok(number) = number.parse::<u64>() else {
                continue;
            };
            match label {
                "passed" => self.passed += number,
                "failed" => self.failed += number,
                "ignored" => self.ignored += number,
                _ => {}
            }
        }
    }
}

/// Runs `cmd`, copying its stdout to ours line by line as it comes (stderr is
/// inherited), and tallies the test result lines.
pub fn run_tee(cmd: &mut Command) -> anyhow::Result<(ExitStatus, Tally)> {
    let what = describe(cmd);
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{what}`"))?;
    let stdout = child
        .stdout
        .take()
        .with_context(|| format!("no stdout pipe from `{what}`"))?;
    let mut reader = BufReader::new(stdout);
    let mut tally = Tally::default();
    let mut line = Vec::new();
    let mut out = std::io::stdout();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .with_context(|| format!("reading the output of `{what}`"))?;
        if n == 0 {
            break;
        }
        out.write_all(&line)
            .and_then(|()| out.flush())
            .context("writing to stdout")?;
        tally.add_line(&String::from_utf8_lossy(&line));
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for `{what}`"))?;
    Ok((status, tally))
}

#[cfg(test)]
mod tests {
    use super::Tally;

    #[test]
    fn tallies_result_lines() {
        let mut tally = Tally::default();
        for line in [
            "running 3 tests",
            "test a ... ok",
            "test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s",
            "",
            "test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.20s",
            "test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s",
        ] {
            tally.add_line(line);
        }
        assert_eq!(
            tally,
            Tally {
                passed: 4,
                failed: 2,
                ignored: 1,
                results: 3
            }
        );
    }
}
