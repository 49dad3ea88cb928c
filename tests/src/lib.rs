//! Helpers shared by the `ha` integration test suites: a packet builder, hex dumps
//! for failure messages, the root requirement, network-namespace isolation and a
//! handle on the real steering program with its maps.

pub mod hexdump;
pub mod netns;
pub mod packet;
pub mod root;
pub mod steer;
