//! `ha-stream`: a sequence-numbered UDP stream at a fixed rate to an `ha-webd` echo,
//! with every answer recorded (sequence number, answering host, receive time) and
//! analysed: loss by sequence number, answers per host, every change of answering
//! host with the outage around it, and a timeline in 100 ms buckets.
//!
//! ```text
//! ha-stream --target 192.168.1.65:9000 [--rate 1000] [--duration-ms 5000]
//!           [--grace-ms 300] [--json OUT] [--answers]
//! ```
//!
//! Prints `sending ...` on stderr when datagram 0 leaves, a one-line summary at the
//! end, and the JSON report (`ha_tests::lab::StreamReport`) to OUT, or to stdout
//! without `--json`. `--answers` adds every answer to the report.

use std::{
    net::{SocketAddrV4, UdpSocket},
    path::PathBuf,
    process::ExitCode,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant, SystemTime},
};

use anyhow::Context as _;
use clap::Parser as _;
use ha_tests::lab::stream::{Answer, StreamReport, StreamSetup};

/// A sequence-numbered UDP stream at a fixed rate to an `ha-webd` echo.
#[derive(clap::Parser)]
#[command(name = "ha-stream")]
struct Args {
    /// The echo to send to (a VIP and the echo's port).
    #[arg(long)]
    target: SocketAddrV4,
    /// Datagrams per second.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    rate: u64,
    /// How long to send.
    #[arg(long, default_value_t = 5000)]
    duration_ms: u64,
    /// How long to wait for late answers after the last datagram.
    #[arg(long, default_value_t = 300)]
    grace_ms: u64,
    /// Write the JSON report here instead of to stdout.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Add every answer to the report.
    #[arg(long)]
    answers: bool,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ha-stream: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn ms_since(base: Instant, at: Instant) -> f64 {
    at.saturating_duration_since(base).as_secs_f64() * 1e3
}

fn run() -> anyhow::Result<()> {
    let Args {
        target,
        rate,
        duration_ms,
        grace_ms,
        json,
        answers: keep_answers,
    } = Args::parse();
    let total = rate * duration_ms / 1000;
    let socket = UdpSocket::bind("0.0.0.0:0").context("binding a UDP socket")?;
    socket
        .set_read_timeout(Some(Duration::from_millis(10)))
        .context("SO_RCVTIMEO")?;
    let sender = socket.try_clone().context("cloning the socket")?;
    let done = AtomicBool::new(false);
    let base = Instant::now();
    let start_unix_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3);
    eprintln!("sending to {target} at {rate}/s for {duration_ms} ms ({total} datagrams)");

    let (sent_ms, mut received, send_errors) = std::thread::scope(|scope| {
        let send = scope.spawn(|| {
            let mut sent_ms = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
            let mut errors = 0u64;
            for seq in 0..total {
                let due = base + Duration::from_nanos(seq * 1_000_000_000 / rate);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                let sent_at = Instant::now();
                if sender.send_to(seq.to_string().as_bytes(), target).is_err() {
                    errors += 1;
                }
                sent_ms.push(ms_since(base, sent_at));
            }
            done.store(true, Ordering::Release);
            (sent_ms, errors)
        });
        let mut received: Vec<(u64, String, f64)> = Vec::new();
        let mut buffer = [0u8; 2048];
        let mut grace_end: Option<Instant> = None;
        loop {
            if let Ok((n, _)) = socket.recv_from(&mut buffer) {
                let at = Instant::now();
                let text = String::from_utf8_lossy(&buffer[..n]);
                if let Some((host, seq)) = text.split_once(' ')
                    && let Ok(seq) = seq.trim().parse::<u64>()
                {
                    received.push((seq, host.to_owned(), ms_since(base, at)));
                }
            }
            if grace_end.is_none() && done.load(Ordering::Acquire) {
                grace_end = Some(Instant::now() + Duration::from_millis(grace_ms));
            }
            if grace_end.is_some_and(|end| Instant::now() >= end) {
                break;
            }
        }
        let (sent_ms, errors) = send.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        (sent_ms, received, errors)
    });

    let answers: Vec<Answer> = received
        .drain(..)
        .map(|(seq, host, received_ms)| Answer {
            sent_ms: usize::try_from(seq)
                .ok()
                .and_then(|i| sent_ms.get(i).copied())
                .unwrap_or(-1.0),
            seq,
            host,
            received_ms,
        })
        .collect();
    let setup = StreamSetup {
        target: target.to_string(),
        rate,
        duration_ms,
        start_unix_ms,
    };
    let report = StreamReport::analyse(setup, total, answers, keep_answers);
    eprintln!("ha-stream: {}", report.summary());
    if send_errors > 0 {
        eprintln!("ha-stream: {send_errors} datagrams could not be sent");
    }
    let text = serde_json::to_string_pretty(&report).context("serializing the report")?;
    match json {
        Some(path) => {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => println!("{text}"),
    }
    Ok(())
}
