//! `cargo xtask test --kernel debian-6.1`: the root suites of `ha-tests` in the guest.
//!
//! The host builds `ha-user`, the lab's binaries and the test binaries; one boot runs
//! every suite of [`SUITES`] in turn (the binaries straight from the shared target
//! directory, one test at a time, as `cargo test` would from `tests/`), each framed by
//! marker lines so that its tests are counted on their own. The table and summary
//! are those of the host run. Unit tests, clippy and rustfmt do not depend on the
//! kernel: the host run has them.
//!
//! Under software emulation the lab's health-check timers are stretched by
//! [`TCG_TIME_SCALE`] through `HA_LAB_TIME_SCALE` (see `tests/src/lab/spec.rs`); no
//! assertion is loosened.

use std::{
    collections::BTreeMap,
    io::Write as _,
    process::{ExitCode, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::Value;

use super::{prepare, qemu};
use crate::{
    ctx::{Ctx, is_root},
    dist,
    exec::{self, Tally},
    steps::{Outcome, Step, Totals, conclude, root_suites, run_step, step},
};

/// What runs in the guest: adding a suite is one line. `pattern` names a test target
/// of `ha-tests` (`tests/tests/NAME.rs` or `NAME/main.rs`); a trailing `*` takes every
/// target containing the text before it. A pattern that matches nothing is reported
/// as not present (a skip, never a pass). `tests`: only these tests (exact names).
const SUITES: &[GuestSuite] = &[
    GuestSuite {
        pattern: "fixtures",
        tests: None,
    },
    GuestSuite {
        pattern: "random*",
        tests: None,
    },
    GuestSuite {
        pattern: "lab",
        tests: None,
    },
    GuestSuite {
        pattern: "controller",
        tests: None,
    },
    GuestSuite {
        pattern: "package",
        tests: None,
    },
    GuestSuite {
        pattern: "faults",
        tests: None,
    },
    GuestSuite {
        pattern: "scenarios",
        tests: None,
    },
];

/// Health-check timers × this under TCG, where everything runs many times slower.
const TCG_TIME_SCALE: u32 = 10;
/// The most the suites may take together once the guest is up.
const RUN_TIMEOUT: Duration = Duration::from_secs(3 * 3600);

struct GuestSuite {
    pattern: &'static str,
    tests: Option<&'static [&'static str]>,
}

/// One test binary to run in the guest.
struct Planned {
    target: String,
    exe: String,
    tests: Option<&'static [&'static str]>,
}

/// `long`: the suites at their full sizes (`HA_LONG=1`), as `cargo xtask test --long`.
pub fn run(ctx: &Ctx, kernel: &str, long: bool, setup_time: Duration) -> anyhow::Result<ExitCode> {
    if kernel != "debian-6.1" {
        bail!("unknown kernel {kernel:?}: the guest has debian-6.1");
    }
    if !is_root()? {
        bail!(
            "the guest suites need root (the image is made with debootstrap): run as root, \
             e.g. `sudo -E env \"PATH=$PATH\" cargo xtask test --kernel {kernel}`"
        );
    }
    let mut totals = Totals::default();
    let mut steps = vec![Step {
        name: "setup".into(),
        outcome: Outcome::Ok,
        duration: setup_time,
    }];

    let found = root_suites(&ctx.root.join("tests/tests"))?;
    let mut targets = Vec::new();
    let mut missing = Vec::new();
    for suite in SUITES {
        let matched = matching(suite.pattern, &found);
        if matched.is_empty() {
            missing.push(suite.pattern);
        }
        targets.extend(matched.into_iter().map(|target| (target, suite.tests)));
    }

    // The package suite runs the staged package's maintainer scripts (target/dist,
    // shared with the guest like the test binaries), as the host run stages it.
    steps.push(run_step(
        &mut totals,
        "package (dist --check --dev)",
        || dist::run(ctx, &dist::Args::for_tests()),
    ));

    let start = Instant::now();
    let built = build_all(ctx, &targets);
    let planned = match built {
        Ok(exes) => {
            steps.push(step("host build", Outcome::Ok, start));
            targets
                .into_iter()
                .filter_map(|(target, tests)| {
                    let exe = exes.get(&target)?.clone();
                    Some(Planned { target, exe, tests })
                })
                .collect::<Vec<_>>()
        }
        Err(err) => {
            totals.failed += 1;
            steps.push(step(
                "host build",
                Outcome::Failed(format!("{err:#}")),
                start,
            ));
            return Ok(conclude(&steps, &totals));
        }
    };

    let start = Instant::now();
    let image = match prepare(ctx, false) {
        Ok(image) => {
            steps.push(step("guest image", Outcome::Ok, start));
            image
        }
        Err(err) => {
            totals.failed += 1;
            steps.push(step(
                "guest image",
                Outcome::Failed(format!("{err:#}")),
                start,
            ));
            return Ok(conclude(&steps, &totals));
        }
    };

    let nonce = format!("{:x}", std::process::id());
    let marker = format!("@@ha-suite-{nonce} ");
    let request = qemu::Request {
        script: runner_script(ctx, &marker, &planned),
        env: {
            let mut env = super::passed_env();
            env.retain(|(key, _)| key != "HA_LONG");
            env.push((
                "HA_LONG".to_owned(),
                if long { "1" } else { "0" }.to_owned(),
            ));
            env
        },
        timeout: RUN_TIMEOUT,
        accel: qemu::AccelChoice::Auto,
    };
    let mut results: Vec<SuiteResult> = Vec::new();
    let mut out = std::io::stdout();
    let start = Instant::now();
    let finished = qemu::run(ctx, &image, &request, &mut |line| {
        if let Some(message) = line.strip_prefix(&marker) {
            if let Some(target) = message.strip_prefix("start ") {
                println!("\nxtask: == guest: ha-tests --test {target}");
                results.push(SuiteResult::new(target));
            } else if let Some(rest) = message.strip_prefix("end ")
                && let Some(result) = results.last_mut()
            {
                let code = rest.rsplit(' ').next().and_then(|c| c.parse::<i32>().ok());
                result.finish(code);
            }
            return;
        }
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
        if let Some(result) = results.last_mut() {
            result.tally.add_line(line);
        }
    });
    let finished = match finished {
        Ok(finished) => finished,
        Err(err) => {
            totals.failed += 1;
            let outcome = Outcome::Failed(format!("{err:#}"));
            steps.push(step("guest run", outcome, start));
            return Ok(conclude(&steps, &totals));
        }
    };
    println!(
        "\nxtask: guest kernel {} ({}), booted in {:.1} s, suites ran {:.1} s",
        finished.release,
        finished.accel,
        finished.boot.as_secs_f64(),
        finished.ran.as_secs_f64()
    );
    steps.push(Step {
        name: format!(
            "guest boot (kernel {}, {})",
            finished.release, finished.accel
        ),
        outcome: Outcome::Ok,
        duration: finished.boot,
    });

    for planned in &planned {
        let name = format!("guest: ha-tests --test {}", planned.target);
        let result = results.iter().find(|r| r.target == planned.target);
        let (outcome, duration) = match result {
            None => {
                totals.failed += 1;
                (Outcome::Failed("did not run".into()), Duration::ZERO)
            }
            Some(result) => (result.outcome(&mut totals), result.duration()),
        };
        steps.push(Step {
            name,
            outcome,
            duration,
        });
    }
    for pattern in missing {
        println!("xtask: guest: no suite {pattern} in tests/tests: not present yet");
        totals.skipped += 1;
        steps.push(Step {
            name: format!("guest: {pattern}"),
            outcome: Outcome::Skipped("not present yet in tests/tests".into()),
            duration: Duration::ZERO,
        });
    }
    if finished.status != 0
        && steps
            .iter()
            .all(|s| !matches!(s.outcome, Outcome::Failed(_)))
    {
        totals.failed += 1;
        steps.push(Step {
            name: "guest run".into(),
            outcome: Outcome::Failed(format!("the runner exited with {}", finished.status)),
            duration: finished.ran,
        });
    }
    Ok(conclude(&steps, &totals))
}

/// Targets among `found` that `pattern` names.
fn matching(pattern: &str, found: &[String]) -> Vec<String> {
    match pattern.strip_suffix('*') {
        Some(part) => found
            .iter()
            .filter(|name| name.contains(part))
            .cloned()
            .collect(),
        None => found
            .iter()
            .filter(|name| *name == pattern)
            .cloned()
            .collect(),
    }
}

/// Builds the binaries the lab runs and the test binaries of `targets`; returns each
/// target's executable.
fn build_all(
    ctx: &Ctx,
    targets: &[(String, Option<&'static [&'static str]>)],
) -> anyhow::Result<BTreeMap<String, String>> {
    super::build(ctx, &["build", "-p", "ha-user", "-p", "ha-tests", "--bins"])?;
    let mut cmd = ctx.cargo();
    cmd.args([
        "test",
        "-p",
        "ha-tests",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]);
    for (target, _) in targets {
        cmd.args(["--test", target]);
    }
    eprintln!("xtask: {}", exec::describe(&cmd));
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot start `{}`", exec::describe(&cmd)))?;
    if !out.status.success() {
        bail!("`{}` failed ({})", exec::describe(&cmd), out.status);
    }
    let mut exes = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let is_test = message["target"]["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|k| k == "test"));
        if message["reason"] != "compiler-artifact" || !is_test {
            continue;
        }
        if let (Some(name), Some(exe)) = (
            message["target"]["name"].as_str(),
            message["executable"].as_str(),
        ) {
            exes.insert(name.to_owned(), exe.to_owned());
        }
    }
    for (target, _) in targets {
        if !exes.contains_key(target) {
            bail!("cargo reported no test executable for {target}");
        }
    }
    Ok(exes)
}

/// The script the guest runs: the kernel, then each suite between markers.
fn runner_script(ctx: &Ctx, marker: &str, planned: &[Planned]) -> String {
    let package = ctx.root.join("tests");
    let mut text = format!(
        "echo \"guest: uname -r: $(uname -r)\"\n\
         if [ \"$HA_GUEST_ACCEL\" = tcg ] && [ -z \"$HA_LAB_TIME_SCALE\" ]; then\n\
         \x20   export HA_LAB_TIME_SCALE={TCG_TIME_SCALE}\n\
         \x20   echo \"guest: software emulation: lab health-check timers x$HA_LAB_TIME_SCALE (HA_LAB_TIME_SCALE)\"\n\
         fi\n\
         cd {} || exit 1\n",
        qemu::quote(&package.to_string_lossy())
    );
    let marker = qemu::quote(marker);
    for Planned { target, exe, tests } in planned {
        text.push_str(&format!("echo {marker}'start {target}'\n"));
        let mut line = format!("{} --test-threads=1", qemu::quote(exe));
        if let Some(tests) = tests {
            line.push_str(" --exact");
            for test in *tests {
                line.push(' ');
                line.push_str(&qemu::quote(test));
            }
        }
        text.push_str(&format!("{line}\necho {marker}\"end {target} $?\"\n"));
    }
    text
}

struct SuiteResult {
    target: String,
    started: Instant,
    ended: Option<Instant>,
    code: Option<i32>,
    tally: Tally,
}

impl SuiteResult {
    fn new(target: &str) -> SuiteResult {
        SuiteResult {
            target: target.to_owned(),
            started: Instant::now(),
            ended: None,
            code: None,
            tally: Tally::default(),
        }
    }

    fn finish(&mut self, code: Option<i32>) {
        self.ended = Some(Instant::now());
        self.code = code;
    }

    fn duration(&self) -> Duration {
        self.ended.unwrap_or_else(Instant::now) - self.started
    }

    /// As the host run judges a suite: a failed exit fails, and so does a run
    /// without any passed or failed test.
    fn outcome(&self, totals: &mut Totals) -> Outcome {
        let Tally {
            passed,
            failed,
            ignored,
            results,
        } = self.tally;
        totals.passed += passed;
        totals.failed += failed;
        totals.skipped += ignored;
        match self.code {
            None => {
                totals.failed += 1;
                Outcome::Failed("did not finish".into())
            }
            Some(code) if code != 0 => {
                if failed == 0 {
                    totals.failed += 1;
                }
                Outcome::Failed(format!("{failed} failed (exit status {code})"))
            }
            Some(_) if passed + failed == 0 => {
                totals.failed += 1;
                Outcome::Failed(format!(
                    "ran no test ({results} test binaries, {ignored} ignored)"
                ))
            }
            Some(_) => Outcome::Ok,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::matching;

    #[test]
    fn patterns_name_targets() {
        let found: Vec<String> = ["controller", "fixtures", "lab", "random_frames"]
            .map(String::from)
            .to_vec();
        assert_eq!(matching("lab", &found), ["lab"]);
        assert_eq!(matching("random*", &found), ["random_frames"]);
        assert!(matching("random*", &found[..3]).is_empty());
        assert!(matching("la", &found).is_empty());
    }
}
