//! The controller of a lab: its configuration, its process (`ha-user run` in the
//! router's namespace), its event stream and its answers on the control socket.

use std::{
    fmt,
    net::Ipv4Addr,
    process::ExitStatus,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use ha_user::{
    model::{Health, Reason},
    proto::{Event, EventRecord, Status},
};
use ipnet::Ipv4Net;
use serde::de::DeserializeOwned;

use super::{HealthSpec, Lab, Node, PrefixSpec, Proc, control::EventLog, render_config};

/// One `owner-changed` event of the controller.
#[derive(Clone, Debug, PartialEq)]
pub struct OwnerChange {
    pub prefix: Ipv4Net,
    /// `None`: the prefix had no fast-path entry.
    pub old: Option<String>,
    /// `None`: the entry was removed (traffic follows the kernel route).
    pub new: Option<String>,
    pub reason: Reason,
    /// From the first failed (or succeeded) probe to the decision, for health changes.
    pub detection_ms: Option<f64>,
    /// From the decision to the map written.
    pub switch_us: u64,
    pub route_via: Ipv4Addr,
    /// The whole event.
    pub record: EventRecord,
}

impl OwnerChange {
    /// The owner change `record` is, if it is one.
    pub fn of(record: &EventRecord) -> Option<OwnerChange> {
        let Event::OwnerChanged {
            prefix,
            old,
            new,
            reason,
            detection_ms,
            switch_us,
            route_via,
        } = &record.event
        else {
            return None;
        };
        Some(OwnerChange {
            prefix: *prefix,
            old: old.clone(),
            new: new.clone(),
            reason: *reason,
            detection_ms: *detection_ms,
            switch_us: *switch_us,
            route_via: *route_via,
            record: record.clone(),
        })
    }
}

impl fmt::Display for OwnerChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.record.fmt(f)
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
        self.events = None;
        let proc = self.controller.insert(Proc::spawn(&name, command, &log)?);
        // Loading and verifying the program takes seconds on a slow guest.
        let start_time = Duration::from_secs(10) * super::time_scale();
        let events = EventLog::when_serving(proc, &self.paths.control_socket, start_time)?;
        self.events = Some(events);
        Ok(())
    }

    /// Runs `ha-user --config <lab config> run EXTRA...` with more environment `env`
    /// in the router's namespace, expecting its start-up to fail: waits for it to
    /// exit and returns its log (the error is its last line). Fails if it exits with
    /// success, or is still running after `timeout` (it started; it is killed).
    pub fn failed_start(
        &mut self,
        extra: &[&str],
        env: &[(&str, &str)],
        timeout: Duration,
    ) -> anyhow::Result<String> {
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
        let name = format!("failed-start-{}", self.controller_starts);
        let mut command = super::ns::command(&self.ns(Node::Router), &args);
        command.envs(env.iter().copied());
        let log = self.dir.join(format!("{name}.log"));
        let mut proc = Proc::spawn(&name, command, &log)?;
        let status = match proc.wait_timeout(timeout) {
            Ok(status) => status,
            Err(err) => {
                proc.kill()?;
                return Err(err.context(format!(
                    "`{}` should have failed; its log:\n{}",
                    args.join(" "),
                    proc.log().trim_end()
                )));
            }
        };
        let text = proc.log();
        if status.success() {
            bail!(
                "`{}` exited with success; its log:\n{}",
                args.join(" "),
                text.trim_end()
            );
        }
        Ok(text)
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

    /// The current controller's log, for people (failure messages): tests read its
    /// events.
    pub fn controller_log(&self) -> String {
        self.controller.as_ref().map(Proc::log).unwrap_or_default()
    }

    /// The event stream of the current controller, from its first event.
    pub fn events(&self) -> anyhow::Result<&EventLog> {
        self.events
            .as_ref()
            .context("no controller was started in this lab")
    }

    /// The number of events of the current controller so far: a mark for
    /// [`Lab::wait_for_event`].
    pub fn event_mark(&self) -> anyhow::Result<usize> {
        Ok(self.events()?.records()?.len())
    }

    /// Waits for an event after the first `since` of the current controller that
    /// `pick` accepts.
    pub fn wait_for_event<T>(
        &self,
        since: usize,
        timeout: Duration,
        what: &str,
        pick: impl FnMut(&EventRecord) -> Option<T>,
    ) -> anyhow::Result<T> {
        self.events()?.wait_for(since, timeout, what, pick)
    }

    /// Every owner change of the current controller.
    pub fn owner_changes(&self) -> anyhow::Result<Vec<OwnerChange>> {
        Ok(self
            .events()?
            .records()?
            .iter()
            .filter_map(OwnerChange::of)
            .collect())
    }

    /// Every health change of the current controller: (host, new health, reason).
    pub fn health_changes(&self) -> anyhow::Result<Vec<(String, Health, EventRecord)>> {
        Ok(self
            .events()?
            .records()?
            .into_iter()
            .filter_map(|record| match &record.event {
                Event::HealthChanged { host, new, .. } => {
                    Some((host.clone(), *new, record.clone()))
                }
                _ => None,
            })
            .collect())
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
            let changes = self.owner_changes()?;
            if let Some(change) = changes
                .iter()
                .skip(since)
                .find(|c| c.prefix == prefix && c.new.as_deref() == new)
            {
                return Ok(change.clone());
            }
            if Instant::now() >= deadline {
                let seen: Vec<String> = changes
                    .iter()
                    .skip(since)
                    .map(ToString::to_string)
                    .collect();
                bail!(
                    "{prefix} did not move to {} within {timeout:?}; owner changes since #{since}:\n{}\nstatus: {}",
                    new.unwrap_or("(no entry)"),
                    seen.join("\n"),
                    self.status()
                        .map_or_else(|e| format!("{e:#}"), |s| format!("{s:?}"))
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// `ha-user status --json`, decoded into the protocol's own type.
    pub fn status(&self) -> anyhow::Result<Status> {
        self.ha_user_json(&["status"])
    }

    /// The owner of every prefix as `status` reports it (`None`: no entry).
    pub fn owners(&self) -> anyhow::Result<Vec<(Ipv4Net, Option<String>)>> {
        Ok(owners(&self.status()?))
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

    /// `ha-user ... ARGS --json`, which must succeed; its answer, decoded into `T`
    /// (the protocol's types refuse fields they do not know).
    pub fn ha_user_json<T: DeserializeOwned>(&self, args: &[&str]) -> anyhow::Result<T> {
        let mut all = args.to_vec();
        all.push("--json");
        let output = self.ha_user(&all)?;
        anyhow::ensure!(
            output.status.success(),
            "ha-user {} failed ({}): {}",
            all.join(" "),
            super::describe_status(output.status),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        serde_json::from_slice(&output.stdout).with_context(|| {
            format!(
                "ha-user {} printed no answer of the protocol: {}",
                all.join(" "),
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }
}

/// Why `status` is not steady yet, or `None`.
fn steady(status: &Status, prefixes: &[PrefixSpec]) -> Option<String> {
    for host in &status.hosts {
        if host.health != Health::Up || host.mac.is_none() {
            return Some(format!("host not ready: {host:?}"));
        }
    }
    let owners = owners(status);
    for spec in prefixes {
        let owner = owners.iter().find(|(p, _)| *p == spec.cidr);
        if owner.and_then(|(_, o)| o.as_deref()) != Some(spec.owner.as_str()) {
            return Some(format!("{} not with {}: {owner:?}", spec.cidr, spec.owner));
        }
    }
    None
}

fn owners(status: &Status) -> Vec<(Ipv4Net, Option<String>)> {
    status
        .prefixes
        .iter()
        .map(|p| (p.prefix, p.owner.clone()))
        .collect()
}

/// The last 60 lines of `log` after line `since`.
fn tail(log: &str, since: usize) -> String {
    let lines: Vec<&str> = log.lines().skip(since).collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}
