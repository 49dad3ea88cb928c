//! The router's state as a start-up of the controller may change it, read for
//! before/after comparisons: what runs on each interface (XDP, tc qdiscs and
//! filters, TCX programs), the pins under the lab's pin directory and the whole
//! routing table, both families (IPv6 link-local routes aside: they come and go by
//! themselves).

use std::{collections::BTreeMap, fmt, path::Path};

use anyhow::Context as _;
use aya::programs::{SchedClassifier, TcAttachType};
use serde_json::Value;

use super::{Lab, Node, ns};

/// What runs on one interface of the router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceState {
    /// The `xdp` object of `ip -j link show` (mode and program), `null` without XDP.
    pub xdp: Value,
    /// `tc -j qdisc show dev IFACE`.
    pub qdiscs: Value,
    /// `tc -j filter show dev IFACE ingress` and `... egress` (clsact filters).
    pub filters: [Value; 2],
    /// The ids of the programs attached through TCX at ingress and egress.
    pub tcx: [Vec<u32>; 2],
}

/// The router's state: see the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterState {
    pub interfaces: BTreeMap<String, InterfaceState>,
    /// The names under the pin directory, sorted; `None`: no pin directory.
    pub pins: Option<Vec<String>>,
    /// `ip -j route show table all`, one JSON object a route, sorted, without the
    /// IPv6 link-local routes.
    pub routes: Vec<String>,
}

impl Lab {
    /// The router's state now.
    pub fn router_state(&self) -> anyhow::Result<RouterState> {
        let links: Vec<Value> = serde_json::from_str(&self.ip(Node::Router, &["-j", "link"])?)
            .context("parsing `ip -j link`")?;
        let mut interfaces = BTreeMap::new();
        for link in links {
            let name = link["ifname"]
                .as_str()
                .context("a link without a name")?
                .to_owned();
            let state = self.interface_state(&name, link["xdp"].clone())?;
            interfaces.insert(name, state);
        }
        let text = self.ip(Node::Router, &["-j", "route", "show", "table", "all"])?;
        let routes: Vec<Value> = serde_json::from_str(&text).context("parsing `ip -j route`")?;
        let mut routes: Vec<String> = routes
            .iter()
            .filter(|route| !is_link_local(route))
            .map(Value::to_string)
            .collect();
        routes.sort();
        Ok(RouterState {
            interfaces,
            pins: pin_names(self.pin_dir())?,
            routes,
        })
    }

    fn interface_state(&self, iface: &str, xdp: Value) -> anyhow::Result<InterfaceState> {
        let tc = |args: &[&str]| -> anyhow::Result<Value> {
            let mut all = vec!["tc", "-j"];
            all.extend_from_slice(args);
            let text = self.exec_ok(Node::Router, &all)?;
            serde_json::from_str(&text).with_context(|| format!("parsing `{}`", all.join(" ")))
        };
        let qdiscs = tc(&["qdisc", "show", "dev", iface])?;
        let filters = [
            tc(&["filter", "show", "dev", iface, "ingress"])?,
            tc(&["filter", "show", "dev", iface, "egress"])?,
        ];
        let tcx = ns::in_netns(&self.ns(Node::Router), || {
            let ids = |attach| -> anyhow::Result<Vec<u32>> {
                let (_, programs) = SchedClassifier::query_tcx(iface, attach)
                    .with_context(|| format!("querying the TCX programs of {iface}"))?;
                Ok(programs.iter().map(|p| p.id()).collect())
            };
            Ok::<_, anyhow::Error>([ids(TcAttachType::Ingress)?, ids(TcAttachType::Egress)?])
        })??;
        Ok(InterfaceState {
            xdp,
            qdiscs,
            filters,
            tcx,
        })
    }
}

/// An IPv6 link-local route (`fe80::/64`, an interface's own `fe80::` address): the
/// kernel adds these by itself once an interface's duplicate address detection ends,
/// seconds after the lab is built; `ha` touches no IPv6 route.
fn is_link_local(route: &Value) -> bool {
    route["dst"]
        .as_str()
        .is_some_and(|dst| dst.starts_with("fe80:"))
}

fn pin_names(dir: &Path) -> anyhow::Result<Option<Vec<String>>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("listing {}", dir.display())),
    };
    let mut names: Vec<String> = entries
        .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("listing {}", dir.display()))?;
    names.sort();
    Ok(Some(names))
}

impl RouterState {
    /// What differs from `before`, one line each; empty when nothing does.
    pub fn differences(&self, before: &RouterState) -> Vec<String> {
        let mut lines = Vec::new();
        let names: std::collections::BTreeSet<&String> = self
            .interfaces
            .keys()
            .chain(before.interfaces.keys())
            .collect();
        for name in names {
            match (before.interfaces.get(name), self.interfaces.get(name)) {
                (Some(was), Some(now)) if was != now => {
                    lines.push(format!("interface {name}: was {was:?}, now {now:?}"));
                }
                (None, Some(_)) => lines.push(format!("interface {name} appeared")),
                (Some(_), None) => lines.push(format!("interface {name} disappeared")),
                _ => {}
            }
        }
        if self.pins != before.pins {
            lines.push(format!("pins: were {:?}, now {:?}", before.pins, self.pins));
        }
        for route in before.routes.iter().filter(|r| !self.routes.contains(r)) {
            lines.push(format!("route gone: {route}"));
        }
        for route in self.routes.iter().filter(|r| !before.routes.contains(r)) {
            lines.push(format!("route new: {route}"));
        }
        lines
    }
}

impl fmt::Display for RouterState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, state) in &self.interfaces {
            writeln!(
                f,
                "{name}: xdp {} tcx {:?} filters {} {}",
                state.xdp, state.tcx, state.filters[0], state.filters[1]
            )?;
        }
        writeln!(f, "pins: {:?}", self.pins)?;
        for route in &self.routes {
            writeln!(f, "{route}")?;
        }
        Ok(())
    }
}
