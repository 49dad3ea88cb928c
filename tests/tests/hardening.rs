//! A live controller under abuse (root, in the lab): what a local user with the
//! control socket, or anyone on the LAN with the metrics endpoint, can throw at it
//! must neither stall the answers to well-formed requests nor mark a host down.
//!
//! Each test builds its own lab (skb mode: the point is the controller, not the
//! fast path). Run one at a time (`--test-threads=1`, as `cargo xtask test` does).

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    os::unix::{fs::MetadataExt as _, net::UnixStream},
    path::{Path, PathBuf},
    process::Output,
    time::{Duration, Instant},
};

use ha_tests::{
    lab::{Lab, Node, XdpMode, limits, ns},
    root::require_root,
};
use ha_user::{model::Health, proto::Status};

mod common;

use common::build;

/// The descriptor limit the controller runs under in these tests.
const NOFILE: u64 = 256;
/// The longest a well-formed request may wait for its answer under abuse.
const ANSWER: Duration = Duration::from_secs(2);
/// The metrics address on the router's LAN side.
const METRICS: &str = "192.168.1.1:9120";

/// Raises this process's descriptor limit so the test can hold the connections.
fn raise_own_limit(to: u64) {
    limits::raise_own_limit(to).unwrap_or_else(|e| panic!("{e:#}"));
}

/// Sets the controller's descriptor limit (soft and hard) with prlimit(1).
fn limit_descriptors(pid: u32, nofile: u64) {
    limits::limit_descriptors(pid, nofile).unwrap_or_else(|e| panic!("{e:#}"));
}

/// `status` on a raw connection, with its round trip; an error if no answer came
/// within `timeout`.
fn timed_status(socket: &Path, timeout: Duration) -> Result<(Status, Duration), String> {
    limits::timed_status(socket, timeout).map_err(|e| format!("{e:#}"))
}

/// A metrics scrape from the LAN client, answered within `timeout`.
fn scrape(lab: &Lab, timeout: Duration) -> Result<String, String> {
    ns::in_netns(&lab.ns(Node::LanClient), move || {
        let addr = METRICS.parse().map_err(|e| format!("{e}"))?;
        let mut stream =
            TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: router\r\n\r\n")
            .map_err(|e| format!("send: {e}"))?;
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .map_err(|e| format!("no answer within {timeout:?}: {e}"))?;
        Ok(answer)
    })
    .map_err(|e| format!("{e:#}"))?
}

/// At a limit of 256 descriptors, 1,000 idle or half-sent control connections and
/// 600 idle TCP connections to the metrics endpoint from the LAN: every `status`
/// is answered within 2 s, no host is marked down, the endpoint still answers, and
/// the log is not flooded (accept errors are paced, not spun on).
#[test]
fn idle_connections_at_a_low_descriptor_limit_stall_nothing() {
    if !require_root("idle_connections_at_a_low_descriptor_limit_stall_nothing") {
        return;
    }
    let mut spec = common::spec("ha-h-fd-", XdpMode::Skb);
    spec.start_controller = false;
    let mut lab = build(spec);
    let text = lab.render_config(&lab.spec().health, &lab.spec().prefixes);
    let text = text.replacen(
        "\n[health]",
        &format!("metrics = \"{METRICS}\"\n\n[health]"),
        1,
    );
    lab.write_config(&text).expect("config");
    lab.start_controller(&[])
        .unwrap_or_else(|e| panic!("{e:#}"));
    lab.wait_steady(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let pid = lab.controller().expect("controller").pid();
    limit_descriptors(pid, NOFILE);
    raise_own_limit(8192);
    let socket = lab.control_socket().to_owned();
    let downs_before = lab
        .health_changes()
        .expect("events")
        .iter()
        .filter(|(_, health, _)| *health == Health::Down)
        .count();
    let log_before = lab.controller_log().len();

    let mut control = Vec::new();
    for n in 0..1000 {
        let mut stream =
            UnixStream::connect(&socket).unwrap_or_else(|e| panic!("control connection {n}: {e}"));
        if n % 2 == 1 {
            stream
                .write_all(b"{\"protocol\":1,\"request\":{\"comm")
                .unwrap_or_else(|e| panic!("half a request on connection {n}: {e}"));
        }
        control.push(stream);
    }
    let metrics: Vec<TcpStream> = ns::in_netns(&lab.ns(Node::LanClient), || {
        (0..600)
            .map_while(|_| TcpStream::connect_timeout(&METRICS.parse().ok()?, ANSWER).ok())
            .collect()
    })
    .expect("the LAN client's namespace");
    eprintln!(
        "holding {} control and {} metrics connections",
        control.len(),
        metrics.len()
    );

    // Long enough for the health checks to have marked every host down many times
    // over (fall × interval is 30 ms) had the probes failed.
    let mut worst = Duration::ZERO;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let (status, took) =
            timed_status(&socket, ANSWER).unwrap_or_else(|e| panic!("status under abuse: {e}"));
        worst = worst.max(took);
        for host in &status.hosts {
            assert_eq!(
                host.health,
                Health::Up,
                "{} is not up under abuse: {host:?}",
                host.name
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("slowest status under abuse: {worst:?}");
    let answer = scrape(&lab, ANSWER).unwrap_or_else(|e| panic!("metrics under abuse: {e}"));
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");

    let downs: Vec<String> = lab
        .health_changes()
        .expect("events")
        .iter()
        .filter(|(_, health, _)| *health == Health::Down)
        .skip(downs_before)
        .map(|(host, _, record)| format!("{host}: {record:?}"))
        .collect();
    assert!(downs.is_empty(), "hosts marked down:\n{}", downs.join("\n"));
    let logged = lab.controller_log().len() - log_before;
    assert!(
        logged < 64 * 1024,
        "{logged} bytes of log in 5 s of abuse:\n{}",
        &lab.controller_log()[log_before..log_before + logged.min(4096)]
    );
    drop(control);
    drop(metrics);
    lab.stop_controller().expect("the controller stops");
}

/// How long a start-up that must be refused may take.
const REFUSED: Duration = Duration::from_secs(10);

/// A cold lab (the classic static routes, no controller) in skb mode.
fn cold_lab(prefix: &str) -> Lab {
    let mut spec = common::spec(prefix, XdpMode::Skb);
    spec.start_controller = false;
    build(spec)
}

/// `ha-user --config CONFIG ARGS` in the router's namespace, to its end.
fn ha_user_on_router(lab: &Lab, config: &Path, args: &[&str]) -> Output {
    let ha_user = lab.spec().bins.ha_user.to_string_lossy().into_owned();
    let config = config.to_string_lossy().into_owned();
    let mut all = vec![ha_user.as_str(), "--config", config.as_str()];
    all.extend_from_slice(args);
    ns::command(&lab.ns(Node::Router), &all)
        .output()
        .expect("running ha-user on the router")
}

/// `ha-user --config CONFIG run` in the router's namespace, which must fail within
/// [`REFUSED`]: its log. A run still going then is killed and fails the test.
fn refused_run(lab: &Lab, config: &Path, name: &str) -> String {
    let ha_user = lab.spec().bins.ha_user.to_string_lossy().into_owned();
    let config = config.to_string_lossy().into_owned();
    let mut proc = lab
        .spawn(
            Node::Router,
            name,
            &[ha_user.as_str(), "--config", config.as_str(), "run"],
        )
        .expect("starting ha-user run");
    match proc.wait_timeout(REFUSED) {
        Ok(status) => {
            assert!(
                !status.success(),
                "{name}: exited with success:\n{}",
                proc.log()
            );
            proc.log()
        }
        Err(err) => {
            let _ = proc.kill();
            panic!(
                "{name}: still running after {REFUSED:?} ({err:#}); its log:\n{}",
                proc.log()
            );
        }
    }
}

/// Writes `text` to `<lab dir>/<name>.toml`.
fn other_config(lab: &Lab, name: &str, text: &str) -> PathBuf {
    let path = lab.dir().join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("writing a configuration");
    path
}

/// A prefix that contains the router's own LAN address (XDP would take the health
/// checks' replies) and a host at the router's own address (the check would probe
/// the router itself) are refused by `check-config` and by `run`, naming the prefix
/// or host and the address.
#[test]
fn the_routers_own_address_is_refused_in_prefixes_and_hosts() {
    if !require_root("the_routers_own_address_is_refused_in_prefixes_and_hosts") {
        return;
    }
    let lab = cold_lab("ha-h-own-");
    let good = lab.render_config(&lab.spec().health, &lab.spec().prefixes);
    let cases = [
        (
            "prefix",
            "\n[[prefix]]\ncidr = \"192.168.1.0/31\"\nowner = \"host1\"\n",
            [
                "192.168.1.0/31",
                "contains 192.168.1.1, an address of the router (eth1)",
            ],
        ),
        (
            "host",
            "\n[[host]]\nname = \"self\"\naddress = \"192.168.1.1\"\n",
            [
                "host[4].address",
                "192.168.1.1 is an address of the router (eth1)",
            ],
        ),
    ];
    for (what, extra, says) in cases {
        let path = other_config(&lab, what, &format!("{good}{extra}"));
        let checked = ha_user_on_router(&lab, &path, &["check-config"]);
        let stderr = String::from_utf8_lossy(&checked.stderr);
        eprintln!("check-config, {what}: {stderr}");
        assert!(
            !checked.status.success(),
            "check-config accepted the router's own address in a {what}:\n{}",
            String::from_utf8_lossy(&checked.stdout)
        );
        let log = refused_run(&lab, &path, &format!("own-{what}"));
        for text in [stderr.as_ref(), log.as_str()] {
            for part in says {
                assert!(text.contains(part), "{what}: should say {part:?}:\n{text}");
            }
        }
    }
}

/// A second controller with its own control socket and state file but the pins or
/// the LAN of a running one refuses to start, and `detach` with that configuration
/// refuses too; the running controller is unaffected.
#[test]
fn a_second_controller_on_the_same_data_path_refuses() {
    if !require_root("a_second_controller_on_the_same_data_path_refuses") {
        return;
    }
    let mut lab = build(common::spec("ha-h-two-", XdpMode::Skb));
    lab.wait_steady(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let good = lab.render_config(&lab.spec().health, &lab.spec().prefixes);
    let other_dir = lab.dir().join("other");
    std::fs::create_dir_all(&other_dir).expect("other dir");
    let socket = lab.control_socket().display().to_string();
    let state = lab.dir().join("state.json").display().to_string();
    assert!(good.contains(&socket) && good.contains(&state), "{good}");
    let apart = good
        .replace(&socket, &other_dir.join("ha.sock").display().to_string())
        .replace(&state, &other_dir.join("state.json").display().to_string());
    let pins = lab.pin_dir().display().to_string();
    let cases = [
        ("same-pins", apart.clone(), "the pins"),
        (
            "same-lan",
            apart.replace(&pins, &format!("{pins}-other")),
            "the LAN interface eth1",
        ),
    ];
    let pinned = || {
        let mut names: Vec<String> = std::fs::read_dir(lab.pin_dir())
            .expect("the pin directory")
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        names.sort();
        names
    };
    let pins_before = pinned();
    for (name, text, says) in cases {
        let path = other_config(&lab, name, &text);
        let log = refused_run(&lab, &path, name);
        eprintln!("{name}: {}", log.lines().last().unwrap_or(""));
        assert!(
            log.contains("another ha-user run") && log.contains(says),
            "{name}: should say another ha-user run holds {says}:\n{log}"
        );
        let detached = ha_user_on_router(&lab, &path, &["detach"]);
        let stderr = String::from_utf8_lossy(&detached.stderr);
        eprintln!("detach, {name}: {stderr}");
        assert!(
            !detached.status.success() && stderr.contains("a controller is running"),
            "detach -c {name} under a running controller: {detached:?}"
        );
        assert_eq!(pinned(), pins_before, "{name}: the pins changed");
    }
    assert!(
        !other_dir.join("ha.sock").exists(),
        "a second control socket is listening"
    );
    lab.wait_steady(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("the first controller after the attempts: {e:#}"));
    common::assert_agreement(&lab);
}

/// A pin directory another user made (bpffs is world-writable) is refused before
/// anything changes, naming it and its owner; one made by the controller is root's,
/// mode 0700.
#[test]
fn a_pin_directory_of_another_user_is_refused() {
    if !require_root("a_pin_directory_of_another_user_is_refused") {
        return;
    }
    let mut lab = cold_lab("ha-h-pins-");
    let pin_dir = lab.pin_dir().to_owned();
    let _ = std::fs::remove_dir(&pin_dir);
    std::fs::create_dir(&pin_dir).expect("creating the pin directory");
    let c_path = std::ffi::CString::new(pin_dir.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(
        unsafe { libc::chown(c_path.as_ptr(), 65534, 65534) },
        0,
        "chown"
    );
    let before = lab.router_state().unwrap_or_else(|e| panic!("{e:#}"));
    let log = refused_run(&lab, lab.config_path(), "foreign-pins");
    eprintln!("{}", log.lines().last().unwrap_or(""));
    let says = format!("{} is owned by uid 65534", pin_dir.display());
    assert!(log.contains(&says), "should say {says:?}:\n{log}");
    let after = lab.router_state().unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        after.differences(&before).is_empty(),
        "the refused start changed the router: {:?}",
        after.differences(&before)
    );
    let left: Vec<_> = std::fs::read_dir(&pin_dir).expect("pin dir").collect();
    assert!(
        left.is_empty(),
        "pinned into the foreign directory: {left:?}"
    );
    std::fs::remove_dir(&pin_dir).expect("removing the foreign directory");

    lab.start_controller(&[])
        .unwrap_or_else(|e| panic!("{e:#}"));
    let meta = std::fs::metadata(&pin_dir).expect("the pin directory");
    assert_eq!(
        (meta.uid(), meta.mode() & 0o7777),
        (0, 0o700),
        "the pin directory the controller made"
    );
    lab.stop_controller().expect("the controller stops");
}

/// A local user who is not root gets a CLI answer that says the controller needs
/// root, not a bare "Permission denied" (the control socket is mode 0600, root's).
#[test]
fn a_cli_call_without_root_says_it_needs_root() {
    if !require_root("a_cli_call_without_root_says_it_needs_root") {
        return;
    }
    let lab = build(common::spec("ha-h-nonroot-", XdpMode::Skb));
    let ha_user = lab.spec().bins.ha_user.to_string_lossy().into_owned();
    let config = lab.config_path().to_string_lossy().into_owned();
    let out = ns::command(
        &lab.ns(Node::Router),
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            ha_user.as_str(),
            "--config",
            config.as_str(),
            "status",
        ],
    )
    .output()
    .expect("running ha-user status as uid 65534");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{}", stderr.trim_end());
    assert!(!out.status.success(), "status as uid 65534 succeeded");
    assert!(
        stderr.contains("needs root"),
        "should say it needs root:\n{stderr}"
    );
    let socket = lab.control_socket().display().to_string();
    assert!(stderr.contains(&socket), "should name {socket}:\n{stderr}");
}
