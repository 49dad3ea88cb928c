//! Bounded listeners, shared by the control socket and the metrics endpoint: how many
//! connections one holds at once, and what happens at the bound and at the process's
//! descriptor limit.
//!
//! - At most [`Bound::limit`] connections are open: a share of the descriptor limit
//!   (`RLIMIT_NOFILE`, read at every accept, so a limit lowered while running counts),
//!   capped. The rest of the descriptors stay for the health probes, netlink and
//!   the maps.
//! - When a new connection arrives at the bound, the oldest connection still waiting
//!   for its request is closed to make room. A client that sends its request at
//!   once (the CLI, a scraper) is therefore never held up by idle or half-sent ones;
//!   a connection being answered or streaming events is never closed for this.
//! - A request that does not arrive within its timeout closes the connection
//!   ([`Slot::request`]).
//! - `accept()` failing (no descriptor, buffer or memory) is retried after a pause
//!   that doubles up to [`MAX_PAUSE`], and logged at most once per [`LOG_EVERY`]
//!   with the number of failures: never spun on ([`Pacer`]).

use std::{
    collections::VecDeque,
    future::Future,
    io,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use tokio::{
    sync::{Notify, oneshot},
    time::Instant,
};
use tracing::warn;

/// The fewest connections a bound allows, whatever the descriptor limit.
const MIN_LIMIT: usize = 4;
/// The first pause after a failed accept.
const MIN_PAUSE: Duration = Duration::from_millis(10);
/// The longest pause after failed accepts.
pub const MAX_PAUSE: Duration = Duration::from_secs(1);
/// How often failed accepts are logged at most.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// The connections of one listener.
#[derive(Clone, Debug)]
pub struct Bound {
    /// At most this many connections...
    cap: usize,
    /// ... and at most the descriptor limit divided by this.
    share: usize,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// A connection ended.
    closed: Notify,
}

#[derive(Debug, Default)]
struct State {
    open: usize,
    /// Connections still waiting for their request, oldest first, each with the
    /// sender that closes it.
    waiting: VecDeque<(u64, oneshot::Sender<()>)>,
    next: u64,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent at every step: a panic elsewhere cannot leave
        // it half-changed.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The process's soft descriptor limit (`usize::MAX` when unlimited or unknown).
fn descriptor_limit() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0
        || limit.rlim_cur == libc::RLIM_INFINITY
    {
        return usize::MAX;
    }
    usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
}

impl Bound {
    /// At most `cap` connections, and at most a `share`-th of the descriptor limit.
    pub fn new(cap: usize, share: usize) -> Bound {
        Bound {
            cap,
            share: share.max(1),
            shared: Arc::default(),
        }
    }

    /// How many connections may be open now.
    pub fn limit(&self) -> usize {
        (descriptor_limit() / self.share).clamp(MIN_LIMIT.min(self.cap), self.cap)
    }

    /// How many connections are open.
    pub fn open(&self) -> usize {
        self.shared.state().open
    }

    /// A slot for a connection just accepted: at once below the limit; else once the
    /// oldest connection waiting for its request is closed, or (none waiting) once
    /// any connection ends.
    pub async fn admit(&self) -> Slot {
        loop {
            let closed = self.shared.closed.notified();
            {
                let mut state = self.shared.state();
                if state.open < self.limit() {
                    state.open += 1;
                    let id = state.next;
                    state.next += 1;
                    let (close, closing) = oneshot::channel();
                    state.waiting.push_back((id, close));
                    return Slot {
                        id,
                        shared: self.shared.clone(),
                        closing: Some(closing),
                    };
                }
                if let Some((_, close)) = state.waiting.pop_front() {
                    let _ = close.send(());
                }
            }
            closed.await;
        }
    }
}

/// Why a connection was closed before its request arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Cut {
    #[error("no request within {0:?}")]
    TimedOut(Duration),
    #[error("closed to make room for a newer connection")]
    Evicted,
}

/// One open connection's place in its [`Bound`]; freed when dropped.
#[derive(Debug)]
pub struct Slot {
    id: u64,
    shared: Arc<Shared>,
    /// Fires when the connection is closed to make room (until its request is in).
    closing: Option<oneshot::Receiver<()>>,
}

impl Slot {
    /// Runs `read` (reading the request) unless it takes longer than `timeout` or
    /// the connection is closed to make room first. From then on the connection is
    /// no longer closed to make room.
    pub async fn request<T>(
        &mut self,
        timeout: Duration,
        read: impl Future<Output = T>,
    ) -> Result<T, Cut> {
        let result = match self.closing.take() {
            Some(closing) => tokio::select! {
                value = tokio::time::timeout(timeout, read) => {
                    value.map_err(|_| Cut::TimedOut(timeout))
                }
                _ = closing => Err(Cut::Evicted),
            },
            None => tokio::time::timeout(timeout, read)
                .await
                .map_err(|_| Cut::TimedOut(timeout)),
        };
        let id = self.id;
        self.shared
            .state()
            .waiting
            .retain(|(other, _)| *other != id);
        result
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let id = self.id;
        {
            let mut state = self.shared.state();
            state.open = state.open.saturating_sub(1);
            state.waiting.retain(|(other, _)| *other != id);
        }
        self.shared.closed.notify_one();
    }
}

/// Paces the retries of a failing `accept()`.
#[derive(Debug)]
pub struct Pacer {
    /// What accepts: `the control socket`, `the metrics endpoint`.
    what: &'static str,
    pause: Duration,
    /// Failures since the last log line.
    failures: u64,
    logged: Option<Instant>,
}

impl Pacer {
    pub fn new(what: &'static str) -> Pacer {
        Pacer {
            what,
            pause: Duration::ZERO,
            failures: 0,
            logged: None,
        }
    }

    /// The next connection `accept` gives. A failure (no descriptors, say) is logged
    /// and waited out ([`Pacer::failed`]), never spun on.
    pub async fn next<S, F>(&mut self, mut accept: impl FnMut() -> F) -> S
    where
        F: Future<Output = io::Result<S>>,
    {
        loop {
            match accept().await {
                Ok(accepted) => {
                    self.accepted();
                    return accepted;
                }
                Err(err) => tokio::time::sleep(self.failed(&err)).await,
            }
        }
    }

    /// An accept succeeded: the next failure pauses briefly again.
    fn accepted(&mut self) {
        self.pause = Duration::ZERO;
    }

    /// An accept failed with `err`: logs (at most once per [`LOG_EVERY`]) and
    /// returns the pause to wait before the next accept.
    fn failed(&mut self, err: &io::Error) -> Duration {
        self.failures += 1;
        let now = Instant::now();
        if self
            .logged
            .is_none_or(|at| now.saturating_duration_since(at) >= LOG_EVERY)
        {
            warn!(
                failures = self.failures,
                "accepting on {} failed: {err}; retrying with pauses up to {MAX_PAUSE:?} \
                 (logged at most every {LOG_EVERY:?})",
                self.what
            );
            self.failures = 0;
            self.logged = Some(now);
        }
        self.pause = (self.pause * 2).clamp(MIN_PAUSE, MAX_PAUSE);
        self.pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_oldest_waiting_connection_makes_room_and_answered_ones_stay() {
        let bound = Bound::new(2, 1);
        assert_eq!(bound.limit(), 2);
        let mut answered = bound.admit().await;
        answered
            .request(Duration::from_secs(1), async {})
            .await
            .expect("read at once");
        let mut idle = bound.admit().await;
        // At the bound: the idle one (waiting for its request) is closed, not the
        // answered one.
        let newer = tokio::spawn({
            let bound = bound.clone();
            async move { bound.admit().await }
        });
        let cut = idle
            .request(Duration::from_secs(10), std::future::pending::<()>())
            .await;
        assert_eq!(cut, Err(Cut::Evicted));
        drop(idle);
        let newer = tokio::time::timeout(Duration::from_secs(5), newer)
            .await
            .expect("admitted once the idle one closed")
            .expect("task");
        assert_eq!(bound.open(), 2);
        drop((answered, newer));
        assert_eq!(bound.open(), 0);
    }

    #[tokio::test]
    async fn a_request_that_does_not_come_times_out_and_nobody_waiting_means_waiting() {
        let bound = Bound::new(1, 1);
        let mut only = bound.admit().await;
        let cut = only
            .request(Duration::from_millis(200), std::future::pending::<()>())
            .await;
        assert_eq!(cut, Err(Cut::TimedOut(Duration::from_millis(200))));
        // Not waiting any more: a newer connection waits for it to end.
        let newer = tokio::spawn({
            let bound = bound.clone();
            async move { bound.admit().await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!newer.is_finished(), "admitted beyond the bound");
        drop(only);
        let _newer = newer.await.expect("admitted once the first ended");
    }

    #[test]
    fn failed_accepts_pause_longer_each_time_and_are_not_logged_each_time() {
        let mut pacer = Pacer::new("a test listener");
        let err = io::Error::from_raw_os_error(libc::EMFILE);
        let pauses: Vec<Duration> = (0..10).map(|_| pacer.failed(&err)).collect();
        assert_eq!(pauses[0], MIN_PAUSE);
        assert!(pauses.windows(2).all(|w| w[1] >= w[0]), "{pauses:?}");
        assert_eq!(pauses[9], MAX_PAUSE);
        // Logged once (the first); the nine after it are counted for the next line.
        assert_eq!(pacer.failures, 9);
        pacer.accepted();
        assert_eq!(pacer.failed(&err), MIN_PAUSE);
    }

    #[test]
    fn the_limit_is_a_share_of_the_descriptor_limit() {
        let limit = descriptor_limit();
        assert!(limit > 0);
        let bound = Bound::new(usize::MAX, 4);
        assert_eq!(bound.limit(), (limit / 4).max(MIN_LIMIT));
        assert_eq!(Bound::new(3, 1).limit(), 3);
    }
}
