//! What benchmark figures were measured on (CPU, cores, kernel, date, load, other
//! busy processes: one probe for both runners) and the clocks they are read with:
//! wall-clock milliseconds (the controller's events carry the same clock) and
//! RFC 3339 timestamps.

use std::{
    fs,
    time::{Duration, SystemTime},
};

use serde::Serialize;

/// The machine a run measured, as its results files give it.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub kernel: String,
    /// UTC, ISO 8601, at the start.
    pub date: String,
    /// `/proc/loadavg` (1, 5, 15 min) at the start: other work on the machine shows
    /// up here.
    pub load_average_start: String,
    /// The same at the end (set by [`Machine::finish`]).
    pub load_average_end: String,
    /// The busiest other processes at the start (`ps`, % CPU over their lifetime):
    /// another benchmark running beside this one shows up here.
    pub busy_processes: Vec<String>,
}

impl Machine {
    /// The machine now.
    pub fn probe() -> Machine {
        Machine {
            cpu_model: cpu_model(),
            cores: cores(),
            kernel: kernel(),
            date: utc(unix_ms_now()),
            load_average_start: load_average(),
            load_average_end: String::new(),
            busy_processes: busy_processes(),
        }
    }

    /// Records the load average at the end of the run.
    pub fn finish(&mut self) {
        self.load_average_end = load_average();
    }
}

/// Processes above 5 % CPU, this one excluded (at most eight).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(utc(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(19_723.0 * 86_400e3), "2024-01-01T00:00:00Z");
        assert_eq!(utc(11_016.0 * 86_400e3 + 1_500.0), "2000-02-29T00:00:01Z");
    }
}
