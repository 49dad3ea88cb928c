//! The state file (pins and drains): JSON text → [`AdminState`], restored into the
//! policy of the classic configuration as at start-up. What is restored must be a
//! fixed point: saving it and restoring that again changes nothing.

#![no_main]

use std::path::Path;

use ha_user::{
    config::Config,
    daemon::state,
    policy::{AdminState, Policy},
};
use libfuzzer_sys::fuzz_target;

const CLASSIC: &str = include_str!("../../ha-user/tests/golden/classic.toml");

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let saved: AdminState = match state::parse(Path::new("/var/lib/ha/state.json"), text) {
        Ok(saved) => saved,
        Err(err) => {
            let _ = err.to_string();
            return;
        }
    };
    let config = Config::parse(Path::new("classic.toml"), CLASSIC).expect("classic.toml is valid");
    let now = tokio::time::Instant::now();
    let mut policy = Policy::new(&config);
    let applied = policy.restore(saved, now);
    for stale in &applied.stale {
        let _ = stale.to_string();
    }
    let kept = policy.admin_state();
    let mut again = Policy::new(&config);
    let applied = again.restore(kept.clone(), now);
    assert!(applied.stale.is_empty(), "{:?}", applied.stale);
    assert_eq!(again.admin_state(), kept);
});
