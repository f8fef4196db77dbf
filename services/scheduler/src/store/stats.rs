//! What the metrics endpoint reports from the database: the queue and the
//! limited-capacity selection. Read on the leader only, at the metrics
//! interval, and only when metrics are served.

/// Jobs by kind and status, and the due backlog by kind.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueStats {
    /// `(kind, status, jobs)`.
    pub jobs: Vec<(String, String, i64)>,
    /// `(kind, due waiting jobs, seconds the oldest has waited)`.
    pub backlog: Vec<(String, i64, f64)>,
}

/// The selection's state across every policy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CleanupStats {
    /// Cleanups running (`ongoing`).
    pub running: i64,
    /// Repositories waiting for a cleanup slot (`scheduled`, `unfinished`).
    pub remaining: i64,
    /// Of those, repositories whose policy run is due: overdue.
    pub overdue: i64,
    /// How long the longest-overdue one has been due, in seconds.
    pub max_overdue_seconds: f64,
}
