//! The `[fast_path]` and `[vip_check]` tables: how interfaces verify flows, and how
//! each prefix's VIP is checked through its candidates.

use serde::Deserialize;
use toml::Spanned;

use super::Checker;
use crate::model::{FastPath, VerifyMode, VipCheck};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFastPath {
    verify: Option<VerifyMode>,
    refresh_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVipCheck {
    enabled: Option<bool>,
    interval_ms: Option<u64>,
    sweep_ms: Option<u64>,
    timeout_ms: Option<u64>,
    max_rate: Option<u32>,
}

/// Longest `refresh_ms`: beyond 30 s a flow could outlive the kernel's shortest
/// conntrack timeouts (UDP: 30 s unreplied) while the fast path still steers it.
const MAX_REFRESH_MS: u64 = 30_000;

/// The `[fast_path]` table over the defaults.
pub(super) fn fast_path_from_raw(
    checker: &mut Checker<'_>,
    raw: Option<&Spanned<RawFastPath>>,
) -> FastPath {
    let base = FastPath::default();
    let Some(raw) = raw else { return base };
    let RawFastPath { verify, refresh_ms } = raw.get_ref();
    let refresh_ms = refresh_ms.unwrap_or(base.refresh_ms);
    if refresh_ms == 0 || refresh_ms > MAX_REFRESH_MS {
        let message = format!(
            "must be 1 to {MAX_REFRESH_MS}: the kernel must see a packet of each flow within \
             its shortest connection-tracking timeout"
        );
        checker.report(raw.span(), "fast_path.refresh_ms", message);
    }
    FastPath {
        verify: verify.unwrap_or(base.verify),
        refresh_ms,
    }
}

/// Most VIP probes per second `max_rate` may ask for.
const MAX_VIP_RATE: u32 = 100_000;

/// The `[vip_check]` table over the defaults.
pub(super) fn vip_check_from_raw(
    checker: &mut Checker<'_>,
    raw: Option<&Spanned<RawVipCheck>>,
) -> VipCheck {
    let base = VipCheck::default();
    let Some(raw) = raw else { return base };
    let RawVipCheck {
        enabled,
        interval_ms,
        sweep_ms,
        timeout_ms,
        max_rate,
    } = raw.get_ref();
    let check = VipCheck {
        enabled: enabled.unwrap_or(base.enabled),
        interval_ms: interval_ms.unwrap_or(base.interval_ms),
        sweep_ms: sweep_ms.unwrap_or(base.sweep_ms),
        timeout_ms: timeout_ms.unwrap_or(base.timeout_ms),
        max_rate: max_rate.unwrap_or(base.max_rate),
    };
    let mut problem = |field: &str, message: String| {
        checker.report(raw.span(), format!("vip_check.{field}"), message);
    };
    if check.interval_ms == 0 {
        problem("interval_ms", "must be at least 1".to_owned());
    }
    if check.timeout_ms == 0 || check.timeout_ms > check.interval_ms {
        problem(
            "timeout_ms",
            format!(
                "must be 1 to interval_ms ({}): a pair's probe ends before its next is due",
                check.interval_ms
            ),
        );
    }
    if check.sweep_ms < check.interval_ms {
        problem(
            "sweep_ms",
            format!(
                "must be at least interval_ms ({}): the other candidates are asked no more often than the holder",
                check.interval_ms
            ),
        );
    }
    if check.max_rate == 0 || check.max_rate > MAX_VIP_RATE {
        problem(
            "max_rate",
            format!("must be 1 to {MAX_VIP_RATE} probes per second"),
        );
    }
    check
}
