//! The control socket flooded: a burst of requests with idle and half-sent
//! connections held, at a low descriptor limit.

use std::{
    io::Write as _,
    os::unix::net::UnixStream,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ha_tests::{
    lab::{XdpMode, limits},
    root::require_root,
};
use ha_user::model::Health;

use crate::{common, scaled};

/// The descriptor limit the controller runs under.
const NOFILE: u64 = 256;
/// The requests of the burst, and the clients sending them at once.
const REQUESTS: usize = 10_000;
const CLIENTS: usize = 10;
/// Idle or half-sent connections held during the burst.
const IDLE: usize = 1000;

/// At 256 descriptors, with 1,000 idle or half-sent connections held, 10,000
/// `status` requests from 10 concurrent clients: every one answered within 2 s,
/// no host marked down during the burst, the controller healthy afterwards (every
/// host up, map and routes agreeing).
#[test]
fn a_burst_of_requests_is_answered_at_a_low_descriptor_limit() {
    if !require_root("a_burst_of_requests_is_answered_at_a_low_descriptor_limit") {
        return;
    }
    burst("ha-s-burst-");
}

/// The burst, in a lab of its own.
fn burst(prefix: &str) {
    let mut lab = common::build(common::spec(prefix, XdpMode::Skb));
    lab.wait_steady(scaled(Duration::from_secs(10)))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let pid = lab.controller().expect("controller").pid();
    limits::limit_descriptors(pid, NOFILE).unwrap_or_else(|e| panic!("{e:#}"));
    limits::raise_own_limit(8192).unwrap_or_else(|e| panic!("{e:#}"));
    // The web servers ahead of every normal process, as on machines of their own:
    // the lab's servers share the router's two CPUs with the load, and the probes
    // time out after 5 ms. The controller's health thread is real-time too, so
    // what may still delay a probe is the controller itself or the kernel.
    for host in ["host1", "host2", "host3", "host4"] {
        let pid = lab.web_pid(host).expect("a web server");
        limits::realtime(pid).unwrap_or_else(|e| panic!("{host}'s web server: {e:#}"));
    }
    let socket = lab.control_socket().to_owned();
    let answer = scaled(Duration::from_secs(2));
    let downs_before = downs(&lab);

    let mut idle = Vec::new();
    for n in 0..IDLE {
        let mut stream =
            UnixStream::connect(&socket).unwrap_or_else(|e| panic!("idle connection {n}: {e}"));
        if n % 2 == 1 {
            stream
                .write_all(b"{\"protocol\":1,\"request\":{\"comm")
                .unwrap_or_else(|e| panic!("half a request on connection {n}: {e}"));
        }
        idle.push(stream);
    }

    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let downs_seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let worst = Arc::new(Mutex::new(Duration::ZERO));
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let socket = socket.clone();
            let failures = Arc::clone(&failures);
            let downs_seen = Arc::clone(&downs_seen);
            let worst = Arc::clone(&worst);
            std::thread::spawn(move || {
                // The load at the lowest priority: on the lab's one machine the web
                // servers (and the controller) must not lose the CPU to it, as they
                // would not on machines of their own.
                // SAFETY: setpriority has no memory preconditions; 0 is this thread.
                unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
                for n in (client..REQUESTS).step_by(CLIENTS) {
                    match limits::timed_status(&socket, answer) {
                        Ok((status, took)) => {
                            let mut worst = worst.lock().unwrap_or_else(|e| e.into_inner());
                            *worst = (*worst).max(took);
                            if let Some(host) = status.hosts.iter().find(|h| h.health != Health::Up)
                            {
                                downs_seen
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .push(format!("request {n}: {} is {}", host.name, host.health));
                            }
                        }
                        Err(err) => failures
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(format!("request {n}: {err:#}")),
                    }
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client thread panicked");
    }
    let took = started.elapsed();
    let failures = failures.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let worst = *worst.lock().unwrap_or_else(|e| e.into_inner());
    let downs_seen = downs_seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    eprintln!(
        "{REQUESTS} status requests from {CLIENTS} clients beside {} held connections, at {NOFILE} descriptors: {took:?}, slowest {worst:?}, {} unanswered, {} answers with a host down",
        idle.len(),
        failures.len(),
        downs_seen.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {REQUESTS} requests failed, the first: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    let new_downs = downs(&lab) - downs_before;
    eprintln!("hosts marked down during the burst: {new_downs}");
    assert_eq!(
        new_downs, 0,
        "hosts marked down during the burst: {downs_seen:?}"
    );
    drop(idle);
    let (_, after) = limits::timed_status(&socket, answer).unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("status after the burst: {after:?}");
    lab.wait_steady(scaled(Duration::from_secs(5)))
        .unwrap_or_else(|e| panic!("after the burst: {e:#}"));
    common::assert_agreement(&lab);
    lab.stop_controller().expect("the controller stops");
}

/// The number of hosts marked down so far.
fn downs(lab: &ha_tests::lab::Lab) -> usize {
    lab.health_changes()
        .expect("events")
        .iter()
        .filter(|(_, health, _)| *health == Health::Down)
        .count()
}
