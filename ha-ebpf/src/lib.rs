#![no_std]
//! The program is the `ha` binary target (src/main.rs). This empty library lets
//! `ha-user` list the crate as a build dependency, so cargo rebuilds the object when it changes.
