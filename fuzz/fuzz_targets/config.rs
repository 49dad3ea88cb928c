//! The configuration file: TOML text → validated [`Config`] or problems with
//! file:line, then what the daemon and the CLI do with a valid one: the policy built
//! from it, a reload onto it from the classic configuration, and `ha-user plan`.

#![no_main]

use std::path::Path;

use clap::ValueEnum as _;
use ha_user::{
    config::{Config, ConfigError},
    plan,
    policy::Policy,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/etc/ha/fuzz.toml");
    let config = match Config::parse(path, text) {
        Ok(config) => config,
        Err(ConfigError::Invalid { problems }) => {
            // At least one problem, each naming the file and a line of the text.
            assert!(!problems.is_empty(), "refused without a problem");
            let lines = text.split('\n').count();
            for problem in &problems {
                assert_eq!(problem.path, path, "{problem}");
                assert!(
                    (1..=lines).contains(&problem.line),
                    "{problem} of {lines} lines"
                );
            }
            return;
        }
        Err(err @ (ConfigError::Read { .. } | ConfigError::NotAFile { .. })) => {
            panic!("parsing text read a file: {err}")
        }
    };
    let now = tokio::time::Instant::now();
    let mut policy = Policy::new(&config);
    let _ = policy.tick(now);
    let mut reloaded = Policy::new(ha_fuzz::classic());
    let _ = reloaded.reconfigure(&config, now);
    for format in plan::Format::value_variants() {
        let _ = plan::render(&config, *format);
    }
});
