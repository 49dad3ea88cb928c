//! `ha_learn` on the LAN interface's egress: the TC program that records the flows
//! the kernel forwarded (see ha-ebpf's `learn.rs`).
//!
//! Where the kernel has TCX (6.6 and later) the program hangs on a bpf link pinned
//! beside the XDP links (`<pin_dir>/tclink_<iface>`), so it outlives the controller
//! and a new controller replaces the program through the pin, atomically, as for
//! XDP. On older kernels it is a clsact egress filter at a fixed priority and handle
//! ([`NETLINK_PRIORITY`], [`NETLINK_HANDLE`]): a filter outlives the process by
//! itself, and a new controller replaces it in place.

use std::path::{Path, PathBuf};

use aya::{
    Ebpf,
    programs::{
        LinkOrder, ProgramError, SchedClassifier, TcAttachType,
        links::{FdLink, PinnedLink},
        tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions, TcError, TcHandle},
    },
};
use ha_common::{PROG_LEARN, TC_LINK_PREFIX};

use super::DatapathError;

/// Priority of the netlink filter on kernels without TCX ("ha" in ASCII).
pub const NETLINK_PRIORITY: u16 = 0x6861;
/// Handle of that filter.
pub const NETLINK_HANDLE: TcHandle = TcHandle::new(0, 0x165);

/// Where the TCX link of `iface` is pinned.
pub fn tc_link_pin_path(pin_dir: &Path, iface: &str) -> PathBuf {
    pin_dir.join(format!("{TC_LINK_PREFIX}{iface}"))
}

/// How `ha_learn` hangs on the interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LearnHook {
    /// A TCX link, pinned.
    Tcx,
    /// A clsact egress filter.
    Netlink,
}

/// `ha_learn` of a loaded object, loaded into the kernel.
pub fn learn_program(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier, DatapathError> {
    let program: &mut SchedClassifier = ebpf
        .program_mut(PROG_LEARN)
        .ok_or(DatapathError::MissingProgram)?
        .try_into()
        .map_err(DatapathError::Program)?;
    if program.fd().is_err() {
        program.load().map_err(DatapathError::Program)?;
    }
    Ok(program)
}

/// Attaches `program` to `iface`'s egress, replacing the program of an existing
/// attachment of ours. Returns the hook used and whether an attachment was taken over.
pub fn attach(
    program: &mut SchedClassifier,
    pin_dir: &Path,
    iface: &str,
) -> Result<(LearnHook, bool), DatapathError> {
    let pin = tc_link_pin_path(pin_dir, iface);
    let learn_err = |source| DatapathError::Learn {
        iface: iface.to_owned(),
        source,
    };
    if pin.exists() {
        let adopt = |source| DatapathError::Adopt {
            path: pin.clone(),
            source,
        };
        let fd_link: FdLink = PinnedLink::from_pin(&pin).map_err(adopt)?.into();
        let link = SchedClassifierLink::try_from(fd_link).map_err(adopt)?;
        let id = program.attach_to_link(link).map_err(learn_err)?;
        // The pin keeps the link; dropping our handle closes only a descriptor.
        drop(program.take_link(id).map_err(DatapathError::Program)?);
        return Ok((LearnHook::Tcx, true));
    }
    // A filter of ours from an earlier controller (kernels without TCX): replace it.
    let ours = SchedClassifierLink::attached(
        iface,
        TcAttachType::Egress,
        NETLINK_PRIORITY,
        NETLINK_HANDLE,
        None,
    )
    .map_err(|source| learn_err(TcError::IoError(source).into()))?;
    if let Ok(id) = program.attach_to_link(ours) {
        keep_filter(program, id)?;
        return Ok((LearnHook::Netlink, true));
    }
    let tcx = program.attach_with_options(
        iface,
        TcAttachType::Egress,
        TcAttachOptions::TcxOrder(LinkOrder::default()),
    );
    match tcx {
        Ok(id) => {
            let link = program.take_link(id).map_err(DatapathError::Program)?;
            let fd_link = FdLink::try_from(link).map_err(|source| DatapathError::Adopt {
                path: pin.clone(),
                source,
            })?;
            fd_link.pin(&pin).map_err(|source| DatapathError::Pin {
                path: pin.clone(),
                source,
            })?;
            Ok((LearnHook::Tcx, false))
        }
        // No TCX on this kernel (before 6.6): a clsact filter.
        Err(ProgramError::SyscallError(err))
            if matches!(
                err.io_error.raw_os_error(),
                Some(libc::EINVAL | libc::EOPNOTSUPP)
            ) =>
        {
            match tc::qdisc_add_clsact(iface) {
                Ok(()) => {}
                Err(TcError::NetlinkError(err)) if err.raw_os_error() == Some(libc::EEXIST) => {}
                Err(source) => return Err(learn_err(source.into())),
            }
            let options = NlOptions {
                priority: NETLINK_PRIORITY,
                handle: NETLINK_HANDLE,
                classid: None,
            };
            let id = program
                .attach_with_options(
                    iface,
                    TcAttachType::Egress,
                    TcAttachOptions::Netlink(options),
                )
                .map_err(learn_err)?;
            keep_filter(program, id)?;
            Ok((LearnHook::Netlink, false))
        }
        Err(source) => Err(learn_err(source)),
    }
}

/// Leaves a netlink filter attached after this process: the link handle would
/// detach it when dropped.
fn keep_filter(
    program: &mut SchedClassifier,
    id: tc::SchedClassifierLinkId,
) -> Result<(), DatapathError> {
    let link = program.take_link(id).map_err(DatapathError::Program)?;
    std::mem::forget(link);
    Ok(())
}

/// Removes the clsact filter of ours from `iface`, if there is one (kernels without
/// TCX; a TCX link goes with its pin). Returns whether one was removed.
pub fn detach_filter(iface: &str) -> Result<bool, DatapathError> {
    match tc::qdisc_detach_program(iface, TcAttachType::Egress, PROG_LEARN) {
        Ok(()) => Ok(true),
        Err(TcError::IoError(err)) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
        // No clsact qdisc on the interface (EINVAL), or it went away meanwhile.
        Err(TcError::NetlinkError(err))
            if matches!(
                err.raw_os_error(),
                Some(libc::EINVAL | libc::ENOENT | libc::ENODEV)
            ) =>
        {
            Ok(false)
        }
        Err(source) => Err(DatapathError::Learn {
            iface: iface.to_owned(),
            source: source.into(),
        }),
    }
}
