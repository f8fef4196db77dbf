//! How long this replica has reached the database without trouble. An
//! outage is not a death: heartbeats that arrive while the database is
//! away cannot be written, so a worker's stored expiry says nothing about
//! it until a full heartbeat TTL has passed with the database reachable
//! (every live worker has heartbeated, and been written, since). The
//! writer, the lease renewal and the reaper report trouble here; the
//! reaper waits for steadiness before it declares anyone dead.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// When the database last failed this replica.
#[derive(Debug)]
pub struct DbHealth {
    last_trouble: Mutex<Instant>,
}

impl Default for DbHealth {
    fn default() -> Self {
        Self::new()
    }
}

impl DbHealth {
    /// Counted as trouble now: nothing is known of what was written
    /// before this replica started.
    pub fn new() -> Self {
        Self { last_trouble: Mutex::new(Instant::now()) }
    }

    /// A database call failed (or its outcome is unknown).
    pub fn trouble(&self) {
        *self.last_trouble.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    /// When the database last failed this replica.
    pub fn last_trouble(&self) -> Instant {
        *self.last_trouble.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How long the database has answered without failing.
    pub fn steady_for(&self) -> Duration {
        self.last_trouble.lock().unwrap_or_else(PoisonError::into_inner).elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trouble_restarts_the_steady_time() {
        let health = DbHealth::new();
        std::thread::sleep(Duration::from_millis(20));
        assert!(health.steady_for() >= Duration::from_millis(20));
        health.trouble();
        assert!(health.steady_for() < Duration::from_millis(20));
    }
}
