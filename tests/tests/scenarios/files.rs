//! The controller's files touched by hand: the pin directory removed, the state
//! file corrupted, truncated or replaced by a symlink.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use ha_tests::{
    lab::{Lab, Node, XdpMode, net, vip},
    root::require_root,
};
use ha_user::proto::ChangeReport;

use crate::{common, scaled, wait_until};

const P64: &str = "192.168.1.64/27";

/// `rm -r` of the pin directory under a running controller: it stops within about
/// a second, exit status 1, its log naming the directory; the routes are as they
/// were; the kernel carries the traffic; a new start steers again.
#[test]
fn pins_removed_by_hand_stop_the_controller_cleanly() {
    if !require_root("pins_removed_by_hand_stop_the_controller_cleanly") {
        return;
    }
    let mut lab = common::build(common::spec("ha-s-pins-", XdpMode::Native));
    lab.ignore_icmp_redirects(Node::LanClient)
        .unwrap_or_else(|e| panic!("{e:#}"));
    lab.wait_steady(scaled(Duration::from_secs(10)))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let routes = lab.kernel_routes().expect("routes");
    let pin_dir = lab.pin_dir().to_owned();
    let started = Instant::now();
    std::fs::remove_dir_all(&pin_dir).expect("rm -r the pin directory");
    let status = lab
        .controller()
        .expect("controller")
        .wait_timeout(scaled(Duration::from_secs(3)))
        .unwrap_or_else(|e| {
            panic!(
                "the controller did not stop after its pins were removed: {e:#}\n{}",
                lab.controller_log()
            )
        });
    let stopped = started.elapsed();
    let log = lab.controller_log();
    let last = log.lines().last().unwrap_or("").to_owned();
    eprintln!("pins removed: stopped after {stopped:?} with {status}: {last}");
    assert_eq!(status.code(), Some(1), "exit status; log:\n{log}");
    assert!(
        stopped <= scaled(Duration::from_millis(1500)),
        "stopped only after {stopped:?}"
    );
    let names = format!("{}", pin_dir.display());
    assert!(
        last.contains(&names) && last.contains("removed"),
        "the last line should name the removed pin directory {names}:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(
        lab.kernel_routes().expect("routes"),
        routes,
        "the routes changed"
    );
    assert_eq!(
        lab.router_lan_xdp().expect("ip link"),
        None,
        "XDP left attached"
    );
    assert_eq!(
        lab.udp_who(Node::LanClient, vip(net(P64))).expect("UDP"),
        "host2",
        "the kernel route carries the traffic"
    );
    lab.start_controller(&[])
        .unwrap_or_else(|e| panic!("{e:#}"));
    lab.wait_steady(scaled(Duration::from_secs(10)))
        .unwrap_or_else(|e| panic!("{e:#}"));
    common::assert_agreement(&lab);
}

/// The state file of the lab.
fn state_file(lab: &Lab) -> PathBuf {
    lab.dir().join("state.json")
}

/// `run` must refuse to start: its log names `file`, says no panic, and the router
/// is as it was.
fn refused_naming(lab: &mut Lab, file: &Path, what: &str) {
    let before = lab.router_state().unwrap_or_else(|e| panic!("{e:#}"));
    let log = lab
        .failed_start(&[], &[], scaled(Duration::from_secs(10)))
        .unwrap_or_else(|e| panic!("{what}: {e:#}"));
    let last = log.lines().last().unwrap_or("");
    eprintln!("{what}: {last}");
    assert!(
        last.contains(&file.display().to_string()),
        "{what}: the error should name {}:\n{log}",
        file.display()
    );
    assert!(!log.contains("panicked"), "{what}: {log}");
    let after = lab.router_state().unwrap_or_else(|e| panic!("{e:#}"));
    let changed = after.differences(&before);
    assert!(
        changed.is_empty(),
        "{what}: the router changed: {changed:?}"
    );
}

/// How one case breaks the state file at the path it is given.
type Breaks<'a> = Box<dyn Fn(&Path) + 'a>;

/// A state file corrupted, truncated, or a symlink to another file: `run` refuses,
/// naming it, and the symlink's target stays byte for byte. A symlink put at the
/// path under a running controller is replaced by the next save, not written
/// through.
#[test]
fn a_broken_state_file_is_refused_and_a_symlink_never_written_through() {
    if !require_root("a_broken_state_file_is_refused_and_a_symlink_never_written_through") {
        return;
    }
    let mut lab = common::build(common::spec("ha-s-state-", XdpMode::Skb));
    lab.wait_steady(scaled(Duration::from_secs(10)))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let state = state_file(&lab);
    let _: ChangeReport = lab
        .ha_user_json(&["set-owner", P64, "host3"])
        .unwrap_or_else(|e| panic!("{e:#}"));
    let good = std::fs::read(&state).expect("the state file after set-owner");
    assert!(good.len() > 8, "{good:?}");
    let victim = lab.dir().join("victim.json");
    let precious = b"{\"pins\": {\"10.0.0.0/8\": \"not ha's\"}}\n".to_vec();
    std::fs::write(&victim, &precious).expect("victim");

    // Under the running controller: a symlink in place of the state file.
    std::fs::remove_file(&state).expect("rm state");
    std::os::unix::fs::symlink(&victim, &state).expect("symlink");
    let _: ChangeReport = lab
        .ha_user_json(&["clear-owner", P64])
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        std::fs::read(&victim).expect("victim"),
        precious,
        "written through the symlink"
    );
    let meta = std::fs::symlink_metadata(&state).expect("state");
    assert!(
        meta.file_type().is_file(),
        "the state file is {:?}",
        meta.file_type()
    );
    eprintln!(
        "a symlink at the state file under a running controller: replaced by the save, its target unchanged"
    );
    let _: ChangeReport = lab
        .ha_user_json(&["set-owner", P64, "host3"])
        .unwrap_or_else(|e| panic!("{e:#}"));
    lab.kill_controller().expect("SIGKILL");

    let cases: [(&str, Breaks); 3] = [
        (
            "corrupted",
            Box::new(|path: &Path| {
                let mut bytes = good.clone();
                let middle = bytes.len() / 2;
                bytes[middle] = 0xff;
                bytes[middle - 1] = b'{';
                std::fs::write(path, bytes).expect("write");
            }),
        ),
        (
            "truncated",
            Box::new(|path: &Path| {
                std::fs::write(path, &good[..good.len() / 2]).expect("write");
            }),
        ),
        (
            "a symlink",
            Box::new(|path: &Path| {
                std::os::unix::fs::symlink(&victim, path).expect("symlink");
            }),
        ),
    ];
    for (what, make) in &cases {
        std::fs::remove_file(&state).expect("rm state");
        make(&state);
        refused_naming(&mut lab, &state, what);
        assert_eq!(
            std::fs::read(&victim).expect("victim"),
            precious,
            "{what}: the victim changed"
        );
    }
    // Put right, the controller starts and keeps the saved pin.
    std::fs::remove_file(&state).expect("rm state");
    std::fs::write(&state, &good).expect("restore");
    lab.start_controller(&[])
        .unwrap_or_else(|e| panic!("{e:#}"));
    wait_until(
        &lab,
        scaled(Duration::from_secs(5)),
        "the saved pin",
        || {
            let owners = lab.owners()?;
            let owner = owners
                .iter()
                .find(|(cidr, _)| *cidr == net(P64))
                .and_then(|(_, o)| o.clone());
            anyhow::ensure!(owner.as_deref() == Some("host3"), "{P64} with {owner:?}");
            Ok(())
        },
    );
    common::assert_agreement(&lab);
}
