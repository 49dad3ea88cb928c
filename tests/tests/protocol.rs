//! The control protocol of a live controller (root, in the lab): golden JSON of its
//! answers and events, the CLI's `--json` equal to what the controller sent, a
//! client of another protocol version told so, and pins of another map layout
//! refused with the remedy.
//!
//! Golden files (`golden/*.json`) pin the shape of the wire format: field names,
//! types, tags and every value that does not depend on timing. Before a reply is
//! compared it is normalised: every number but `protocol` becomes 0 (sequence numbers, timestamps,
//! counters, round trips, detection and switch times); the lab's work directory and
//! pin directory become `<lab>` and `<pins>`; `last_error` becomes null (a probe may
//! or may not have failed once). `HA_UPDATE_GOLDEN=1` rewrites the files instead of
//! comparing: review the diff before committing it.

use std::{
    collections::BTreeSet,
    io::{BufRead as _, BufReader, Write as _},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use ha_tests::{
    lab::{Lab, XdpMode, net},
    root::require_root,
};
use ha_user::proto::{
    ErrorKind, ErrorReply, Event, EventRecord, Reply, Stats, Status, events::StreamItem,
};
use serde_json::Value;

mod common;

use common::build;

const WAIT: Duration = Duration::from_secs(5);
const P64: &str = "192.168.1.64/27";

fn spec(prefix: &str) -> ha_tests::lab::LabSpec {
    common::spec(prefix, XdpMode::Native)
}

/// One raw line to the controller, its raw answer line.
fn raw(socket: &Path, line: &str) -> String {
    let mut stream = UnixStream::connect(socket).expect("connecting to the controller");
    stream
        .write_all(format!("{line}\n").as_bytes())
        .expect("sending");
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .expect("reading the answer");
    answer
}

/// `value` with what depends on timing or on the machine replaced (see the module
/// documentation).
fn normalise(value: &Value, lab: &Lab) -> Value {
    let dir = lab.dir().to_string_lossy().into_owned();
    let pins = lab.pin_dir().to_string_lossy().into_owned();
    match value {
        Value::Number(_) => Value::from(0),
        Value::String(text) => Value::from(text.replace(&dir, "<lab>").replace(&pins, "<pins>")),
        Value::Array(items) => items.iter().map(|v| normalise(v, lab)).collect(),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(key, v)| {
                    let v = match key.as_str() {
                        "last_error" => Value::Null,
                        // The version is the point: kept.
                        "protocol" => v.clone(),
                        _ => normalise(v, lab),
                    };
                    (key.clone(), v)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

fn golden_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Compares `value` with the golden file `name` (or rewrites it with
/// `HA_UPDATE_GOLDEN=1`).
fn assert_golden(name: &str, value: &Value) {
    let path = golden_path(name);
    let mut text = serde_json::to_string_pretty(value).expect("serializable");
    text.push('\n');
    if std::env::var_os("HA_UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&path, &text).expect("writing the golden file");
        eprintln!("rewrote {}", path.display());
        return;
    }
    let golden = std::fs::read_to_string(&path).unwrap_or_else(|err| {
        panic!(
            "{}: {err}; HA_UPDATE_GOLDEN=1 writes it from this run:\n{text}",
            path.display()
        )
    });
    assert!(
        golden == text,
        "{} differs from this run (HA_UPDATE_GOLDEN=1 rewrites it):\n--- golden\n{golden}\n--- this run\n{text}",
        path.display()
    );
}

/// The JSON of a reply line, decoded as the protocol's type first: unknown fields
/// refused.
fn decoded<T: serde::de::DeserializeOwned>(line: &str) -> (Reply<T>, Value) {
    let reply = Reply::<T>::decode(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let value = serde_json::from_str(line).expect("JSON");
    (reply, value)
}

/// Status, stats, an error and a run of events, captured from the controller: they
/// decode into the protocol's types, equal the CLI's `--json`, and match the golden
/// files.
#[test]
fn golden_json_from_a_live_controller() {
    if !require_root("golden_json_from_a_live_controller") {
        return;
    }
    let mut lab = build(spec("ha-p-gold-"));
    let socket = lab.control_socket().to_owned();
    // Every VIP verdict decided (the first round of VIP checks takes an interval), so
    // that the status is the same in every run.
    let deadline = std::time::Instant::now() + WAIT;
    let undecided = |status: &Status| {
        status.hosts.iter().any(|h| {
            h.vips.is_empty()
                || h.vips
                    .iter()
                    .any(|v| v.verdict != ha_user::model::VipVerdict::Serving)
        })
    };
    while lab.status().map(|s| undecided(&s)).unwrap_or(true) {
        assert!(
            std::time::Instant::now() < deadline,
            "VIP verdicts undecided: {:?}",
            lab.status()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // `ha-user events` beside the lab's own subscription: both from the first event.
    let mut cli_events = Command::new(&lab.spec().bins.ha_user)
        .arg("--config")
        .arg(lab.config_path())
        .args(["events", "--json", "--since", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("ha-user events");
    let cli_stdout = cli_events.stdout.take().expect("piped");
    let cli_lines = std::thread::spawn(move || {
        BufReader::new(cli_stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });

    // status
    let line = raw(&socket, r#"{"protocol":1,"request":{"command":"status"}}"#);
    let (reply, status) = decoded::<Status>(&line);
    assert!(matches!(reply, Reply::Ok(_)), "{line}");
    let cli: Value = lab.ha_user_json::<Status>(&["status"]).map_or_else(
        |e| panic!("{e:#}"),
        |s| serde_json::to_value(s).expect("serializable"),
    );
    assert_eq!(
        normalise(&cli, &lab),
        normalise(&status["ok"], &lab),
        "ha-user status --json is the controller's answer"
    );
    assert_golden("status.json", &normalise(&status, &lab));

    // stats
    let line = raw(&socket, r#"{"protocol":1,"request":{"command":"stats"}}"#);
    let (reply, stats) = decoded::<Stats>(&line);
    assert!(matches!(reply, Reply::Ok(_)), "{line}");
    let cli: Value = lab.ha_user_json::<Stats>(&["stats"]).map_or_else(
        |e| panic!("{e:#}"),
        |s| serde_json::to_value(s).expect("serializable"),
    );
    assert_eq!(normalise(&cli, &lab), normalise(&stats["ok"], &lab));
    assert_golden("stats.json", &normalise(&stats, &lab));

    // an error
    let line = raw(
        &socket,
        &format!(
            r#"{{"protocol":1,"request":{{"command":"set-owner","prefix":"{P64}","host":"host9","force":false}}}}"#
        ),
    );
    let (reply, error) = decoded::<Status>(&line);
    let Reply::Error(refusal) = reply else {
        panic!("set-owner to host9 should be refused: {line}");
    };
    assert_eq!(refusal.kind, ErrorKind::UnknownHost);
    let output = lab
        .ha_user(&["set-owner", P64, "host9", "--json"])
        .expect("ha-user set-owner");
    assert!(!output.status.success());
    let printed: ErrorReply = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)));
    assert_eq!(
        printed, refusal,
        "ha-user --json prints the controller's error"
    );
    assert_golden("error.json", &normalise(&error, &lab));

    // Unknown fields are refused, in the envelope and inside the answer.
    for (what, changed) in [
        (
            "envelope",
            line.replacen("{\"protocol\":1,", "{\"protocol\":1,\"extra\":0,", 1),
        ),
        (
            "answer",
            line.replacen("\"kind\":", "\"extra\":0,\"kind\":", 1),
        ),
    ] {
        assert_ne!(changed, line);
        assert!(
            Reply::<Status>::decode(&changed).is_err(),
            "an unknown field in the {what} must be refused: {changed}"
        );
    }

    // A run of events: admin commands, a good and a bad reload, the shutdown.
    let mark = lab.event_mark().expect("the event stream");
    let moves = lab.owner_changes().expect("events").len();
    lab.ha_user_json::<ha_user::proto::ChangeReport>(&["drain", "host2"])
        .unwrap_or_else(|e| panic!("{e:#}"));
    lab.wait_for_owner(net(P64), Some("host1"), moves, WAIT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    // Nothing is connected: the move ends and the graceful drain completes at the
    // next sweep of the flow table.
    lab.wait_for_event(mark, WAIT, "drain-finished", |r| {
        matches!(r.event, Event::DrainFinished { .. }).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    let undrained = lab.event_mark().expect("events");
    lab.ha_user_json::<ha_user::proto::ChangeReport>(&["undrain", "host2"])
        .unwrap_or_else(|e| panic!("{e:#}"));
    lab.wait_for_owner(net(P64), Some("host2"), moves, WAIT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    lab.wait_for_event(undrained, WAIT, "move-ended", |r| {
        matches!(r.event, Event::MoveEnded { .. }).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    let reloaded = |record: &EventRecord| match record.event {
        Event::ReloadApplied { .. } | Event::ReloadRefused { .. } => Some(()),
        _ => None,
    };
    let before = lab.event_mark().expect("events");
    lab.reload_controller().expect("SIGHUP");
    lab.wait_for_event(before, WAIT, "reload", reloaded)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let good = std::fs::read_to_string(lab.config_path()).expect("config");
    lab.write_config(&good.replacen("owner = \"host3\"", "owner = \"host9\"", 1))
        .expect("write");
    let before = lab.event_mark().expect("events");
    lab.reload_controller().expect("SIGHUP");
    lab.wait_for_event(before, WAIT, "reload", reloaded)
        .unwrap_or_else(|e| panic!("{e:#}"));
    lab.write_config(&good).expect("write");
    let status = lab.stop_controller().expect("SIGTERM");
    assert!(status.success(), "the controller exited with {status}");
    lab.wait_for_event(mark, WAIT, "shutdown", |r| {
        matches!(r.event, Event::Shutdown { .. }).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    let records = lab.events().expect("events").records().expect("events");
    assert!(
        matches!(
            records.last().map(|r| &r.event),
            Some(Event::Shutdown { .. })
        ),
        "the last event is the shutdown: {:?}",
        records.last()
    );

    // `ha-user events --json` printed exactly the controller's events.
    let exited = cli_events.wait().expect("ha-user events");
    assert!(exited.success(), "ha-user events exited with {exited}");
    let printed: Vec<EventRecord> = cli_lines
        .join()
        .expect("reader")
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert_eq!(
        printed, records,
        "ha-user events --json is the event stream"
    );

    // The golden run: the start-up, each host's first health change (by name: their
    // order is the probes'), then everything since the mark but the timing-dependent
    // health and MAC events.
    let serving = records
        .iter()
        .position(|r| matches!(r.event, Event::Serving { .. }))
        .expect("a serving event");
    let mut run: Vec<&EventRecord> = records[..=serving].iter().collect();
    let mut first_health: Vec<&EventRecord> = Vec::new();
    let mut seen = BTreeSet::new();
    for record in &records[serving..] {
        if let Event::HealthChanged { host, .. } = &record.event
            && seen.insert(host.clone())
        {
            first_health.push(record);
        }
    }
    first_health.sort_by_key(|r| match &r.event {
        Event::HealthChanged { host, .. } => host.clone(),
        _ => String::new(),
    });
    run.extend(first_health);
    run.extend(records[mark..].iter().filter(|r| {
        !matches!(
            r.event,
            Event::HealthChanged { .. } | Event::MacLearned { .. }
        )
    }));
    // As the stream carries them.
    let lines: Vec<Value> = run
        .iter()
        .map(|r| {
            let item = Reply::Ok(StreamItem::Event((*r).clone()));
            normalise(&serde_json::to_value(item).expect("serializable"), &lab)
        })
        .collect();
    assert_golden("events.json", &Value::Array(lines));
}

/// A request of another protocol version is answered with an error naming both
/// versions; one without a version (an older CLI) in the shape that CLI reads.
#[test]
fn a_client_of_another_version_is_told() {
    if !require_root("a_client_of_another_version_is_told") {
        return;
    }
    let lab = build(spec("ha-p-version-"));
    let socket = lab.control_socket();
    let line = raw(socket, r#"{"protocol":2,"request":{"command":"status"}}"#);
    let Reply::Error(refusal) = Reply::<Status>::decode(&line).expect("our protocol") else {
        panic!("a request of protocol 2 should be refused: {line}");
    };
    assert_eq!(refusal.kind, ErrorKind::ProtocolMismatch, "{line}");
    assert!(
        refusal
            .message
            .contains("speaks control protocol 1, the request protocol 2"),
        "{}",
        refusal.message
    );
    let line = raw(socket, r#"{"command":"status"}"#);
    let legacy: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&line).expect("the shape an older CLI reads");
    assert!(
        legacy
            .get("error")
            .is_some_and(|e| e.contains("without a protocol version")),
        "{line}"
    );
    // The controller serves on.
    lab.status().unwrap_or_else(|e| panic!("{e:#}"));
}

/// Pins of another map layout, or pins without one (an older `ha`), are refused with
/// both layouts and the remedy named, before anything changes; `--reset` starts
/// afresh.
#[test]
fn pins_of_another_layout_are_refused() {
    if !require_root("pins_of_another_layout_are_refused") {
        return;
    }
    let mut lab = build(spec("ha-p-layout-"));
    let routes = lab.kernel_routes().expect("routes");
    lab.kill_controller().expect("SIGKILL");
    let meta_pin = lab.pin_dir().join(ha_common::MAP_META);

    // Another layout in HA_META.
    {
        use aya::maps::{Array, Map, MapData};
        let data = MapData::from_pin(&meta_pin).expect("HA_META is pinned");
        let mut meta: Array<MapData, ha_common::Meta> = Map::from_map_data(data)
            .and_then(Array::try_from)
            .expect("HA_META is an array of Meta");
        let other = ha_common::Meta {
            layout: 4242,
            _pad: 0,
        };
        meta.set(0, other, 0).expect("writing HA_META");
    }
    let err = lab
        .start_controller(&[])
        .expect_err("pins of layout 4242 must be refused");
    let message = format!("{err:#}");
    assert!(
        message.contains("have map layout 4242")
            && message.contains(&format!("needs map layout {}", ha_common::LAYOUT_VERSION))
            && message.contains("ha-user run --reset"),
        "{message}"
    );
    assert_eq!(
        lab.kernel_routes().expect("routes"),
        routes,
        "nothing changed"
    );

    // No HA_META at all: pins of a version before the layout was recorded.
    std::fs::remove_file(&meta_pin).expect("removing the HA_META pin");
    let err = lab
        .start_controller(&[])
        .expect_err("pins without a layout must be refused");
    let message = format!("{err:#}");
    assert!(
        message.contains("have no layout version") && message.contains("ha-user run --reset"),
        "{message}"
    );

    lab.start_controller(&["--reset"])
        .unwrap_or_else(|e| panic!("{e:#}"));
    lab.wait_steady(WAIT).unwrap_or_else(|e| panic!("{e:#}"));
    common::assert_agreement(&lab);
}
