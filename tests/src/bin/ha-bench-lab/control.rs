//! Family 4, control plane: `set-owner` to the first new flow steered (in the lab),
//! then the scale figures ([`crate::scale`]).

use std::{
    net::{SocketAddrV4, UdpSocket},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use ha_tests::{
    bench::stats::Stat,
    lab::{Bins, Lab, LabSpec, Node, XdpMode, control, net, ns, vip},
};
use ha_user::proto::{ChangeReport, Request};
use serde::Serialize;

use crate::{
    Args, check_interrupted,
    failover::write_json_extra,
    report::{Figure, Over, Section},
    scale,
};

const LAB_PREFIX: &str = "ha-bl-c-";
const PREFIX: &str = "192.168.1.64/27";
/// The prefix's configured owner and the host it is pinned to and back.
const HOSTS: [&str; 2] = ["host4", "host2"];

/// One `set-owner` trial.
#[derive(Clone, Debug, Serialize)]
pub struct SetOwnerTrial {
    pub via: &'static str,
    pub to: String,
    /// Request sent → first probe answered by the new owner was sent.
    pub steered_ms: f64,
    /// Time between that probe and the one before (answered by the old owner): the
    /// resolution of `steered_ms`.
    pub resolution_ms: f64,
    /// Request sent → answer received (the command returned).
    pub returned_ms: f64,
}

pub fn run(args: &Args, bins: &Bins) -> anyhow::Result<Section> {
    let mut section = Section::new("4. Control plane");
    if let Err(err) = set_owner(args, bins, &mut section) {
        eprintln!("ha-bench-lab: set-owner: {err:#}");
        section
            .notes
            .push(format!("set-owner measurement failed: {err:#}"));
    }
    check_interrupted()?;
    if let Err(err) = scale::run(args, bins, &mut section) {
        eprintln!("ha-bench-lab: scale: {err:#}");
        section.error = Some(format!("scale runs: {err:#}"));
    }
    Ok(section)
}

fn set_owner(args: &Args, bins: &Bins, section: &mut Section) -> anyhow::Result<()> {
    let (socket_trials, cli_trials) = if args.quick { (30, 10) } else { (100, 20) };
    let lab = Lab::build(LabSpec::new(LAB_PREFIX, XdpMode::Native, bins.clone()))
        .context("building the lab")?;
    let control_socket = lab.dir().join("ha.sock");
    let prefix = net(PREFIX);
    let target = SocketAddrV4::new(vip(prefix), lab.spec().udp_port);
    let mut flows = FreshFlows::new(&lab);
    // Warm the path (ARP, the echo) before timing anything.
    lab.udp_who(Node::LanClient, vip(prefix))?;
    let mut trials = Vec::new();
    for i in 0..socket_trials + cli_trials {
        check_interrupted()?;
        let to = HOSTS[i % 2];
        let via = if i < socket_trials {
            "control socket"
        } else {
            "ha-user CLI"
        };
        let trial = if i < socket_trials {
            let path = control_socket.clone();
            let request = Request::SetOwner {
                prefix,
                host: to.to_owned(),
                force: false,
            };
            measure(&mut flows, target, to, via, move || {
                control_request(&path, &request)
            })?
        } else {
            let (ha_user, config) = (bins.ha_user.clone(), lab.config_path().to_owned());
            measure(&mut flows, target, to, via, move || {
                cli_set_owner(&ha_user, &config, to)
            })?
        };
        trials.push(trial);
        std::thread::sleep(Duration::from_millis(20));
    }
    control_request(&control_socket, &Request::ClearOwner { prefix })?;
    section.setup.push(format!(
        "set-owner: lab `{LAB_PREFIX}*` (native XDP on veth), {PREFIX} pinned alternately \
         to host4 and back to host2; a probe in the LAN client sends one datagram to its \
         VIP from a new UDP socket (a new flow: flow affinity keeps a known flow with its \
         host during the move, as it should), waits for the echo (≤ 5 ms), and sends the \
         next, from just before the command until the new owner answers. Figure = command \
         sent → send time of the first new flow the new owner answered (resolution: one \
         probe round trip, reported). \
         {socket_trials} trials speaking the control socket directly (the command as the \
         controller sees it), {cli_trials} through the `ha-user set-owner` CLI (adds \
         process start-up)."
    ));
    let pick = |via: &str, f: fn(&SetOwnerTrial) -> f64| -> Vec<f64> {
        trials.iter().filter(|t| t.via == via).map(f).collect()
    };
    section.figures.push(
        Figure::new(
            "set-owner → first new flow steered (control socket)",
            "ms",
            Over::Trials,
            &pick("control socket", |t| t.steered_ms),
        )
        .target(Stat::P99, 2.0),
    );
    section.figures.push(Figure::new(
        "probe resolution (one round trip)",
        "ms",
        Over::Trials,
        &pick("control socket", |t| t.resolution_ms),
    ));
    section.figures.push(Figure::new(
        "set-owner → command returned (control socket)",
        "ms",
        Over::Trials,
        &pick("control socket", |t| t.returned_ms),
    ));
    section.figures.push(Figure::new(
        "`ha-user set-owner` CLI → first new flow steered",
        "ms",
        Over::Trials,
        &pick("ha-user CLI", |t| t.steered_ms),
    ));
    write_json_extra(args, "set-owner", &serde_json::to_value(&trials)?)?;
    Ok(())
}

/// UDP sockets of the LAN client for one probe each: every probe is a new flow. Bound
/// to ports counted up from [`FreshFlows::FIRST_PORT`], so that no port (and no flow
/// the data path may still remember) comes back within a run.
struct FreshFlows<'a> {
    lab: &'a Lab,
    next_port: u16,
    ready: Vec<UdpSocket>,
}

impl<'a> FreshFlows<'a> {
    const FIRST_PORT: u16 = 20_000;
    /// Sockets made at once (one namespace switch), before a trial starts.
    const BATCH: usize = 64;

    fn new(lab: &'a Lab) -> FreshFlows<'a> {
        FreshFlows {
            lab,
            next_port: Self::FIRST_PORT,
            ready: Vec::new(),
        }
    }

    /// At least [`Self::BATCH`] sockets ready.
    fn refill(&mut self) -> anyhow::Result<()> {
        let missing = Self::BATCH.saturating_sub(self.ready.len());
        let first = self.next_port;
        let last = first
            .checked_add(missing as u16)
            .context("set-owner probes: every port from 20000 up was used")?;
        let sockets = ns::in_netns(&self.lab.ns(Node::LanClient), move || {
            (first..last)
                .map(|port| {
                    let socket = UdpSocket::bind(("0.0.0.0", port))?;
                    socket.set_read_timeout(Some(Duration::from_millis(5)))?;
                    Ok(socket)
                })
                .collect::<std::io::Result<Vec<_>>>()
        })?
        .with_context(|| format!("binding probe sockets {first}..{last} in the LAN client"))?;
        self.next_port = last;
        self.ready.extend(sockets);
        Ok(())
    }

    fn take(&mut self) -> anyhow::Result<UdpSocket> {
        if self.ready.is_empty() {
            self.refill()?;
        }
        self.ready.pop().context("no probe socket")
    }
}

/// Sends the command from another thread and probes, each probe a new flow, until
/// `to` answers.
fn measure(
    flows: &mut FreshFlows<'_>,
    target: SocketAddrV4,
    to: &str,
    via: &'static str,
    command: impl FnOnce() -> anyhow::Result<()> + Send + 'static,
) -> anyhow::Result<SetOwnerTrial> {
    flows.refill()?;
    let commander = std::thread::spawn(move || {
        let sent = Instant::now();
        let result = command();
        (sent, Instant::now(), result)
    });
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut buffer = [0u8; 256];
    let mut previous: Option<Instant> = None;
    let mut seq = 0u64;
    let steered = loop {
        seq += 1;
        let probe = flows.take()?;
        let sent = Instant::now();
        probe.send_to(seq.to_string().as_bytes(), target)?;
        let mut answered_by = None;
        while let Ok((n, _)) = probe.recv_from(&mut buffer) {
            let text = String::from_utf8_lossy(&buffer[..n]);
            if let Some((host, number)) = text.split_once(' ')
                && number.trim() == seq.to_string()
            {
                answered_by = Some(host.to_owned());
                break;
            }
        }
        if answered_by.as_deref() == Some(to) {
            break (sent, previous);
        }
        previous = Some(sent);
        if Instant::now() > deadline {
            bail!("{to} did not answer a new flow within 2 s of set-owner");
        }
    };
    let (command_sent, returned, result) = commander
        .join()
        .map_err(|_| anyhow::anyhow!("the command thread panicked"))?;
    result?;
    let (first, before) = steered;
    let ms = |from: Instant, to: Instant| to.saturating_duration_since(from).as_secs_f64() * 1e3;
    Ok(SetOwnerTrial {
        via,
        to: to.to_owned(),
        steered_ms: ms(command_sent, first),
        resolution_ms: before.map_or(f64::NAN, |b| ms(b, first)),
        returned_ms: ms(command_sent, returned),
    })
}

/// One admin command on the controller's control socket, as the CLI sends it.
pub fn control_request(socket: &Path, request: &Request) -> anyhow::Result<()> {
    control::ask::<ChangeReport>(socket, request).map(drop)
}

fn cli_set_owner(ha_user: &PathBuf, config: &Path, to: &str) -> anyhow::Result<()> {
    let output = std::process::Command::new(ha_user)
        .arg("--config")
        .arg(config)
        .args(["set-owner", PREFIX, to])
        .output()
        .context("running ha-user set-owner")?;
    if !output.status.success() {
        bail!(
            "ha-user set-owner failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}
