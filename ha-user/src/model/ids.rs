//! Host and prefix ids: positions in the configuration, and the ids the data path
//! knows them by (host table index, statistics index).

use std::fmt;

/// A host: its position in the configuration's host list and its index in the data
/// path's host table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostId(u32);

/// A prefix: its position in the configuration's prefix list and its index in the
/// data path's per-prefix statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PrefixId(u32);

macro_rules! id {
    ($id:ident, $what:literal) => {
        impl $id {
            #[doc = concat!("The ", $what, " at `index`. A configuration holds at most")]
            /// `ha_common::MAX_HOSTS` hosts and `MAX_PREFIXES` prefixes, so every index
            /// of a validated configuration fits.
            pub const fn new(index: usize) -> Self {
                Self(index as u32)
            }

            #[doc = concat!("The ", $what, " the data path calls `raw`.")]
            pub const fn from_raw(raw: u32) -> Self {
                Self(raw)
            }

            /// The position in the configuration's list.
            pub const fn index(self) -> usize {
                self.0 as usize
            }

            /// The id in the data path's maps.
            pub const fn raw(self) -> u32 {
                self.0
            }

            #[doc = concat!("Every ", $what, " of a list of `count`, in order.")]
            pub fn all(count: usize) -> impl DoubleEndedIterator<Item = Self> + Clone {
                (0..count).map(Self::new)
            }
        }

        impl fmt::Display for $id {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "#{}", self.0)
            }
        }
    };
}

id!(HostId, "host");
id!(PrefixId, "prefix");
