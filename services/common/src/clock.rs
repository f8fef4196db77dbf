//! Where the stores read the time.
//!
//! In production that is the database's own clock: PostgreSQL's `now()`
//! is one clock for every replica, so a lease, a heartbeat expiry or a
//! retry's due time never depends on which host's clock wrote it (a
//! replica whose clock ran ahead would take a lease early). SQLite belongs
//! to one process, whose clock it is.
//!
//! Tests set the clock by hand and move it, so that an expiry an hour away
//! is reached without waiting for it. On PostgreSQL the stores read the
//! time through the SQL function `store_now()`, which is `now()` unless
//! the connection's `regsweep.now` setting holds a time; a store opened on
//! a [`Clock::Manual`] sets it each time a connection leaves its pool.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};

/// The setting `store_now()` reads on PostgreSQL.
pub const SETTING: &str = "regsweep.now";

/// The stores' clock.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// The database's clock (this host's for SQLite).
    #[default]
    Database,
    /// A clock a test sets and moves.
    Manual(Arc<ManualClock>),
}

impl Clock {
    /// A manual clock starting at this host's time, and its handle.
    pub fn manual() -> (Self, Arc<ManualClock>) {
        // Whole microseconds: what both databases keep.
        let start = Utc::now().trunc_subsecs(6);
        let clock = Arc::new(ManualClock(Mutex::new(start)));
        (Self::Manual(clock.clone()), clock)
    }

    /// The time, read in this process: for stores that keep the time in
    /// the process (SQLite).
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Self::Database => Utc::now(),
            Self::Manual(clock) => clock.now(),
        }
    }

    /// The time a store must tell its database, if it is not the
    /// database's own.
    pub fn set_time(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::Database => None,
            Self::Manual(clock) => Some(clock.now()),
        }
    }
}

/// A clock that moves only when told.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    /// The time it shows.
    pub fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves it forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
        let mut now = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *now = now.checked_add_signed(by).unwrap_or(*now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let (clock, hand) = Clock::manual();
        let start = clock.now();
        assert_eq!(clock.now(), start);
        hand.advance(Duration::from_secs(3600));
        assert_eq!(clock.now() - start, chrono::Duration::hours(1));
        assert_eq!(clock.set_time(), Some(start + chrono::Duration::hours(1)));
        assert_eq!(Clock::Database.set_time(), None);
    }
}
