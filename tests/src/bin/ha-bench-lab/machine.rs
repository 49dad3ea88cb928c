//! What the figures were measured on (CPU, cores, kernel, date, load, other busy
//! processes) and the clocks: wall-clock milliseconds, and the timestamps of the
//! controller's log lines on the same clock.

use std::{fs, time::SystemTime};

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub kernel: String,
    /// UTC, ISO 8601, at the start.
    pub date: String,
    /// `/proc/loadavg` (1, 5, 15 min) at the start.
    pub load_average_start: String,
    /// The same at the end.
    pub load_average_end: String,
    /// The busiest other processes at the start (`ps`, % CPU over their lifetime):
    /// another benchmark running beside this one shows up here.
    pub busy_processes: Vec<String>,
}

impl Machine {
    pub fn probe() -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map_or_else(|| "unknown".to_owned(), |(_, m)| m.trim().to_owned());
        let cores = std::thread::available_parallelism().map_or(0, usize::from);
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".to_owned(), |s| s.trim().to_owned());
        Machine {
            cpu_model,
            cores,
            kernel,
            date: utc(unix_ms_now()),
            load_average_start: Machine::load_average(),
            load_average_end: String::new(),
            busy_processes: busy_processes(),
        }
    }

    /// `/proc/loadavg`'s three averages.
    pub fn load_average() -> String {
        fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    }
}

/// Processes above 5 % CPU, this one excluded.
fn busy_processes() -> Vec<String> {
    let Ok(output) = std::process::Command::new("ps")
        .args(["-eo", "pid,pcpu,comm", "--sort=-pcpu", "--no-headers"])
        .output()
    else {
        return Vec::new();
    };
    let me = std::process::id().to_string();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let (pid, pcpu, comm) = (words.next()?, words.next()?, words.next()?);
            let pcpu: f64 = pcpu.parse().ok()?;
            (pcpu >= 5.0 && pid != me).then(|| format!("{comm} (pid {pid}) {pcpu:.0} % CPU"))
        })
        .take(8)
        .collect()
}

/// Milliseconds since the Unix epoch, now.
pub fn unix_ms_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// The timestamp of a controller log line (`2026-11-25T00:00:11.016994Z  INFO ...`,
/// tracing's default format, possibly with ANSI colours) as Unix milliseconds.
pub fn log_time_ms(line: &str) -> Option<f64> {
    let stamp: String = strip_ansi(line.split_whitespace().next()?);
    let (date, time) = stamp.strip_suffix('Z')?.split_once('T')?;
    let mut ymd = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, d) = (ymd.next()?.ok()?, ymd.next()?.ok()?, ymd.next()?.ok()?);
    let mut hms = time.split(':');
    let (h, min, s) = (hms.next()?, hms.next()?, hms.next()?);
    let (h, min, s): (f64, f64, f64) = (h.parse().ok()?, min.parse().ok()?, s.parse().ok()?);
    let days = days_from_civil(y, m, d) as f64;
    Some(((days * 86_400.0) + h * 3600.0 + min * 60.0 + s) * 1e3)
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

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day number since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// Unix milliseconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc(unix_ms: f64) -> String {
    let secs = (unix_ms / 1e3) as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
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
}
