//! What the package's unit does on a restart or an upgrade (root), in the lab: the
//! controller runs as `ha.service` runs it (`ha-user run --handover`), a stream of
//! sequence-numbered datagrams goes through the fast path, the controller gets
//! SIGTERM (systemd's stop) and a new one starts (the new binary of an upgrade).
//! Not a datagram is lost, the XDP links are the same ones (same link ids), the fast
//! path's counters rise through the restart and the kernel's forwarding does not
//! take over. Then Ctrl-C (SIGINT) detaches even with `--handover`.
//!
//! Installing the `.deb` itself with dpkg and systemd waits for the Debian guest
//! (`cargo xtask guest`): this machine's init is not systemd.

use std::{
    net::SocketAddrV4,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use ha_common::Counter;
use ha_tests::{
    lab::{Lab, Node, XdpMode, net, time_scale, vip},
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
    let target = SocketAddrV4::new(vip(net(P64)), lab.spec().udp_port);
    let stream = lab
        .stream(
            Node::LanClient,
            target,
            1000 / scale,
            Duration::from_millis(3000 * scale),
        )
        .expect("ha-stream");
    std::thread::sleep(Duration::from_millis(500 * scale));
    let fwd_before = lab.forwarded_datagrams().expect("ForwDatagrams");
    let before = lab.xdp_counters().expect("counters");
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
    let report = stream.wait().expect("ha-stream");
    eprintln!("stream: {}", report.summary());
    let moved = lab.xdp_counters().expect("counters").since(&before);
    let forwarded = lab.forwarded_datagrams().expect("ForwDatagrams") - fwd_before;
    eprintln!("through the restart: data path {moved}; kernel forwarded {forwarded}");
    assert_eq!(report.lost, 0, "lost: {:?}", report.lost_ranges);
    assert_eq!(
        link_ids(lab.pin_dir()),
        links,
        "the new controller should adopt the same links"
    );
    // The 2.5 s after the first counters, at 1000/s, all steered (XDP_TX from the LAN).
    assert!(
        moved.get(Counter::Tx) >= 2000 / scale,
        "the fast path should carry the stream through the restart: {moved}"
    );
    assert!(
        forwarded < 2500 / scale / 20,
        "the kernel forwarded {forwarded} datagrams: it took over from the fast path"
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
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dist = root.join("target/dist");
    let stage = std::fs::read_dir(&dist).ok().and_then(|entries| {
        entries.filter_map(Result::ok).map(|e| e.path()).find(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("ha_"))
        })
    });
    let Some(stage) = stage else {
        panic!(
            "no staged package under {}: run `cargo xtask dist` first",
            dist.display()
        );
    };
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
