#![no_std]
//! The programs are the `ha-bench` binary target (src/main.rs). This empty library
//! lets `ha-tests` list the crate as a build dependency, so cargo rebuilds the object
//! when it changes.
