//! Store decorators that record every operation's duration in
//! `regsweep_db_operation_seconds{operation}`; installed only when metrics
//! are served.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use regsweep_common::Shutdown;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::catalog::{
    AdvanceRun, CatalogStore, Counted, DeleteRegistryOutcome, NewPolicy, NewRegistry,
    PolicyMatcher, PolicyRecord, RegistryRecord, ReportOutcome, RepositoryFilter, RepositoryRecord,
    Selection, SelectionConfig,
};
use super::forward::store_impl;
use super::in_use::{InUseMarks, LiveMark, MarkOutcome};
use super::sightings::SightingBatch;
use super::stats::{CleanupStats, QueueStats};
use super::{
    CancelOutcome, CapacityOutcome, ClaimSlot, CreateOutcome, CronRecord, DeleteOutcome, Fence,
    Fired, JobFilter, JobRecord, JobStore, LogCursor, LogLine, NewCron, NewJob, NextFire, Purged,
    Reaped, Registration, SessionRef, StoreError, StoreEvent, WorkerHello, WorkerRecord,
    WriteBatch, WriteOutcome,
};

pub struct MeasuredJobs(pub Arc<dyn JobStore>);

store_impl! {
    impl JobStore for MeasuredJobs, timed;
    fn create_job(job: NewJob) -> CreateOutcome;
    fn create_jobs(jobs: Vec<NewJob>) -> Vec<CreateOutcome>;
    fn get_job(id: i64) -> Option<JobRecord>;
    fn list_jobs(filter: &JobFilter, before: Option<i64>, limit: u32) -> Vec<JobRecord>;
    fn cancel_job(id: i64, reason: &str) -> CancelOutcome;
    fn delete_job(id: i64) -> DeleteOutcome;
    fn job_logs(id: i64, attempt: Option<u32>, cursor: Option<LogCursor>, limit: u32)
        -> Option<(Vec<LogLine>, LogCursor)>;
    fn register_worker(hello: &WorkerHello, ttl: Duration) -> Registration;
    fn set_draining(session: SessionRef) -> bool;
    fn list_workers(include_gone: bool, offset: u64, limit: u32) -> Vec<WorkerRecord>;
    fn claim(kind: &str, slots: &[ClaimSlot]) -> Vec<JobRecord>;
    fn write_batch(batch: &WriteBatch, ttl: Duration) -> WriteOutcome;
    fn try_lease(name: &str, holder: Uuid, lease: Duration) -> bool;
    fn release_lease(name: &str, holder: Uuid) -> ();
    fn reap_expired_workers(fence: Fence) -> Reaped;
    fn set_worker_capacity(worker_id: Uuid, capacity: &HashMap<String, u32>) -> CapacityOutcome;
    fn create_cron(cron: NewCron) -> Option<CronRecord>;
    fn get_cron(name: &str) -> Option<CronRecord>;
    fn list_crons() -> Vec<CronRecord>;
    fn update_cron(cron: NewCron) -> Option<CronRecord>;
    fn delete_cron(name: &str) -> bool;
    fn fire_due_crons(next: NextFire, fence: Fence) -> Vec<Fired>;
    fn next_cron_due() -> Option<DateTime<Utc>>;
    fn purge_jobs(older_than: Duration, keep_last: u64) -> Purged;
    fn queue_stats() -> QueueStats;
    {
        // A listener runs for the life of the process: there is no one
        // duration to record.
        async fn listen(&self, events: mpsc::Sender<StoreEvent>, shutdown: Shutdown) {
            self.0.listen(events, shutdown).await;
        }
    }
}

pub struct MeasuredCatalog(pub Arc<dyn CatalogStore>);

store_impl! {
    impl CatalogStore for MeasuredCatalog, timed;
    fn create_registry(r: NewRegistry) -> Option<RegistryRecord>;
    fn get_registry(name: &str) -> Option<RegistryRecord>;
    fn list_registries() -> Vec<RegistryRecord>;
    fn set_registry_capabilities(id: i64, capabilities: &str) -> ();
    fn update_registry(r: NewRegistry) -> Option<RegistryRecord>;
    fn delete_registry(name: &str) -> DeleteRegistryOutcome;
    fn create_policy(p: NewPolicy) -> Option<PolicyRecord>;
    fn get_policy(name: &str, counted: Counted) -> Option<PolicyRecord>;
    fn list_policies(registry_id: Option<i64>, counted: Counted) -> Vec<PolicyRecord>;
    fn update_policy(p: NewPolicy) -> Option<PolicyRecord>;
    fn delete_policy(name: &str) -> bool;
    fn run_policy(name: &str) -> Option<PolicyRecord>;
    fn reassign_repositories(registry_id: i64, matcher: &PolicyMatcher) -> u64;
    fn report_repositories(
        job_id: i64, attempt: u32, registry_id: i64, names: &[String], complete: bool,
        matcher: &PolicyMatcher,
    ) -> ReportOutcome;
    fn record_deletions(job_id: i64, deleted_tags: u32) -> bool;
    fn record_sightings(batch: SightingBatch<'_>) -> Vec<DateTime<Utc>>;
    fn mark_in_use(marks: InUseMarks<'_>) -> MarkOutcome;
    fn live_marks(registry_id: i64, repository: &str, now: DateTime<Utc>, limit: u32)
        -> Vec<LiveMark>;
    fn list_repositories(filter: &RepositoryFilter, after: Option<i64>, limit: u32)
        -> Vec<RepositoryRecord>;
    fn select_cleanups(config: &SelectionConfig, advance: AdvanceRun, fence: Fence) -> Selection;
    fn cleanup_stats() -> CleanupStats;
}
