//! The daemon's event stream: every event gets the next sequence number and the wall
//! clock, is kept for replay, and goes to every subscriber through a broadcast
//! channel. Publishing never waits: a subscriber that falls more than
//! [`CHANNEL`] events behind is told how many it missed and goes on.
//!
//! Replay: the start-up events (up to `serving`) are kept for the life of the daemon,
//! the later ones in a ring of the last [`RECENT`]. A subscription takes its replay
//! and its receiver under one lock, so every event is in exactly one of them.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, PoisonError},
    time::SystemTime,
};

use tokio::sync::broadcast;

use crate::proto::{Event, EventRecord};

/// Events a subscriber may fall behind before it misses some.
pub const CHANNEL: usize = 4096;
/// Events after start-up kept for replay.
pub const RECENT: usize = 1024;

/// A handle on the stream; clones share it.
#[derive(Clone, Debug)]
pub struct EventBus {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    next_seq: u64,
    /// `None` once closed.
    sender: Option<broadcast::Sender<Arc<EventRecord>>>,
    start_up: Vec<Arc<EventRecord>>,
    started: bool,
    recent: VecDeque<Arc<EventRecord>>,
    recent_capacity: usize,
}

/// What a subscriber gets: the replayed events, then the live ones.
pub struct Subscription {
    pub replay: Vec<Arc<EventRecord>>,
    pub live: broadcast::Receiver<Arc<EventRecord>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::with_capacity(CHANNEL, RECENT)
    }
}

impl EventBus {
    /// A bus whose subscribers may fall `channel` events behind and that replays the
    /// last `recent` events after start-up.
    pub fn with_capacity(channel: usize, recent: usize) -> Self {
        let (sender, _) = broadcast::channel(channel.max(1));
        Self {
            inner: Arc::new(Mutex::new(Inner {
                next_seq: 1,
                sender: Some(sender),
                start_up: Vec::new(),
                started: false,
                recent: VecDeque::new(),
                recent_capacity: recent,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `event` now and sends it to every subscriber.
    pub fn publish(&self, event: Event) {
        let at_unix_us = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let mut inner = self.lock();
        let record = Arc::new(EventRecord {
            seq: inner.next_seq,
            at_unix_us,
            event,
        });
        inner.next_seq += 1;
        if inner.started {
            if inner.recent.len() >= inner.recent_capacity {
                inner.recent.pop_front();
            }
            if inner.recent_capacity > 0 {
                inner.recent.push_back(record.clone());
            }
        } else {
            inner.start_up.push(record.clone());
        }
        if let Some(sender) = &inner.sender {
            // No subscriber is not an error.
            let _ = sender.send(record);
        }
    }

    /// Start-up is over: events from now on go to the ring of recent ones.
    pub fn started(&self) {
        self.lock().started = true;
    }

    /// A subscription replaying the kept events after `since` (none: no replay);
    /// `None` once the bus is closed.
    pub fn subscribe(&self, since: Option<u64>) -> Option<Subscription> {
        let inner = self.lock();
        let live = inner.sender.as_ref()?.subscribe();
        let replay = match since {
            None => Vec::new(),
            Some(since) => inner
                .start_up
                .iter()
                .chain(&inner.recent)
                .filter(|record| record.seq > since)
                .cloned()
                .collect(),
        };
        Some(Subscription { replay, live })
    }

    /// Ends every subscription once it has read what was sent before.
    pub fn close(&self) {
        self.lock().sender = None;
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::broadcast::error::RecvError;

    use super::*;

    fn refused(n: usize) -> Event {
        Event::ReloadRefused {
            why: format!("#{n}"),
        }
    }

    #[tokio::test]
    async fn replay_and_live_events_never_overlap_or_miss() {
        let bus = EventBus::with_capacity(16, 2);
        bus.publish(refused(1));
        bus.started();
        for n in 2..=5 {
            bus.publish(refused(n));
        }
        let Subscription { replay, mut live } = bus.subscribe(Some(0)).expect("open");
        let seqs: Vec<u64> = replay.iter().map(|r| r.seq).collect();
        // The start-up event, then the last two.
        assert_eq!(seqs, [1, 4, 5]);
        bus.publish(refused(6));
        assert_eq!(live.recv().await.expect("live").seq, 6);
        let after = bus.subscribe(Some(4)).expect("open");
        assert_eq!(
            after.replay.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [5, 6]
        );
        assert!(bus.subscribe(None).expect("open").replay.is_empty());
        bus.close();
        assert!(matches!(live.recv().await, Err(RecvError::Closed)));
        assert!(bus.subscribe(None).is_none());
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_what_it_missed() {
        let bus = EventBus::with_capacity(4, 0);
        bus.started();
        let mut slow = bus.subscribe(None).expect("open").live;
        for n in 0..10 {
            bus.publish(refused(n));
        }
        assert!(matches!(slow.recv().await, Err(RecvError::Lagged(6))));
        assert_eq!(slow.recv().await.expect("the oldest kept").seq, 7);
    }
}
