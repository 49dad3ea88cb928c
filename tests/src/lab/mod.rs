//! The lab: the classic network of "High Availability Linux Web Servers" built in
//! network namespaces, with the `ha` controller on its router. The root suites use it
//! and so does `cargo xtask lab`.
//!
//! ```text
//!   {p}wanclient 10.0.0.2 ──eth0── eth0 10.0.0.1 ┌─────────┐ eth1 192.168.1.1/27
//!                                                │{p}router├──────┐
//!                                                └─────────┘      │ port "router"
//!     {p}switch: bridge br0 ── ports host1..host4, lanclient ─────┘
//!        │ {p}host1 .2   │ {p}host2 .3   │ {p}host3 .4   │ {p}host4 .5   │ {p}lanclient .10
//! ```
//!
//! Every host binds the four VIPs (.33, .65, .97, .129, /27) on `lo` with the ARP
//! sysctls, all from `ha-user plan --format ip-addr|sysctl`; the router's static
//! routes come from `ha-user plan --format route-add` (`routes` when net-tools is not
//! installed). Each host runs `ha-webd` (HTTP on 80 answering its name, UDP echo on
//! 9000). In native XDP mode the lab applies the veth facts of the design notes, as
//! far as they were measured to be needed here: `ha_pass` on the switch port facing
//! the router (XDP_TX and XDP_REDIRECT frames enter it) and TX checksum offload off
//! on the two clients (whose frames the fast path steers). Skb mode needs neither.
//!
//! Everything the lab creates is removed when it is dropped, panic or not, except
//! that a panicking test keeps the work directory (`$TMPDIR/{prefix}lab`: the
//! controller's, web servers' and streams' logs) and says so. Leftovers of an
//! earlier run with the same prefix (exactly its namespace names, its pins, its work
//! directory) are removed when a lab is built. Child processes also die with the
//! thread that started them, so a test binary killed by a timeout leaves nothing
//! running.
//!
//! Run it as root. Typical use:
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use ha_tests::lab::{Bins, Fault, Lab, LabSpec, Node, XdpMode, net, vip};
//! let mut lab = Lab::build(LabSpec::new("ha-demo-", XdpMode::Native, Bins::locate()?))?;
//! assert_eq!(lab.udp_who(Node::LanClient, vip(net("192.168.1.64/27")))?, "host2");
//! lab.inject("host2", Fault::KillWeb)?;
//! # Ok(())
//! # }
//! ```

mod capture;
mod clients;
pub mod control;
mod controller;
pub mod conversation;
mod datapath;
mod faults;
pub mod limits;
pub mod ns;
pub mod population;
mod process;
mod raw;
pub mod report;
pub mod router_lan;
mod spec;
mod state;
pub mod stream;

use std::{
    collections::BTreeMap,
    fmt,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Output,
    str::FromStr,
    time::Duration,
};

use anyhow::{Context as _, bail, ensure};
pub use capture::{Capture, Frame, Ipv4Info};
pub use clients::StreamRun;
pub use control::EventLog;
pub use controller::OwnerChange;
pub use datapath::{XdpCounters, flow_entries, remove_pins};
pub use faults::Fault;
pub use ha_common::{Counter, PrefixEntry, Traffic};
pub use ha_user::model::Mac;
use ipnet::Ipv4Net;
pub use process::{Proc, describe_status};
pub use raw::RawSender;
pub use spec::{
    Bins, ConfigPaths, HOSTS, HealthSpec, LabSpec, PrefixSpec, TIME_SCALE_ENV, XdpMode,
    host_address, net, render_config, time_scale, vip, workspace_root,
};
pub use state::{InterfaceState, RouterState};
pub use stream::StreamReport;

/// A machine of the lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Node {
    Router,
    /// Web server 1..=4.
    Host(u8),
    LanClient,
    WanClient,
    /// The LAN switch (bridge `br0`).
    Switch,
}

impl Node {
    /// Every node, in the order they are built.
    pub const ALL: [Node; 8] = [
        Node::Switch,
        Node::Router,
        Node::Host(1),
        Node::Host(2),
        Node::Host(3),
        Node::Host(4),
        Node::LanClient,
        Node::WanClient,
    ];

    /// The web server called `name` (`host1` ...).
    pub fn host(name: &str) -> anyhow::Result<Node> {
        match name.parse()? {
            node @ Node::Host(_) => Ok(node),
            other => bail!("{other} is not a web server"),
        }
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Router => f.write_str("router"),
            Node::Host(n) => write!(f, "host{n}"),
            Node::LanClient => f.write_str("lanclient"),
            Node::WanClient => f.write_str("wanclient"),
            Node::Switch => f.write_str("switch"),
        }
    }
}

impl FromStr for Node {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Node> {
        Node::ALL
            .into_iter()
            .find(|node| node.to_string() == s)
            .with_context(|| {
                let names: Vec<String> = Node::ALL.iter().map(ToString::to_string).collect();
                format!("no node {s:?} in the lab ({})", names.join(", "))
            })
    }
}

/// MAC of `address` on the LAN or WAN: 02:00 and the address, so captures read
/// easily (the router's LAN interface is 02:00:c0:a8:01:01).
fn mac_for(address: Ipv4Addr) -> Mac {
    let [a, b, c, d] = address.octets();
    Mac([0x02, 0x00, a, b, c, d])
}

const ROUTER_LAN: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
const ROUTER_WAN: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const LAN_CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
const WAN_CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

/// A built lab. Dropping it stops every process it started and deletes every
/// namespace, pin and file it created.
pub struct Lab {
    spec: LabSpec,
    dir: PathBuf,
    paths: ConfigPaths,
    config_path: PathBuf,
    /// Namespaces created, in creation order; deleted last, in reverse order.
    namespaces: Vec<ns::Netns>,
    web: BTreeMap<String, Proc>,
    controller: Option<Proc>,
    /// The current controller's event stream.
    events: Option<EventLog>,
    controller_starts: u32,
    pass: Option<datapath::PassPrograms>,
    notes: Vec<String>,
}

impl Lab {
    /// Builds the network `spec` describes and, if `spec.start_controller`, starts the
    /// controller and waits until it steers every prefix to its configured owner.
    pub fn build(spec: LabSpec) -> anyhow::Result<Lab> {
        ensure!(
            spec.prefix.starts_with("ha-"),
            "lab prefixes start with `ha-`, so that leftovers are recognisably ours: got {:?}",
            spec.prefix
        );
        for (what, path) in [
            ("ha-webd", &spec.bins.webd),
            ("ha-stream", &spec.bins.stream),
            ("ha-user", &spec.bins.ha_user),
        ] {
            ensure!(
                path.is_file(),
                "{what} not found at {}: build it (`cargo build -p ha-tests --bins`, \
                 `cargo build -p ha-user`)",
                path.display()
            );
        }
        let dir = std::env::temp_dir().join(format!("{}lab", spec.prefix));
        let paths = ConfigPaths {
            pin_dir: PathBuf::from(format!("/sys/fs/bpf/{}lab", spec.prefix)),
            control_socket: dir.join("ha.sock"),
            state_file: dir.join("state.json"),
        };
        let mut lab = Lab {
            config_path: dir.join("ha.toml"),
            dir,
            paths,
            spec,
            namespaces: Vec::new(),
            web: BTreeMap::new(),
            controller: None,
            events: None,
            controller_starts: 0,
            pass: None,
            notes: Vec::new(),
        };
        // From here on, a failure drops `lab`, which removes what was built so far.
        lab.remove_leftovers()?;
        std::fs::create_dir_all(&lab.dir)
            .with_context(|| format!("creating {}", lab.dir.display()))?;
        let config = lab.render_config(&lab.spec.health, &lab.spec.prefixes);
        lab.write_config(&config)?;
        lab.build_network()?;
        lab.configure_from_plan()?;
        if lab.spec.xdp_mode == XdpMode::Native {
            lab.prepare_native()?;
        }
        for host in HOSTS {
            lab.start_web(host)?;
        }
        if lab.spec.start_controller {
            lab.start_controller(&[])?;
            lab.wait_steady(Duration::from_secs(10) * time_scale())?;
        }
        Ok(lab)
    }

    /// Removes what an earlier lab with this prefix may have left: its namespaces
    /// (exactly the names this lab uses), pins and work directory.
    fn remove_leftovers(&mut self) -> anyhow::Result<()> {
        for node in Node::ALL {
            let name = self.ns(node);
            if ns::exists(&name) {
                ns::delete(&name).with_context(|| format!("removing the leftover {name}"))?;
                self.notes
                    .push(format!("removed leftover namespace {name}"));
            }
        }
        if self.paths.pin_dir.exists() {
            datapath::remove_pins(&self.paths.pin_dir)?;
            self.notes.push(format!(
                "removed leftover pins in {}",
                self.paths.pin_dir.display()
            ));
        }
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir)
                .with_context(|| format!("removing {}", self.dir.display()))?;
        }
        Ok(())
    }

    fn build_network(&mut self) -> anyhow::Result<()> {
        for node in Node::ALL {
            let name = self.ns(node);
            self.namespaces.push(ns::Netns::create(&name)?);
        }
        let switch = self.ns(Node::Switch);
        self.ip(Node::Switch, &["link", "add", "br0", "type", "bridge"])?;
        self.ip(Node::Switch, &["link", "set", "br0", "up"])?;
        // The LAN: one switch port per machine, named after it.
        let mut lan: Vec<(Node, &str, Ipv4Addr)> = vec![(Node::Router, "eth1", ROUTER_LAN)];
        for host in HOSTS {
            let address = host_address(host).context("host address")?;
            lan.push((Node::host(host)?, "eth0", address));
        }
        lan.push((Node::LanClient, "eth0", LAN_CLIENT));
        for (node, iface, address) in lan {
            let port = node.to_string();
            let mac = mac_for(address).to_string();
            let peer_ns = self.ns(node);
            ns::check(&mut ns::ip(
                &switch,
                &[
                    "link", "add", &port, "type", "veth", "peer", "name", iface, "address", &mac,
                    "netns", &peer_ns,
                ],
            ))?;
            self.ip(Node::Switch, &["link", "set", &port, "master", "br0", "up"])?;
            let cidr = format!("{address}/27");
            self.ip(node, &["addr", "add", &cidr, "dev", iface])?;
            self.ip(node, &["link", "set", iface, "up"])?;
        }
        // The WAN: a direct link from the router to the WAN client.
        let wan_ns = self.ns(Node::WanClient);
        let (router_mac, client_mac) = (
            mac_for(ROUTER_WAN).to_string(),
            mac_for(WAN_CLIENT).to_string(),
        );
        self.ip(
            Node::Router,
            &[
                "link",
                "add",
                "eth0",
                "address",
                &router_mac,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "address",
                &client_mac,
                "netns",
                &wan_ns,
            ],
        )?;
        self.ip(Node::Router, &["addr", "add", "10.0.0.1/24", "dev", "eth0"])?;
        self.ip(Node::Router, &["link", "set", "eth0", "up"])?;
        self.ip(
            Node::WanClient,
            &["addr", "add", "10.0.0.2/24", "dev", "eth0"],
        )?;
        self.ip(Node::WanClient, &["link", "set", "eth0", "up"])?;
        self.ip(
            Node::WanClient,
            &["route", "add", "default", "via", "10.0.0.1"],
        )?;
        self.ip(
            Node::LanClient,
            &["route", "add", "default", "via", "192.168.1.1"],
        )?;
        self.exec_ok(Node::Router, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        Ok(())
    }

    /// The web servers and the router, configured by running `ha-user plan`'s own
    /// command lines in their namespaces.
    fn configure_from_plan(&mut self) -> anyhow::Result<()> {
        let ip_addr = self.plan("ip-addr")?;
        let sysctl = self.plan("sysctl")?;
        for host in HOSTS {
            let node = Node::host(host)?;
            for line in ip_addr.lines().chain(sysctl.lines()) {
                self.run_plan_line(node, line)?;
            }
            self.ip(node, &["route", "add", "default", "via", "192.168.1.1"])?;
        }
        let route_add = self.plan("route-add")?;
        let route_program = route_add.split_whitespace().next().unwrap_or("/sbin/route");
        let routes = if route_add.is_empty() || Path::new(route_program).exists() {
            route_add
        } else {
            self.notes.push(format!(
                "{route_program} (net-tools) is not installed: router routes from \
                 `ha-user plan --format routes` instead of `--format route-add`"
            ));
            self.plan("routes")?
        };
        for line in routes.lines() {
            self.run_plan_line(Node::Router, line)?;
        }
        Ok(())
    }

    /// `ha-user plan --format FORMAT` for this lab's configuration.
    pub fn plan(&self, format: &str) -> anyhow::Result<String> {
        let output = self.ha_user(&["plan", "--format", format])?;
        ensure!(
            output.status.success(),
            "ha-user plan --format {format} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn run_plan_line(&self, node: Node, line: &str) -> anyhow::Result<()> {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() || words[0].starts_with('#') {
            return Ok(());
        }
        self.exec_ok(node, &words)
            .with_context(|| format!("plan line `{line}` on {node}"))?;
        Ok(())
    }

    /// Native XDP on veth: TX checksum offload off on the clients, `ha_pass` on the
    /// switch port that XDP_TX and XDP_REDIRECT frames from the router enter.
    ///
    /// Measured on this kernel (6.18): without `tx off` on the clients, UDP and TCP
    /// they send through the fast path arrive with partial checksums and are dropped;
    /// the router and the web servers need nothing (their frames only meet XDP_PASS
    /// or no XDP at all), nor does the WAN client's `eth0`, which only receives
    /// frames the router's kernel forwards.
    fn prepare_native(&mut self) -> anyhow::Result<()> {
        for node in [Node::LanClient, Node::WanClient] {
            self.exec_ok(node, &["ethtool", "-K", "eth0", "tx", "off"])?;
        }
        let mut pass = datapath::PassPrograms::load()?;
        pass.attach(&self.ns(Node::Switch), "router")?;
        self.pass = Some(pass);
        Ok(())
    }

    // ---- identity --------------------------------------------------------------

    pub fn spec(&self) -> &LabSpec {
        &self.spec
    }

    /// The namespace of `node`.
    pub fn ns(&self, node: Node) -> String {
        format!("{}{node}", self.spec.prefix)
    }

    /// The lab's work directory (configuration, logs, control socket, state).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn pin_dir(&self) -> &Path {
        &self.paths.pin_dir
    }

    /// The controller's control socket.
    pub fn control_socket(&self) -> &Path {
        &self.paths.control_socket
    }

    /// What the lab did differently from the plain recipe, and why.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The router's LAN MAC: the source of every frame it sends to a web server.
    pub fn router_lan_mac(&self) -> Mac {
        mac_for(ROUTER_LAN)
    }

    /// The router's WAN MAC: where the WAN client sends what it routes.
    pub fn router_wan_mac(&self) -> Mac {
        mac_for(ROUTER_WAN)
    }

    /// The router's addresses (LAN, WAN).
    pub fn router_addresses(&self) -> [Ipv4Addr; 2] {
        [ROUTER_LAN, ROUTER_WAN]
    }

    /// The address and MAC of the `eth0` of a web server or client.
    pub fn station(&self, node: Node) -> anyhow::Result<(Ipv4Addr, Mac)> {
        let address = match node {
            Node::Host(n) => host_address(&format!("host{n}"))
                .with_context(|| format!("no web server host{n}"))?,
            Node::LanClient => LAN_CLIENT,
            Node::WanClient => WAN_CLIENT,
            Node::Router | Node::Switch => bail!("{node} has no single station address"),
        };
        Ok((address, mac_for(address)))
    }

    /// The MAC of web server `host`.
    pub fn host_mac(&self, host: &str) -> anyhow::Result<Mac> {
        host_address(host)
            .map(mac_for)
            .with_context(|| format!("no web server {host:?}"))
    }

    /// Data-path host id of `host`: its position in the configuration.
    pub fn host_id(&self, host: &str) -> anyhow::Result<u32> {
        HOSTS
            .iter()
            .position(|h| *h == host)
            .map(|i| i as u32)
            .with_context(|| format!("no web server {host:?}"))
    }

    /// Configured owner of `prefix`.
    pub fn configured_owner(&self, prefix: Ipv4Net) -> anyhow::Result<&str> {
        self.spec
            .prefixes
            .iter()
            .find(|p| p.cidr == prefix)
            .map(|p| p.owner.as_str())
            .with_context(|| format!("{prefix} is not configured"))
    }

    // ---- commands --------------------------------------------------------------

    /// Runs `args` in `node`'s namespace; its output whatever the exit status.
    pub fn exec(&self, node: Node, args: &[&str]) -> anyhow::Result<Output> {
        ns::output(&mut ns::command(&self.ns(node), args))
    }

    /// Runs `args` in `node`'s namespace; fails unless it succeeds. Returns stdout.
    pub fn exec_ok(&self, node: Node, args: &[&str]) -> anyhow::Result<String> {
        ns::check(&mut ns::command(&self.ns(node), args))
    }

    /// `ip -n NODE ARGS`, checked.
    pub fn ip(&self, node: Node, args: &[&str]) -> anyhow::Result<String> {
        ns::check(&mut ns::ip(&self.ns(node), args))
    }

    /// Starts `args` in `node`'s namespace, output to `<dir>/<name>.log`. The process
    /// is killed when the returned handle is dropped.
    pub fn spawn(&self, node: Node, name: &str, args: &[&str]) -> anyhow::Result<Proc> {
        let log = self.dir.join(format!("{name}.log"));
        Proc::spawn(name, ns::command(&self.ns(node), args), &log)
    }

    /// `ha-user --config <lab config> ARGS`, run here (the CLI only needs the control
    /// socket, a path).
    pub fn ha_user(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut command = std::process::Command::new(&self.spec.bins.ha_user);
        command.arg("--config").arg(&self.config_path).args(args);
        ns::output(&mut command)
    }

    // ---- the router's state ----------------------------------------------------------

    /// The router's `proto 165` routes: prefix → gateway.
    pub fn kernel_routes(&self) -> anyhow::Result<BTreeMap<Ipv4Net, Ipv4Addr>> {
        let text = self.ip(Node::Router, &["-j", "route", "show", "proto", "165"])?;
        let routes: Vec<serde_json::Value> =
            serde_json::from_str(&text).context("parsing `ip -j route`")?;
        let mut parsed = BTreeMap::new();
        for route in routes {
            let dst = route["dst"].as_str().context("route without dst")?;
            // `ip` prints a /32 as a bare address.
            let prefix: Ipv4Net = match dst.parse::<Ipv4Addr>() {
                Ok(address) => Ipv4Net::from(address),
                Err(_) => dst.parse().with_context(|| format!("route to {dst}"))?,
            };
            let gateway = route["gateway"]
                .as_str()
                .with_context(|| format!("route to {dst} has no gateway: {route}"))?;
            parsed.insert(prefix, gateway.parse().context("gateway")?);
        }
        Ok(parsed)
    }

    /// The pinned prefix table, raw.
    pub fn map_dump(&self) -> anyhow::Result<BTreeMap<Ipv4Net, PrefixEntry>> {
        datapath::prefix_entries(&self.paths.pin_dir)
    }

    /// The pinned prefix table with host names: prefix → owning host.
    pub fn map_owners(&self) -> anyhow::Result<BTreeMap<Ipv4Net, String>> {
        self.map_dump()?
            .into_iter()
            .map(|(prefix, entry)| {
                let host = HOSTS.get(entry.host as usize).with_context(|| {
                    format!("{prefix} points at unknown host id {}", entry.host)
                })?;
                Ok((prefix, (*host).to_owned()))
            })
            .collect()
    }

    /// The data path's verdict counters.
    pub fn xdp_counters(&self) -> anyhow::Result<XdpCounters> {
        XdpCounters::read(&self.paths.pin_dir)
    }

    /// Packets and bytes the data path steered to `host`.
    pub fn host_traffic(&self, host: &str) -> anyhow::Result<Traffic> {
        datapath::host_traffic(&self.paths.pin_dir, self.host_id(host)?)
    }

    /// `HA_HOSTS` entry of `host`.
    pub fn host_entry(&self, host: &str) -> anyhow::Result<ha_common::HostEntry> {
        datapath::host_entry(&self.paths.pin_dir, self.host_id(host)?)
    }

    /// The router kernel's `Ip: ForwDatagrams` (`/proc/net/snmp`): packets it routed.
    pub fn forwarded_datagrams(&self) -> anyhow::Result<u64> {
        self.net_counter(Node::Router, "Ip", "ForwDatagrams")
    }

    /// Counter `NAME` of section `SECTION` of `node`'s kernel, from `/proc/net/snmp`
    /// or `/proc/net/netstat`: `("Ip", "ForwDatagrams")`, `("IpExt", "InCsumErrors")`.
    pub fn net_counter(&self, node: Node, section: &str, name: &str) -> anyhow::Result<u64> {
        let text = ns::in_netns(&self.ns(node), || {
            let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp")?;
            let netstat = std::fs::read_to_string("/proc/thread-self/net/netstat")?;
            Ok::<_, std::io::Error>(snmp + &netstat)
        })?
        .with_context(|| format!("reading /proc/net/snmp and netstat in {node}"))?;
        let prefix = format!("{section}:");
        let mut lines = text.lines().filter(|line| line.starts_with(&prefix));
        let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
            bail!("no {section}: lines in /proc/net/snmp or netstat of {node}");
        };
        let column = names
            .split_whitespace()
            .position(|field| field == name)
            .with_context(|| format!("no {section}: {name} in {node}'s counters"))?;
        values
            .split_whitespace()
            .nth(column)
            .with_context(|| format!("short {section}: line"))?
            .parse()
            .with_context(|| format!("{section}: {name} is not a number"))
    }

    /// Checks the agreement rule between the fast path and the slow path: every
    /// configured prefix has exactly one `proto 165` route; a prefix with a map entry
    /// routes via that entry's host, a prefix without one via its configured owner;
    /// nothing unconfigured is in the map. The error lists every disagreement.
    pub fn check_agreement(&self) -> anyhow::Result<()> {
        let map = self.map_owners()?;
        let routes = self.kernel_routes()?;
        let mut problems = Vec::new();
        for prefix in &self.spec.prefixes {
            let expected_host = map
                .get(&prefix.cidr)
                .map_or(prefix.owner.as_str(), String::as_str);
            let expected = host_address(expected_host).context("host address")?;
            match routes.get(&prefix.cidr) {
                Some(gateway) if *gateway == expected => {}
                Some(gateway) => problems.push(format!(
                    "{}: map {} but kernel route via {gateway} (expected via {expected} = {expected_host})",
                    prefix.cidr,
                    map.get(&prefix.cidr).map_or("(no entry)", String::as_str)
                )),
                None => problems.push(format!("{}: no proto 165 kernel route", prefix.cidr)),
            }
        }
        for prefix in map.keys() {
            if !self.spec.prefixes.iter().any(|p| p.cidr == *prefix) {
                problems.push(format!("{prefix}: in the map but not configured"));
            }
        }
        ensure!(
            problems.is_empty(),
            "fast path and kernel routes disagree:\n  {}\nmap: {map:?}\nroutes: {routes:?}",
            problems.join("\n  ")
        );
        Ok(())
    }

    // ---- web servers ---------------------------------------------------------------

    /// Starts `ha-webd` on `host` (HTTP 80, UDP echo) and waits until it listens.
    pub fn start_web(&mut self, host: &str) -> anyhow::Result<()> {
        self.start_web_with(host, &[])
    }

    /// Starts `host`'s web server with more `ha-webd` arguments (`--delay-ms N`: a
    /// slow server).
    pub fn start_web_with(&mut self, host: &str, extra: &[&str]) -> anyhow::Result<()> {
        let node = Node::host(host)?;
        if let Some(running) = self.web.get_mut(host)
            && running.try_wait()?.is_none()
        {
            bail!("the web server of {host} is running already");
        }
        let webd = self.spec.bins.webd.to_string_lossy().into_owned();
        let udp = format!("0.0.0.0:{}", self.spec.udp_port);
        let mut args = vec![
            webd.as_str(),
            "--name",
            host,
            "--http",
            "0.0.0.0:80",
            "--udp",
            &udp,
        ];
        args.extend_from_slice(extra);
        let mut proc = self.spawn(node, &format!("web-{host}"), &args)?;
        proc.wait_for_line("ready", Duration::from_secs(5))?;
        self.web.insert(host.to_owned(), proc);
        Ok(())
    }

    /// Sends `signal` to the web server of `host` (SIGUSR1 and SIGUSR2 switch a
    /// `--fault` on and off).
    pub fn signal_web(&mut self, host: &str, signal: i32) -> anyhow::Result<()> {
        self.web
            .get_mut(host)
            .with_context(|| format!("no web server runs on {host:?}"))?
            .signal(signal)
    }

    /// The process id of `host`'s web server, if one runs.
    pub fn web_pid(&self, host: &str) -> Option<u32> {
        self.web.get(host).map(Proc::pid)
    }

    /// SIGKILLs the web server of `host`.
    pub fn kill_web(&mut self, host: &str) -> anyhow::Result<()> {
        let mut proc = self
            .web
            .remove(host)
            .with_context(|| format!("no web server runs on {host:?}"))?;
        proc.kill()?;
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let mut problems = Vec::new();
        if let Some(mut controller) = self.controller.take()
            && let Err(err) = controller.kill()
        {
            problems.push(format!("{err:#}"));
        }
        // Links first: this detaches ha_steer from the router.
        if let Err(err) = datapath::remove_pins(&self.paths.pin_dir) {
            problems.push(format!("{err:#}"));
        }
        for (_, mut web) in std::mem::take(&mut self.web) {
            if let Err(err) = web.kill() {
                problems.push(format!("{err:#}"));
            }
        }
        self.pass = None;
        // The controller's record of its routes dies with the router's namespace
        // (a later namespace could be given the same inode).
        if let Ok(meta) = std::fs::metadata(ns::path(&self.ns(Node::Router))) {
            use std::os::unix::fs::MetadataExt as _;
            let record = ha_user::daemon::route_record::path_in(
                Path::new(ha_user::daemon::lock::LOCK_DIR),
                meta.ino(),
                "eth1",
            );
            match std::fs::remove_file(&record) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                    problems.push(format!("removing {}: {err}", record.display()));
                }
                _ => {}
            }
        }
        // Each guard deletes its namespace, warning if it cannot.
        self.namespaces.drain(..).rev().for_each(drop);
        if std::thread::panicking() {
            // The logs explain the failure; the next lab with this prefix removes them.
            eprintln!(
                "lab {}: logs kept in {}",
                self.spec.prefix,
                self.dir.display()
            );
        } else if self.dir.exists()
            && let Err(err) = std::fs::remove_dir_all(&self.dir)
        {
            problems.push(format!("removing {}: {err}", self.dir.display()));
        }
        for problem in problems {
            eprintln!("warning: lab {}: {problem}", self.spec.prefix);
        }
    }
}
