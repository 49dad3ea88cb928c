//! The controller's control socket from a test: one typed request, or its event
//! stream collected by a thread. Both speak `ha_user::proto`'s own types, so a
//! renamed field breaks the build here, not a test at run time.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::net::UnixStream,
    path::Path,
    sync::{Arc, Mutex, PoisonError},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use ha_user::proto::{Event, EventRecord, Reply, Request, RequestLine, StreamItem};

use super::Proc;
use serde::de::DeserializeOwned;

/// Sends `request` to the controller on `socket` and returns its answer (a refusal
/// is an error quoting the controller's message and kind).
pub fn ask<T: DeserializeOwned>(socket: &Path, request: &Request) -> anyhow::Result<T> {
    let mut stream = connect(socket)?;
    send(&mut stream, request)?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .context("reading the controller's answer")?;
    match Reply::<T>::decode(&line)? {
        Reply::Ok(answer) => Ok(answer),
        Reply::Error(error) => bail!(
            "the controller refused {request:?} ({:?}): {}",
            error.kind,
            error.message
        ),
    }
}

fn connect(socket: &Path) -> anyhow::Result<UnixStream> {
    UnixStream::connect(socket).with_context(|| format!("connecting to {}", socket.display()))
}

fn send(stream: &mut UnixStream, request: &Request) -> anyhow::Result<()> {
    let mut line = serde_json::to_string(&RequestLine::new(request.clone()))?;
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .context("sending a request to the controller")
}

/// Everything a subscription received so far.
#[derive(Debug, Default)]
struct Received {
    records: Vec<EventRecord>,
    /// Events the daemon dropped for this reader (it fell behind).
    missed: u64,
    /// Why the stream ended, if it did.
    ended: Option<String>,
}

/// The events of one controller, from its first (replayed) to its last, collected by
/// a thread reading its event stream.
#[derive(Debug)]
pub struct EventLog {
    received: Arc<Mutex<Received>>,
    reader: Option<JoinHandle<()>>,
    /// The stream, to end the reader when the log is dropped.
    stream: UnixStream,
}

impl EventLog {
    /// Subscribes to the controller on `socket`, replaying everything it still holds
    /// (its start-up included).
    pub fn subscribe(socket: &Path) -> anyhow::Result<EventLog> {
        let mut stream = connect(socket)?;
        send(&mut stream, &Request::Events { since: Some(0) })?;
        let mut reader = BufReader::new(stream.try_clone().context("cloning the stream")?);
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .context("reading the answer to the subscription")?;
        match Reply::<StreamItem>::decode(&line)? {
            Reply::Ok(StreamItem::Subscribed { .. }) => {}
            other => bail!("the controller answered the subscription with {other:?}"),
        }
        let received = Arc::new(Mutex::new(Received::default()));
        let sink = received.clone();
        let reader = std::thread::spawn(move || {
            let ended = loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) => break "the controller closed the stream".to_owned(),
                    Err(err) => break format!("reading the stream: {err}"),
                    Ok(_) => {}
                }
                let item = match Reply::<StreamItem>::decode(&line) {
                    Ok(Reply::Ok(item)) => item,
                    Ok(Reply::Error(error)) => break format!("the controller: {error}"),
                    Err(err) => break format!("{err}"),
                };
                let mut received = sink.lock().unwrap_or_else(PoisonError::into_inner);
                match item {
                    StreamItem::Event(record) => received.records.push(record),
                    StreamItem::Lagged { missed } => received.missed += missed,
                    StreamItem::Subscribed { .. } => {}
                }
            };
            sink.lock().unwrap_or_else(PoisonError::into_inner).ended = Some(ended);
        });
        Ok(EventLog {
            received,
            reader: Some(reader),
            stream,
        })
    }

    /// Waits until the controller `proc` serves on `socket`, then returns its event
    /// stream from its first event. Fails when it exits first, quoting its log.
    pub fn when_serving(
        proc: &mut Proc,
        socket: &std::path::Path,
        timeout: Duration,
    ) -> anyhow::Result<EventLog> {
        let deadline = Instant::now() + timeout;
        let exited = |proc: &mut Proc| -> anyhow::Result<()> {
            if let Some(status) = proc.try_wait()? {
                bail!(
                    "{} exited ({}) before serving; its log:\n{}",
                    proc.name(),
                    super::describe_status(status),
                    proc.log().trim_end()
                );
            }
            Ok(())
        };
        // A killed controller leaves its socket file: connecting fails until the new one
        // binds it.
        let events = loop {
            exited(proc)?;
            if let Ok(events) = Self::subscribe(socket) {
                break events;
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not open {} within {timeout:?}; its log:\n{}",
                    proc.name(),
                    socket.display(),
                    proc.log().trim_end()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let left = deadline.saturating_duration_since(Instant::now());
        events
            .wait_for(0, left, "serving", |r| {
                matches!(r.event, Event::Serving { .. }).then_some(())
            })
            .with_context(|| format!("{}'s log:\n{}", proc.name(), proc.log().trim_end()))?;
        Ok(events)
    }

    /// Every event so far, in order. Fails if the reader missed any: a test must not
    /// conclude from an incomplete record.
    pub fn records(&self) -> anyhow::Result<Vec<EventRecord>> {
        let received = self.received.lock().unwrap_or_else(PoisonError::into_inner);
        if received.missed > 0 {
            bail!(
                "the event stream dropped {} events for this reader",
                received.missed
            );
        }
        Ok(received.records.clone())
    }

    /// Why the stream ended; `None` while it runs.
    pub fn ended(&self) -> Option<String> {
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .ended
            .clone()
    }

    /// Waits until an event after the first `since` satisfies `pick`, and returns what
    /// `pick` made of it. Fails after `timeout`, or when the stream ends first,
    /// listing the events seen.
    pub fn wait_for<T>(
        &self,
        since: usize,
        timeout: Duration,
        what: &str,
        mut pick: impl FnMut(&EventRecord) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let records = self.records()?;
            if let Some(found) = records.iter().skip(since).find_map(&mut pick) {
                return Ok(found);
            }
            let ended = self.ended();
            if ended.is_some() || Instant::now() >= deadline {
                let seen: Vec<String> = records
                    .iter()
                    .skip(since)
                    .map(ToString::to_string)
                    .collect();
                bail!(
                    "no event {what} within {timeout:?}{}; events since #{since}:\n{}",
                    ended.map_or(String::new(), |why| format!(" ({why})")),
                    seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until the stream has ended (the controller exited) and returns why.
    pub fn wait_end(&mut self, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(why) = self.ended() {
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return Ok(why);
            }
            if Instant::now() >= deadline {
                bail!("the event stream did not end within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        // Ends the reader's read; it was going to end with the controller anyway.
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}
