//! The `[flows]` table: flow affinity across moves and graceful drains.

use serde::Deserialize;
use toml::Spanned;

use super::Checker;
use crate::model::Flows;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFlows {
    drain_timeout_ms: Option<u64>,
    tcp_idle_ms: Option<u64>,
    udp_idle_ms: Option<u64>,
    fin_linger_ms: Option<u64>,
    sweep_ms: Option<u64>,
}

/// Longest drain: a day (a drain longer than that is a forgotten one).
const MAX_DRAIN_TIMEOUT_MS: u64 = 86_400_000;
/// The sweep reads the whole flow table: not more often than 10 times a second, and
/// at least once a minute.
const SWEEP_RANGE_MS: std::ops::RangeInclusive<u64> = 100..=60_000;

/// The `[flows]` table over the defaults.
pub(super) fn flows_from_raw(checker: &mut Checker<'_>, raw: Option<&Spanned<RawFlows>>) -> Flows {
    let base = Flows::default();
    let Some(raw) = raw else { return base };
    let RawFlows {
        drain_timeout_ms,
        tcp_idle_ms,
        udp_idle_ms,
        fin_linger_ms,
        sweep_ms,
    } = raw.get_ref();
    let flows = Flows {
        drain_timeout_ms: drain_timeout_ms.unwrap_or(base.drain_timeout_ms),
        tcp_idle_ms: tcp_idle_ms.unwrap_or(base.tcp_idle_ms),
        udp_idle_ms: udp_idle_ms.unwrap_or(base.udp_idle_ms),
        fin_linger_ms: fin_linger_ms.unwrap_or(base.fin_linger_ms),
        sweep_ms: sweep_ms.unwrap_or(base.sweep_ms),
    };
    let mut report = |field: &str, message: String| {
        checker.report(raw.span(), format!("flows.{field}"), message);
    };
    if flows.drain_timeout_ms > MAX_DRAIN_TIMEOUT_MS {
        report(
            "drain_timeout_ms",
            format!(
                "must be at most {MAX_DRAIN_TIMEOUT_MS} (a day); 0 makes every drain immediate"
            ),
        );
    }
    if !SWEEP_RANGE_MS.contains(&flows.sweep_ms) {
        report(
            "sweep_ms",
            format!(
                "must be {} to {}: each sweep reads the whole flow table",
                SWEEP_RANGE_MS.start(),
                SWEEP_RANGE_MS.end()
            ),
        );
    }
    for (field, value) in [
        ("tcp_idle_ms", flows.tcp_idle_ms),
        ("udp_idle_ms", flows.udp_idle_ms),
    ] {
        // The data path renews a flow's `seen` at most once a second.
        if value < 2000 {
            report(
                field,
                "must be at least 2000: the data path notes a flow's last packet to within a second"
                    .to_owned(),
            );
        }
    }
    if flows.fin_linger_ms > flows.tcp_idle_ms {
        report(
            "fin_linger_ms",
            format!(
                "must not exceed tcp_idle_ms ({}): a closing connection counts no longer than an idle one",
                flows.tcp_idle_ms
            ),
        );
    }
    flows
}
