//! The answers to the control socket's requests: the admin commands go through the
//! policy and [`apply`](super::apply); status and stats are read.

use tokio::time::Instant;
use tracing::warn;

use super::{controller::Controller, report, state};
use crate::{
    model::{HostId, PrefixId},
    policy::PinEffect,
    proto::socket::{Request, Response},
};

/// The answer to `request`, once what it asks is applied.
pub(super) async fn answer(controller: &mut Controller, request: Request) -> Response {
    let now = Instant::now();
    let result = match request {
        Request::Status => return Response::Ok(report::status(controller)),
        Request::Stats => {
            return report::stats(controller)
                .map_or_else(|err| Response::Error(format!("{err:#}")), Response::Ok);
        }
        Request::SetOwner {
            prefix,
            host,
            force,
        } => match (prefix_id(controller, &prefix), host_id(controller, &host)) {
            (Err(err), _) | (_, Err(err)) => Err(err),
            (Ok(p), Ok(h)) => controller
                .policy
                .set_owner(p, h, force, now)
                .map_err(|e| e.to_string())
                .map(|pinned| {
                    let note = match pinned.effect {
                        PinEffect::Steered => "steered".to_owned(),
                        PinEffect::Waiting { health, drained } => format!(
                            "pinned; {host} is {health}{}: the prefix moves once it is up for its failback delay",
                            if drained { " and drained" } else { "" }
                        ),
                        PinEffect::Forced { health, .. } => {
                            format!("forced onto {host} ({health})")
                        }
                    };
                    (pinned.changes, note)
                }),
        },
        Request::ClearOwner { prefix } => prefix_id(controller, &prefix)
            .and_then(|p| {
                controller
                    .policy
                    .clear_owner(p, now)
                    .map_err(|e| e.to_string())
            })
            .map(|changes| (changes, "pin cleared".to_owned())),
        Request::Drain { host } => host_id(controller, &host)
            .and_then(|h| controller.policy.drain(h, now).map_err(|e| e.to_string()))
            .map(|changes| (changes, format!("{host} drained"))),
        Request::Undrain { host } => host_id(controller, &host)
            .and_then(|h| controller.policy.undrain(h, now).map_err(|e| e.to_string()))
            .map(|changes| (changes, format!("{host} undrained"))),
    };
    match result {
        Err(message) => Response::Error(message),
        Ok((changes, note)) => {
            let moved: Vec<serde_json::Value> = changes
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "prefix": controller.prefix_name(c.prefix),
                        "old": controller.host_name(c.old),
                        "new": controller.host_name(c.new),
                        "reason": c.reason.to_string(),
                    })
                })
                .collect();
            controller.apply(changes, None, now).await;
            if let Err(err) = state::save(
                &controller.config.state_file,
                &controller.policy.admin_state(),
            ) {
                warn!("{err:#}");
                return Response::Error(format!(
                    "applied, but the admin state was not saved: {err:#}"
                ));
            }
            Response::Ok(serde_json::json!({ "result": note, "changes": moved }))
        }
    }
}

fn host_id(controller: &Controller, name: &str) -> Result<HostId, String> {
    controller.config.host_id(name).ok_or_else(|| {
        let known: Vec<&str> = controller
            .config
            .hosts
            .iter()
            .map(|h| h.name.as_str())
            .collect();
        format!("unknown host `{name}` (hosts: {})", known.join(", "))
    })
}

fn prefix_id(controller: &Controller, text: &str) -> Result<PrefixId, String> {
    let cidr = crate::config::parse_cidr(text)?;
    controller.config.prefix_id(cidr).ok_or_else(|| {
        let known: Vec<String> = controller
            .config
            .prefixes
            .iter()
            .map(|p| p.cidr.to_string())
            .collect();
        format!(
            "prefix {cidr} is not configured (prefixes: {})",
            known.join(", ")
        )
    })
}
