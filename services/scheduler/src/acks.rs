//! Heartbeat acknowledgements: how long a worker's attempts are safely its
//! own. A worker that asked (`Hello.heartbeat_acks`) stops its attempts
//! when the latest deadline acks gave it passes, so whatever vouches here
//! must be a bound below the earliest moment any replica could declare the
//! worker dead and hand its attempts to another.
//!
//! Two bounds hold:
//!
//! * A written heartbeat: the reaper expires a worker a TTL after its
//!   last written heartbeat, which was written after the worker sent it.
//! * An unwritten one, on a replica that held the leader lease when the
//!   database went into trouble: this replica reaps only after a TTL of
//!   steady database since its last trouble (and, should it step down
//!   and lead again, only a TTL after that), and another replica leads
//!   only after this lease ran out, then holds its reaper for a TTL (a
//!   new leader knows nothing of what was written before it led). So a
//!   leader that steps down in an outage still vouches until its lease's
//!   end plus a TTL. Replicas that never held the lease, or lost it to
//!   another, cannot rule out a leader that reaches the database, and
//!   vouch for nothing they did not write.
//!
//! Every bound keeps a margin of a fifth of the TTL for the worker to
//! stop its attempts before another may start them.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::health::DbHealth;

/// Until when this replica's leader lease cannot have passed to another:
/// the moment before the renewal call that won it, plus the lease. Kept
/// when the replica steps down for want of a renewal (it is still true);
/// cleared when another replica took the lease or this one gave it up.
#[derive(Debug, Default)]
pub struct LeaseClock {
    until: Mutex<Option<Instant>>,
}

impl LeaseClock {
    /// The lease was won or renewed by a call started at `started`.
    pub fn held(&self, started: Instant, lease: Duration) {
        *self.lock() = Some(started + lease);
    }

    /// This replica stopped leading.
    pub fn released(&self) {
        *self.lock() = None;
    }

    fn until(&self) -> Option<Instant> {
        *self.lock()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.until.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What acks may vouch for on this replica.
#[derive(Clone, Debug)]
pub struct Vouching {
    ttl: Duration,
    health: Arc<DbHealth>,
    lease: Arc<LeaseClock>,
}

impl Vouching {
    pub fn new(ttl: Duration, health: Arc<DbHealth>, lease: Arc<LeaseClock>) -> Self {
        Self { ttl, health, lease }
    }

    /// Whether the database is failing now (trouble within the writer's
    /// longest retry pause), not merely within the last TTL.
    pub fn in_trouble(&self) -> bool {
        self.health.steady_for() < ONGOING
    }

    /// Validity of a heartbeat (or registration) the database recorded.
    pub fn written(&self) -> Duration {
        written_validity(self.ttl)
    }

    /// Validity of a heartbeat this replica may not write, at `now`: only
    /// while its lease clock runs and the database is in trouble
    /// (otherwise the heartbeat is written and acknowledged then).
    pub fn unwritten(&self, now: Instant) -> Option<Duration> {
        let lease_end = self.lease.until()?;
        let trouble = self.health.last_trouble();
        if now.saturating_duration_since(trouble) >= self.ttl {
            return None;
        }
        unwritten_validity(now, trouble, lease_end, self.ttl)
    }
}

/// Trouble this recent is still going on: the writer retries a failing
/// flush at least every two seconds.
const ONGOING: Duration = Duration::from_secs(3);

fn margin(ttl: Duration) -> Duration {
    ttl / 5
}

/// A written heartbeat keeps the worker until a TTL after it was written,
/// less the margin.
pub fn written_validity(ttl: Duration) -> Duration {
    ttl.saturating_sub(margin(ttl))
}

/// No reaper runs before `min(trouble, lease_end) + ttl`; less the margin,
/// as a span from `now` (None once nothing is left of it).
fn unwritten_validity(
    now: Instant,
    trouble: Instant,
    lease_end: Instant,
    ttl: Duration,
) -> Option<Duration> {
    let safe_until = trouble.min(lease_end) + ttl.saturating_sub(margin(ttl));
    let left = safe_until.saturating_duration_since(now);
    (!left.is_zero()).then_some(left)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(10);

    #[test]
    fn written_heartbeats_leave_a_margin_below_the_ttl() {
        assert_eq!(written_validity(TTL), Duration::from_secs(8));
    }

    #[test]
    fn unwritten_heartbeats_are_bounded_by_trouble_and_lease() {
        let now = Instant::now();
        let s = Duration::from_secs;
        // Trouble just now, lease for 6 s more: the reaper's wait binds.
        assert_eq!(unwritten_validity(now, now, now + s(6), TTL), Some(s(8)));
        // Trouble just now, lease ended a second ago: the lease binds.
        let lapsed = now.checked_sub(s(1)).expect("instant in range");
        assert_eq!(unwritten_validity(now, now, lapsed, TTL), Some(s(7)));
        // Trouble 5 s ago, lease long: 3 s of the reaper's wait left.
        let trouble = now.checked_sub(s(5)).expect("instant in range");
        assert_eq!(unwritten_validity(now, trouble, now + s(60), TTL), Some(s(3)));
        // Lease ended 9 s ago: nothing left.
        let ended = now.checked_sub(s(9)).expect("instant in range");
        assert_eq!(unwritten_validity(now, now, ended, TTL), None);
    }

    #[test]
    fn only_a_lease_holder_in_trouble_vouches_for_what_it_did_not_write() {
        let health = Arc::new(DbHealth::new());
        let lease = Arc::new(LeaseClock::default());
        let vouching = Vouching::new(TTL, health.clone(), lease.clone());
        let now = Instant::now();
        assert_eq!(vouching.unwritten(now), None, "not leading");
        lease.held(now, Duration::from_secs(6));
        health.trouble();
        assert!(vouching.unwritten(Instant::now()).is_some(), "leading, database in trouble");
        lease.released();
        assert_eq!(vouching.unwritten(Instant::now()), None, "lease taken or given up");
    }
}
