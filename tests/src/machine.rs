//! What benchmark figures were measured on (CPU, cores, kernel, load) and the clocks
//! they are read with: wall-clock milliseconds, RFC 3339 timestamps, and the
//! timestamps of the controller's log lines on the same clock.

use std::{
    fs,
    time::{Duration, SystemTime},
};

/// The CPU's model name from `/proc/cpuinfo`, or `unknown`.
pub fn cpu_model() -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map_or_else(
            || "unknown".to_owned(),
            |(_, model)| model.trim().to_owned(),
        )
}

/// The CPUs this process may run on.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, usize::from)
}

/// The running kernel's release, or `unknown`.
pub fn kernel() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".to_owned(), |s| s.trim().to_owned())
}

/// `/proc/loadavg`'s three averages (1, 5, 15 min).
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Milliseconds since the Unix epoch, now.
pub fn unix_ms_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// Unix milliseconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc(unix_ms: f64) -> String {
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(unix_ms.max(0.0) / 1e3);
    humantime::format_rfc3339_seconds(time).to_string()
}

/// The timestamp of a controller log line (`2026-11-25T00:00:11.016994Z  INFO ...`,
/// tracing's default format, possibly with ANSI colours) as Unix milliseconds.
pub fn log_time_ms(line: &str) -> Option<f64> {
    let stamp = strip_ansi(line.split_whitespace().next()?);
    let time = humantime::parse_rfc3339(&stamp).ok()?;
    let since_epoch = time.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    Some(since_epoch.as_secs_f64() * 1e3)
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_timestamps_parse() {
        let line = "2026-11-25T00:00:11.016994Z  INFO ha_user::cli::run: steering;";
        let ms = log_time_ms(line).expect("a timestamp");
        assert_eq!(utc(ms), "2026-11-25T00:00:11Z");
        assert!((ms % 1000.0 - 16.994).abs() < 1e-3, "{ms}");
        let coloured = "\u{1b}[2m2026-11-24T22:54:07.146666Z\u{1b}[0m \u{1b}[32m INFO";
        assert_eq!(
            utc(log_time_ms(coloured).expect("a timestamp")),
            "2026-11-24T22:54:07Z"
        );
        assert_eq!(log_time_ms("no timestamp here"), None);
    }

    #[test]
    fn known_dates() {
        assert_eq!(utc(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(19_723.0 * 86_400e3), "2024-01-01T00:00:00Z");
        assert_eq!(utc(11_016.0 * 86_400e3 + 1_500.0), "2000-02-29T00:00:01Z");
    }
}
