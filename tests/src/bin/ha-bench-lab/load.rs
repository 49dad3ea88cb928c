//! Forwarding load through the lab's router: UDP datagrams from the clients to the
//! VIPs at a fixed rate per lane, echoed by the web servers, counted but not
//! analysed (ha-stream keeps every answer: too much memory for minutes at tens of
//! kpps). The load actually achieved is measured at the router: the data path's
//! steered frames (XDP_TX + XDP_REDIRECT) and the kernel's forwarded datagrams (the
//! answers to the WAN client).

use std::{
    net::SocketAddrV4,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use ha_tests::lab::{Counter, Lab, Node};
use serde::Serialize;

/// One sender: a client and the VIP it loads.
#[derive(Clone, Copy, Debug)]
pub struct Lane {
    pub node: Node,
    pub target: SocketAddrV4,
}

/// A running load.
pub struct LoadRun {
    stop: Arc<AtomicBool>,
    senders: Vec<JoinHandle<(u64, u64)>>,
    receivers: Vec<JoinHandle<u64>>,
    started: Instant,
    steered_before: u64,
    forwarded_before: u64,
    offered_pps: u64,
}

/// What a load achieved, per second of its run.
#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    pub seconds: f64,
    pub lanes: usize,
    pub offered_pps: u64,
    pub sent_pps: f64,
    pub answered_pps: f64,
    /// Frames the data path steered (XDP_TX + XDP_REDIRECT), per second.
    pub steered_pps: f64,
    /// Datagrams the router's kernel forwarded (`Ip: ForwDatagrams`), per second.
    pub kernel_forwarded_pps: f64,
    pub send_errors: u64,
}

impl LoadReport {
    pub fn summary(&self) -> String {
        format!(
            "{} lanes offering {} pps in all: sent {:.0} pps, answered {:.0} pps; router: \
             {:.0} pps steered by XDP + {:.0} pps forwarded by the kernel (over {:.0} s)",
            self.lanes,
            self.offered_pps,
            self.sent_pps,
            self.answered_pps,
            self.steered_pps,
            self.kernel_forwarded_pps,
            self.seconds
        )
    }
}

fn steered(lab: &Lab) -> anyhow::Result<u64> {
    let counters = lab.xdp_counters()?;
    Ok(counters.get(Counter::Tx) + counters.get(Counter::Redirect))
}

/// Starts `rate` datagrams per second on every lane.
pub fn start(lab: &Lab, lanes: &[Lane], rate: u64) -> anyhow::Result<LoadRun> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    let steered_before = steered(lab)?;
    let forwarded_before = lab.forwarded_datagrams()?;
    for (index, lane) in lanes.iter().enumerate() {
        let socket = lab.udp_socket(lane.node)?;
        socket.set_read_timeout(Some(Duration::from_millis(20)))?;
        let sender = socket.try_clone().context("cloning a socket")?;
        let target = lane.target;
        let stop_send = Arc::clone(&stop);
        senders.push(
            std::thread::Builder::new()
                .name(format!("load-send-{index}"))
                .spawn(move || send(&sender, target, rate, &stop_send))
                .context("spawning a load sender")?,
        );
        let stop_receive = Arc::clone(&stop);
        receivers.push(
            std::thread::Builder::new()
                .name(format!("load-recv-{index}"))
                .spawn(move || receive(&socket, &stop_receive))
                .context("spawning a load receiver")?,
        );
    }
    Ok(LoadRun {
        stop,
        senders,
        receivers,
        started: Instant::now(),
        steered_before,
        forwarded_before,
        offered_pps: rate * lanes.len() as u64,
    })
}

/// Sends at `rate` per second in 1 ms bursts until `stop`. Returns (sent, errors).
fn send(
    socket: &std::net::UdpSocket,
    target: SocketAddrV4,
    rate: u64,
    stop: &AtomicBool,
) -> (u64, u64) {
    let start = Instant::now();
    let (mut sent, mut errors) = (0u64, 0u64);
    let payload = b"load";
    while !stop.load(Ordering::Relaxed) {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due {
            if socket.send_to(payload, target).is_err() {
                errors += 1;
            }
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    (sent, errors)
}

fn receive(socket: &std::net::UdpSocket, stop: &AtomicBool) -> u64 {
    let mut buffer = [0u8; 256];
    let mut answered = 0;
    let mut grace: Option<Instant> = None;
    loop {
        if socket.recv_from(&mut buffer).is_ok() {
            answered += 1;
        }
        if grace.is_none() && stop.load(Ordering::Relaxed) {
            grace = Some(Instant::now() + Duration::from_millis(100));
        }
        if grace.is_some_and(|end| Instant::now() >= end) {
            return answered;
        }
    }
}

impl LoadRun {
    /// Stops the load and measures what it achieved.
    pub fn stop(mut self, lab: &Lab) -> anyhow::Result<LoadReport> {
        let seconds = self.started.elapsed().as_secs_f64();
        let steered_after = steered(lab)?;
        let forwarded_after = lab.forwarded_datagrams()?;
        self.stop.store(true, Ordering::Relaxed);
        let (mut sent, mut errors, mut answered) = (0, 0, 0);
        let lanes = self.senders.len();
        for sender in std::mem::take(&mut self.senders) {
            let (s, e) = sender
                .join()
                .map_err(|_| anyhow::anyhow!("a load sender panicked"))?;
            sent += s;
            errors += e;
        }
        for receiver in std::mem::take(&mut self.receivers) {
            answered += receiver
                .join()
                .map_err(|_| anyhow::anyhow!("a load receiver panicked"))?;
        }
        Ok(LoadReport {
            seconds,
            lanes,
            offered_pps: self.offered_pps,
            sent_pps: sent as f64 / seconds,
            answered_pps: answered as f64 / seconds,
            steered_pps: steered_after.saturating_sub(self.steered_before) as f64 / seconds,
            kernel_forwarded_pps: forwarded_after.saturating_sub(self.forwarded_before) as f64
                / seconds,
            send_errors: errors,
        })
    }
}

impl Drop for LoadRun {
    /// A load abandoned on an error path stops too (its threads end within ~0.1 s).
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
