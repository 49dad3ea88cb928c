//! `ha-user`: the controller and command-line interface of `ha`.

/// The compiled eBPF object (`ha-ebpf`), built by `build.rs` and embedded here so the
/// binary needs no file beside it.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ha"));

pub mod adopt;
pub mod cli;
pub mod config;
pub mod control;
pub mod controller;
pub mod datapath;
pub mod forwarding;
pub mod health;
pub mod lock;
pub mod metrics;
pub mod neigh;
pub mod netdev;
pub mod plan;
pub mod policy;
pub mod routes;
pub mod simulate;
pub mod state;
pub mod steering;
