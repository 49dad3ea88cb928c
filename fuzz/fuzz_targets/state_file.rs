//! The state file (pins and drains): JSON text → [`AdminState`], restored into the
//! policy of the classic configuration as at start-up. What is restored must be a
//! fixed point: saving it and restoring that again changes nothing.

#![no_main]

use std::path::Path;

use ha_user::{
    daemon::{SavedState, state},
    policy::{AdminState, Policy},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let saved: AdminState =
        match state::parse::<SavedState>(Path::new("/var/lib/ha/state.json"), text) {
            Ok(saved) => saved.admin,
            Err(err) => {
                let _ = err.to_string();
                return;
            }
        };
    let config = ha_fuzz::classic();
    let now = tokio::time::Instant::now();
    let mut policy = Policy::new(config);
    let applied = policy.restore(saved, now);
    for stale in &applied.stale {
        let _ = stale.to_string();
    }
    let kept = policy.admin_state();
    let mut again = Policy::new(config);
    let applied = again.restore(kept.clone(), now);
    assert!(applied.stale.is_empty(), "{:?}", applied.stale);
    assert_eq!(again.admin_state(), kept);
});
