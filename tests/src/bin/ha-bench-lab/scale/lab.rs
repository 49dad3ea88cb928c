//! The scale lab: a router namespace with 1,024 web-server addresses on one responder
//! namespace, the configuration of 1,024 hosts and 65,536 prefixes, and the probes of
//! the controller process (memory, CPU, map entries, routes).

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use aya::maps::{Map, MapData, lpm_trie::LpmTrie};
use ha_common::{MAP_PREFIXES, PrefixEntry};
use ha_tests::{
    bench::machine::unix_ms_now,
    lab::{Bins, EventLog, Proc, ns},
};
use ha_user::proto::{Event, EventRecord};

pub(super) const NS_ROUTER: &str = "ha-bl-s-router";
pub(super) const NS_HOSTS: &str = "ha-bl-s-hosts";
pub(super) const RESPONDER_MAC: &str = "02:00:0a:40:00:02";
pub(super) const HOSTS: usize = 1024;

/// Address of host `i`: 10.64.1.0 + i.
pub(super) fn host_address(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 64, 1, 0)) + i as u32)
}

pub(super) fn host_name(i: usize) -> String {
    format!("h{i:04}")
}

/// Prefix `j`: the `j`-th /26 of 10.128.0.0/10.
pub(super) fn prefix(j: usize) -> String {
    format!(
        "{}/26",
        Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + (j as u32) * 64)
    )
}

/// The health checks of a configuration.
pub(super) struct Checks {
    pub(super) kind: &'static str,
    pub(super) interval_ms: u64,
    pub(super) timeout_ms: u64,
    pub(super) fall: u32,
}

/// `hosts` hosts, `prefixes` prefixes; prefix `j` owned by host `j % hosts`, its one
/// backup the next host, so that a failed host's prefixes all go to a known host.
pub(super) fn render_config(
    dir: &Path,
    pin_dir: &Path,
    hosts: usize,
    prefixes: usize,
    h: &Checks,
) -> String {
    let Checks {
        kind,
        interval_ms,
        timeout_ms,
        fall,
    } = h;
    let mut text = format!(
        "# Written by ha-bench-lab.\n\
         lan = \"eth1\"\n\
         xdp_mode = \"native\"\n\
         pin_dir = \"{}\"\n\
         control_socket = \"{}\"\n\
         state_file = \"{}\"\n\n\
         [health]\n\
         kind = \"{kind}\"\n\
         port = 80\n\
         interval_ms = {interval_ms}\n\
         timeout_ms = {timeout_ms}\n\
         fall = {fall}\n\
         rise = 1\n\
         failback_delay_ms = 600000\n",
        pin_dir.display(),
        dir.join("ha.sock").display(),
        dir.join("state.json").display(),
    );
    for i in 0..hosts {
        let _ = write!(
            text,
            "\n[[host]]\nname = \"{}\"\naddress = \"{}\"\n",
            host_name(i),
            host_address(i)
        );
    }
    for j in 0..prefixes {
        let _ = write!(
            text,
            "\n[[prefix]]\ncidr = \"{}\"\nowner = \"{}\"\nbackups = [\"{}\"]\n",
            prefix(j),
            host_name(j % hosts),
            host_name((j + 1) % hosts)
        );
    }
    text
}

/// The namespaces, the responder and the controller; removed on drop.
pub(super) struct Scale {
    pub(super) dir: PathBuf,
    pub(super) pin_dir: PathBuf,
    /// Deleted last, in reverse order of creation.
    pub(super) namespaces: Vec<ns::Netns>,
    pub(super) webd: Option<Proc>,
    pub(super) controller: Option<Proc>,
    /// The running controller's events.
    pub(super) events: Option<EventLog>,
    pub(super) starts: u32,
}

impl Scale {
    pub(super) fn build(bins: &Bins) -> anyhow::Result<Scale> {
        let mut scale = Scale {
            dir: std::env::temp_dir().join("ha-bl-s-lab"),
            pin_dir: PathBuf::from("/sys/fs/bpf/ha-bl-s-lab"),
            namespaces: Vec::new(),
            webd: None,
            controller: None,
            events: None,
            starts: 0,
        };
        // Leftovers of an interrupted run (the namespaces are replaced on creation).
        ha_tests::lab::remove_pins(&scale.pin_dir)?;
        if scale.dir.exists() {
            std::fs::remove_dir_all(&scale.dir)?;
        }
        std::fs::create_dir_all(&scale.dir)?;
        for name in [NS_ROUTER, NS_HOSTS] {
            scale.namespaces.push(ns::Netns::create(name)?);
        }
        ns::check(&mut ns::ip(
            NS_ROUTER,
            &[
                "link",
                "add",
                "eth1",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "address",
                RESPONDER_MAC,
                "netns",
                NS_HOSTS,
            ],
        ))?;
        ns::check(&mut ns::ip(
            NS_ROUTER,
            &["addr", "add", "10.64.0.1/20", "dev", "eth1"],
        ))?;
        ns::check(&mut ns::ip(NS_ROUTER, &["link", "set", "eth1", "up"]))?;
        ns::check(&mut ns::ip(
            NS_HOSTS,
            &["addr", "add", "10.64.0.2/20", "dev", "eth0"],
        ))?;
        ns::check(&mut ns::ip(NS_HOSTS, &["link", "set", "eth0", "up"]))?;
        // Permanent neighbours do not count against gc_thresh3 (1,024, not per
        // namespace) since Linux 4.19.
        let (mut addrs, mut neigh) = (String::new(), String::new());
        for i in 0..HOSTS {
            let address = host_address(i);
            let _ = writeln!(addrs, "addr add {address}/32 dev eth0");
            let _ = writeln!(
                neigh,
                "neigh replace {address} lladdr {RESPONDER_MAC} dev eth1 nud permanent"
            );
        }
        scale.batch(NS_HOSTS, "addrs", &addrs)?;
        scale.batch(NS_ROUTER, "neigh", &neigh)?;
        // Every VIP answers too (one local route, as a web server binds its VIPs on
        // its loopback): the controller's VIP checks ask them through each host.
        ns::check(&mut ns::ip(NS_HOSTS, &["link", "set", "lo", "up"]))?;
        ns::check(&mut ns::ip(
            NS_HOSTS,
            &["route", "add", "local", "10.128.0.0/10", "dev", "lo"],
        ))?;
        let webd = bins.webd.to_string_lossy().into_owned();
        let mut proc = Proc::spawn(
            "responder",
            ns::command(
                NS_HOSTS,
                &[
                    &webd,
                    "--name",
                    "responder",
                    "--http",
                    "0.0.0.0:80",
                    "--udp",
                    "0.0.0.0:9000",
                ],
            ),
            &scale.dir.join("responder.log"),
        )?;
        proc.wait_for_line("ready", Duration::from_secs(5))?;
        scale.webd = Some(proc);
        Ok(scale)
    }

    pub(super) fn batch(&self, namespace: &str, name: &str, commands: &str) -> anyhow::Result<()> {
        let file = self.dir.join(format!("{name}.batch"));
        std::fs::write(&file, commands)?;
        ns::check(&mut ns::ip(namespace, &["-batch", &file.to_string_lossy()]))?;
        Ok(())
    }

    pub(super) fn write_config(&self, name: &str, text: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// Starts the controller on `config` from scratch (no routes of ours, no pins)
    /// and waits until it serves. Returns when it was spawned (Unix ms).
    pub(super) fn start(&mut self, ha_user: &Path, config: &Path) -> anyhow::Result<f64> {
        self.stop()?;
        ns::check(&mut ns::ip(NS_ROUTER, &["route", "flush", "proto", "165"]))?;
        ha_tests::lab::remove_pins(&self.pin_dir)?;
        self.starts += 1;
        let args = [
            ha_user.to_string_lossy().into_owned(),
            "--config".to_owned(),
            config.to_string_lossy().into_owned(),
            "run".to_owned(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let log = self.dir.join(format!("controller-{}.log", self.starts));
        let spawned = unix_ms_now();
        let proc = self.controller.insert(Proc::spawn(
            "controller",
            ns::command(NS_ROUTER, &args),
            &log,
        )?);
        let socket = self.dir.join("ha.sock");
        self.events = Some(EventLog::when_serving(
            proc,
            &socket,
            Duration::from_secs(120),
        )?);
        Ok(spawned)
    }

    /// SIGTERM to a running controller; waits for it.
    pub(super) fn stop(&mut self) -> anyhow::Result<()> {
        self.events = None;
        if let Some(mut proc) = self.controller.take()
            && proc.try_wait()?.is_none()
        {
            proc.signal(libc::SIGTERM)?;
            proc.wait_timeout(Duration::from_secs(30))?;
        }
        Ok(())
    }

    pub(super) fn controller(&self) -> anyhow::Result<&Proc> {
        self.controller.as_ref().context("no controller running")
    }

    pub(super) fn log(&self) -> String {
        self.controller.as_ref().map(Proc::log).unwrap_or_default()
    }

    /// The running controller's events so far.
    pub(super) fn records(&self) -> anyhow::Result<Vec<EventRecord>> {
        self.events
            .as_ref()
            .context("no controller running")?
            .records()
    }

    /// Waits until `count` events after the first `since` satisfy `pred`.
    pub(super) fn wait_events(
        &self,
        since: usize,
        count: usize,
        timeout: Duration,
        pred: impl Fn(&Event) -> bool,
    ) -> anyhow::Result<Vec<EventRecord>> {
        let deadline = Instant::now() + timeout;
        loop {
            let records = self.records()?;
            let found: Vec<EventRecord> = records
                .iter()
                .skip(since)
                .filter(|r| pred(&r.event))
                .cloned()
                .collect();
            if found.len() >= count {
                return Ok(found);
            }
            if Instant::now() >= deadline {
                let last: Vec<String> = records
                    .iter()
                    .rev()
                    .take(20)
                    .map(ToString::to_string)
                    .collect();
                bail!(
                    "{} of {count} expected events within {timeout:?}; the last ones:\n{}",
                    found.len(),
                    last.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Scale {
    fn drop(&mut self) {
        if let Some(mut proc) = self.controller.take() {
            let _ = proc.kill();
        }
        if let Err(err) = ha_tests::lab::remove_pins(&self.pin_dir) {
            eprintln!("warning: {err:#}");
        }
        if let Some(mut proc) = self.webd.take() {
            let _ = proc.kill();
        }
        // Each guard deletes its namespace, warning if it cannot.
        self.namespaces.drain(..).rev().for_each(drop);
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Entries of the pinned prefix map, by host id.
pub(super) fn map_entries(pin_dir: &Path) -> anyhow::Result<(usize, BTreeMap<u32, usize>)> {
    let path = ha_user::kernel::datapath::map_pin_path(pin_dir, MAP_PREFIXES);
    let data = MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
    let trie: LpmTrie<MapData, [u8; 4], PrefixEntry> = Map::from_map_data(data)?
        .try_into()
        .with_context(|| format!("{MAP_PREFIXES} is not the expected LPM trie"))?;
    let mut by_host = BTreeMap::new();
    let mut total = 0;
    for item in trie.iter() {
        let (_, entry) = item.with_context(|| format!("reading {MAP_PREFIXES}"))?;
        *by_host.entry(entry.host).or_insert(0) += 1;
        total += 1;
    }
    Ok((total, by_host))
}

pub(super) fn route_count(args: &[&str]) -> anyhow::Result<usize> {
    let mut all = vec!["route", "show", "proto", "165"];
    all.extend_from_slice(args);
    Ok(ns::check(&mut ns::ip(NS_ROUTER, &all))?.lines().count())
}

/// VmRSS and VmHWM of `pid`, MiB.
pub(super) fn memory_mib(pid: u32) -> anyhow::Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<f64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
        let kib: f64 = line
            .split_whitespace()
            .nth(1)
            .context("empty field")?
            .parse()?;
        Ok(kib / 1024.0)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU time of every thread of `pid` so far (`/proc/PID/task/*/schedstat`, ns).
pub(super) fn cpu_ns(pid: u32) -> anyhow::Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))?.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) {
            total += text
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(total)
}
