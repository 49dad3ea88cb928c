//! The kernel adapters: the data path's program and maps, routes, neighbours,
//! interfaces. They speak model types, never the configuration file's.

pub mod conntrack;
pub mod datapath;
pub mod flows;
pub mod forwarding;
pub mod lan;
pub mod neigh;
pub mod netdev;
pub mod route_snapshot;
pub mod routes;
pub mod simulate;
pub mod steering;
pub(crate) mod watch;

/// Aborts a netlink connection task when the watch that owns it ends ([`watch`]).
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Fails with a clear message unless running as root: loading programs, pinning and
/// changing routes need CAP_BPF and CAP_NET_ADMIN.
pub fn require_root(what: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        anyhow::bail!("{what} needs root (CAP_BPF and CAP_NET_ADMIN): run it with sudo");
    }
    Ok(())
}

/// The oldest kernel the data path runs on: its programs are multi-buffer aware
/// (`xdp.frags`, Linux 5.18), so they attach natively to jumbo-MTU interfaces.
pub const MIN_KERNEL: (u8, u8) = (5, 18);

/// Fails with a clear message on a kernel older than [`MIN_KERNEL`], before anything
/// is loaded (the kernel would refuse the programs with a bare "invalid argument").
/// A version that cannot be read is let through: the load then says what is wrong.
pub fn require_kernel() -> anyhow::Result<()> {
    match aya::util::KernelVersion::current() {
        Ok(running) => kernel_supported(running),
        Err(err) => {
            tracing::warn!("cannot read the kernel version ({err}); assuming it is recent enough");
            Ok(())
        }
    }
}

fn kernel_supported(running: aya::util::KernelVersion) -> anyhow::Result<()> {
    let (major, minor) = MIN_KERNEL;
    let needed = aya::util::KernelVersion::new(major, minor, 0);
    if running < needed {
        anyhow::bail!(
            "this kernel is {running}; ha needs Linux {major}.{minor} or later \
             (multi-buffer XDP programs, `xdp.frags`)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use aya::util::KernelVersion;

    use super::kernel_supported;

    #[test]
    fn kernels_before_5_18_are_refused_by_name() {
        let err = kernel_supported(KernelVersion::new(5, 15, 100)).expect_err("5.15 is too old");
        assert!(
            format!("{err}").contains("needs Linux 5.18 or later"),
            "{err}"
        );
        assert!(kernel_supported(KernelVersion::new(5, 18, 0)).is_ok());
        assert!(kernel_supported(KernelVersion::new(6, 1, 176)).is_ok());
    }
}
