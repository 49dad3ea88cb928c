//! Faults of the router's own LAN interface (`eth1`): a flap, and the interface
//! deleted and created again (a new ifindex each time), as a driver reload, a
//! hot-plugged NIC or a recreated veth does.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;

use super::{Lab, Node, ROUTER_LAN, mac_for, ns};

/// The router's LAN interface and its port on the switch.
const LAN: &str = "eth1";
const PORT: &str = "router";

impl Lab {
    /// `ip link set eth1 down`, `down_for` later `up` again, on the router.
    pub fn flap_router_lan(&self, down_for: Duration) -> anyhow::Result<()> {
        self.ip(Node::Router, &["link", "set", LAN, "down"])?;
        std::thread::sleep(down_for);
        self.ip(Node::Router, &["link", "set", LAN, "up"])?;
        Ok(())
    }

    /// Deletes the router's LAN interface (with its switch port: a veth pair goes
    /// as one). Its addresses, routes and neighbours go with it.
    pub fn delete_router_lan(&self) -> anyhow::Result<()> {
        self.ip(Node::Switch, &["link", "del", PORT])?;
        Ok(())
    }

    /// Creates the router's LAN interface again as the lab first made it (same
    /// name, MAC and address, on the switch), at ifindex `index` if given (else the
    /// kernel's next free one); in native mode with the pass program on its switch
    /// port again. Returns its ifindex.
    pub fn create_router_lan(&mut self, index: Option<u32>) -> anyhow::Result<u32> {
        let mac = mac_for(ROUTER_LAN).to_string();
        let switch = self.ns(Node::Switch);
        let index_text = index.map(|i| i.to_string());
        // Made in the router's namespace: only the first end of a veth pair takes an
        // `index`.
        let mut args = vec!["link", "add", LAN];
        if let Some(index) = &index_text {
            args.extend(["index", index.as_str()]);
        }
        args.extend([
            "address", &mac, "type", "veth", "peer", "name", PORT, "netns", &switch,
        ]);
        ns::check(&mut ns::ip(&self.ns(Node::Router), &args))?;
        self.ip(Node::Switch, &["link", "set", PORT, "master", "br0", "up"])?;
        let cidr = format!("{ROUTER_LAN}/27");
        self.ip(Node::Router, &["addr", "add", &cidr, "dev", LAN])?;
        self.ip(Node::Router, &["link", "set", LAN, "up"])?;
        if let Some(pass) = self.pass.as_mut() {
            pass.attach(&switch, PORT)?;
        }
        self.router_lan_ifindex()
    }

    /// The ifindex of the router's LAN interface now.
    pub fn router_lan_ifindex(&self) -> anyhow::Result<u32> {
        let link = self.router_lan_link()?;
        link["ifindex"]
            .as_u64()
            .and_then(|i| u32::try_from(i).ok())
            .with_context(|| format!("no ifindex in {link}"))
    }

    /// The id of the XDP program on the router's LAN interface, if any.
    pub fn router_lan_xdp(&self) -> anyhow::Result<Option<u64>> {
        Ok(self.router_lan_link()?["xdp"]["prog"]["id"].as_u64())
    }

    /// `ip -j link show eth1` on the router.
    fn router_lan_link(&self) -> anyhow::Result<Value> {
        let text = self.ip(Node::Router, &["-j", "link", "show", "dev", LAN])?;
        let links: Value = serde_json::from_str(&text).context("parsing `ip -j link`")?;
        links
            .get(0)
            .cloned()
            .with_context(|| format!("no {LAN} in {text}"))
    }
}
