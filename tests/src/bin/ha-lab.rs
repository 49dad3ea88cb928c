//! `ha-lab` (run by `cargo xtask lab`): the classic network of "High Availability
//! Linux Web Servers" in network namespaces, with `ha` on its router, and a live
//! tour: steering from both clients, a web server killed and back, a link cut and
//! back, a prefix moved by hand, a host drained and back. Every step is printed with
//! a timestamp and measured, with what it did to long-lived TCP connections of the
//! clients; the timeline goes to an HTML report. The network is removed at the end, on Ctrl-C,
//! and (by the next run) when a run was killed; `--keep` leaves it up to explore
//! until Ctrl-C.

use std::{
    net::SocketAddrV4,
    path::PathBuf,
    process::ExitCode,
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, bail};
use ha_common::MAP_PREFIXES;
use ha_tests::lab::{
    Bins, Fault, Lab, LabSpec, Node, OwnerChange, PrefixSpec, StreamReport, XdpMode, net,
    population::{Fate, Population},
    report::{Event, EventKind, Panel, Report, Row, Series, render_html},
    vip,
};

/// Set when Ctrl-C or SIGTERM arrives: the tour stops at the next step and cleans up.
static ABORT: AtomicBool = AtomicBool::new(false);

const PREFIX: &str = "ha-";
const STREAM_RATE: u64 = 1000;
const STREAM_SECONDS: u64 = 32;
/// One keep-alive request per long-lived TCP connection every so often.
const PERIOD: Duration = Duration::from_millis(100);
/// Long-lived TCP connections per prefix the tour moves, half from each client.
const CONNECTIONS: usize = 8;
/// How long each event's connections are watched before the next step: long enough
/// for a stall (an answer waiting > 1 s) to show.
const WATCH: Duration = Duration::from_millis(2000);

struct Args {
    xdp_mode: XdpMode,
    report: PathBuf,
    keep: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        xdp_mode: XdpMode::Native,
        report: PathBuf::from("target/lab/report.html"),
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--keep" => args.keep = true,
            "--xdp-mode" => {
                args.xdp_mode = match it.next().as_deref() {
                    Some("native") => XdpMode::Native,
                    Some("skb") => XdpMode::Skb,
                    other => bail!("--xdp-mode takes native or skb, not {other:?}"),
                }
            }
            "--report" => args.report = it.next().context("--report takes a path")?.into(),
            "-h" | "--help" => {
                println!("usage: ha-lab [--xdp-mode native|skb] [--report FILE] [--keep]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(err) => {
            eprintln!("ha-lab: {err:#}");
            return ExitCode::from(2);
        }
    };
    // Signals are taken by this thread only; the tour runs on another and stops at
    // its next step when asked, so the lab's guards clean up.
    let signals = block_signals();
    let tour = thread::spawn(move || tour(&args));
    loop {
        if tour.is_finished() {
            break;
        }
        if let Some(signal) = wait_signal(&signals, Duration::from_millis(100)) {
            eprintln!("\nha-lab: signal {signal}: stopping and removing the lab…");
            ABORT.store(true, Ordering::SeqCst);
        }
    }
    match tour.join() {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(err)) => {
            eprintln!("ha-lab: {err:#}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("ha-lab: the tour panicked");
            ExitCode::FAILURE
        }
    }
}

fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc signal-set manipulation on a local, zero-initialised set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_signal(set: &libc::sigset_t, timeout: Duration) -> Option<i32> {
    let spec = libc::timespec {
        tv_sec: 0,
        tv_nsec: timeout.as_nanos() as libc::c_long,
    };
    // SAFETY: `set` is a valid signal set, `spec` a valid timeout; no info is asked for.
    let signal = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &spec) };
    (signal > 0).then_some(signal)
}

fn check_abort() -> anyhow::Result<()> {
    if ABORT.load(Ordering::SeqCst) {
        bail!("stopped by a signal; the lab is removed");
    }
    Ok(())
}

/// Prints a line with the time since the tour started.
struct Clock(Instant);

impl Clock {
    fn say(&self, text: impl AsRef<str>) {
        println!(
            "[{:>6.2}s] {}",
            self.0.elapsed().as_secs_f64(),
            text.as_ref()
        );
    }
}

/// One thing the tour did to the network, for the report.
struct Step {
    label: String,
    kind: EventKind,
    at_unix_ms: f64,
    prefix: String,
    change: Option<OwnerChange>,
    /// What it did to the prefix's long-lived TCP connections.
    clients: Fate,
}

fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

fn tour(args: &Args) -> anyhow::Result<()> {
    let clock = Clock(Instant::now());
    clock.say(format!(
        "building the classic network in namespaces {PREFIX}* ({:?} XDP)",
        args.xdp_mode
    ));
    let spec = LabSpec::new(PREFIX, args.xdp_mode, Bins::locate()?);
    let health = spec.health.clone();
    let mut lab = Lab::build(spec)?;
    for note in lab.notes() {
        clock.say(format!("  {note}"));
    }
    clock.say(format!(
        "controller up; health: http every {} ms, timeout {} ms, down after {}, up after {}, failback after {} ms",
        health.interval_ms, health.timeout_ms, health.fall, health.rise, health.failback_delay_ms
    ));
    check_abort()?;

    // 1. Every VIP answered by its owner, from both clients, through the fast path.
    clock.say("each VIP from both clients (the LAN client's requests leave by XDP_TX, the WAN client's by XDP_REDIRECT):");
    let before = lab.xdp_counters()?;
    let forwarded_before = lab.forwarded_datagrams()?;
    for prefix in PrefixSpec::classic() {
        let address = vip(prefix.cidr);
        for client in [Node::LanClient, Node::WanClient] {
            let answer = lab.http_get(client, address)?;
            clock.say(format!(
                "  GET http://{address}/ from {client:<9} -> {}",
                answer.trim()
            ));
        }
    }
    let moved = lab.xdp_counters()?.since(&before);
    let forwarded = lab.forwarded_datagrams()?.saturating_sub(forwarded_before);
    clock.say(format!("  XDP counters moved: {moved}"));
    clock.say(format!(
        "  kernel forwarding moved by {forwarded} datagrams: the WAN client's answers, routed back by the kernel; no request took the slow path"
    ));
    check_abort()?;

    // 2. Two streams through the failures to come.
    let p64 = net("192.168.1.64/27");
    let p96 = net("192.168.1.96/27");
    let duration = Duration::from_secs(STREAM_SECONDS);
    clock.say(format!(
        "UDP streams at {STREAM_RATE}/s for {STREAM_SECONDS} s: lanclient -> {} (host2's), wanclient -> {} (host3's)",
        vip(p64),
        vip(p96)
    ));
    let stream64 = lab.stream(
        Node::LanClient,
        SocketAddrV4::new(vip(p64), 9000),
        STREAM_RATE,
        duration,
    )?;
    let stream96 = lab.stream(
        Node::WanClient,
        SocketAddrV4::new(vip(p96), 9000),
        STREAM_RATE,
        duration,
    )?;
    let stream_start = Instant::now();
    let mut steps: Vec<Step> = Vec::new();
    let mut population64 = Population::open(&lab, vip(p64), CONNECTIONS, PERIOD)?;
    let mut population96 = Population::open(&lab, vip(p96), CONNECTIONS, PERIOD)?;
    clock.say(format!(
        "{CONNECTIONS} long-lived TCP connections (HTTP keep-alive, a request every {} ms) to each of {} and {}, half from each client",
        PERIOD.as_millis(),
        vip(p64),
        vip(p96)
    ));
    thread::sleep(Duration::from_millis(1000));

    let mut failure = |lab: &mut Lab,
                       population: &mut Population,
                       host: &str,
                       fault: Fault,
                       prefix|
     -> anyhow::Result<()> {
        check_abort()?;
        population.renew(lab)?;
        let since = lab.owner_changes()?.len();
        clock.say(format!("{host}: {fault}"));
        let mark = population.mark();
        let at = unix_ms();
        lab.inject(host, fault)?;
        let change = wait_moved_off(lab, prefix, host, since)?;
        let backup = change
            .new
            .clone()
            .unwrap_or_else(|| "(kernel route)".to_owned());
        clock.say(format!(
            "  {prefix}: {} -> {} ({}), detection {} ms, switch {} µs",
            change.old.as_deref().unwrap_or("-"),
            backup,
            change.reason,
            change
                .detection_ms
                .map_or("-".to_owned(), |d| format!("{d:.1}")),
            change.switch_us
        ));
        let clients = watch(&clock, population, &mark);
        steps.push(Step {
            label: format!("{host} {fault}"),
            kind: EventKind::Failure,
            at_unix_ms: at,
            prefix: prefix.to_string(),
            change: Some(change),
            clients,
        });
        check_abort()?;
        population.renew(lab)?;
        let since = lab.owner_changes()?.len();
        clock.say(format!(
            "{host}: repaired; failback expected after the hold-down"
        ));
        let mark = population.mark();
        let at = unix_ms();
        lab.repair(host, fault)?;
        let change = lab.wait_for_owner(prefix, Some(host), since, Duration::from_secs(10))?;
        clock.say(format!(
            "  {prefix}: {backup} -> {host} ({}), switch {} µs",
            change.reason, change.switch_us
        ));
        let clients = watch(&clock, population, &mark);
        steps.push(Step {
            label: format!("{host} back"),
            kind: EventKind::Recovery,
            at_unix_ms: at,
            prefix: prefix.to_string(),
            change: Some(change),
            clients,
        });
        Ok(())
    };
    failure(&mut lab, &mut population64, "host2", Fault::KillWeb, p64)?;
    failure(&mut lab, &mut population96, "host3", Fault::LinkDown, p96)?;
    check_abort()?;

    // 3. By hand.
    for (args, label, new) in [
        (
            vec!["set-owner", "192.168.1.64/27", "host4"],
            "set-owner 192.168.1.64/27 host4",
            "host4",
        ),
        (
            vec!["clear-owner", "192.168.1.64/27"],
            "clear-owner 192.168.1.64/27",
            "host2",
        ),
        (vec!["drain", "host2"], "drain host2", "host1"),
        (vec!["undrain", "host2"], "undrain host2", "host2"),
    ] {
        check_abort()?;
        population64.renew(&lab)?;
        let since = lab.owner_changes()?.len();
        let mark = population64.mark();
        let at = unix_ms();
        let sent = Instant::now();
        let output = lab.ha_user(&args)?;
        let returned = sent.elapsed();
        clock.say(format!(
            "ha-user {label}: returned after {:.1} ms: {}",
            returned.as_secs_f64() * 1e3,
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .next()
                .unwrap_or("")
        ));
        let change = lab.wait_for_owner(p64, Some(new), since, Duration::from_secs(5))?;
        let clients = watch(&clock, &population64, &mark);
        steps.push(Step {
            label: label.to_owned(),
            kind: EventKind::Admin,
            at_unix_ms: at,
            prefix: p64.to_string(),
            change: Some(change),
            clients,
        });
    }
    drop((population64, population96));

    // 4. The streams end; what the clients saw.
    let left = duration.saturating_sub(stream_start.elapsed());
    clock.say(format!(
        "waiting {:.1} s for the streams to end…",
        left.as_secs_f64()
    ));
    let report64 = stream64.wait()?;
    let report96 = stream96.wait()?;
    for report in [&report64, &report96] {
        clock.say(format!("  {}", report.summary()));
    }

    // 5. The end state.
    let status = lab.ha_user(&["status"])?;
    clock.say("ha-user status:");
    print!("{}", String::from_utf8_lossy(&status.stdout));
    let dump = lab.exec(
        Node::Router,
        &[
            "bpftool",
            "map",
            "dump",
            "pinned",
            &ha_user::kernel::datapath::map_pin_path(lab.pin_dir(), MAP_PREFIXES).to_string_lossy(),
        ],
    )?;
    clock.say(format!("bpftool map dump pinned …/{MAP_PREFIXES}:"));
    print!("{}", String::from_utf8_lossy(&dump.stdout));
    lab.check_agreement()
        .context("the kernel routes and the map disagree")?;
    clock.say("kernel routes (proto 165) agree with the map");

    let report = build_report(args, &steps, &[&report64, &report96]);
    if let Some(dir) = args.report.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&args.report, render_html(&report))
        .with_context(|| format!("writing {}", args.report.display()))?;
    print_summary(&report);
    clock.say(format!("report: {}", args.report.display()));

    if args.keep {
        let ns = |node| lab.ns(node);
        println!("\nThe lab stays up (--keep). Explore it:");
        println!(
            "  ip netns exec {} curl http://192.168.1.65/",
            ns(Node::LanClient)
        );
        println!(
            "  ip netns exec {} curl http://192.168.1.97/",
            ns(Node::WanClient)
        );
        println!(
            "  {} -c {} status",
            Bins::ha_user()?.display(),
            lab.config_path().display()
        );
        println!(
            "  nsenter --net=/run/netns/{} bpftool net",
            ns(Node::Router)
        );
        println!("  ip -n {} route show proto 165", ns(Node::Router));
        println!("Press Ctrl-C here to remove it.");
        while !ABORT.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(200));
        }
        clock.say("removing the lab");
    } else {
        clock.say("removing the lab");
    }
    Ok(())
}

/// Waits [`WATCH`] and says what happened to `population`'s connections since `mark`.
fn watch(clock: &Clock, population: &Population, mark: &ha_tests::lab::population::Mark) -> Fate {
    thread::sleep(WATCH);
    let fate = population.since(mark);
    clock.say(format!("  long-lived TCP connections: {fate}"));
    fate
}

/// The first owner change after `since` that takes `prefix` away from `host`.
fn wait_moved_off(
    lab: &Lab,
    prefix: ipnet::Ipv4Net,
    host: &str,
    since: usize,
) -> anyhow::Result<OwnerChange> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(change) = lab
            .owner_changes()?
            .into_iter()
            .skip(since)
            .find(|c| c.prefix == prefix && c.old.as_deref() == Some(host))
        {
            return Ok(change);
        }
        if Instant::now() >= deadline {
            bail!(
                "{prefix} did not leave {host} within 5 s:\n{}",
                lab.controller_log()
            );
        }
        check_abort()?;
        thread::sleep(Duration::from_millis(5));
    }
}

fn build_report(args: &Args, steps: &[Step], streams: &[&StreamReport]) -> Report {
    let start = streams
        .iter()
        .map(|s| s.start_unix_ms)
        .fold(f64::INFINITY, f64::min);
    // Answers per second by each host, one panel per stream.
    let panels = streams
        .iter()
        .map(|stream| {
            let offset = (stream.start_unix_ms - start) / 1e3;
            let bucket = stream.timeline.bucket_ms as f64 / 1e3;
            let series = stream
                .timeline
                .hosts
                .iter()
                .map(|(host, counts)| Series {
                    name: host.clone(),
                    points: counts
                        .iter()
                        .enumerate()
                        .map(|(i, count)| (offset + i as f64 * bucket, *count as f64 / bucket))
                        .collect(),
                })
                .collect();
            Panel {
                title: format!(
                    "UDP stream to {} ({STREAM_RATE}/s): answers per second by host",
                    stream.target
                ),
                series,
            }
        })
        .collect();
    let events = steps
        .iter()
        .map(|s| Event {
            at: (s.at_unix_ms - start) / 1e3,
            label: s.label.clone(),
            kind: s.kind,
        })
        .collect();
    let rows = steps
        .iter()
        .map(|step| {
            let change = step.change.as_ref();
            // The stream through this prefix, and its switch nearest after the step.
            let switch = streams
                .iter()
                .filter(|s| s.target.starts_with(&vip(net(&step.prefix)).to_string()))
                .flat_map(|s| {
                    s.switches
                        .iter()
                        .map(move |w| (s.start_unix_ms + w.first_new_ms, w))
                })
                .filter(|(at, _)| *at >= step.at_unix_ms)
                .min_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, w)| w);
            Row {
                event: step.label.clone(),
                prefix: step.prefix.clone(),
                change: change.map_or_else(String::new, |c| {
                    format!(
                        "{} → {} ({})",
                        c.old.as_deref().unwrap_or("-"),
                        c.new.as_deref().unwrap_or("-"),
                        c.reason
                    )
                }),
                detection_ms: change.and_then(|c| c.detection_ms),
                switch_us: change.map(|c| c.switch_us),
                outage_ms: switch.map(|w| w.gap_ms),
                lost: switch.map(|w| w.lost),
                clients: Some(step.clients),
            }
        })
        .collect();
    let machine = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    Report {
        title: "ha lab: the classic network with a fast path".to_owned(),
        subtitle: format!(
            "Answers per second from each web server to two UDP streams ({STREAM_RATE}/s each, to 192.168.1.65 and 192.168.1.97), with the failures and admin commands of the tour. XDP mode: {:?}.",
            args.xdp_mode
        ),
        panels,
        events,
        rows,
        notes: vec![
            format!("kernel {}", machine.trim()),
            "detection: from the first failed probe to the decision; switch: from the decision to the data-path map written; outage: last answer by the old owner to the first by the new, as the client saw it; lost: datagrams of the stream never answered around that change".to_owned(),
            format!("TCP: {CONNECTIONS} long-lived connections to the prefix's VIP (half from each client, a keep-alive request every {} ms); per event, those reset or ended by a server, and those that stayed open but waited more than 1 s for an answer, within {} s. A killed web server's connections die with it; a drain keeps its connections until drain_timeout_ms.", PERIOD.as_millis(), WATCH.as_secs()),
        ],
    }
}

fn print_summary(report: &Report) {
    println!(
        "\n{:<34} {:<16} {:<38} {:>10} {:>10} {:>10} {:>6} {:>11} {:>11}",
        "event",
        "prefix",
        "owner change",
        "detect ms",
        "switch µs",
        "outage ms",
        "lost",
        "TCP reset",
        "TCP stalled"
    );
    for row in &report.rows {
        let f = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
        let (reset, stalled) = row.clients.map_or(("-".to_owned(), "-".to_owned()), |c| {
            (
                format!("{} of {}", c.reset + c.ended, c.connections),
                format!("{} of {}", c.stalled, c.connections),
            )
        });
        println!(
            "{:<34} {:<16} {:<38} {:>10} {:>10} {:>10} {:>6} {:>11} {:>11}",
            row.event,
            row.prefix,
            row.change,
            f(row.detection_ms),
            row.switch_us.map_or("-".to_owned(), |v| v.to_string()),
            f(row.outage_ms),
            row.lost.map_or("-".to_owned(), |v| v.to_string()),
            reset,
            stalled
        );
    }
    println!();
}
