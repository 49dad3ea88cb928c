//! `ha-user`: the controller and command-line interface of `ha`.

/// The compiled eBPF object (`ha-ebpf`), built by `build.rs` and embedded here so the
/// binary needs no file beside it.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ha"));

pub mod cli;
pub mod config;
pub mod daemon;
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod kernel;
pub mod model;
pub mod plan;
pub mod policy;
pub mod proto;
#[cfg(test)]
mod scratch;
