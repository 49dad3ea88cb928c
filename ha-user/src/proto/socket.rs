//! The control socket: a Unix stream socket (mode 0600, root only) speaking one JSON
//! request line and one JSON response line per connection. The server hands each
//! request to the controller's main loop and answers when the loop has applied it,
//! so a command returns only after the data-path map is written.

use std::{
    io,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot},
};
use tracing::{debug, warn};

/// Longest request line accepted; anything longer is refused, not buffered.
const MAX_REQUEST: usize = 64 * 1024;

/// What the CLI asks of a running controller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    SetOwner {
        prefix: String,
        host: String,
        force: bool,
    },
    ClearOwner {
        prefix: String,
    },
    Drain {
        host: String,
    },
    Undrain {
        host: String,
    },
    Status,
    Stats,
}

/// The controller's answer: a JSON document for the CLI to print, or an error that
/// names what was wrong with the request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Response {
    Ok(serde_json::Value),
    Error(String),
}

/// A request with the channel its answer goes back on.
#[derive(Debug)]
pub struct Command {
    pub request: Request,
    pub reply: oneshot::Sender<Response>,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot create the control socket {}", path.display())]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no controller is running (nothing listens on {}); start it with `ha-user run`", path.display())]
    NotRunning { path: PathBuf },
    #[error("cannot talk to the controller on {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the controller sent an answer that is not valid JSON")]
    BadAnswer(#[source] serde_json::Error),
}

/// Binds `path` (replacing a stale socket file: the caller holds the controller lock)
/// with mode 0600.
pub fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    let bind_err = |source| ControlError::Bind {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(bind_err)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(bind_err(err)),
    }
    let listener = UnixListener::bind(path).map_err(bind_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
    Ok(listener)
}

/// Accepts connections until the listener fails or the main loop goes away.
pub async fn serve(listener: UnixListener, commands: mpsc::Sender<Command>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                warn!("control socket accept failed: {err}");
                continue;
            }
        };
        let commands = commands.clone();
        tokio::spawn(async move {
            if let Err(err) = handle(stream, commands).await {
                debug!("control connection: {err}");
            }
        });
    }
}

async fn handle(stream: UnixStream, commands: mpsc::Sender<Command>) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read).take(MAX_REQUEST as u64);
    reader.read_line(&mut line).await?;
    let response = match serde_json::from_str::<Request>(&line) {
        Err(err) => Response::Error(format!("malformed request: {err}")),
        Ok(request) => {
            let (reply, answer) = oneshot::channel();
            if commands.send(Command { request, reply }).await.is_err() {
                Response::Error("the controller is shutting down".to_owned())
            } else {
                answer.await.unwrap_or_else(|_| {
                    Response::Error("the controller dropped the request".to_owned())
                })
            }
        }
    };
    let mut text = serde_json::to_string(&response).map_err(io::Error::other)?;
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    write.shutdown().await
}

/// Sends one request to the controller listening on `path` and waits for the answer.
pub async fn request(path: &Path, request: &Request) -> Result<Response, ControlError> {
    let io_err = |source| ControlError::Io {
        path: path.to_owned(),
        source,
    };
    let stream = match UnixStream::connect(path).await {
        Ok(stream) => stream,
        Err(err)
            if matches!(
                err.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(ControlError::NotRunning {
                path: path.to_owned(),
            });
        }
        Err(err) => return Err(io_err(err)),
    };
    let (read, mut write) = stream.into_split();
    let mut text = serde_json::to_string(request).map_err(|err| io_err(io::Error::other(err)))?;
    text.push('\n');
    write.write_all(text.as_bytes()).await.map_err(io_err)?;
    let mut line = String::new();
    BufReader::new(read)
        .read_line(&mut line)
        .await
        .map_err(io_err)?;
    serde_json::from_str(&line).map_err(ControlError::BadAnswer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_tagged_json() {
        let request = Request::SetOwner {
            prefix: "192.168.1.64/27".into(),
            host: "host2".into(),
            force: false,
        };
        let text = serde_json::to_string(&request).expect("serialize");
        assert_eq!(
            text,
            r#"{"command":"set-owner","prefix":"192.168.1.64/27","host":"host2","force":false}"#
        );
        assert_eq!(
            serde_json::from_str::<Request>(&text).expect("parse"),
            request
        );
    }

    #[test]
    fn unknown_commands_and_fields_are_refused() {
        assert!(serde_json::from_str::<Request>(r#"{"command":"reboot"}"#).is_err());
        assert!(
            serde_json::from_str::<Request>(r#"{"command":"drain","host":"h","x":1}"#).is_err()
        );
    }

    #[tokio::test]
    async fn a_request_is_answered_by_the_main_loop() {
        let dir = std::env::temp_dir().join(format!("ha-control-test-{}", std::process::id()));
        let path = dir.join("ha.sock");
        let listener = bind(&path).expect("bind");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the control socket must be private");
        let (tx, mut rx) = mpsc::channel(1);
        tokio::spawn(serve(listener, tx));
        tokio::spawn(async move {
            while let Some(Command { request, reply }) = rx.recv().await {
                let _ = reply.send(Response::Ok(
                    serde_json::json!({ "echo": format!("{request:?}") }),
                ));
            }
        });
        let answer = super::request(
            &path,
            &Request::Drain {
                host: "host3".into(),
            },
        )
        .await
        .expect("answer");
        assert_eq!(
            answer,
            Response::Ok(serde_json::json!({ "echo": "Drain { host: \"host3\" }" }))
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn no_controller_is_a_clear_error() {
        let path =
            std::env::temp_dir().join(format!("ha-control-absent-{}.sock", std::process::id()));
        let err = super::request(&path, &Request::Status)
            .await
            .expect_err("nothing listens");
        assert!(
            err.to_string().contains("no controller is running"),
            "{err}"
        );
    }
}
