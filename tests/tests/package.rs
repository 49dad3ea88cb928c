//! What the package's unit does on a restart or an upgrade (root), in the lab: the
//! controller runs as `ha.service` runs it (`ha-user run --handover`), a stream of
//! sequence-numbered datagrams goes through the fast path, the controller gets
//! SIGTERM (systemd's stop) and a new one starts (the new binary of an upgrade).
//! Not a datagram is lost, the XDP links are the same ones (same link ids), the fast
//! path's counters rise through the restart and the kernel's forwarding does not
//! take over. Then Ctrl-C (SIGINT) detaches even with `--handover`.
//!
//! Installing the `.deb` with dpkg and upgrading it under systemd needs systemd as
//! init: that test runs in the Debian guest (`cargo xtask test --kernel debian-6.1`)
//! and is skipped, saying so, elsewhere.

use std::{
    net::SocketAddrV4,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use ha_common::Counter;
use ha_tests::{
    lab::{Lab, Node, StreamReport, StreamRun, XdpCounters, XdpMode, net, time_scale, vip},
    root::require_root,
};
use ha_user::proto::Event;
use serde_json::Value;

mod common;

const P64: &str = "192.168.1.64/27";

/// The ids of the pinned XDP links (`link_<iface>` under the pin directory), by name;
/// none when the directory is gone (a detach removes it).
fn link_ids(pin_dir: &Path) -> Vec<(String, u64)> {
    let mut ids = Vec::new();
    let entries = match std::fs::read_dir(pin_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return ids,
        Err(e) => panic!("listing {}: {e}", pin_dir.display()),
    };
    for entry in entries {
        let entry = entry.expect("a pin directory entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(ha_common::maps::XDP_LINK_PREFIX) {
            continue;
        }
        let out = Command::new("bpftool")
            .args(["-j", "link", "show", "pinned"])
            .arg(entry.path())
            .output()
            .expect("bpftool");
        assert!(
            out.status.success(),
            "bpftool link show pinned {name}: {out:?}"
        );
        let link: Value = serde_json::from_slice(&out.stdout).expect("bpftool -j");
        let id = link["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("no link id for {name}: {link}"));
        ids.push((name, id));
    }
    ids.sort();
    ids
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The package tree `cargo xtask dist` staged (`target/dist/ha_<version>_<arch>/`;
/// `cargo xtask test` stages it before the root suites).
fn staged_package() -> PathBuf {
    let dist = workspace().join("target/dist");
    let stage = std::fs::read_dir(&dist).ok().and_then(|entries| {
        entries.filter_map(Result::ok).map(|e| e.path()).find(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("ha_"))
        })
    });
    stage.unwrap_or_else(|| {
        panic!(
            "no staged package under {}: run `cargo xtask dist` first",
            dist.display()
        )
    })
}

/// Runs `program ARGS`, panicking with its output unless it succeeds; its stdout.
fn run_ok(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "`{program} {}` failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds `ha_<version>_amd64.deb` under `out` from a copy of the staged tree with
/// `version` in its control file: two of them make an upgrade.
fn deb_of_version(stage: &Path, version: &str, out: &Path) -> PathBuf {
    let tree = out.join(format!("ha_{version}"));
    let _ = std::fs::remove_dir_all(&tree);
    run_ok(
        "cp",
        &["-a", &stage.to_string_lossy(), &tree.to_string_lossy()],
    );
    let control = tree.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control).expect("the staged control file");
    let text: String = text
        .lines()
        .map(|line| {
            if line.starts_with("Version:") {
                format!("Version: {version}\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    std::fs::write(&control, text).expect("writing the control file");
    let deb = out.join(format!("ha_{version}_amd64.deb"));
    run_ok(
        "dpkg-deb",
        &[
            "--root-owner-group",
            "--build",
            &tree.to_string_lossy(),
            &deb.to_string_lossy(),
        ],
    );
    deb
}

fn shutdown_handover(lab: &Lab) -> Option<bool> {
    lab.events()
        .and_then(|events| events.records())
        .ok()?
        .into_iter()
        .find_map(|record| match record.event {
            Event::Shutdown { handover, .. } => Some(handover),
            _ => None,
        })
}

/// A stream to P64's VIP through the fast path, 1000 datagrams/s (÷ the time scale)
/// for `millis` ms, measured from 500 ms in: what the fast path and the kernel
/// carried across whatever happens meanwhile (a restart, an upgrade).
struct Crossing {
    stream: StreamRun,
    millis: u64,
    forwarded_before: u64,
    counters_before: XdpCounters,
}

struct Crossed {
    what: &'static str,
    report: StreamReport,
    millis: u64,
    moved: XdpCounters,
    forwarded: u64,
}

impl Crossing {
    fn start(lab: &Lab, millis: u64) -> Self {
        let scale = u64::from(time_scale());
        let target = SocketAddrV4::new(vip(net(P64)), lab.spec().udp_port);
        let stream = lab
            .stream(
                Node::LanClient,
                target,
                1000 / scale,
                Duration::from_millis(millis * scale),
            )
            .expect("ha-stream");
        std::thread::sleep(Duration::from_millis(500 * scale));
        Crossing {
            stream,
            millis,
            forwarded_before: lab.forwarded_datagrams().expect("ForwDatagrams"),
            counters_before: lab.xdp_counters().expect("counters"),
        }
    }

    /// Waits for the stream's end; `what` names what it crossed, for the log.
    fn end(self, lab: &Lab, what: &'static str) -> Crossed {
        let report = self.stream.wait().expect("ha-stream");
        eprintln!("stream: {}", report.summary());
        let moved = lab
            .xdp_counters()
            .expect("counters")
            .since(&self.counters_before);
        let forwarded = lab.forwarded_datagrams().expect("ForwDatagrams") - self.forwarded_before;
        eprintln!("through the {what}: data path {moved}; kernel forwarded {forwarded}");
        Crossed {
            what,
            report,
            millis: self.millis,
            moved,
            forwarded,
        }
    }
}

impl Crossed {
    /// Not a datagram lost; the datagrams sent after the first counters all steered
    /// (XDP_TX from the LAN; 500 ms of them as slack), and the kernel forwarded under
    /// a twentieth of them. `context` is added to the loss message.
    fn assert_carried(&self, context: &str) {
        let Crossed {
            what,
            report,
            millis,
            moved,
            forwarded,
        } = self;
        let scale = u64::from(time_scale());
        let measured = millis - 500;
        assert_eq!(report.lost, 0, "lost: {:?}{context}", report.lost_ranges);
        assert!(
            moved.get(Counter::Tx) >= (measured - 500) / scale,
            "the fast path should carry the stream through the {what}: {moved}"
        );
        assert!(
            *forwarded < measured / scale / 20,
            "the kernel forwarded {forwarded} datagrams: it took over from the fast path"
        );
    }
}

#[test]
fn restart_with_handover_keeps_the_links_and_loses_nothing() {
    if !require_root("restart_with_handover_keeps_the_links_and_loses_nothing") {
        return;
    }
    let mut spec = common::spec("ha-pkg-", XdpMode::Native);
    spec.start_controller = false;
    let mut lab = common::build(spec);
    lab.start_controller(&["--handover"])
        .expect("ha-user run --handover");
    let links = link_ids(lab.pin_dir());
    assert_eq!(
        links.len(),
        2,
        "one pinned XDP link per interface: {links:?}"
    );
    eprintln!("XDP links before: {links:?}");

    let scale = u64::from(time_scale());
    let crossing = Crossing::start(&lab, 3000);
    let stopped = Instant::now();
    let status = lab.stop_controller().expect("SIGTERM");
    eprintln!("SIGTERM: exited {status} after {:?}", stopped.elapsed());
    assert!(
        status.success(),
        "the controller failed to stop: {}",
        lab.controller_log()
    );
    assert_eq!(
        shutdown_handover(&lab),
        Some(true),
        "the shutdown event should say handover: {}",
        lab.controller_log()
    );
    assert_eq!(
        link_ids(lab.pin_dir()),
        links,
        "SIGTERM with --handover must leave the links pinned"
    );
    let stopped_counters = lab.xdp_counters().expect("counters");
    std::thread::sleep(Duration::from_millis(300 * scale));
    let between = lab
        .xdp_counters()
        .expect("counters")
        .since(&stopped_counters);
    eprintln!("between the two controllers (300 ms): data path {between}");
    assert!(
        between.get(Counter::Tx) >= 200 / scale,
        "the fast path stopped with the controller: {between}"
    );
    let started = Instant::now();
    lab.start_controller(&["--handover"])
        .expect("the new controller");
    eprintln!("new controller steering after {:?}", started.elapsed());
    let crossed = crossing.end(&lab, "restart");
    crossed.assert_carried("");
    assert_eq!(
        link_ids(lab.pin_dir()),
        links,
        "the new controller should adopt the same links"
    );
    lab.wait_steady(Duration::from_secs(5) * time_scale())
        .unwrap_or_else(|e| panic!("{e:#}"));
    common::assert_agreement(&lab);

    // Ctrl-C detaches even with --handover.
    lab.controller()
        .expect("controller")
        .signal(libc::SIGINT)
        .expect("SIGINT");
    let status = lab
        .controller()
        .expect("controller")
        .wait_timeout(Duration::from_secs(10))
        .expect("the controller to exit on SIGINT");
    assert!(status.success(), "{}", lab.controller_log());
    assert_eq!(shutdown_handover(&lab), Some(false));
    assert_eq!(link_ids(lab.pin_dir()), [], "SIGINT must detach the links");
}

/// The staged package's maintainer scripts in dpkg's order on this host
/// (`tests/scripts/maintainer-sequence.sh`, in private mount and network namespaces):
/// a fresh install starts nothing, a SIGTERM restart under `--handover` keeps the XDP
/// link, `prerm remove` detaches it and keeps the routes, `postrm purge` removes the
/// routes, the pins, /var/lib/ha and /run/ha. Needs `cargo xtask dist` first.
#[test]
fn maintainer_scripts_hand_over_then_remove_and_purge() {
    if !require_root("maintainer_scripts_hand_over_then_remove_and_purge") {
        return;
    }
    let root = workspace();
    let stage = staged_package();
    let out = Command::new("unshare")
        .args(["--mount", "--net", "--fork", "sh"])
        .arg(root.join("tests/scripts/maintainer-sequence.sh"))
        .arg(&stage)
        .output()
        .expect("unshare");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    let value = |key: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in the output"))
            .trim()
            .to_owned()
    };
    let links = value("LINKS_N");
    assert!(!links.is_empty(), "the controller did not pin a link");
    assert!(!value("ROUTES_N").is_empty(), "no route of ha");
    assert_eq!(value("TERM_EXIT"), "0");
    assert_eq!(value("LINKS_TERM"), links, "SIGTERM detached");
    assert_eq!(
        value("LINKS_N1"),
        links,
        "the new controller made a new link"
    );
    assert_eq!(value("PRERM_EXIT"), "0");
    assert_eq!(value("PINS_REMOVE"), "", "prerm remove left pins");
    assert!(
        !value("ROUTES_REMOVE").is_empty(),
        "prerm remove took the routes"
    );
    assert_eq!(value("POSTRM_EXIT"), "0");
    assert_eq!(value("ROUTES_PURGE"), "", "purge left routes");
    assert_eq!(value("LEFT_PURGE"), "", "purge left files");
}

/// The package upgraded under systemd, as `apt install ./ha_<N+1>.deb` upgrades it on
/// a router: version N installed with dpkg, the lab's configuration as
/// /etc/ha/ha.toml, `systemctl start ha`, a stream through the fast path, then
/// version N+1 installed over it (prerm upgrade, postinst's `systemctl restart`).
/// Not a datagram is lost, the XDP link ids stay, the fast path carries the stream
/// through the restart and the kernel's forwarding does not take over; the unit is
/// active on N+1 and /etc/ha/ha.toml is the user's. The lab's router is a network
/// namespace, so a drop-in puts the unit in it (`NetworkNamespacePath=`) and lets it
/// write the lab's directory; nothing else of the unit changes.
///
/// Needs systemd as init: it runs in the Debian guest (`cargo xtask test --kernel
/// debian-6.1`) and is skipped, saying so, on a machine whose init is not systemd.
#[test]
fn upgrade_under_systemd_loses_nothing() {
    if !require_root("upgrade_under_systemd_loses_nothing") {
        return;
    }
    if !Path::new("/run/systemd/system").is_dir() {
        eprintln!(
            "skipping upgrade_under_systemd_loses_nothing: this machine's init is not \
             systemd (run it in the guest: cargo xtask test --kernel debian-6.1)"
        );
        return;
    }
    let stage = staged_package();
    let mut spec = common::spec("ha-upg-", XdpMode::Native);
    spec.start_controller = false;
    let mut lab = common::build(spec);
    let debs = lab.dir().join("debs");
    std::fs::create_dir_all(&debs).expect("the lab's deb directory");
    let old = deb_of_version(&stage, "0.0.1", &debs);
    let new = deb_of_version(&stage, "0.0.2", &debs);

    run_ok("dpkg", &["-i", &old.to_string_lossy()]);
    let config = std::fs::read_to_string(lab.config_path()).expect("the lab's configuration");
    std::fs::write("/etc/ha/ha.toml", &config).expect("writing /etc/ha/ha.toml");
    let dropin = Path::new("/run/systemd/system/ha.service.d");
    std::fs::create_dir_all(dropin).expect("the drop-in directory");
    std::fs::write(
        dropin.join("lab.conf"),
        format!(
            "[Service]\nNetworkNamespacePath={}\nPrivateTmp=no\nReadWritePaths={}\n",
            ha_tests::lab::ns::path(&lab.ns(Node::Router)).display(),
            lab.dir().display()
        ),
    )
    .expect("writing the drop-in");
    run_ok("systemctl", &["daemon-reload"]);
    // Type=notify: `start` returns once the controller said READY=1.
    let started = Instant::now();
    run_ok("systemctl", &["start", "ha.service"]);
    eprintln!("systemctl start: ready after {:?}", started.elapsed());
    lab.wait_steady(Duration::from_secs(10) * time_scale())
        .unwrap_or_else(|e| panic!("{e:#}"));
    let links = link_ids(lab.pin_dir());
    assert_eq!(
        links.len(),
        2,
        "one pinned XDP link per interface: {links:?}"
    );

    let crossing = Crossing::start(&lab, 6000);
    let upgrade = Instant::now();
    run_ok("dpkg", &["-i", &new.to_string_lossy()]);
    eprintln!("dpkg -i (upgrade): {:?}", upgrade.elapsed());
    let crossed = crossing.end(&lab, "upgrade");

    let version = run_ok("dpkg-query", &["-W", "-f", "${Version}", "ha"]);
    let active = Command::new("systemctl")
        .args(["is-active", "--quiet", "ha.service"])
        .status()
        .expect("systemctl is-active");
    let kept_config = std::fs::read_to_string("/etc/ha/ha.toml").unwrap_or_default();
    let links_after = link_ids(lab.pin_dir());
    let journal = Command::new("journalctl")
        .args(["-u", "ha.service", "--no-pager", "-n", "40"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_else(|e| format!("(journalctl: {e})"));

    // Clean up before asserting: stop (a handover), detach in the router's namespace,
    // purge the package, remove the drop-in.
    let _ = Command::new("systemctl")
        .args(["stop", "ha.service"])
        .status();
    let ha_user = lab.spec().bins.ha_user.to_string_lossy().into_owned();
    let config_path = lab.config_path().to_string_lossy().into_owned();
    let _ = lab.exec(
        Node::Router,
        &[&ha_user, "--config", &config_path, "detach"],
    );
    let _ = std::fs::remove_dir_all(dropin);
    let _ = Command::new("dpkg").args(["--purge", "ha"]).status();
    let _ = Command::new("systemctl").arg("daemon-reload").status();

    assert_eq!(version, "0.0.2", "the upgrade did not install N+1");
    assert!(
        active.success(),
        "ha.service is not active after the upgrade:\n{journal}"
    );
    assert_eq!(kept_config, config, "the upgrade changed /etc/ha/ha.toml");
    crossed.assert_carried(&format!("\n{journal}"));
    assert_eq!(links_after, links, "the upgrade replaced the XDP links");
}
