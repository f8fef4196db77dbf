//! The store traits on [`SqliteStore`], one call per operation.

use crate::store::Fence;
use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use regsweep_common::Shutdown;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{
    SqliteStore, catalog, crons, in_use, jobs, queue, repositories, selection, stats, workers,
};
use crate::store::catalog::{
    AdvanceRun, CatalogStore, Counted, DeleteRegistryOutcome, NewPolicy, NewRegistry,
    PolicyMatcher, PolicyRecord, RegistryRecord, ReportOutcome, RepositoryFilter, RepositoryRecord,
    Selection, SelectionConfig,
};
use crate::store::forward::store_impl;
use crate::store::in_use::{InUseMarks, LiveMark, MarkOutcome};
use crate::store::sightings::SightingBatch;
use crate::store::stats::{CleanupStats, QueueStats};
use crate::store::{
    CancelOutcome, CapacityOutcome, ClaimSlot, CreateOutcome, CronRecord, DeleteOutcome, Fired,
    JobFilter, JobRecord, JobStore, LogCursor, LogLine, NewCron, NewJob, NextFire, Purged, Reaped,
    Registration, SessionRef, StoreError, StoreEvent, WorkerHello, WorkerRecord, WriteBatch,
    WriteOutcome,
};

store_impl! {
    impl JobStore for SqliteStore, via |s| s;
    fn create_job(job: NewJob) -> CreateOutcome => jobs::create;
    fn create_jobs(batch: Vec<NewJob>) -> Vec<CreateOutcome> => jobs::create_many;
    fn get_job(id: i64) -> Option<JobRecord> => jobs::get;
    fn list_jobs(filter: &JobFilter, before: Option<i64>, limit: u32) -> Vec<JobRecord>
        => jobs::list;
    fn cancel_job(id: i64, reason: &str) -> CancelOutcome => jobs::cancel;
    fn delete_job(id: i64) -> DeleteOutcome => jobs::delete;
    fn job_logs(id: i64, attempt: Option<u32>, cursor: Option<LogCursor>, limit: u32)
        -> Option<(Vec<LogLine>, LogCursor)> => jobs::logs;
    fn register_worker(hello: &WorkerHello, ttl: Duration) -> Registration => workers::register;
    fn set_draining(session: SessionRef) -> bool => workers::set_draining;
    fn list_workers(include_gone: bool, offset: u64, limit: u32) -> Vec<WorkerRecord>
        => workers::list;
    fn claim(kind: &str, slots: &[ClaimSlot]) -> Vec<JobRecord> => queue::claim;
    fn write_batch(batch: &WriteBatch, ttl: Duration) -> WriteOutcome => queue::write_batch;
    fn try_lease(name: &str, holder: Uuid, lease: Duration) -> bool => crons::try_lease;
    fn release_lease(name: &str, holder: Uuid) -> () => crons::release_lease;
    fn reap_expired_workers(fence: Fence) -> Reaped => workers::reap;
    fn set_worker_capacity(worker_id: Uuid, capacity: &HashMap<String, u32>) -> CapacityOutcome
        => workers::set_capacity;
    fn create_cron(cron: NewCron) -> Option<CronRecord> => crons::create;
    fn get_cron(name: &str) -> Option<CronRecord> => crons::get;
    fn list_crons() -> Vec<CronRecord> => crons::list;
    fn update_cron(cron: NewCron) -> Option<CronRecord> => crons::update;
    fn delete_cron(name: &str) -> bool => crons::delete;
    fn fire_due_crons(next: NextFire, fence: Fence) -> Vec<Fired> => crons::fire_due;
    fn next_cron_due() -> Option<DateTime<Utc>> => crons::next_due;
    fn purge_jobs(older_than: Duration, keep_last: u64) -> Purged => crons::purge;
    fn queue_stats() -> QueueStats => stats::queue;
    {
        async fn listen(&self, events: mpsc::Sender<StoreEvent>, shutdown: Shutdown) {
            SqliteStore::listen(self, events, shutdown).await;
        }
    }
}

store_impl! {
    impl CatalogStore for SqliteStore, via |s| s;
    fn create_registry(r: NewRegistry) -> Option<RegistryRecord> => catalog::create_registry;
    fn get_registry(name: &str) -> Option<RegistryRecord> => catalog::get_registry;
    fn list_registries() -> Vec<RegistryRecord> => catalog::list_registries;
    fn set_registry_capabilities(id: i64, capabilities: &str) -> ()
        => catalog::set_registry_capabilities;
    fn update_registry(r: NewRegistry) -> Option<RegistryRecord> => catalog::update_registry;
    fn delete_registry(name: &str) -> DeleteRegistryOutcome => catalog::delete_registry;
    fn create_policy(p: NewPolicy) -> Option<PolicyRecord> => catalog::create_policy;
    fn get_policy(name: &str, counted: Counted) -> Option<PolicyRecord> => catalog::get_policy;
    fn list_policies(registry_id: Option<i64>, counted: Counted) -> Vec<PolicyRecord>
        => catalog::list_policies;
    fn update_policy(p: NewPolicy) -> Option<PolicyRecord> => catalog::update_policy;
    fn delete_policy(name: &str) -> bool => catalog::delete_policy;
    fn run_policy(name: &str) -> Option<PolicyRecord> => catalog::run_policy;
    fn reassign_repositories(registry_id: i64, matcher: &PolicyMatcher) -> u64
        => repositories::reassign;
    fn report_repositories(
        job_id: i64, attempt: u32, registry_id: i64, names: &[String], complete: bool,
        matcher: &PolicyMatcher,
    ) -> ReportOutcome => repositories::report;
    fn record_deletions(job_id: i64, deleted_tags: u32) -> bool => repositories::record_deletions;
    fn record_sightings(batch: SightingBatch<'_>) -> Vec<DateTime<Utc>>
        => repositories::record_sightings;
    fn mark_in_use(marks: InUseMarks<'_>) -> MarkOutcome => in_use::mark;
    fn live_marks(registry_id: i64, repository: &str, now: DateTime<Utc>, limit: u32)
        -> Vec<LiveMark> => in_use::live;
    fn list_repositories(filter: &RepositoryFilter, after: Option<i64>, limit: u32)
        -> Vec<RepositoryRecord> => repositories::list;
    fn select_cleanups(config: &SelectionConfig, advance: AdvanceRun, fence: Fence) -> Selection
        => selection::select;
    fn cleanup_stats() -> CleanupStats => stats::cleanups;
}
