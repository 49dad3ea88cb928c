//! Failures a web server can suffer, and their repair.

use std::fmt;

use super::{Lab, Node};

/// A failure of one web server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The web server process is SIGKILLed (HTTP and UDP echo die; the host still
    /// answers at L3, so connections are refused at once). Repair: start it again.
    KillWeb,
    /// The host's `eth0` goes down. Repair: up again, default route restored.
    LinkDown,
    /// Every frame to or from the host vanishes silently, its link staying up: a
    /// hung machine. Done with the `blackhole` qdisc on the host's `eth0` (what it
    /// sends) and on its switch port (what it would receive): this kernel has no tc
    /// actions (`matchall action drop` fails with "TC classifier not found", gact is
    /// missing), and egress qdiscs need none. Repair: remove both qdiscs.
    Blackhole,
}

impl Fault {
    pub const ALL: [Fault; 3] = [Fault::KillWeb, Fault::LinkDown, Fault::Blackhole];
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fault::KillWeb => "web server killed",
            Fault::LinkDown => "link down",
            Fault::Blackhole => "blackholed",
        })
    }
}

impl Lab {
    /// Makes `host` suffer `fault`.
    pub fn inject(&mut self, host: &str, fault: Fault) -> anyhow::Result<()> {
        let node = Node::host(host)?;
        match fault {
            Fault::KillWeb => self.kill_web(host)?,
            Fault::LinkDown => {
                self.ip(node, &["link", "set", "eth0", "down"])?;
            }
            Fault::Blackhole => {
                let port = node.to_string();
                for (node, dev) in [(node, "eth0"), (Node::Switch, port.as_str())] {
                    self.exec_ok(
                        node,
                        &["tc", "qdisc", "add", "dev", dev, "root", "blackhole"],
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Undoes `fault` on `host`.
    pub fn repair(&mut self, host: &str, fault: Fault) -> anyhow::Result<()> {
        let node = Node::host(host)?;
        match fault {
            Fault::KillWeb => self.start_web(host)?,
            Fault::LinkDown => {
                self.ip(node, &["link", "set", "eth0", "up"])?;
                // The kernel dropped the routes through eth0 with the link.
                self.ip(node, &["route", "replace", "default", "via", "192.168.1.1"])?;
            }
            Fault::Blackhole => {
                let port = node.to_string();
                for (node, dev) in [(node, "eth0"), (Node::Switch, port.as_str())] {
                    self.exec_ok(node, &["tc", "qdisc", "del", "dev", dev, "root"])?;
                }
            }
        }
        Ok(())
    }
}
