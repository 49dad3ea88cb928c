//! The CLI against a fake controller (no root): it speaks the versioned protocol, it
//! says so when the controller speaks another version, and it finds the control
//! socket in a configuration file that does not validate.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::net::UnixListener,
    path::{Path, PathBuf},
    process::{Command, Output},
    thread::JoinHandle,
};

use ha_user::proto::{ErrorKind, ErrorReply};

/// A directory of this test's own, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("ha-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Dir(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A controller that answers one connection with `answer`; returns the request line
/// it read.
fn fake_controller(socket: &Path, answer: &'static str) -> JoinHandle<String> {
    let listener = UnixListener::bind(socket).expect("bind");
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("a connection");
        let mut request = String::new();
        BufReader::new(&stream)
            .read_line(&mut request)
            .expect("a request");
        (&stream)
            .write_all(format!("{answer}\n").as_bytes())
            .expect("answer");
        request
    })
}

fn ha_user(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ha-user"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .expect("running ha-user")
}

fn config_with_socket(dir: &Dir, extra: &str) -> (PathBuf, PathBuf) {
    let socket = dir.0.join("ha.sock");
    let config = dir.0.join("ha.toml");
    std::fs::write(
        &config,
        format!("control_socket = \"{}\"\n{extra}", socket.display()),
    )
    .expect("write config");
    (config, socket)
}

#[test]
fn a_controller_of_another_protocol_version_is_named() {
    let dir = Dir::new("newer");
    let (config, socket) = config_with_socket(&dir, "");
    let server = fake_controller(&socket, r#"{"protocol":2,"ok":{"anything":[]}}"#);
    let output = ha_user(&config, &["status"]);
    let request = server.join().expect("the fake controller");
    assert!(
        request.starts_with(r#"{"protocol":1,"request":{"command":"status"}}"#),
        "{request}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("the controller speaks control protocol 2")
            && stderr.contains("speaks protocol 1"),
        "{stderr}"
    );
}

#[test]
fn a_controller_from_before_the_versioned_protocol_is_named() {
    let dir = Dir::new("older");
    let (config, socket) = config_with_socket(&dir, "");
    let server = fake_controller(
        &socket,
        r#"{"error":"malformed request: missing field `command`"}"#,
    );
    let output = ha_user(&config, &["drain", "host2"]);
    server.join().expect("the fake controller");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("older control protocol") && stderr.contains("speaks protocol 1"),
        "{stderr}"
    );
}

#[test]
fn the_socket_is_found_in_a_file_that_does_not_validate() {
    let dir = Dir::new("lenient");
    // `lan` of the wrong type and an unknown key: the controller would refuse this
    // file, the CLI still reaches it.
    let (config, socket) = config_with_socket(&dir, "lan = 5\nnot_a_key = true\n");
    let server = fake_controller(
        &socket,
        r#"{"protocol":1,"error":{"kind":"unknown-host","message":"unknown host `host9` (hosts: host1)"}}"#,
    );
    let output = ha_user(&config, &["drain", "host9", "--json"]);
    server.join().expect("the fake controller");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("unknown host `host9` (hosts: host1)"),
        "{stderr}"
    );
    // With --json the refusal is printed as the controller sent it.
    let printed: ErrorReply =
        serde_json::from_slice(&output.stdout).expect("the error object on stdout");
    assert_eq!(printed.kind, ErrorKind::UnknownHost, "{printed:?}");
}

/// `check-config` refuses what `run` would: a control socket path over a regular
/// file (never deleted), a state file that is another program's; it passes a
/// configuration whose paths are free.
#[test]
fn check_config_refuses_paths_that_are_not_ha_s() {
    let dir = Dir::new("paths");
    let victim = dir.0.join("passwd");
    std::fs::write(&victim, "root:x:0:0::/root:/bin/sh\n").expect("victim");
    let theirs = dir.0.join("other.json");
    std::fs::write(&theirs, "{\"name\": \"other\"}\n").expect("their file");
    let hosts = "[[host]]\nname = \"host1\"\naddress = \"10.9.9.2\"\n\
                 [[prefix]]\ncidr = \"10.9.8.0/24\"\nowner = \"host1\"\n";
    let cases = [
        (
            "socket",
            format!(
                "control_socket = \"{}\"\nstate_file = \"{}\"\n{hosts}",
                victim.display(),
                dir.0.join("state.json").display()
            ),
            Some("exists and is not a socket (a regular file)"),
        ),
        (
            "state",
            format!(
                "control_socket = \"{}\"\nstate_file = \"{}\"\n{hosts}",
                dir.0.join("ha.sock").display(),
                theirs.display()
            ),
            Some("is not an ha state file (it has the key `name`"),
        ),
        (
            "free",
            format!(
                "control_socket = \"{}\"\nstate_file = \"{}\"\n{hosts}",
                dir.0.join("ha.sock").display(),
                dir.0.join("state.json").display()
            ),
            None,
        ),
    ];
    for (name, text, refusal) in cases {
        let config = dir.0.join(format!("{name}.toml"));
        std::fs::write(&config, text).expect("config");
        let output = ha_user(&config, &["check-config"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        match refusal {
            Some(says) => assert!(
                !output.status.success() && stderr.contains(says),
                "{name}: expected a refusal saying {says:?}: {output:?}"
            ),
            None => assert!(output.status.success(), "{name}: {output:?}"),
        }
    }
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "root:x:0:0::/root:/bin/sh\n"
    );
    assert_eq!(
        std::fs::read_to_string(&theirs).expect("their file"),
        "{\"name\": \"other\"}\n"
    );
}
