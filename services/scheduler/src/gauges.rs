//! The scheduler's metrics: what the code paths count (claims, connected
//! workers, expired heartbeats, store latency) and the gauges the leader
//! reads from the database at an interval (jobs by kind and status, the
//! backlog, the limited-capacity selection).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use metrics::{describe_counter, describe_gauge, describe_histogram, gauge};
use regsweep_common::Shutdown;

use crate::store::JobStore;
use crate::store::catalog::CatalogStore;

/// Describes every series once, so a scrape explains them.
pub fn describe() {
    describe_gauge!("regsweep_jobs", "jobs by kind and status (leader, from the database)");
    describe_counter!("regsweep_jobs_claimed_total", "job attempts handed to workers, by kind");
    describe_histogram!(
        "regsweep_claim_latency_seconds",
        "how long a job waited between being due and being claimed, by kind"
    );
    describe_gauge!("regsweep_queue_depth", "due jobs waiting for a worker, by kind");
    describe_gauge!(
        "regsweep_queue_oldest_age_seconds",
        "how long the oldest due waiting job has waited, by kind"
    );
    describe_gauge!("regsweep_workers_connected", "worker streams open on this replica");
    describe_counter!(
        "regsweep_heartbeat_expirations_total",
        "workers declared dead because their heartbeat expired"
    );
    describe_counter!(
        "regsweep_heartbeat_expired_attempts_total",
        "job attempts taken back from workers whose heartbeat expired"
    );
    describe_gauge!("regsweep_cleanup_running", "cleanups running (repositories ongoing)");
    describe_gauge!("regsweep_cleanup_capacity", "cleanups allowed to run at once");
    describe_gauge!(
        "regsweep_cleanup_remaining",
        "repositories waiting for a cleanup slot (scheduled or unfinished)"
    );
    describe_gauge!(
        "regsweep_repositories_overdue",
        "waiting repositories whose policy run is due"
    );
    describe_gauge!(
        "regsweep_repositories_overdue_seconds",
        "how long the longest-overdue repository's policy run has been due"
    );
    describe_gauge!("regsweep_leader", "1 on the replica that holds the leader lease");
    // Counters exist from the start, so rates work before the first event.
    metrics::counter!("regsweep_heartbeat_expirations_total").absolute(0);
    metrics::counter!("regsweep_heartbeat_expired_attempts_total").absolute(0);
    gauge!("regsweep_workers_connected").increment(0.0);
}

/// Counts an open worker stream while it lives.
pub struct Connected;

impl Connected {
    pub fn new() -> Self {
        gauge!("regsweep_workers_connected").increment(1.0);
        Self
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        gauge!("regsweep_workers_connected").decrement(1.0);
    }
}

/// Counts workers declared dead and the attempts taken back from them.
pub fn record_reaped(workers: usize, attempts: u64) {
    metrics::counter!("regsweep_heartbeat_expirations_total").increment(workers as u64);
    metrics::counter!("regsweep_heartbeat_expired_attempts_total").increment(attempts);
}

/// Refreshes the database gauges every `interval` while this replica
/// leads; only started when metrics are served.
pub async fn refresh(
    jobs: Arc<dyn JobStore>,
    catalog: Arc<dyn CatalogStore>,
    capacity: u32,
    interval: Duration,
    stop: Shutdown,
) {
    gauge!("regsweep_leader").set(1.0);
    gauge!("regsweep_cleanup_capacity").set(f64::from(capacity));
    let mut seen = Seen::default();
    // Every kind has a backlog series, 0 until jobs wait.
    for kind in crate::kinds::KINDS {
        gauge!("regsweep_queue_depth", "kind" => *kind).set(0.0);
        gauge!("regsweep_queue_oldest_age_seconds", "kind" => *kind).set(0.0);
    }
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => break,
        }
        match jobs.queue_stats().await {
            Ok(stats) => seen.queue(&stats),
            Err(e) => tracing::warn!(error = %e, "cannot read queue metrics"),
        }
        match catalog.cleanup_stats().await {
            Ok(s) => {
                gauge!("regsweep_cleanup_running").set(s.running as f64);
                gauge!("regsweep_cleanup_remaining").set(s.remaining as f64);
                gauge!("regsweep_repositories_overdue").set(s.overdue as f64);
                gauge!("regsweep_repositories_overdue_seconds").set(s.max_overdue_seconds);
            }
            Err(e) => tracing::warn!(error = %e, "cannot read cleanup metrics"),
        }
    }
    // Another replica reports from now on; sums across replicas stay right.
    gauge!("regsweep_leader").set(0.0);
    seen.clear();
}

/// Label sets reported last time, so series that vanished read 0 rather
/// than their last value.
#[derive(Default)]
struct Seen {
    jobs: BTreeSet<(String, String)>,
    backlog: BTreeSet<String>,
}

impl Seen {
    fn queue(&mut self, stats: &crate::store::stats::QueueStats) {
        let jobs: BTreeSet<_> = stats.jobs.iter().map(|(k, s, _)| (k.clone(), s.clone())).collect();
        for (kind, status) in self.jobs.difference(&jobs) {
            gauge!("regsweep_jobs", "kind" => kind.clone(), "status" => status.clone()).set(0.0);
        }
        for (kind, status, n) in &stats.jobs {
            gauge!("regsweep_jobs", "kind" => kind.clone(), "status" => status.clone())
                .set(*n as f64);
        }
        let backlog: BTreeSet<_> = stats.backlog.iter().map(|(k, _, _)| k.clone()).collect();
        for kind in self.backlog.difference(&backlog) {
            gauge!("regsweep_queue_depth", "kind" => kind.clone()).set(0.0);
            gauge!("regsweep_queue_oldest_age_seconds", "kind" => kind.clone()).set(0.0);
        }
        for (kind, depth, oldest) in &stats.backlog {
            gauge!("regsweep_queue_depth", "kind" => kind.clone()).set(*depth as f64);
            gauge!("regsweep_queue_oldest_age_seconds", "kind" => kind.clone()).set(*oldest);
        }
        (self.jobs, self.backlog) = (jobs, backlog);
    }

    fn clear(&mut self) {
        self.queue(&crate::store::stats::QueueStats::default());
        for name in [
            "regsweep_cleanup_running",
            "regsweep_cleanup_remaining",
            "regsweep_repositories_overdue",
            "regsweep_repositories_overdue_seconds",
            "regsweep_cleanup_capacity",
        ] {
            gauge!(name).set(0.0);
        }
    }
}
