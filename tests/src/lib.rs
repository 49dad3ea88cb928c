//! The `ha-tests` package holds three products, kept in separate modules:
//!
//! - the test harness, used by the fixture and root suites under `tests/tests/`: a
//!   packet builder ([`packet`]) and frame generators ([`frames`]), hex dumps for
//!   failure messages ([`hexdump`]), a handle on the real steering program with its
//!   maps run by `BPF_PROG_TEST_RUN` ([`steer`]), private network namespaces
//!   ([`netns`]), the root requirement ([`root`]) and the run size ([`mode`]);
//! - the lab ([`lab`]): the classic network in named namespaces, with its
//!   namespace guard (`lab::ns::Netns`) and HTML report, behind `cargo xtask lab`
//!   (binaries `ha-lab`, `ha-webd`, `ha-stream`) and the lab suites;
//! - what the two benchmark runners `ha-bench` and `ha-bench-lab` share ([`bench`]):
//!   one summary type, one machine probe, one results writer.
//!
//! The lab and the benchmarks stand on the harness, never the other way round.

pub mod bench;
pub mod frames;
pub mod hexdump;
pub mod lab;
pub mod mode;
pub mod netns;
pub mod packet;
pub mod root;
pub mod steer;
