//! The command line: arbitrary argv (NUL-separated, not necessarily UTF-8) through
//! clap, the way `ha-user` parses its arguments, and the error or help text rendered.

#![no_main]

use std::{ffi::OsString, os::unix::ffi::OsStringExt as _};

use clap::Parser as _;
use ha_user::cli::Cli;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let args = std::iter::once(OsString::from("ha-user")).chain(
        data.split(|&b| b == 0)
            .map(|arg| OsString::from_vec(arg.to_vec())),
    );
    match Cli::try_parse_from(args) {
        Ok(cli) => {
            let _ = format!("{cli:?}");
        }
        Err(err) => {
            let _ = err.render().to_string();
        }
    }
});
