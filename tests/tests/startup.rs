//! All or nothing (root): a start-up of `ha-user run` that fails, at any step, leaves
//! the router as it found it. The failures are real where the machine has one (an
//! ingress whose driver has no native XDP, a veth without the queues native XDP
//! needs, a control socket path too long to bind, a foreign route, a route with its
//! own MTU, pins of another layout, a VLAN sub-interface) and injected by the test
//! hook after every step otherwise (`HA_TEST_FAIL_AFTER=<step>`, debug builds only).
//! After each, the router's interfaces (XDP, tc qdiscs and filters, TCX programs),
//! the pins under the lab's pin directory and the whole routing table (`ip -j route
//! show table all`) are compared with their state before; over a running fast path,
//! so are the programs behind its links and the contents of its maps. Attach errors
//! name their cause.
//!
//! Each test builds its own lab (native XDP). Run one at a time (`--test-threads=1`,
//! as `cargo xtask test` does).

use std::{collections::BTreeMap, path::Path, time::Duration};

use aya::{
    Ebpf,
    programs::{Xdp, xdp::XdpMode as AyaXdpMode},
};
use ha_common::{HostEntry, PINNED_MAPS, PROG_PASS};
use ha_tests::{
    lab::{HOSTS, Lab, LabSpec, PrefixEntry, PrefixSpec, RouterState, XdpMode},
    netns::{Veth, in_private_netns},
    root::require_root,
};
use ha_user::{
    daemon::rollback::{FAIL_AFTER, Step},
    kernel::{
        datapath::{self, DatapathError, Loaded, attach_error::AttachCause},
        netdev::Interface,
    },
    model::Mac,
};
use ipnet::Ipv4Net;

mod common;

use common::{assert_agreement, build};

/// How long a failing start-up may take.
const START: Duration = Duration::from_secs(20);
const WAIT: Duration = Duration::from_secs(5);

/// A lab with the classic static routes and no controller.
fn cold_lab(prefix: &str) -> Lab {
    let mut spec: LabSpec = common::spec(prefix, XdpMode::Native);
    spec.start_controller = false;
    build(spec)
}

/// The line `ha-user` printed its error on.
fn error_line(log: &str) -> String {
    log.lines()
        .rev()
        .find(|line| line.starts_with("ha-user: "))
        .unwrap_or_else(|| panic!("no error line in the log:\n{log}"))
        .to_owned()
}

fn assert_unchanged(lab: &Lab, before: &RouterState, what: &str, log: &str) {
    let after = lab.router_state().unwrap_or_else(|e| panic!("{e:#}"));
    let differences = after.differences(before);
    assert!(
        differences.is_empty(),
        "{what} left the router changed:\n  {}\nits log:\n{log}",
        differences.join("\n  ")
    );
}

fn assert_says(error: &str, what: &str, expected: &[String]) {
    for part in expected {
        assert!(
            error.contains(part.as_str()),
            "{what}: the error should say {part:?}:\n{error}"
        );
    }
}

/// Whether a start-up failing after `step` went through `reached`.
fn reached(step: Step, reached: Step) -> bool {
    let at = |s: Step| Step::ALL.iter().position(|x| *x == s);
    at(reached) <= at(step)
}

/// What the undo of a first start (no pins) failing after `step` must report: the
/// lab's routes for three prefixes adopted (put back), one installed (deleted).
fn undone_first_start(step: Step) -> Vec<String> {
    let mut expected = vec!["removed the control socket".to_owned()];
    if reached(step, Step::Routes) {
        expected.push("(3 put back as they were, 1 of ours deleted)".to_owned());
    }
    if reached(step, Step::Load) {
        expected.push(format!("removed the {} pins it made", PINNED_MAPS.len()));
    }
    if reached(step, Step::Xdp) {
        expected.push("detached XDP from eth1".to_owned());
        expected.push("detached XDP from eth0".to_owned());
    }
    if reached(step, Step::Learn) {
        expected.push("detached ha_learn from eth1".to_owned());
    }
    expected
}

/// Every failure injected into a first start (no pins; three classic routes and a
/// prefix without one) is undone: nothing on the interfaces, no pins, the routing
/// table as it was; then a start without the hook succeeds.
#[test]
fn every_failure_injected_into_a_first_start_is_undone() {
    if !require_root("every_failure_injected_into_a_first_start_is_undone") {
        return;
    }
    let mut lab = cold_lab("ha-s-cold-");
    // Without a route, the start-up installs one: undone by deleting it.
    lab.ip(
        ha_tests::lab::Node::Router,
        &["route", "del", "192.168.1.128/27"],
    )
    .expect("removing a classic route");
    let before = lab.router_state().unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("the router before:\n{before}");
    for step in Step::ALL {
        let extra: &[&str] = if step == Step::Reset {
            &["--reset"]
        } else {
            &[]
        };
        let log = lab
            .failed_start(extra, &[(FAIL_AFTER, step.name())], START)
            .unwrap_or_else(|e| panic!("{e:#}"));
        let error = error_line(&log);
        eprintln!("{FAIL_AFTER}={step}: {error}");
        let mut expected = undone_first_start(step);
        expected.push(format!("a failure injected after the step `{step}`"));
        assert_says(&error, step.name(), &expected);
        assert_unchanged(&lab, &before, &format!("{FAIL_AFTER}={step}"), &log);
        assert!(
            !lab.control_socket().exists(),
            "{step}: the control socket is still there"
        );
    }
    // Nothing is left in the way of the next start (the lock was released too).
    lab.start_controller(&[])
        .unwrap_or_else(|e| panic!("{e:#}"));
    lab.wait_steady(WAIT).unwrap_or_else(|e| panic!("{e:#}"));
    assert_agreement(&lab);
}

/// The contents of the maps a start-up writes, as far as the lab reads them.
fn maps_state(lab: &Lab) -> (BTreeMap<Ipv4Net, PrefixEntry>, Vec<HostEntry>) {
    let prefixes = lab.map_dump().unwrap_or_else(|e| panic!("{e:#}"));
    let hosts = HOSTS
        .iter()
        .map(|host| lab.host_entry(host).unwrap_or_else(|e| panic!("{e:#}")))
        .collect();
    (prefixes, hosts)
}

/// The id of the XDP program on `iface` in a router state.
fn xdp_id(state: &RouterState, iface: &str) -> u64 {
    state.interfaces[iface].xdp["prog"]["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("no XDP program on {iface}: {state}"))
}

/// What the undo of a start over a running fast path failing after `step` must
/// report: the route of the prefix the new configuration dropped put back, the
/// maps written back, the old programs put back behind the links.
fn undone_restart(step: Step, before: &RouterState) -> Vec<String> {
    let mut expected = vec!["removed the control socket".to_owned()];
    if reached(step, Step::Maps) {
        expected.push("(1 put back as they were, 0 of ours deleted)".to_owned());
        // The host entries are written as the running fast path had them (who keeps
        // flows follows the previous controller until the checks decide): unchanged.
        expected.push("wrote back the adopted maps HA_PREFIXES;".to_owned());
    }
    if reached(step, Step::Xdp) {
        for iface in ["eth1", "eth0"] {
            let id = xdp_id(before, iface);
            expected.push(format!(
                "put program id {id} back behind the XDP link of {iface}"
            ));
        }
    }
    if reached(step, Step::Learn) {
        let id = before.interfaces["eth1"].tcx[1][0];
        expected.push(format!(
            "put program id {id} back behind the ha_learn link of eth1"
        ));
    }
    expected
}

/// Over a running fast path (a controller killed with SIGKILL), with a new
/// configuration that drops a prefix: every injected failure is undone, down to the
/// programs behind the pinned links and the maps' contents. Pins of another layout
/// are refused before anything changes; a failed `--reset` start leaves no pins and
/// the routes as they were.
#[test]
fn every_failure_injected_over_a_running_fast_path_is_undone() {
    if !require_root("every_failure_injected_over_a_running_fast_path_is_undone") {
        return;
    }
    let mut lab = build(common::spec("ha-s-warm-", XdpMode::Native));
    lab.kill_controller().expect("SIGKILL");
    // The next start would remove 192.168.1.128/27 from the map and its route.
    let health = lab.spec().health.clone();
    let mut prefixes = PrefixSpec::classic();
    prefixes.truncate(3);
    lab.reconfigure(health, prefixes)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let before = lab.router_state().unwrap_or_else(|e| panic!("{e:#}"));
    let maps = maps_state(&lab);
    eprintln!("the router before:\n{before}");
    assert_eq!(before.interfaces["eth1"].tcx[1].len(), 1, "{before}");
    for step in Step::ALL.into_iter().filter(|step| *step != Step::Reset) {
        let log = lab
            .failed_start(&[], &[(FAIL_AFTER, step.name())], START)
            .unwrap_or_else(|e| panic!("{e:#}"));
        let error = error_line(&log);
        eprintln!("{FAIL_AFTER}={step}: {error}");
        let mut expected = undone_restart(step, &before);
        expected.push(format!("a failure injected after the step `{step}`"));
        assert_says(&error, step.name(), &expected);
        assert_unchanged(&lab, &before, &format!("{FAIL_AFTER}={step}"), &log);
        assert_eq!(maps_state(&lab), maps, "{step}: the maps changed\n{log}");
    }

    // Pins of another layout: refused before anything changes.
    set_layout(lab.pin_dir(), 4242);
    let log = lab
        .failed_start(&[], &[], START)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let error = error_line(&log);
    eprintln!("pins of layout 4242: {error}");
    assert!(
        error.contains("have map layout 4242") && !error.contains("the start-up failed"),
        "{error}"
    );
    assert_unchanged(&lab, &before, "pins of another layout", &log);
    set_layout(lab.pin_dir(), ha_common::LAYOUT_VERSION);

    // A failed --reset start: the old pins are gone (as asked), nothing else is.
    let log = lab
        .failed_start(&["--reset"], &[(FAIL_AFTER, Step::Load.name())], START)
        .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("--reset, {FAIL_AFTER}=load: {}", error_line(&log));
    let after = lab.router_state().unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        after.pins.as_ref().is_none_or(Vec::is_empty),
        "pins left: {after}"
    );
    for iface in ["eth0", "eth1"] {
        let state = &after.interfaces[iface];
        assert!(state.xdp.is_null(), "XDP left on {iface}: {after}");
        assert!(state.tcx.iter().all(Vec::is_empty), "TCX left: {after}");
    }
    assert_eq!(after.routes, before.routes, "the routes changed");

    lab.start_controller(&[])
        .unwrap_or_else(|e| panic!("{e:#}"));
    lab.wait_steady(WAIT).unwrap_or_else(|e| panic!("{e:#}"));
    assert_agreement(&lab);
}

/// Writes layout `layout` into the pinned `HA_META`.
fn set_layout(pin_dir: &Path, layout: u32) {
    use aya::maps::{Array, Map, MapData};
    let data = MapData::from_pin(pin_dir.join(ha_common::MAP_META)).expect("HA_META is pinned");
    let mut meta: Array<MapData, ha_common::Meta> = Map::from_map_data(data)
        .and_then(Array::try_from)
        .expect("HA_META is an array of Meta");
    meta.set(0, ha_common::Meta { layout, _pad: 0 }, 0)
        .expect("writing HA_META");
}

/// The lab's configuration with `from` replaced by `to` (which must occur).
fn config_with(lab: &Lab, from: &str, to: &str) -> String {
    let text = lab.render_config(&lab.spec().health, &lab.spec().prefixes);
    assert!(text.contains(from), "{from:?} is not in the configuration");
    text.replacen(from, to, 1)
}

/// Natural causes: an ingress without native XDP (a bridge), a veth with fewer
/// receive queues than its peer's transmit queues (late, after XDP is attached to
/// the interfaces before them), a control socket path too long, a foreign route, a
/// route with its own MTU (early, before anything changes).
#[test]
fn natural_failures_leave_the_router_as_it_was() {
    if !require_root("natural_failures_leave_the_router_as_it_was") {
        return;
    }
    let mut lab = cold_lab("ha-s-real-");
    let router = ha_tests::lab::Node::Router;
    let ip = |lab: &Lab, args: &str| {
        let words: Vec<&str> = args.split_whitespace().collect();
        lab.ip(router, &words).unwrap_or_else(|e| panic!("{e:#}"));
    };
    ip(&lab, "link add ha-br0 type bridge");
    ip(
        &lab,
        "link add ha-q0 numtxqueues 1 numrxqueues 1 type veth peer name ha-q1 numtxqueues 4 numrxqueues 4",
    );
    for iface in ["ha-br0", "ha-q0", "ha-q1"] {
        ip(&lab, &format!("link set {iface} up"));
    }
    let good = std::fs::read_to_string(lab.config_path()).expect("the configuration");
    let before = lab.router_state().unwrap_or_else(|e| panic!("{e:#}"));

    let late = [
        (
            "ha-br0",
            "the driver of ha-br0 has no native XDP: use --xdp-mode skb",
            "Operation not supported",
        ),
        (
            "ha-q0",
            "ha-q0 has fewer receive queues than its veth peer has transmit queues",
            "No space left on device",
        ),
    ];
    for (iface, cause, errno) in late {
        let text = config_with(
            &lab,
            "ingress = [\"eth0\"]",
            &format!("ingress = [\"eth0\", \"{iface}\"]"),
        );
        lab.write_config(&text).expect("config");
        let log = lab
            .failed_start(&[], &[], START)
            .unwrap_or_else(|e| panic!("{e:#}"));
        let error = error_line(&log);
        eprintln!("ingress {iface}: {error}");
        let expected = [
            format!("cannot attach XDP to {iface} in native mode: {cause}"),
            errno.to_owned(),
            "detached XDP from eth1".to_owned(),
            "detached XDP from eth0".to_owned(),
            "(4 put back as they were, 0 of ours deleted)".to_owned(),
            format!("removed the {} pins it made", PINNED_MAPS.len()),
        ];
        assert_says(&error, iface, &expected);
        assert_unchanged(&lab, &before, &format!("ingress {iface}"), &log);
    }

    let long_dir = lab.dir().join("s".repeat(110));
    let long = long_dir.join("ha.sock");
    let text = config_with(
        &lab,
        &format!("control_socket = \"{}\"", lab.control_socket().display()),
        &format!("control_socket = \"{}\"", long.display()),
    );
    lab.write_config(&text).expect("config");
    let log = lab
        .failed_start(&[], &[], START)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let error = error_line(&log);
    eprintln!("a long socket path: {error}");
    assert!(
        error.contains(&format!(
            "is {} bytes long; a Unix socket path holds at most 107",
            long.as_os_str().len()
        )),
        "{error}"
    );
    assert!(!long_dir.exists(), "{} was created", long_dir.display());
    assert_unchanged(&lab, &before, "a long socket path", &log);
    lab.write_config(&good).expect("config");

    let refused = [
        (
            "192.168.1.128/27 dev eth1",
            "192.168.1.128/27 via 192.168.1.5 dev eth1",
            "will not take over the kernel route for 192.168.1.128/27",
        ),
        (
            "192.168.1.64/27 via 192.168.1.3 dev eth1 mtu 1400",
            "192.168.1.64/27 via 192.168.1.3 dev eth1",
            "it sets mtu, which the fast path cannot honour",
        ),
    ];
    for (route, classic, why) in refused {
        ip(&lab, &format!("route replace {route}"));
        let before = lab.router_state().unwrap_or_else(|e| panic!("{e:#}"));
        let log = lab
            .failed_start(&[], &[], START)
            .unwrap_or_else(|e| panic!("{e:#}"));
        let error = error_line(&log);
        eprintln!("{route}: {error}");
        assert!(
            error.contains(why) && !error.contains("the start-up failed"),
            "{error}"
        );
        assert_unchanged(&lab, &before, route, &log);
        ip(&lab, &format!("route replace {classic} proto boot"));
    }
    assert_unchanged(&lab, &before, "the natural failures", "");

    lab.start_controller(&[])
        .unwrap_or_else(|e| panic!("{e:#}"));
    lab.wait_steady(WAIT).unwrap_or_else(|e| panic!("{e:#}"));
    assert_agreement(&lab);
}

/// A LAN or ingress interface that is a VLAN sub-interface is refused before
/// anything changes. Skipped, saying so, where the kernel cannot make one (no 8021q
/// module: this machine's kernel).
#[test]
fn vlan_sub_interfaces_are_refused() {
    if !require_root("vlan_sub_interfaces_are_refused") {
        return;
    }
    let mut lab = cold_lab("ha-s-vlan-");
    let router = ha_tests::lab::Node::Router;
    let made = lab.ip(
        router,
        &[
            "link", "add", "link", "eth1", "name", "eth1.10", "type", "vlan", "id", "10",
        ],
    );
    if let Err(err) = made {
        eprintln!(
            "SKIPPED: vlan_sub_interfaces_are_refused: this kernel cannot make a VLAN \
             sub-interface (`ip link add link eth1 name eth1.10 type vlan id 10`: {err:#})"
        );
        return;
    }
    let before = lab.router_state().unwrap_or_else(|e| panic!("{e:#}"));
    let cases = [
        ("lan = \"eth1\"", "lan = \"eth1.10\"", "the LAN interface"),
        (
            "ingress = [\"eth0\"]",
            "ingress = [\"eth0\", \"eth1.10\"]",
            "an ingress interface",
        ),
    ];
    for (from, to, role) in cases {
        let text = config_with(&lab, from, to);
        lab.write_config(&text).expect("config");
        let log = lab
            .failed_start(&[], &[], START)
            .unwrap_or_else(|e| panic!("{e:#}"));
        let error = error_line(&log);
        eprintln!("{role}: {error}");
        assert!(
            error.contains(&format!(
                "`eth1.10` ({role}) is an 802.1Q VLAN sub-interface (VLAN 10 on `eth1`)"
            )) && error.contains("steer on the parent interface (`eth1`)"),
            "{error}"
        );
        assert_unchanged(&lab, &before, role, &log);
    }
}

/// Attach errors met in practice, produced here through the library: another XDP
/// program in the same mode (EBUSY) and in the other mode (EEXIST). (No native XDP
/// and missing veth queues are produced through `ha-user run` above; an MTU too
/// large needs a driver whose XDP is not multi-buffer aware, which veth is.)
#[test]
fn attach_errors_name_the_other_program() {
    if !require_root("attach_errors_name_the_other_program") {
        return;
    }
    let pin_dir =
        std::path::PathBuf::from(format!("/sys/fs/bpf/ha-s-errno-{}", std::process::id()));
    let dir = pin_dir.clone();
    let results = in_private_netns(move || {
        let pin_dir = dir;
        let veth = Veth::create("ha-s-e0", [2, 0, 0, 0, 0, 1], "ha-s-e1");
        let mut other = Ebpf::load(ha_user::EBPF_OBJECT).expect("the object");
        let pass: &mut Xdp = other
            .program_mut(PROG_PASS)
            .expect("ha_pass")
            .try_into()
            .expect("ha_pass is XDP");
        pass.load().expect("loading ha_pass");
        pass.attach(veth.name(), AyaXdpMode::Driver)
            .expect("attaching ha_pass");
        let interface = Interface {
            name: veth.name().to_owned(),
            index: veth.ifindex,
            mac: Mac([2, 0, 0, 0, 0, 1]),
            mtu: 1500,
            xdp_prog: None,
            vlan: None,
        };
        let mut loaded = Loaded::load(&pin_dir, false).expect("loading ha_steer");
        let same = loaded.attach(&interface, ha_user::model::XdpMode::Native);
        let other_mode = loaded.attach(&interface, ha_user::model::XdpMode::Skb);
        drop(loaded);
        let removed = datapath::detach_all(&pin_dir);
        (same.err(), other_mode.err(), removed)
    });
    let (same, other_mode, removed) = results;
    removed.expect("removing the test's pins");
    for (err, cause, says) in [
        (
            same,
            AttachCause::OtherProgram,
            "another XDP program is attached to ha-s-e0 (see `bpftool net`)",
        ),
        (
            other_mode,
            AttachCause::OtherMode,
            "another XDP program is attached to ha-s-e0 in the other mode",
        ),
    ] {
        let err = err.expect("the attach must fail");
        let matched = matches!(&err, DatapathError::Attach { cause: c, .. } if *c == cause);
        let message = format!("{:#}", anyhow::Error::new(err));
        eprintln!("{message}");
        assert!(matched, "expected {cause:?}: {message}");
        assert!(message.contains(says), "{message}");
    }
}
