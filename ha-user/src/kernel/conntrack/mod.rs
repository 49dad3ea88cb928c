//! Connection tracking on a router whose rules consult it, as the kernel's own fast
//! path (the nftables flowtable) keeps it.
//!
//! A steered packet never meets netfilter, so conntrack does not see it. Two things
//! then differ from the kernel alone, and the controller mends both over
//! `ctnetlink` for every flow it lets the data path steer (see [`keeper`]):
//! - TCP window tracking sees the server's replies acknowledge data it never saw and
//!   marks them INVALID (a `ct state established` rule drops them). The entry's
//!   `IP_CT_TCP_FLAG_BE_LIBERAL` is set in both directions, as the flowtable does,
//!   unless `nf_conntrack_tcp_be_liberal` already makes every entry liberal.
//! - The entry is renewed only by the packets that take the kernel's path. The
//!   controller sets its timeout so that it expires when the kernel alone would let
//!   it: the protocol's timeout after the flow's last packet
//!   ([`ha_common::FlowEntry::seen_ns`]), never earlier than the kernel's own renewals.
//!
//! The timeouts are the router's sysctls (`net.netfilter.nf_conntrack_*_timeout*`, of
//! the controller's network namespace), read with the rest of the forwarding facts.

pub mod keep;
pub mod keeper;
pub mod message;

pub use crate::kernel::forwarding::conntrack::{ConntrackFacts, ConntrackSync, Timeouts, facts};
