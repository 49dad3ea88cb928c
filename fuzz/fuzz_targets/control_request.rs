//! The control socket: each line as the server decodes it, and each admin request
//! that decodes handled as the controller decides it (policy of the classic
//! configuration; the data path and the state file are left out). The same lines
//! go through the CLI's decoding of replies. Afterwards the admin state must
//! survive the state file: saved, read back and restored, it is the same.

#![no_main]

use std::{path::Path, time::Duration};

use ha_user::{
    daemon::{
        SavedState, decide_request,
        server::{Decoded, decode_request},
        state,
    },
    policy::{AdminState, Policy},
    proto::{ChangeReport, Reply, Status, StreamItem},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = ha_fuzz::classic();
    let mut policy = Policy::new(config);
    let now = tokio::time::Instant::now();
    for line in text.split_inclusive('\n') {
        match decode_request(line) {
            Decoded::Request(request) => {
                // Status, stats and events are refused here (they are not admin
                // commands); what matters is that nothing panics. A drain is graceful
                // (the default timeout) on odd lines, immediate on even ones.
                let drain = (line.len() % 2 == 1).then_some(Duration::from_secs(300));
                match decide_request(config, &mut policy, &request, now, drain) {
                    Ok((changes, result)) => {
                        serde_json::to_string(&result).expect("a result serializes");
                        assert!(changes.len() <= config.prefixes.len());
                    }
                    Err(err) => {
                        let _ = err.to_string();
                    }
                }
            }
            Decoded::Unversioned(error) => {
                serde_json::to_string(&error).expect("the refusal serializes");
            }
            Decoded::Refused(reply) => {
                serde_json::to_string(&reply).expect("the refusal serializes");
            }
        }
        let _ = Reply::<Status>::decode(line);
        let _ = Reply::<ChangeReport>::decode(line);
        let _ = Reply::<StreamItem>::decode(line);
    }
    let saved = policy.admin_state();
    let file = serde_json::to_string(&saved).expect("the admin state serializes");
    let read: AdminState = state::parse::<SavedState>(Path::new("state.json"), &file)
        .expect("saved state reads")
        .admin;
    let mut restarted = Policy::new(config);
    let applied = restarted.restore(read, now);
    assert!(applied.stale.is_empty(), "{:?}", applied.stale);
    assert_eq!(restarted.admin_state(), saved);
});
