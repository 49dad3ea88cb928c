//! Connection tracking's facts: its sysctls (of the reading thread's network
//! namespace), and what the assessment asks the controller to keep
//! ([`crate::kernel::conntrack`]).

use std::{io, path::PathBuf};

use serde::{Deserialize, Serialize};

use super::sysctl::{self, SysctlError};

/// The sysctl directory of connection tracking (present once `nf_conntrack` is loaded).
const DIR: &str = "/proc/sys/net/netfilter";

/// The protocol timeouts, in seconds, as the kernel applies them to an entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeouts {
    /// `nf_conntrack_udp_timeout`: a flow without replies.
    pub udp: u32,
    /// `nf_conntrack_udp_timeout_stream`: a flow with replies (assured).
    pub udp_stream: u32,
    pub tcp_syn_sent: u32,
    pub tcp_syn_recv: u32,
    pub tcp_established: u32,
    pub tcp_fin_wait: u32,
    pub tcp_close_wait: u32,
    pub tcp_last_ack: u32,
    pub tcp_time_wait: u32,
    pub tcp_close: u32,
}

impl Timeouts {
    /// The shortest of them: the keeper's round must be well within it.
    pub fn shortest(&self) -> u32 {
        [
            self.udp,
            self.udp_stream,
            self.tcp_syn_sent,
            self.tcp_syn_recv,
            self.tcp_established,
            self.tcp_fin_wait,
            self.tcp_close_wait,
            self.tcp_last_ack,
            self.tcp_time_wait,
            self.tcp_close,
        ]
        .into_iter()
        .min()
        .unwrap_or(0)
    }
}

/// What the router's sysctls say about connection tracking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConntrackFacts {
    /// `nf_conntrack_tcp_be_liberal`: every TCP entry's window tracking is liberal.
    pub tcp_be_liberal: bool,
    pub timeouts: Timeouts,
}

/// The facts, or `None` while connection tracking is not loaded (no sysctls).
pub fn facts() -> Result<Option<ConntrackFacts>, SysctlError> {
    let read = |name: &str| sysctl::read(PathBuf::from(format!("{DIR}/nf_conntrack_{name}")));
    match read("udp_timeout") {
        Err(SysctlError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Ok(None);
        }
        other => other?,
    };
    Ok(Some(ConntrackFacts {
        tcp_be_liberal: read("tcp_be_liberal")? != 0,
        timeouts: Timeouts {
            udp: read("udp_timeout")?,
            udp_stream: read("udp_timeout_stream")?,
            tcp_syn_sent: read("tcp_timeout_syn_sent")?,
            tcp_syn_recv: read("tcp_timeout_syn_recv")?,
            tcp_established: read("tcp_timeout_established")?,
            tcp_fin_wait: read("tcp_timeout_fin_wait")?,
            tcp_close_wait: read("tcp_timeout_close_wait")?,
            tcp_last_ack: read("tcp_timeout_last_ack")?,
            tcp_time_wait: read("tcp_timeout_time_wait")?,
            tcp_close: read("tcp_timeout_close")?,
        },
    }))
}

/// What the controller does for the conntrack entries of steered flows, decided by
/// [`super::assess`]; `None` there when nothing needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConntrackSync {
    /// Set `IP_CT_TCP_FLAG_BE_LIBERAL` on TCP entries (not needed when
    /// `nf_conntrack_tcp_be_liberal` is on).
    pub liberal: bool,
    pub timeouts: Timeouts,
}
