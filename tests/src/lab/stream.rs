//! What `ha-stream` measures: a sequence-numbered UDP stream to a VIP, every answer
//! with the host that gave it, and the analysis of those answers (loss by sequence
//! number, changes of answering host, the outage around each, a timeline).
//!
//! The binary writes a [`StreamReport`] as JSON; tests and the lab report read it
//! back with [`StreamReport::from_json`].

use std::collections::BTreeMap;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// Width of a timeline bucket.
pub const BUCKET_MS: u64 = 100;

/// One answered datagram. Times are milliseconds since the first datagram was sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub seq: u64,
    pub host: String,
    pub sent_ms: f64,
    pub received_ms: f64,
}

/// A change of answering host: the last answer by `from`, then the first by `to`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Switch {
    pub from: String,
    pub to: String,
    pub last_old_seq: u64,
    pub first_new_seq: u64,
    /// When the last answer of `from` arrived.
    pub last_old_ms: f64,
    /// When the first answer of `to` arrived.
    pub first_new_ms: f64,
    /// `first_new_ms - last_old_ms`: the outage as the client saw it.
    pub gap_ms: f64,
    /// Datagrams sent between the two that were never answered.
    pub lost: u64,
}

/// The longest wait between two consecutive answers, whoever gave them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub from_ms: f64,
    pub to_ms: f64,
    pub gap_ms: f64,
}

/// Answers per host per [`BUCKET_MS`] of receive time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    pub bucket_ms: u64,
    /// Host → answers in bucket 0, 1, ...; every vector has the same length.
    pub hosts: BTreeMap<String, Vec<u64>>,
}

/// Everything `ha-stream` reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamReport {
    pub target: String,
    /// Datagrams per second asked for.
    pub rate: u64,
    pub duration_ms: u64,
    /// Wall-clock time (ms since the Unix epoch) at which datagram 0 was sent: lines
    /// the stream up with events logged elsewhere.
    pub start_unix_ms: f64,
    pub sent: u64,
    /// Distinct sequence numbers answered.
    pub answered: u64,
    /// Answers for a sequence number already answered.
    pub duplicates: u64,
    /// Sequence numbers never answered.
    pub lost: u64,
    /// The lost sequence numbers as inclusive ranges `[first, last]`.
    pub lost_ranges: Vec<[u64; 2]>,
    pub per_host: BTreeMap<String, u64>,
    /// Every change of answering host, in receive order.
    pub switches: Vec<Switch>,
    /// The switch with the longest gap: the failover outage.
    pub outage: Option<Switch>,
    pub longest_silence: Silence,
    pub timeline: Timeline,
    /// Every answer, in receive order (only with `--answers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<Vec<Answer>>,
}

/// What was asked for, to be carried into the report.
#[derive(Clone, Debug)]
pub struct StreamSetup {
    pub target: String,
    pub rate: u64,
    pub duration_ms: u64,
    pub start_unix_ms: f64,
}

impl StreamReport {
    /// Analyses `answers` (any order) to a stream of `sent` datagrams numbered from 0.
    pub fn analyse(
        setup: StreamSetup,
        sent: u64,
        mut answers: Vec<Answer>,
        keep_answers: bool,
    ) -> StreamReport {
        answers.sort_by(|a, b| a.received_ms.total_cmp(&b.received_ms));
        let mut seen = vec![false; usize::try_from(sent).unwrap_or(0)];
        let mut duplicates = 0;
        let mut unique = Vec::with_capacity(answers.len());
        for answer in &answers {
            match usize::try_from(answer.seq)
                .ok()
                .and_then(|i| seen.get_mut(i))
            {
                Some(slot) if !*slot => {
                    *slot = true;
                    unique.push(answer);
                }
                // Seen already, or a number never sent (a stray answer).
                _ => duplicates += 1,
            }
        }
        let mut lost_ranges: Vec<[u64; 2]> = Vec::new();
        for (seq, _) in (0u64..).zip(&seen).filter(|(_, seen)| !**seen) {
            match lost_ranges.last_mut() {
                Some(range) if range[1] + 1 == seq => range[1] = seq,
                _ => lost_ranges.push([seq, seq]),
            }
        }
        let lost = lost_ranges.iter().map(|[a, b]| b - a + 1).sum();
        let mut per_host = BTreeMap::new();
        for answer in &unique {
            *per_host.entry(answer.host.clone()).or_insert(0) += 1;
        }
        let mut switches = Vec::new();
        let mut longest_silence = Silence::default();
        for pair in unique.windows(2) {
            let (before, after) = (pair[0], pair[1]);
            let gap_ms = after.received_ms - before.received_ms;
            if gap_ms > longest_silence.gap_ms {
                longest_silence = Silence {
                    from_ms: before.received_ms,
                    to_ms: after.received_ms,
                    gap_ms,
                };
            }
            if before.host != after.host {
                let (low, high) = (before.seq.min(after.seq), before.seq.max(after.seq));
                let lost = ((low + 1)..high)
                    .filter(|&s| usize::try_from(s).ok().and_then(|i| seen.get(i)) == Some(&false))
                    .count() as u64;
                switches.push(Switch {
                    from: before.host.clone(),
                    to: after.host.clone(),
                    last_old_seq: before.seq,
                    first_new_seq: after.seq,
                    last_old_ms: before.received_ms,
                    first_new_ms: after.received_ms,
                    gap_ms,
                    lost,
                });
            }
        }
        let outage = switches
            .iter()
            .max_by(|a, b| a.gap_ms.total_cmp(&b.gap_ms))
            .cloned();
        let timeline = timeline(&unique);
        let StreamSetup {
            target,
            rate,
            duration_ms,
            start_unix_ms,
        } = setup;
        StreamReport {
            target,
            rate,
            duration_ms,
            start_unix_ms,
            sent,
            answered: unique.len() as u64,
            duplicates,
            lost,
            lost_ranges,
            per_host,
            switches,
            outage,
            longest_silence,
            timeline,
            answers: keep_answers.then_some(answers),
        }
    }

    pub fn from_json(text: &str) -> anyhow::Result<StreamReport> {
        serde_json::from_str(text).context("parsing an ha-stream report")
    }

    /// One line for people: `sent 5000, answered 4962, lost 38; host2 2400, host1 2562;
    /// outage host2 -> host1 41.2 ms (38 lost)`.
    pub fn summary(&self) -> String {
        let hosts: Vec<String> = self
            .per_host
            .iter()
            .map(|(host, n)| format!("{host} {n}"))
            .collect();
        let mut line = format!(
            "sent {}, answered {}, lost {}, duplicates {}; {}; longest silence {:.1} ms",
            self.sent,
            self.answered,
            self.lost,
            self.duplicates,
            hosts.join(", "),
            self.longest_silence.gap_ms
        );
        if let Some(outage) = &self.outage {
            line.push_str(&format!(
                "; outage {} -> {} {:.1} ms ({} lost)",
                outage.from, outage.to, outage.gap_ms, outage.lost
            ));
        }
        line
    }
}

fn timeline(answers: &[&Answer]) -> Timeline {
    let bucket = |ms: f64| (ms.max(0.0) / BUCKET_MS as f64) as usize;
    let buckets = answers.last().map_or(0, |a| bucket(a.received_ms) + 1);
    let mut hosts: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for answer in answers {
        hosts
            .entry(answer.host.clone())
            .or_insert_with(|| vec![0; buckets])[bucket(answer.received_ms)] += 1;
    }
    Timeline {
        bucket_ms: BUCKET_MS,
        hosts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(seq: u64, host: &str, received_ms: f64) -> Answer {
        Answer {
            seq,
            host: host.to_owned(),
            sent_ms: seq as f64,
            received_ms,
        }
    }

    #[test]
    fn losses_switches_and_outage() {
        let setup = StreamSetup {
            target: "192.168.1.65:9000".into(),
            rate: 1000,
            duration_ms: 10,
            start_unix_ms: 0.0,
        };
        let answers = vec![
            answer(0, "host2", 0.1),
            answer(1, "host2", 1.1),
            answer(2, "host2", 2.1),
            // 3..=6 lost
            answer(7, "host1", 7.2),
            answer(8, "host1", 8.1),
            answer(8, "host1", 8.2),
            answer(9, "host1", 150.0),
        ];
        let report = StreamReport::analyse(setup, 10, answers, false);
        assert_eq!(report.answered, 6);
        assert_eq!(report.duplicates, 1);
        assert_eq!(report.lost, 4);
        assert_eq!(report.lost_ranges, vec![[3, 6]]);
        assert_eq!(report.per_host["host2"], 3);
        assert_eq!(report.per_host["host1"], 3);
        assert_eq!(report.switches.len(), 1);
        let outage = report.outage.clone().expect("one switch");
        assert_eq!(
            (outage.from.as_str(), outage.to.as_str()),
            ("host2", "host1")
        );
        assert_eq!(
            (outage.last_old_seq, outage.first_new_seq, outage.lost),
            (2, 7, 4)
        );
        assert!((outage.gap_ms - 5.1).abs() < 1e-9, "{}", outage.gap_ms);
        assert!((report.longest_silence.gap_ms - 141.9).abs() < 1e-9);
        assert_eq!(report.timeline.hosts["host1"], vec![2, 1]);
        assert_eq!(report.timeline.hosts["host2"], vec![3, 0]);
        let back =
            StreamReport::from_json(&serde_json::to_string(&report).expect("json")).expect("parse");
        assert_eq!(back, report);
    }
}
