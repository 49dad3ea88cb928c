//! The controller of a lab: its configuration, its process (`ha-user run` in the
//! router's namespace), its log and its answers on the control socket.

use std::{
    net::Ipv4Addr,
    process::ExitStatus,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use ipnet::Ipv4Net;
use serde_json::Value;

use super::{HealthSpec, Lab, Node, PrefixSpec, Proc, render_config};

/// One `owner changed` line of the controller's log.
#[derive(Clone, Debug, PartialEq)]
pub struct OwnerChange {
    pub prefix: Ipv4Net,
    /// `None`: the prefix had no fast-path entry.
    pub old: Option<String>,
    /// `None`: the entry was removed (traffic follows the kernel route).
    pub new: Option<String>,
    pub reason: String,
    /// From the first failed (or succeeded) probe to the decision, for health changes.
    pub detection_ms: Option<f64>,
    /// From the decision to the map written.
    pub switch_us: u64,
    pub route_via: Ipv4Addr,
    /// The whole line.
    pub line: String,
}

/// The keys of an `owner changed` line, in the order the controller writes them.
const KEYS: [&str; 7] = [
    "prefix",
    "old",
    "new",
    "reason",
    "detection_ms",
    "switch_us",
    "route_via",
];

impl OwnerChange {
    /// Parses a log line; `None` unless it is an `owner changed` line. Values may hold
    /// spaces (reasons do), so the line is cut at the known ` key=` markers.
    pub fn parse(line: &str) -> Option<OwnerChange> {
        let at = line.find("owner changed ")?;
        let rest = &line[at + "owner changed".len()..];
        let mut marks: Vec<(usize, &str)> = KEYS
            .iter()
            .filter_map(|key| rest.find(&format!(" {key}=")).map(|i| (i, *key)))
            .collect();
        marks.sort_unstable();
        let value = |key: &str| -> Option<&str> {
            let index = marks.iter().position(|(_, k)| *k == key)?;
            let start = marks[index].0 + key.len() + 2;
            let end = marks.get(index + 1).map_or(rest.len(), |(i, _)| *i);
            Some(rest[start..end].trim())
        };
        let host = |text: &str| (text != "-").then(|| text.to_owned());
        Some(OwnerChange {
            prefix: value("prefix")?.parse().ok()?,
            old: host(value("old")?),
            new: host(value("new")?),
            // The controller quotes the reason (it holds spaces and colons).
            reason: value("reason")?.trim_matches('"').to_owned(),
            detection_ms: value("detection_ms").and_then(|v| v.parse().ok()),
            switch_us: value("switch_us")?.parse().ok()?,
            route_via: value("route_via")?.parse().ok()?,
            line: line.to_owned(),
        })
    }
}

impl Lab {
    /// The controller configuration for this lab with other health checks or
    /// prefixes (for reload tests).
    pub fn render_config(&self, health: &HealthSpec, prefixes: &[PrefixSpec]) -> String {
        render_config(self.spec.xdp_mode, &self.paths, health, prefixes)
    }

    /// Rewrites the configuration file with other health checks or prefixes and
    /// makes them the lab's own (its checks, such as [`Lab::check_agreement`] and
    /// [`Lab::wait_steady`], follow). A running controller reads the file on SIGHUP:
    /// [`Lab::reload_controller`].
    pub fn reconfigure(
        &mut self,
        health: HealthSpec,
        prefixes: Vec<PrefixSpec>,
    ) -> anyhow::Result<()> {
        let text = self.render_config(&health, &prefixes);
        self.write_config(&text)?;
        self.spec.health = health;
        self.spec.prefixes = prefixes;
        Ok(())
    }

    /// Replaces the controller's configuration file with `text` as it is (a bad one,
    /// say); the lab's own view of the configuration does not change.
    pub fn write_config(&self, text: &str) -> anyhow::Result<()> {
        std::fs::write(&self.config_path, text)
            .with_context(|| format!("writing {}", self.config_path.display()))
    }

    /// Starts `ha-user --config <lab config> run EXTRA...` in the router's namespace
    /// and waits until it steers (its log says so). A controller started earlier
    /// must have been stopped or killed.
    pub fn start_controller(&mut self, extra: &[&str]) -> anyhow::Result<()> {
        self.start_controller_with_env(extra, &[])
    }

    /// [`Lab::start_controller`] with more environment, e.g. `RUST_LOG`.
    pub fn start_controller_with_env(
        &mut self,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        if let Some(running) = self.controller.as_mut()
            && running.try_wait()?.is_none()
        {
            bail!("the controller is running already (pid {})", running.pid());
        }
        self.controller_starts += 1;
        let ha_user = self.spec.bins.ha_user.to_string_lossy().into_owned();
        let config = self.config_path.to_string_lossy().into_owned();
        let mut args = vec![ha_user.as_str(), "--config", &config, "run"];
        args.extend_from_slice(extra);
        let name = format!("controller-{}", self.controller_starts);
        let mut command = super::ns::command(&self.ns(Node::Router), &args);
        command.envs(env.iter().copied());
        let log = self.dir.join(format!("{name}.log"));
        let mut proc = Proc::spawn(&name, command, &log)?;
        // Loading and verifying the program takes seconds on a slow guest.
        let start_time = Duration::from_secs(10) * super::time_scale();
        proc.wait_for_line("steering;", start_time)?;
        self.controller = Some(proc);
        Ok(())
    }

    /// The running (or last) controller process.
    pub fn controller(&mut self) -> anyhow::Result<&mut Proc> {
        self.controller
            .as_mut()
            .context("no controller was started in this lab")
    }

    /// SIGTERM: the controller detaches and exits. Returns its exit status.
    pub fn stop_controller(&mut self) -> anyhow::Result<ExitStatus> {
        let proc = self.controller()?;
        proc.signal(libc::SIGTERM)?;
        proc.wait_timeout(Duration::from_secs(10))
    }

    /// SIGKILL: the controller dies at once; its pins (maps, XDP links) and kernel
    /// routes stay, so the fast path keeps running without it.
    pub fn kill_controller(&mut self) -> anyhow::Result<()> {
        self.controller()?.kill()?;
        Ok(())
    }

    /// SIGHUP: the controller reloads its configuration file.
    pub fn reload_controller(&mut self) -> anyhow::Result<()> {
        self.controller()?.signal(libc::SIGHUP)
    }

    /// The current controller's log.
    pub fn controller_log(&self) -> String {
        self.controller.as_ref().map(Proc::log).unwrap_or_default()
    }

    /// Number of lines of the current controller's log: a mark for
    /// [`Lab::wait_for_log`].
    pub fn log_mark(&self) -> usize {
        self.controller_log().lines().count()
    }

    /// Waits for a line containing `needle` after line `since` of the current
    /// controller's log.
    pub fn wait_for_log(
        &mut self,
        needle: &str,
        since: usize,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.controller_log();
            if let Some(line) = log.lines().skip(since).find(|l| l.contains(needle)) {
                return Ok(line.to_owned());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the controller did not log {needle:?} within {timeout:?}; its log since line {since}:\n{}",
                    tail(&log, since)
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Every `owner changed` line of the current controller's log.
    pub fn owner_changes(&self) -> Vec<OwnerChange> {
        self.controller_log()
            .lines()
            .filter_map(OwnerChange::parse)
            .collect()
    }

    /// Waits for the first owner change after the first `since` ones that moves
    /// `prefix` to `new` (`None`: entry removed).
    pub fn wait_for_owner(
        &mut self,
        prefix: Ipv4Net,
        new: Option<&str>,
        since: usize,
        timeout: Duration,
    ) -> anyhow::Result<OwnerChange> {
        let deadline = Instant::now() + timeout;
        loop {
            let changes = self.owner_changes();
            if let Some(change) = changes
                .iter()
                .skip(since)
                .find(|c| c.prefix == prefix && c.new.as_deref() == new)
            {
                return Ok(change.clone());
            }
            if Instant::now() >= deadline {
                let seen: Vec<&str> = changes
                    .iter()
                    .skip(since)
                    .map(|c| c.line.as_str())
                    .collect();
                bail!(
                    "{prefix} did not move to {} within {timeout:?}; owner changes since #{since}:\n{}\nstatus: {}",
                    new.unwrap_or("(no entry)"),
                    seen.join("\n"),
                    self.status()
                        .map_or_else(|e| format!("{e:#}"), |s| s.to_string())
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// `ha-user status --json`.
    pub fn status(&self) -> anyhow::Result<Value> {
        self.ha_user_json(&["status"])
    }

    /// The owner of every prefix as `status` reports it (`None`: no entry).
    pub fn owners(&self) -> anyhow::Result<Vec<(Ipv4Net, Option<String>)>> {
        owners(&self.status()?)
    }

    /// Waits until every host is up with a known MAC and every prefix is with its
    /// configured owner, unpinned.
    pub fn wait_steady(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status();
            let why = match &status {
                Ok(status) => steady(status, &self.spec.prefixes),
                Err(err) => Some(format!("{err:#}")),
            };
            let Some(why) = why else { return Ok(()) };
            if Instant::now() >= deadline {
                bail!(
                    "the lab did not settle within {timeout:?}: {why}\ncontroller log:\n{}",
                    tail(&self.controller_log(), 0)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Why `status` is not steady yet, or `None`.
fn steady(status: &Value, prefixes: &[PrefixSpec]) -> Option<String> {
    for host in status["hosts"].as_array().into_iter().flatten() {
        if host["health"] != "up" || host["mac"].is_null() {
            return Some(format!("host not ready: {host}"));
        }
    }
    let owners = match owners(status) {
        Ok(owners) => owners,
        Err(err) => return Some(format!("{err:#}")),
    };
    for spec in prefixes {
        let owner = owners.iter().find(|(p, _)| *p == spec.cidr);
        if owner.and_then(|(_, o)| o.as_deref()) != Some(spec.owner.as_str()) {
            return Some(format!("{} not with {}: {owner:?}", spec.cidr, spec.owner));
        }
    }
    None
}

fn owners(status: &Value) -> anyhow::Result<Vec<(Ipv4Net, Option<String>)>> {
    status["prefixes"]
        .as_array()
        .context("status without prefixes")?
        .iter()
        .map(|p| {
            let prefix = p["prefix"]
                .as_str()
                .context("prefix")?
                .parse()
                .context("prefix")?;
            let owner = p["owner"].as_str().filter(|o| *o != "-").map(str::to_owned);
            Ok((prefix, owner))
        })
        .collect()
}

/// The last 60 lines of `log` after line `since`.
fn tail(log: &str, since: usize) -> String {
    let lines: Vec<&str> = log.lines().skip(since).collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_changed_lines_parse() {
        let line = "2025-05-26T23:20:11.123456Z  INFO ha_user::controller: owner changed \
                    prefix=192.168.1.64/27 old=host2 new=host1 reason=failover: previous holder down \
                    detection_ms=31.25 switch_us=12 route_via=192.168.1.2";
        let change = OwnerChange::parse(line).expect("an owner change");
        assert_eq!(
            change.prefix,
            "192.168.1.64/27".parse::<Ipv4Net>().expect("net")
        );
        assert_eq!(change.old.as_deref(), Some("host2"));
        assert_eq!(change.new.as_deref(), Some("host1"));
        assert_eq!(change.reason, "failover: previous holder down");
        assert_eq!(change.detection_ms, Some(31.25));
        assert_eq!(change.switch_us, 12);
        assert_eq!(change.route_via, Ipv4Addr::new(192, 168, 1, 2));

        let removed = "INFO ha_user::controller: owner changed prefix=192.168.1.64/27 old=host3 \
                       new=- reason=no usable host: owner and backups down or drained \
                       detection_ms=40.0 switch_us=3 route_via=192.168.1.3";
        let change = OwnerChange::parse(removed).expect("an owner change");
        assert_eq!(change.new, None);
        assert!(OwnerChange::parse("INFO health changed host=host2").is_none());
    }
}
