//! PostgreSQL implementation of [`JobStore`](super::JobStore).
//!
//! Everything lives in the `scheduler` schema (set as the connections'
//! `search_path`, so sqlx's migration table lives there too and another
//! service's migrations in the same database never collide with ours).

mod crons;
mod in_use;
mod jobs;
mod leases;
mod queue;
mod registries;
mod repositories;
mod retention;
mod selection;
mod stats;
mod workers;

use crate::store::Fence;
use crate::store::forward::store_impl;
use crate::store::in_use::{InUseMarks, LiveMark, MarkOutcome};
use crate::store::sightings::SightingBatch;
use crate::store::stats::{CleanupStats, QueueStats};
use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use regsweep_common::Shutdown;
use regsweep_common::backoff::Backoff;
use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::catalog::{
    AdvanceRun, CatalogStore, Counted, DeleteRegistryOutcome, NewPolicy, NewRegistry,
    PolicyMatcher, PolicyRecord, RegistryRecord, ReportOutcome, RepositoryFilter, RepositoryRecord,
    Selection, SelectionConfig,
};
use super::{
    CancelOutcome, CapacityOutcome, ClaimSlot, CreateOutcome, CronRecord, DeleteOutcome, Fired,
    JobFilter, JobRecord, JobStore, LogCursor, LogLine, NewCron, NewJob, NextFire, Purged, Reaped,
    Registration, SessionRef, StoreError, StoreEvent, WorkerHello, WorkerRecord, WriteBatch,
    WriteOutcome,
};

/// The schema the scheduler owns.
pub const SCHEMA: &str = "scheduler";
/// Channel announcing claimable jobs (payload: kind).
const JOBS_CHANNEL: &str = "regsweep_jobs";
/// Channel announcing cancel requests (payload: JSON).
const CANCEL_CHANNEL: &str = "regsweep_cancel";
/// Channel announcing operator capacity changes (payload: JSON).
const CAPACITY_CHANNEL: &str = "regsweep_capacity";
/// Channel announcing the end of a cleanup job (payload: job id).
const CLEANUPS_CHANNEL: &str = "regsweep_cleanups";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The scheduler's store on PostgreSQL.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects, creates the schema if needed and applies migrations. A
    /// database migrated by a newer version fails here, before anything runs.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let pool = regsweep_common::db::open_postgres(
            url,
            SCHEMA,
            "regsweep-scheduler",
            max_connections,
            &MIGRATOR,
        )
        .await?;
        Ok(Self { pool })
    }

    /// The connection pool, for benchmarks and tests that measure the raw
    /// database next to the service.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

store_impl! {
    impl JobStore for PgStore, via |s| &s.pool;
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
    fn try_lease(name: &str, holder: Uuid, lease: Duration) -> bool => leases::try_lease;
    fn release_lease(name: &str, holder: Uuid) -> () => leases::release_lease;
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
    fn purge_jobs(older_than: Duration, keep_last: u64) -> Purged => retention::purge;
    fn queue_stats() -> QueueStats => stats::queue;
    {
        async fn listen(&self, events: mpsc::Sender<StoreEvent>, shutdown: Shutdown) {
            listen(&self.pool, events, shutdown).await;
        }
    }
}

store_impl! {
    impl CatalogStore for PgStore, via |s| &s.pool;
    fn create_registry(r: NewRegistry) -> Option<RegistryRecord> => registries::create_registry;
    fn get_registry(name: &str) -> Option<RegistryRecord> => registries::get_registry;
    fn list_registries() -> Vec<RegistryRecord> => registries::list_registries;
    fn set_registry_capabilities(id: i64, capabilities: &str) -> ()
        => registries::set_registry_capabilities;
    fn update_registry(r: NewRegistry) -> Option<RegistryRecord> => registries::update_registry;
    fn delete_registry(name: &str) -> DeleteRegistryOutcome => registries::delete_registry;
    fn create_policy(p: NewPolicy) -> Option<PolicyRecord> => registries::create_policy;
    fn get_policy(name: &str, counted: Counted) -> Option<PolicyRecord> => registries::get_policy;
    fn list_policies(registry_id: Option<i64>, counted: Counted) -> Vec<PolicyRecord>
        => registries::list_policies;
    fn update_policy(p: NewPolicy) -> Option<PolicyRecord> => registries::update_policy;
    fn delete_policy(name: &str) -> bool => registries::delete_policy;
    fn run_policy(name: &str) -> Option<PolicyRecord> => registries::run_policy;
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

/// Delivers notifications until shutdown, reconnecting after errors.
async fn listen(pool: &PgPool, events: mpsc::Sender<StoreEvent>, shutdown: Shutdown) {
    let mut retries = Backoff::new(Duration::from_millis(100), Duration::from_secs(5)).retries();
    while !shutdown.is_triggered() {
        match listen_once(pool, &events, &shutdown).await {
            Ok(()) => return,
            Err(e) => {
                let delay = retries.next_delay();
                tracing::warn!(error = %e, retry_in = ?delay, "notification listener failed");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => return,
                }
            }
        }
    }
}

/// Listens until shutdown (`Ok`) or a connection error (`Err`). Every
/// (re)connection is followed by a `Resync`: notifications sent while no
/// one listened are lost.
async fn listen_once(
    pool: &PgPool,
    events: &mpsc::Sender<StoreEvent>,
    shutdown: &Shutdown,
) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen_all([JOBS_CHANNEL, CANCEL_CHANNEL, CAPACITY_CHANNEL, CLEANUPS_CHANNEL]).await?;
    if events.send(StoreEvent::Resync).await.is_err() {
        return Ok(());
    }
    loop {
        let notification = tokio::select! {
            n = listener.try_recv() => n?,
            () = shutdown.cancelled() => return Ok(()),
        };
        let event = match notification {
            None => StoreEvent::Resync,
            Some(n) if n.channel() == JOBS_CHANNEL => {
                StoreEvent::JobsAvailable(n.payload().to_string())
            }
            Some(n) if n.channel() == CLEANUPS_CHANNEL => StoreEvent::CleanupEnded,
            Some(n) => {
                let event = if n.channel() == CANCEL_CHANNEL {
                    crate::store::rows::parse_cancel_payload(n.payload())
                } else {
                    crate::store::rows::parse_capacity_payload(n.payload())
                };
                match event {
                    Some(event) => event,
                    None => {
                        tracing::warn!(
                            channel = n.channel(),
                            payload = n.payload(),
                            "ignoring malformed notification"
                        );
                        continue;
                    }
                }
            }
        };
        if events.send(event).await.is_err() {
            return Ok(());
        }
    }
}
