//! What clients see: a steady population of long-lived TCP connections to the broken
//! prefix's VIP through each event that moves it (a failover, the failback, a
//! graceful drain and its end, `set-owner` and `clear-owner`), and per event how many
//! connections were reset, ended otherwise, or stalled beyond 1 s.

use std::time::Duration;

use anyhow::Context as _;
use ha_tests::lab::{
    Fault, Lab,
    conversation::Record,
    flow_entries, net,
    population::{Fate, Population, SETTLE},
    vip,
};
use ha_user::proto::ChangeReport;
use serde::Serialize;

use super::{BACKUP, BROKEN, OWNER};
use crate::{
    check_interrupted,
    report::{Figure, Over, Table},
};

/// Connections in the population (half from the LAN client, half from the WAN one).
const CONNECTIONS: usize = 16;
/// One keep-alive request per connection every so often.
const PERIOD: Duration = Duration::from_millis(100);
/// How long after an event its connections are watched: long enough for a stall
/// (1 s) to show and for a kept connection to go on for 2 s.
const WATCH: Duration = Duration::from_millis(3000);
/// The host `set-owner` moves the prefix to.
const ELSEWHERE: &str = "host3";

/// The events that move the prefix, in the order a round goes through them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Move {
    Failover,
    Failback,
    Drain,
    Undrain,
    SetOwner,
    ClearOwner,
}

impl Move {
    pub const ROUND: [Move; 6] = [
        Move::Failover,
        Move::Failback,
        Move::Drain,
        Move::Undrain,
        Move::SetOwner,
        Move::ClearOwner,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Move::Failover => "failover (web server killed)",
            Move::Failback => "failback",
            Move::Drain => "drain",
            Move::Undrain => "undrain",
            Move::SetOwner => "set-owner",
            Move::ClearOwner => "clear-owner",
        }
    }

    /// The prefix's owner after it.
    fn to(self) -> &'static str {
        match self {
            Move::Failover | Move::Drain => BACKUP,
            Move::SetOwner => ELSEWHERE,
            Move::Failback | Move::Undrain | Move::ClearOwner => OWNER,
        }
    }

    fn make(self, lab: &mut Lab) -> anyhow::Result<()> {
        match self {
            Move::Failover => lab.inject(OWNER, Fault::KillWeb),
            Move::Failback => lab.repair(OWNER, Fault::KillWeb),
            Move::Drain => admin(lab, &["drain", OWNER]),
            Move::Undrain => admin(lab, &["undrain", OWNER]),
            Move::SetOwner => admin(lab, &["set-owner", BROKEN, ELSEWHERE]),
            Move::ClearOwner => admin(lab, &["clear-owner", BROKEN]),
        }
    }
}

/// One event of one round.
#[derive(Clone, Debug, Serialize)]
pub struct EventFate {
    pub event: Move,
    pub fate: Fate,
}

/// `rounds` rounds of every event with a population of [`CONNECTIONS`] connections.
pub fn run(lab: &mut Lab, rounds: usize) -> anyhow::Result<Vec<EventFate>> {
    let broken = net(BROKEN);
    let mut population = Population::open(lab, vip(broken), CONNECTIONS, PERIOD)
        .context("opening the client population")?;
    let mut fates = Vec::new();
    for round in 0..rounds {
        for event in Move::ROUND {
            check_interrupted()?;
            population.renew(lab)?;
            let since = lab.owner_changes()?.len();
            let mark = population.mark();
            event.make(lab)?;
            lab.wait_for_owner(broken, Some(event.to()), since, Duration::from_secs(10))
                .with_context(|| format!("{} (round {round})", event.name()))?;
            std::thread::sleep(WATCH);
            let fate = population.since(&mark);
            eprintln!(
                "ha-bench-lab: clients, round {round}, {}: {fate}",
                event.name()
            );
            if event != Move::Failover {
                for record in population.hurt_since(&mark) {
                    eprintln!("ha-bench-lab:   {record}; {}", flow_of(lab, &record));
                }
            }
            fates.push(EventFate { event, fate });
        }
        lab.wait_steady(Duration::from_secs(10))?;
    }
    Ok(fates)
}

/// The flow table's entry of `record`'s connection, and the prefix's entry.
fn flow_of(lab: &Lab, record: &Record) -> String {
    let Some(local) = record.local else {
        return "no local address".to_owned();
    };
    let prefix = lab
        .map_dump()
        .map(|map| format!("{:?}", map.get(&net(BROKEN))))
        .unwrap_or_else(|e| format!("{e:#}"));
    let flow = flow_entries(lab.pin_dir()).map(|entries| {
        entries
            .into_iter()
            .find(|(key, _)| {
                key.client == local.ip().octets() && key.client_port == local.port().to_be_bytes()
            })
            .map(|(_, entry)| entry)
    });
    format!("flow entry {flow:?}, prefix entry {prefix}")
}

/// An admin command through the CLI, as an operator types it; its change report
/// says it was taken.
fn admin(lab: &Lab, args: &[&str]) -> anyhow::Result<()> {
    lab.ha_user_json::<ChangeReport>(args).map(drop)
}

/// How the population was held, for the section's set-up.
pub fn setup_line(rounds: usize) -> String {
    format!(
        "What clients see: {CONNECTIONS} long-lived TCP connections to {BROKEN}'s VIP {} \
         (half from the LAN client, half from the WAN client; an HTTP/1.1 keep-alive \
         request on each every {} ms), through {rounds} rounds of: {OWNER}'s web server \
         killed (failover to {BACKUP}), started again (failback after the hold-down), \
         `drain {OWNER}` (graceful, the default drain_timeout_ms) and `undrain`, \
         `set-owner {BROKEN} {ELSEWHERE}` and `clear-owner`. Before each event, the \
         connections are closed and as many opened again (so they are held by the owner \
         of the moment, the host the event takes the prefix from) and exchange for {} ms; \
         each event's connections are watched for {} s: reset, ended otherwise (closed \
         by the server), or stalled (an answer waited > 1 s).",
        vip(net(BROKEN)),
        PERIOD.as_millis(),
        SETTLE.as_millis(),
        WATCH.as_secs()
    )
}

/// The table (sums over the rounds) and one figure per event (connections hurt per
/// event, over the rounds).
pub fn report(fates: &[EventFate]) -> (Table, Vec<Figure>) {
    let mut rows = Vec::new();
    let mut figures = Vec::new();
    for event in Move::ROUND {
        let of: Vec<&Fate> = fates
            .iter()
            .filter(|f| f.event == event)
            .map(|f| &f.fate)
            .collect();
        let sum = |f: fn(&Fate) -> usize| of.iter().map(|fate| f(fate)).sum::<usize>();
        rows.push(vec![
            event.name().to_owned(),
            of.len().to_string(),
            sum(|f| f.connections).to_string(),
            sum(|f| f.reset).to_string(),
            sum(|f| f.ended).to_string(),
            sum(|f| f.stalled).to_string(),
            sum(Fate::kept).to_string(),
        ]);
        let hurt: Vec<f64> = of.iter().map(|f| f.hurt() as f64).collect();
        figures.push(Figure::new(
            &format!(
                "connections reset, ended or stalled > 1 s, {}",
                event.name()
            ),
            &format!("of {CONNECTIONS}"),
            Over::Trials,
            &hurt,
        ));
    }
    let table = Table {
        title: "What clients see, per event (sums over the rounds):".to_owned(),
        header: [
            "event",
            "rounds",
            "connections",
            "reset",
            "ended otherwise",
            "stalled > 1 s",
            "kept",
        ]
        .map(str::to_owned)
        .to_vec(),
        rows,
    };
    (table, figures)
}
