//! The answers to the control socket's requests: the admin commands go through the
//! policy and [`apply`](super::apply); status and stats are read.

use ipnet::Ipv4Net;
use tokio::time::Instant;
use tracing::warn;

use super::{Controller, report};
use crate::daemon::{
    server::Answer,
    state::{self, StateError},
};
use crate::{
    kernel::datapath::DatapathError,
    model::{HostId, PrefixId},
    policy::{Change, PinEffect, PolicyError},
    proto::{
        ChangeReport, ErrorKind, ErrorReply, Event, Reply, Request,
        reports::{ChangeResult, Move},
    },
};

/// Why a request was refused (sent as its [`ErrorKind`] and message).
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("unknown host `{name}` (hosts: {})", known.join(", "))]
    UnknownHost { name: String, known: Vec<String> },
    #[error("prefix {prefix} is not configured (prefixes: {})", known.join(", "))]
    UnknownPrefix { prefix: Ipv4Net, known: Vec<String> },
    #[error("`{prefix}` has host bits set; the prefix is {}", prefix.trunc())]
    HostBits { prefix: Ipv4Net },
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("applied, but the admin state was not saved: {0}")]
    StateNotSaved(#[source] StateError),
    #[error("cannot read the data path's counters: {0}")]
    Datapath(#[source] DatapathError),
    #[error("`{0}` is not an admin command")]
    NotAdmin(&'static str),
}

impl RequestError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            RequestError::UnknownHost { .. } => ErrorKind::UnknownHost,
            RequestError::UnknownPrefix { .. } => ErrorKind::UnknownPrefix,
            RequestError::HostBits { .. } => ErrorKind::HostBits,
            // Ids come from this configuration: a policy error is the daemon's own.
            RequestError::Policy(_) => ErrorKind::Internal,
            RequestError::Datapath(_) => ErrorKind::Datapath,
            RequestError::StateNotSaved(_) => ErrorKind::StateNotSaved,
            RequestError::NotAdmin(_) => ErrorKind::BadRequest,
        }
    }

    fn reply(&self) -> ErrorReply {
        // The message with its sources, on one line.
        let mut message = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(err) = source {
            let text = err.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = err.source();
        }
        ErrorReply {
            kind: self.kind(),
            message,
        }
    }
}

/// The answer to `request`, once what it asks is applied.
pub(super) async fn answer(controller: &mut Controller, request: Request) -> Reply<Answer> {
    let result = match request {
        Request::Status => Ok(Answer::Status(report::status(controller))),
        Request::Stats => report::stats(controller)
            .map(Answer::Stats)
            .map_err(RequestError::Datapath),
        admin => admin_command(controller, admin).await.map(Answer::Change),
    };
    match result {
        Ok(answer) => Reply::Ok(answer),
        Err(err) => Reply::Error(err.reply()),
    }
}

/// `set-owner`, `clear-owner`, `drain`, `undrain`: the change, applied.
async fn admin_command(
    controller: &mut Controller,
    request: Request,
) -> Result<ChangeReport, RequestError> {
    let now = Instant::now();
    let (changes, result) = match &request {
        Request::SetOwner {
            prefix,
            host,
            force,
        } => {
            let (prefix, host) = (prefix_id(controller, *prefix)?, host_id(controller, host)?);
            let pinned = controller.policy.set_owner(prefix, host, *force, now)?;
            let host = controller.host_name(Some(host));
            let result = match pinned.effect {
                PinEffect::Steered => ChangeResult::Steered { host },
                PinEffect::Waiting { health, drained } => ChangeResult::Waiting {
                    host,
                    health,
                    drained,
                },
                PinEffect::Forced { health, drained } => ChangeResult::Forced {
                    host,
                    health,
                    drained,
                },
            };
            (pinned.changes, result)
        }
        Request::ClearOwner { prefix } => {
            let id = prefix_id(controller, *prefix)?;
            let changes = controller.policy.clear_owner(id, now)?;
            (changes, ChangeResult::PinCleared { prefix: *prefix })
        }
        Request::Drain { host, now: at_once } => {
            let id = host_id(controller, host)?;
            // Before the prefixes move: a graceful drain's host keeps its flows.
            let timeout = controller.start_drain(id, *at_once);
            let changes = controller.policy.drain(id, now)?;
            let host = controller.host_name(Some(id));
            let result = match timeout {
                Some(timeout) => ChangeResult::Draining {
                    host,
                    timeout_ms: timeout.as_millis() as u64,
                },
                None => ChangeResult::Drained { host },
            };
            (changes, result)
        }
        Request::Undrain { host } => {
            let id = host_id(controller, host)?;
            controller.forget_drain(id);
            let changes = controller.policy.undrain(id, now)?;
            let host = controller.host_name(Some(id));
            (changes, ChangeResult::Undrained { host })
        }
        Request::Status => return Err(RequestError::NotAdmin("status")),
        Request::Stats => return Err(RequestError::NotAdmin("stats")),
        Request::Events { .. } => return Err(RequestError::NotAdmin("events")),
    };
    let moves: Vec<Move> = changes.iter().map(|c| moved(controller, c)).collect();
    controller.apply(changes, None, now).await;
    if let Request::Drain { host, .. } = &request
        && let Some(id) = controller.config.host_id(host)
    {
        controller.drain_moved(id);
    }
    controller.events.publish(Event::Admin {
        request,
        result: result.clone(),
        moved: moves.len(),
    });
    if let Err(err) = state::save(&controller.config.state_file, &controller.saved_state()) {
        warn!("{err:#}");
        return Err(RequestError::StateNotSaved(err));
    }
    Ok(ChangeReport {
        result,
        changes: moves,
    })
}

fn moved(controller: &Controller, change: &Change) -> Move {
    let Change {
        prefix,
        old,
        new,
        reason,
    } = *change;
    Move {
        prefix: controller.config.prefix(prefix).cidr,
        old: controller.name_of(old),
        new: controller.name_of(new),
        reason,
    }
}

fn host_id(controller: &Controller, name: &str) -> Result<HostId, RequestError> {
    controller
        .config
        .host_id(name)
        .ok_or_else(|| RequestError::UnknownHost {
            name: name.to_owned(),
            known: controller
                .config
                .hosts
                .iter()
                .map(|h| h.name.clone())
                .collect(),
        })
}

fn prefix_id(controller: &Controller, prefix: Ipv4Net) -> Result<PrefixId, RequestError> {
    if prefix.trunc() != prefix {
        return Err(RequestError::HostBits { prefix });
    }
    controller
        .config
        .prefix_id(prefix)
        .ok_or_else(|| RequestError::UnknownPrefix {
            prefix,
            known: controller
                .config
                .prefixes
                .iter()
                .map(|p| p.cidr.to_string())
                .collect(),
        })
}
