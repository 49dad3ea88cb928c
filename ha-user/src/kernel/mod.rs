//! The kernel adapters: the data path's program and maps, routes, neighbours,
//! interfaces. They speak model types, never the configuration file's.

pub mod datapath;
pub mod flows;
pub mod forwarding;
pub mod mtu;
pub mod neigh;
pub mod netdev;
pub mod route_snapshot;
pub mod routes;
pub mod simulate;
pub mod steering;

/// Fails with a clear message unless running as root: loading programs, pinning and
/// changing routes need CAP_BPF and CAP_NET_ADMIN.
pub fn require_root(what: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        anyhow::bail!("{what} needs root (CAP_BPF and CAP_NET_ADMIN): run it with sudo");
    }
    Ok(())
}
