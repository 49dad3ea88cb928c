//! A steady population of long-lived TCP connections to one VIP, as the clients of a
//! web service hold them (keep-alive, HTTP/2, WebSockets, uploads), half from the LAN
//! client and half from the WAN client, and what an event (a failover, a failback, a
//! drain, a `set-owner`) does to them: how many were reset, ended otherwise, or
//! stalled beyond [`STALL`] while staying open.

use std::{fmt, net::Ipv4Addr, time::Duration};

use serde::Serialize;

use super::{
    Lab, Node,
    conversation::{Conversation, Record, STALL},
};

/// How long new connections exchange before an event.
pub const SETTLE: Duration = Duration::from_millis(500);

/// The connections of a population as one event found them.
pub struct Mark {
    /// Per connection (by index): its record at the event, if it was alive.
    before: Vec<Option<Record>>,
}

/// What happened, since a [`Mark`], to the connections alive at it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Fate {
    /// Connections alive at the mark.
    pub connections: usize,
    /// Reset by the server that got their packets.
    pub reset: usize,
    /// Ended in another way (closed by the server, an error).
    pub ended: usize,
    /// Still open, but an exchange waited longer than [`STALL`].
    pub stalled: usize,
}

impl Fate {
    /// Connections that went on as if nothing had happened.
    pub fn kept(&self) -> usize {
        self.connections - self.reset - self.ended - self.stalled
    }

    /// Reset, ended or stalled: what a client notices.
    pub fn hurt(&self) -> usize {
        self.reset + self.ended + self.stalled
    }
}

impl fmt::Display for Fate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} connections kept ({} reset, {} ended otherwise, {} stalled > {} s)",
            self.kept(),
            self.connections,
            self.reset,
            self.ended,
            self.stalled,
            STALL.as_secs()
        )
    }
}

/// Long-lived TCP connections to one VIP, each a keep-alive request every `period`.
pub struct Population {
    vip: Ipv4Addr,
    size: usize,
    period: Duration,
    conversations: Vec<Conversation>,
}

impl Population {
    /// `size` connections to `vip` (half from each client), each open and answered
    /// once when this returns.
    pub fn open(
        lab: &Lab,
        vip: Ipv4Addr,
        size: usize,
        period: Duration,
    ) -> anyhow::Result<Population> {
        let mut population = Population {
            vip,
            size,
            period,
            conversations: Vec::new(),
        };
        population.renew(lab)?;
        Ok(population)
    }

    /// Closes every connection (with a FIN) and opens as many new ones, which go to
    /// the VIP's owner of now, and lets them exchange for [`SETTLE`]: before an event,
    /// the population is whole and held by the host the event takes the prefix from.
    pub fn renew(&mut self, lab: &Lab) -> anyhow::Result<()> {
        for conversation in &self.conversations {
            conversation.stop();
        }
        self.conversations.clear();
        for i in 0..self.size {
            let node = if i % 2 == 0 {
                Node::LanClient
            } else {
                Node::WanClient
            };
            let conversation = lab.converse_tcp(node, self.vip, self.period)?;
            self.conversations.push(conversation);
        }
        std::thread::sleep(SETTLE);
        Ok(())
    }

    /// The population as it is at an event.
    pub fn mark(&self) -> Mark {
        Mark {
            before: self
                .conversations
                .iter()
                .map(|c| Some(c.record()).filter(Record::alive))
                .collect(),
        }
    }

    /// What happened since `mark` to the connections alive at it; each is counted
    /// once, by the worst that happened to it.
    pub fn since(&self, mark: &Mark) -> Fate {
        let mut fate = Fate::default();
        for (conversation, before) in self.conversations.iter().zip(&mark.before) {
            let Some(before) = before else { continue };
            let now = conversation.record();
            fate.connections += 1;
            if now.reset_ms.is_some() {
                fate.reset += 1;
            } else if now.failed.is_some() {
                fate.ended += 1;
            } else if now.stalls > before.stalls {
                fate.stalled += 1;
            }
        }
        fate
    }

    /// The records of the connections alive at `mark` that were reset, ended or
    /// stalled since: what to look at when [`Population::since`] is not all kept.
    pub fn hurt_since(&self, mark: &Mark) -> Vec<Record> {
        self.conversations
            .iter()
            .zip(&mark.before)
            .filter_map(|(conversation, before)| {
                let before = before.as_ref()?;
                let now = conversation.record();
                (!now.alive() || now.stalls > before.stalls).then_some(now)
            })
            .collect()
    }
}
