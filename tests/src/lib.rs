//! Helpers shared by the `ha` integration test suites: a packet builder, hex dumps
//! for failure messages, the root requirement, network-namespace isolation, a
//! handle on the real steering program with its maps, and the lab (the classic
//! network in named namespaces, also behind `cargo xtask lab`); and, for the two
//! benchmark runners, what they share (`bench`: one summary type, one machine
//! probe, one results writer).

pub mod bench;
pub mod frames;
pub mod hexdump;
pub mod lab;
pub mod mode;
pub mod netns;
pub mod packet;
pub mod report;
pub mod root;
pub mod steer;
