//! The control protocol between the CLI and the daemon.

pub mod socket;
