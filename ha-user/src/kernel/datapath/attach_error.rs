//! Why the kernel refused to attach XDP to an interface, in words that name the
//! remedy. `bpf_link_create` (and aya's netlink fallback) report only an errno; the
//! kernel's own explanation goes to the extended ack or a tracepoint, which the
//! caller does not see. What each errno means in practice:
//!
//! | errno | where | meaning |
//! |---|---|---|
//! | `EOPNOTSUPP` | any driver without `ndo_bpf` (bridge, macvlan, ifb, most virtual devices) in native mode | no native XDP |
//! | `EBUSY` | `dev_xdp_attach`: a program or link is already attached in this mode | another program |
//! | `EEXIST` | `dev_xdp_attach`: a program is attached in the other mode (native and generic cannot both run) | another program |
//! | `ERANGE` | veth (`veth_xdp_set`) and other drivers for a program that is not multi-buffer aware and an MTU above one page | MTU too large |
//! | `EINVAL` | many drivers (virtio_net, mlx5, ixgbe, ...) for an MTU their XDP does not support | MTU too large, when the MTU is above 1500 |
//! | `ENOSPC` | veth: the device has fewer receive queues than its peer has transmit queues | queues |
//! | `ENOTCONN` | veth: the peer is gone | no peer |
//!
//! Measured here (6.18): `EOPNOTSUPP` on a bridge, `ENOSPC` on a veth created with
//! `numrxqueues 1` whose peer has 4 transmit queues, `EBUSY` and `EEXIST` with
//! another program attached in the same and in the other mode. The program is
//! multi-buffer aware, so veth accepts it at any MTU up to 65,535: `ERANGE` needs a
//! driver whose XDP has no multi-buffer support.

use crate::model::XdpMode;

/// The largest MTU no driver refuses native XDP for (Ethernet's).
const PLAIN_MTU: u32 = 1500;

/// What an attach error means, from the errno the kernel returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachCause {
    /// `ERANGE`, or `EINVAL` on an interface whose MTU is above 1500: the driver's
    /// native XDP cannot take frames of that size.
    MtuTooLarge { mtu: u32 },
    /// `EBUSY`: another XDP program is attached in this mode.
    OtherProgram,
    /// `EEXIST`: another XDP program is attached in the other mode.
    OtherMode,
    /// `EOPNOTSUPP`: the driver has no native XDP.
    NoNativeXdp,
    /// `ENOSPC`: a veth with fewer receive queues than its peer's transmit queues.
    Queues,
    /// `ENOTCONN`: a veth whose peer is gone.
    NoPeer,
    /// Anything else.
    Other,
}

impl AttachCause {
    /// The cause of an attach in `mode` to an interface of MTU `mtu` failing with
    /// `errno`.
    pub fn of(errno: Option<i32>, mode: XdpMode, mtu: u32) -> AttachCause {
        match errno {
            Some(libc::ERANGE) => AttachCause::MtuTooLarge { mtu },
            Some(libc::EINVAL) if mode == XdpMode::Native && mtu > PLAIN_MTU => {
                AttachCause::MtuTooLarge { mtu }
            }
            Some(libc::EBUSY) => AttachCause::OtherProgram,
            Some(libc::EEXIST) => AttachCause::OtherMode,
            Some(libc::EOPNOTSUPP) if mode == XdpMode::Native => AttachCause::NoNativeXdp,
            Some(libc::ENOSPC) => AttachCause::Queues,
            Some(libc::ENOTCONN) => AttachCause::NoPeer,
            _ => AttachCause::Other,
        }
    }

    /// What went wrong on `iface` and what to do about it.
    pub fn explain(&self, iface: &str) -> String {
        match self {
            AttachCause::MtuTooLarge { mtu } => format!(
                "the MTU ({mtu}) of {iface} is too large for native XDP on this driver; \
                 lower it (`ip link set {iface} mtu 1500`) or use --xdp-mode skb"
            ),
            AttachCause::OtherProgram => format!(
                "another XDP program is attached to {iface} (see `bpftool net`); detach \
                 it or choose another interface"
            ),
            AttachCause::OtherMode => format!(
                "another XDP program is attached to {iface} in the other mode (native and \
                 generic XDP cannot both run; see `bpftool net`); detach it or choose \
                 another interface"
            ),
            AttachCause::NoNativeXdp => {
                format!("the driver of {iface} has no native XDP: use --xdp-mode skb")
            }
            AttachCause::Queues => format!(
                "{iface} has fewer receive queues than its veth peer has transmit queues, \
                 which native XDP on veth needs: create the pair with `numrxqueues` on \
                 {iface} at least the peer's `numtxqueues`, or use --xdp-mode skb"
            ),
            AttachCause::NoPeer => {
                format!("the veth peer of {iface} is gone; recreate the pair and start again")
            }
            AttachCause::Other => "the kernel refused (see `bpftool net` and `dmesg`); try \
                 --xdp-mode skb if the driver's native XDP is the problem"
                .to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_errno_met_in_practice_names_its_cause() {
        let native = |errno, mtu| AttachCause::of(Some(errno), XdpMode::Native, mtu);
        assert_eq!(
            native(libc::ERANGE, 9000),
            AttachCause::MtuTooLarge { mtu: 9000 }
        );
        assert_eq!(
            native(libc::EINVAL, 9000),
            AttachCause::MtuTooLarge { mtu: 9000 }
        );
        // EINVAL at a plain MTU is something else.
        assert_eq!(native(libc::EINVAL, 1500), AttachCause::Other);
        assert_eq!(native(libc::EBUSY, 1500), AttachCause::OtherProgram);
        assert_eq!(native(libc::EEXIST, 1500), AttachCause::OtherMode);
        assert_eq!(native(libc::EOPNOTSUPP, 1500), AttachCause::NoNativeXdp);
        assert_eq!(native(libc::ENOSPC, 1500), AttachCause::Queues);
        assert_eq!(native(libc::ENOTCONN, 1500), AttachCause::NoPeer);
        assert_eq!(native(libc::EPERM, 1500), AttachCause::Other);
        assert_eq!(
            AttachCause::of(None, XdpMode::Native, 1500),
            AttachCause::Other
        );
        // Generic mode works on every driver: no advice to use it.
        assert_eq!(
            AttachCause::of(Some(libc::EOPNOTSUPP), XdpMode::Skb, 1500),
            AttachCause::Other
        );
        assert_eq!(
            AttachCause::of(Some(libc::EINVAL), XdpMode::Skb, 9000),
            AttachCause::Other
        );
    }

    #[test]
    fn the_mtu_message_names_the_mtu_the_interface_and_both_remedies() {
        assert_eq!(
            AttachCause::MtuTooLarge { mtu: 9000 }.explain("eth0"),
            "the MTU (9000) of eth0 is too large for native XDP on this driver; lower it \
             (`ip link set eth0 mtu 1500`) or use --xdp-mode skb"
        );
        assert!(
            AttachCause::OtherProgram
                .explain("eth0")
                .contains("bpftool net")
        );
        assert!(
            AttachCause::NoNativeXdp
                .explain("br0")
                .ends_with("use --xdp-mode skb")
        );
    }
}
