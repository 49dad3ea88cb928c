//! What the lab suites (`controller.rs`, `lab.rs`) share: a lab spec with this
//! package's binaries, building a lab with its build time and notes printed, and the
//! map/route agreement check.

use std::time::Instant;

use ha_tests::lab::{Bins, Lab, LabSpec, XdpMode, time_scale};

/// The lab for `prefix` in `mode`, with this package's web server and stream client
/// and a 300 ms failback delay (× `HA_LAB_TIME_SCALE`) so that failback tests stay
/// short.
pub fn spec(prefix: &str, mode: XdpMode) -> LabSpec {
    let ha_user = Bins::ha_user().unwrap_or_else(|e| panic!("{e:#}"));
    let bins = Bins {
        ha_user,
        webd: env!("CARGO_BIN_EXE_ha-webd").into(),
        stream: env!("CARGO_BIN_EXE_ha-stream").into(),
    };
    let mut spec = LabSpec::new(prefix, mode, bins);
    spec.health.failback_delay_ms = 300 * u64::from(time_scale());
    spec
}

pub fn build(spec: LabSpec) -> Lab {
    let started = Instant::now();
    let prefix = spec.prefix.clone();
    let lab = Lab::build(spec).unwrap_or_else(|e| panic!("building lab {prefix}: {e:#}"));
    eprintln!("lab {prefix} built in {:?}", started.elapsed());
    for note in lab.notes() {
        eprintln!("lab {prefix}: note: {note}");
    }
    lab
}

pub fn assert_agreement(lab: &Lab) {
    lab.check_agreement().unwrap_or_else(|e| panic!("{e:#}"));
}
