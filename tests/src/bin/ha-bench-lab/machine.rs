//! What the figures were measured on (CPU, cores, kernel, date, load, other busy
//! processes); the clocks are the test library's.

use ha_tests::machine;
pub use ha_tests::machine::{load_average, unix_ms_now, utc};
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
        Machine {
            cpu_model: machine::cpu_model(),
            cores: machine::cores(),
            kernel: machine::kernel(),
            date: utc(unix_ms_now()),
            load_average_start: load_average(),
            load_average_end: String::new(),
            busy_processes: busy_processes(),
        }
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
