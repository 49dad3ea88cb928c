//! The client side of the control socket: one request per connection, its typed
//! answer, or a stream of events.

use std::{
    io,
    path::{Path, PathBuf},
};

use serde::de::DeserializeOwned;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::{
        UnixStream,
        unix::{OwnedReadHalf, OwnedWriteHalf},
    },
};

use super::{
    ChangeReport, DecodeError, ErrorReply, Reply, Request, RequestLine, Stats, Status, StreamItem,
};

/// Longest line either side accepts; anything longer is refused, not buffered.
pub const MAX_REQUEST: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no controller is running (nothing listens on {}); start it with `ha-user run`", path.display())]
    NotRunning { path: PathBuf },
    #[error(
        "talking to the controller needs root: its control socket {} is root's alone \
         (mode 0600); run it with sudo",
        path.display()
    )]
    NeedsRoot { path: PathBuf },
    #[error("cannot talk to the controller on {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the controller closed the connection without an answer")]
    NoAnswer,
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The controller refused the request; the message says why.
    #[error(transparent)]
    Refused(ErrorReply),
}

/// One connection to the controller listening on `path`.
pub struct Connection {
    path: PathBuf,
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
}

impl Connection {
    pub async fn open(path: &Path) -> Result<Connection, ControlError> {
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
            Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
                return Err(ControlError::NeedsRoot {
                    path: path.to_owned(),
                });
            }
            Err(source) => {
                return Err(ControlError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let (read, write) = stream.into_split();
        Ok(Connection {
            path: path.to_owned(),
            read: BufReader::new(read),
            write,
        })
    }

    fn io(&self, source: io::Error) -> ControlError {
        ControlError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Sends `request` (this connection's only one).
    async fn send(&mut self, request: Request) -> Result<(), ControlError> {
        let mut text = serde_json::to_string(&RequestLine::new(request))
            .map_err(|err| self.io(io::Error::other(err)))?;
        text.push('\n');
        let written = self.write.write_all(text.as_bytes()).await;
        written.map_err(|err| self.io(err))
    }

    /// The next line from the controller, decoded; `None` at the end of the stream.
    async fn receive<T: DeserializeOwned>(&mut self) -> Result<Option<Reply<T>>, ControlError> {
        let mut line = String::new();
        let read = self.read.read_line(&mut line).await;
        if read.map_err(|err| self.io(err))? == 0 {
            return Ok(None);
        }
        Ok(Some(Reply::decode(&line)?))
    }

    /// Sends `request` and waits for its answer.
    pub async fn ask<T: DeserializeOwned>(mut self, request: Request) -> Result<T, ControlError> {
        self.send(request).await?;
        match self.receive().await? {
            Some(reply) => reply.into_result().map_err(ControlError::Refused),
            None => Err(ControlError::NoAnswer),
        }
    }

    /// Subscribes to the controller's events (see [`Request::Events`]).
    pub async fn subscribe(mut self, since: Option<u64>) -> Result<Events, ControlError> {
        self.send(Request::Events { since }).await?;
        match self.receive().await? {
            Some(Reply::Ok(StreamItem::Subscribed { replayed })) => Ok(Events {
                connection: self,
                replayed,
            }),
            Some(Reply::Ok(other)) => Err(ControlError::Refused(ErrorReply {
                kind: super::ErrorKind::BadRequest,
                message: format!("the controller answered {other:?} to a subscription"),
            })),
            Some(Reply::Error(error)) => Err(ControlError::Refused(error)),
            None => Err(ControlError::NoAnswer),
        }
    }
}

/// A subscription to the controller's events.
pub struct Events {
    connection: Connection,
    /// How many earlier events come first.
    pub replayed: u64,
}

impl Events {
    /// The next item; `None` when the controller closed the stream (it shut down).
    pub async fn next(&mut self) -> Result<Option<StreamItem>, ControlError> {
        match self.connection.receive().await? {
            Some(reply) => reply.into_result().map(Some).map_err(ControlError::Refused),
            None => Ok(None),
        }
    }
}

/// `status` of the controller on `path`.
pub async fn status(path: &Path) -> Result<Status, ControlError> {
    Connection::open(path).await?.ask(Request::Status).await
}

/// `stats` of the controller on `path`.
pub async fn stats(path: &Path) -> Result<Stats, ControlError> {
    Connection::open(path).await?.ask(Request::Stats).await
}

/// An admin command (`set-owner`, `clear-owner`, `drain`, `undrain`).
pub async fn change(path: &Path, request: Request) -> Result<ChangeReport, ControlError> {
    Connection::open(path).await?.ask(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_controller_is_a_clear_error() {
        let path =
            std::env::temp_dir().join(format!("ha-control-absent-{}.sock", std::process::id()));
        let err = status(&path).await.expect_err("nothing listens");
        assert!(
            err.to_string().contains("no controller is running"),
            "{err}"
        );
    }
}
