//! The answers to the control socket's requests: the admin commands go through the
//! policy and [`apply`](super::apply); status and stats are read.

use std::time::Duration;

use ipnet::Ipv4Net;
use tokio::time::Instant;
use tracing::warn;

use super::{Controller, report};
use crate::daemon::{
    server::Answer,
    state::{self, StateError},
};
use crate::{
    config::Config,
    kernel::datapath::DatapathError,
    model::{HostId, PrefixId},
    policy::{Change, PinEffect, Policy, PolicyError},
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
    // What needs the controller happens first: a graceful drain's host keeps its
    // flows from before its prefixes move; an undrain forgets the drain.
    let drain_timeout = match &request {
        Request::Drain { host, now: at_once } => {
            let id = host_id(&controller.config, host)?;
            controller.start_drain(id, *at_once)
        }
        Request::Undrain { host } => {
            let id = host_id(&controller.config, host)?;
            controller.forget_drain(id);
            None
        }
        _ => None,
    };
    let (changes, result) = decide(
        &controller.config,
        &mut controller.policy,
        &request,
        now,
        drain_timeout,
    )?;
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

/// What admin `request` changes in `policy` (of `config`), before anything is
/// applied to the data path or saved: the owner changes and the result to report.
/// `drain_timeout`: how long a `drain` lets connections finish (`None`: at once).
pub fn decide(
    config: &Config,
    policy: &mut Policy,
    request: &Request,
    now: Instant,
    drain_timeout: Option<Duration>,
) -> Result<(Vec<Change>, ChangeResult), RequestError> {
    let name = |host: HostId| host_name(config, host);
    Ok(match request {
        Request::SetOwner {
            prefix,
            host,
            force,
        } => {
            let (prefix, host) = (prefix_id(config, *prefix)?, host_id(config, host)?);
            let pinned = policy.set_owner(prefix, host, *force, now)?;
            let host = name(host);
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
            let id = prefix_id(config, *prefix)?;
            let changes = policy.clear_owner(id, now)?;
            (changes, ChangeResult::PinCleared { prefix: *prefix })
        }
        Request::Drain { host, now: _ } => {
            let id = host_id(config, host)?;
            let changes = policy.drain(id, now)?;
            let host = name(id);
            let result = match drain_timeout {
                Some(timeout) => ChangeResult::Draining {
                    host,
                    timeout_ms: timeout.as_millis() as u64,
                },
                None => ChangeResult::Drained { host },
            };
            (changes, result)
        }
        Request::Undrain { host } => {
            let id = host_id(config, host)?;
            let changes = policy.undrain(id, now)?;
            (changes, ChangeResult::Undrained { host: name(id) })
        }
        Request::Status => return Err(RequestError::NotAdmin("status")),
        Request::Stats => return Err(RequestError::NotAdmin("stats")),
        Request::Events { .. } => return Err(RequestError::NotAdmin("events")),
    })
}

fn host_name(config: &Config, host: HostId) -> String {
    config
        .hosts
        .get(host.index())
        .map_or_else(|| host.to_string(), |h| h.name.clone())
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

fn host_id(config: &Config, name: &str) -> Result<HostId, RequestError> {
    config
        .host_id(name)
        .ok_or_else(|| RequestError::UnknownHost {
            name: name.to_owned(),
            known: config.hosts.iter().map(|h| h.name.clone()).collect(),
        })
}

fn prefix_id(config: &Config, prefix: Ipv4Net) -> Result<PrefixId, RequestError> {
    if prefix.trunc() != prefix {
        return Err(RequestError::HostBits { prefix });
    }
    config
        .prefix_id(prefix)
        .ok_or_else(|| RequestError::UnknownPrefix {
            prefix,
            known: config.prefixes.iter().map(|p| p.cidr.to_string()).collect(),
        })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn admin_requests_are_decided_against_the_configuration() {
        let text = include_str!("../../../tests/golden/classic.toml");
        let config = Config::parse(Path::new("classic.toml"), text).expect("valid");
        let mut policy = Policy::new(&config);
        let now = Instant::now();
        let mut decide = |request: Request| decide(&config, &mut policy, &request, now, None);
        let prefix = |text: &str| text.parse::<Ipv4Net>().expect("prefix");

        let (changes, result) = decide(Request::SetOwner {
            prefix: prefix("192.168.1.32/27"),
            host: "192.168.1.3".into(),
            force: true,
        })
        .expect("a configured prefix and host");
        assert_eq!(changes.len(), 1, "{changes:?}");
        // Hosts start up: the pin takes effect at once, force or not.
        assert_eq!(
            result,
            ChangeResult::Steered {
                host: "host2".into()
            }
        );

        let refused = |result: Result<_, RequestError>| result.expect_err("refused").kind();
        let unknown_host = Request::Drain {
            host: "web9".into(),
            now: false,
        };
        assert_eq!(refused(decide(unknown_host)), ErrorKind::UnknownHost);
        let unknown_prefix = Request::ClearOwner {
            prefix: prefix("10.0.0.0/8"),
        };
        assert_eq!(refused(decide(unknown_prefix)), ErrorKind::UnknownPrefix);
        let host_bits = Request::ClearOwner {
            prefix: prefix("192.168.1.33/27"),
        };
        assert_eq!(refused(decide(host_bits)), ErrorKind::HostBits);
        assert_eq!(refused(decide(Request::Status)), ErrorKind::BadRequest);
    }
}
