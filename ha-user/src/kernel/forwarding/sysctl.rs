//! The IPv4 sysctls that decide how the kernel forwards what arrives on an interface,
//! read from `/proc/sys/net/ipv4` (the reading thread's network namespace), with the
//! kernel's own rule for combining `conf/all` and `conf/<interface>`:
//! - `forwarding`: the interface's own value alone (`IN_DEV_FORWARD`);
//! - `rp_filter`: the higher of the two (`IN_DEV_MAXCONF`);
//! - `accept_local`, `route_localnet`: either one (`IN_DEV_ORCONF`).

use std::{fs, io, path::PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} holds `{text}`, not a number", path.display())]
    NotANumber { path: PathBuf, text: String },
}

/// What the sysctls say about one interface, each as the kernel applies it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceSysctls {
    /// `conf/<interface>/forwarding`: the kernel forwards what arrives here.
    pub forwarding: bool,
    /// max(`conf/all/rp_filter`, `conf/<interface>/rp_filter`): 0 off, 1 strict, 2 loose.
    pub rp_filter: u32,
    /// `conf/all/accept_local` or `conf/<interface>/accept_local`.
    pub accept_local: bool,
    /// `conf/all/route_localnet` or `conf/<interface>/route_localnet`.
    pub route_localnet: bool,
}

/// `net.ipv4.ip_forward`.
pub fn ip_forward() -> Result<bool, SysctlError> {
    Ok(read(PathBuf::from("/proc/sys/net/ipv4/ip_forward"))? != 0)
}

/// The sysctls of interface `name`.
pub fn interface(name: &str) -> Result<InterfaceSysctls, SysctlError> {
    let conf = |iface: &str, key: &str| {
        // A dot in an interface name is a slash in the sysctl path (`eth0.100` is
        // `conf/eth0/100`).
        let dir = iface.replace('.', "/");
        read(PathBuf::from(format!(
            "/proc/sys/net/ipv4/conf/{dir}/{key}"
        )))
    };
    Ok(InterfaceSysctls {
        forwarding: conf(name, "forwarding")? != 0,
        rp_filter: conf("all", "rp_filter")?.max(conf(name, "rp_filter")?),
        accept_local: conf("all", "accept_local")? != 0 || conf(name, "accept_local")? != 0,
        route_localnet: conf("all", "route_localnet")? != 0 || conf(name, "route_localnet")? != 0,
    })
}

/// A sysctl (or any `/proc` file) holding one unsigned number.
pub fn read(path: PathBuf) -> Result<u32, SysctlError> {
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(source) => return Err(SysctlError::Read { path, source }),
    };
    let trimmed = text.trim();
    trimmed.parse().map_err(|_| SysctlError::NotANumber {
        text: trimmed.to_owned(),
        path,
    })
}
