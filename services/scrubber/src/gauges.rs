//! The scrubber's metrics: deletions by outcome (counted as they end) and
//! by status (read from the store), and each registry's limits as this
//! replica applies them.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use metrics::{describe_counter, describe_gauge, gauge};
use regsweep_common::Shutdown;

use crate::limits::Limits;
use crate::store::DeletionStore;

pub fn describe() {
    describe_counter!(
        "regsweep_deletions_total",
        "deletions this replica ended, by outcome (deleted, retry, failed)"
    );
    describe_gauge!(
        "regsweep_deletions",
        "deletions by status, from the store (the same on every replica)"
    );
    describe_gauge!(
        "regsweep_deletions_oldest_due_seconds",
        "how long the oldest due pending deletion has waited"
    );
    describe_gauge!(
        "regsweep_registry_rate_limit",
        "requests per second this replica allows a registry (0: unlimited)"
    );
    describe_gauge!(
        "regsweep_registry_concurrency",
        "images a registry may have in flight now (lowered when it pushes back)"
    );
    describe_gauge!("regsweep_registry_max_concurrency", "the configured ceiling of that limit");
    describe_gauge!("regsweep_registry_in_flight", "images in flight per registry");
    for outcome in ["deleted", "retry", "failed"] {
        metrics::counter!("regsweep_deletions_total", "outcome" => outcome).absolute(0);
    }
}

/// Refreshes the gauges until `stop`; only started when metrics are served.
pub async fn refresh(
    store: Arc<dyn DeletionStore>,
    limits: Arc<Limits>,
    interval: Duration,
    stop: Shutdown,
) {
    let mut statuses = BTreeSet::new();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        match store.status().await {
            Ok((counts, oldest)) => {
                let now: BTreeSet<String> = counts.iter().map(|(s, _)| s.clone()).collect();
                for gone in statuses.difference(&now) {
                    gauge!("regsweep_deletions", "status" => gone.clone()).set(0.0);
                }
                for (status, n) in counts {
                    gauge!("regsweep_deletions", "status" => status).set(n as f64);
                }
                gauge!("regsweep_deletions_oldest_due_seconds").set(oldest);
                statuses = now;
            }
            Err(e) => tracing::warn!(error = %e, "cannot read deletion metrics"),
        }
        for l in limits.snapshot() {
            let registry = l.registry;
            gauge!("regsweep_registry_rate_limit", "registry" => registry.clone())
                .set(l.rate_limit);
            gauge!("regsweep_registry_concurrency", "registry" => registry.clone())
                .set(f64::from(l.concurrency));
            gauge!("regsweep_registry_max_concurrency", "registry" => registry.clone())
                .set(f64::from(l.max_concurrency));
            gauge!("regsweep_registry_in_flight", "registry" => registry)
                .set(f64::from(l.in_flight));
        }
    }
}
