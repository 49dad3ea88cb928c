//! The model every other module stands on: ids, MACs, health, the validated hosts and
//! prefixes, the attach mode, kernel routes, and the defaults, each defined once.
//!
//! Nothing here does I/O or knows the configuration file: the configuration produces
//! these types, the kernel adapters, the policy, the health checks and the protocol
//! take them.

pub mod defaults;
mod fast_path;
mod flows;
mod health;
mod ids;
mod mac;
mod probe;
mod reason;
mod route;
mod topology;
pub mod vip;
mod xdp;

pub use fast_path::{FastPath, VerifyMode};
pub use flows::Flows;
pub use health::{CheckKind, Health, HealthCheck};
pub use ids::{HostId, PrefixId};
pub use mac::{BadMac, Mac};
pub use probe::ProbeOutcome;
pub use reason::Reason;
pub use route::{KernelRoute, ROUTE_PROTO};
pub use topology::{Backups, Host, Prefix};
pub use vip::{VipCheck, VipVerdict};
pub use xdp::XdpMode;
