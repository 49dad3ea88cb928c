//! How the XDP program is attached.

use std::fmt;

use serde::{Deserialize, Serialize};

/// XDP attach mode: the configuration's `xdp_mode` and `ha-user run --xdp-mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// In the driver: fastest. veth needs the preparation the README describes.
    #[default]
    Native,
    /// Generic (skb) mode: works on any interface, slower.
    Skb,
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XdpMode::Native => "native",
            XdpMode::Skb => "skb",
        })
    }
}
