//! The worker fences itself. The scheduler acknowledges heartbeats with a
//! span during which no replica will declare this worker dead
//! (`HeartbeatAck`); the latest such deadline is the lease on every
//! attempt the worker runs. When it passes without a new ack (the worker
//! is cut off, or its scheduler cannot vouch for it), each attempt stops
//! and is given back before another worker may start it: a partitioned
//! worker never runs side by side with the attempt that replaced it.
//!
//! A scheduler that does not acknowledge heartbeats (an older one) turns
//! the fence off for its session: attempts then run until cancelled.
//!
//! Deadlines are monotonic instants, as the scheduler's lease and reaper
//! are: like them, this assumes a host is not suspended while it works
//! (a suspended worker would wake with its deadlines not yet passed).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// Heartbeats remembered for their acks: acks of older ones are late
/// enough to ignore.
const REMEMBERED: usize = 64;

/// The lease on this worker's attempts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fence {
    /// Attempts run until cancelled (no acks from this scheduler).
    Off,
    /// Attempts must stop at this instant unless an ack moves it on.
    Until(Instant),
}

/// Shared by the connection (which moves the deadline) and every attempt
/// (which stops at it).
#[derive(Clone, Debug)]
pub struct Lease {
    fence: Arc<watch::Sender<Fence>>,
    sent: Arc<Mutex<Sent>>,
}

#[derive(Debug, Default)]
struct Sent {
    next: u64,
    at: VecDeque<(u64, Instant)>,
}

impl Default for Lease {
    fn default() -> Self {
        Self::new()
    }
}

impl Lease {
    pub fn new() -> Self {
        Self { fence: Arc::new(watch::Sender::new(Fence::Off)), sent: Arc::default() }
    }

    /// A `Welcome` answered the Hello sent at `hello_sent`: with a validity
    /// the scheduler vouches from then on; without, the fence is off.
    pub fn welcomed(&self, hello_sent: Instant, valid_for: Option<Duration>) {
        match valid_for {
            Some(valid_for) => self.extend(hello_sent + valid_for),
            None => {
                if self.fence.send_replace(Fence::Off) != Fence::Off {
                    tracing::warn!(
                        "this scheduler does not acknowledge heartbeats: attempts are no longer fenced"
                    );
                }
            }
        }
    }

    /// The current deadline, if fenced.
    pub fn deadline(&self) -> Option<Instant> {
        match *self.fence.borrow() {
            Fence::Off => None,
            Fence::Until(until) => Some(until),
        }
    }

    /// The sequence number of a heartbeat sent now.
    pub fn heartbeat_sent(&self) -> u64 {
        let mut sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
        sent.next += 1;
        let sequence = sent.next;
        sent.at.push_back((sequence, Instant::now()));
        if sent.at.len() > REMEMBERED {
            sent.at.pop_front();
        }
        sequence
    }

    /// The scheduler vouched for the attempts until heartbeat `sequence`
    /// was sent plus `valid_for`.
    pub fn acknowledged(&self, sequence: u64, valid_for: Duration) {
        let sent_at = {
            let sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
            sent.at.iter().find(|(s, _)| *s == sequence).map(|(_, at)| *at)
        };
        match sent_at {
            Some(at) => self.extend(at + valid_for),
            None => tracing::debug!(sequence, "ack of a heartbeat not remembered"),
        }
    }

    /// Moves the deadline later (never earlier: every ack's bound holds).
    fn extend(&self, until: Instant) {
        self.fence.send_if_modified(|fence| match fence {
            Fence::Until(current) if *current >= until => false,
            _ => {
                *fence = Fence::Until(until);
                true
            }
        });
    }

    /// Whether the attempts are still this worker's.
    pub fn held(&self) -> bool {
        match *self.fence.borrow() {
            Fence::Off => true,
            Fence::Until(until) => Instant::now() < until,
        }
    }

    /// Resolves once the deadline passes without being moved on. Final:
    /// an ack that arrives after the deadline passed (a freeze, a late
    /// stream) does not revive the wait.
    pub async fn lost(&self) {
        let mut fence = self.fence.subscribe();
        loop {
            let current = fence.borrow_and_update().clone();
            match current {
                Fence::Until(until) if Instant::now() >= until => return,
                Fence::Until(until) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(until.into()) => {}
                        changed = fence.changed() => {
                            if changed.is_err() {
                                return std::future::pending().await;
                            }
                            if Instant::now() >= until {
                                return;
                            }
                        }
                    }
                }
                Fence::Off => {
                    if fence.changed().await.is_err() {
                        return std::future::pending().await;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn off_until_a_scheduler_vouches() {
        let lease = Lease::new();
        assert!(lease.held());
        lease.welcomed(Instant::now(), None);
        assert!(lease.held());
        let lost = tokio::time::timeout(Duration::from_millis(20), lease.lost()).await;
        assert!(lost.is_err(), "an unfenced lease is never lost");
    }

    #[tokio::test]
    async fn acks_move_the_deadline_from_when_the_heartbeat_was_sent() {
        let lease = Lease::new();
        lease.welcomed(Instant::now(), Some(Duration::from_millis(30)));
        let first = lease.heartbeat_sent();
        let second = lease.heartbeat_sent();
        lease.acknowledged(second, 60 * S);
        // A late ack of an earlier heartbeat never moves it back.
        lease.acknowledged(first, Duration::from_millis(1));
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(lease.held());
        // An ack of a heartbeat never sent vouches for nothing.
        let fresh = Lease::new();
        fresh.welcomed(Instant::now(), Some(Duration::from_millis(10)));
        fresh.acknowledged(99, 60 * S);
        fresh.lost().await;
        assert!(!fresh.held());
    }

    #[tokio::test]
    async fn lost_waits_for_the_latest_deadline() {
        let lease = Lease::new();
        let started = Instant::now();
        lease.welcomed(started, Some(Duration::from_millis(30)));
        let waiter = tokio::spawn({
            let lease = lease.clone();
            async move { lease.lost().await }
        });
        let sequence = lease.heartbeat_sent();
        lease.acknowledged(sequence, Duration::from_millis(120));
        waiter.await.expect("waiter");
        assert!(started.elapsed() >= Duration::from_millis(120), "{:?}", started.elapsed());
        assert!(!lease.held());
    }
}
