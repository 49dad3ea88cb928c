//! What the figures were measured on: CPU, cores, kernel, date, load.

use ha_tests::machine;

use crate::json::{Json, JsonExt as _};

#[derive(Clone, Debug)]
pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub kernel: String,
    /// UTC, ISO 8601.
    pub date: String,
    /// /proc/loadavg at the start: other work on the machine shows up here.
    pub load_average: String,
}

impl Machine {
    pub fn probe() -> Self {
        Self {
            cpu_model: machine::cpu_model(),
            cores: machine::cores(),
            kernel: machine::kernel(),
            date: machine::utc(machine::unix_ms_now()),
            load_average: machine::load_average(),
        }
    }

    pub fn to_json(&self) -> Json {
        let Self {
            cpu_model,
            cores,
            kernel,
            date,
            load_average,
        } = self;
        Json::obj([
            ("cpu_model", Json::str(cpu_model)),
            ("cores", Json::num(*cores as f64)),
            ("kernel", Json::str(kernel)),
            ("date", Json::str(date)),
            ("load_average", Json::str(load_average)),
        ])
    }
}
