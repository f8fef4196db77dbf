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
use crate::store::stats::{CleanupStats, QueueStats};
use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
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

#[async_trait]
impl JobStore for PgStore {
    async fn create_job(&self, job: NewJob) -> Result<CreateOutcome, StoreError> {
        jobs::create(&self.pool, job).await
    }

    async fn create_jobs(&self, batch: Vec<NewJob>) -> Result<Vec<CreateOutcome>, StoreError> {
        jobs::create_many(&self.pool, batch).await
    }

    async fn get_job(&self, id: i64) -> Result<Option<JobRecord>, StoreError> {
        jobs::get(&self.pool, id).await
    }

    async fn list_jobs(
        &self,
        filter: &JobFilter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<JobRecord>, StoreError> {
        jobs::list(&self.pool, filter, before, limit).await
    }

    async fn cancel_job(&self, id: i64, reason: &str) -> Result<CancelOutcome, StoreError> {
        jobs::cancel(&self.pool, id, reason).await
    }

    async fn delete_job(&self, id: i64) -> Result<DeleteOutcome, StoreError> {
        jobs::delete(&self.pool, id).await
    }

    async fn job_logs(
        &self,
        id: i64,
        attempt: Option<u32>,
        cursor: Option<LogCursor>,
        limit: u32,
    ) -> Result<Option<(Vec<LogLine>, LogCursor)>, StoreError> {
        jobs::logs(&self.pool, id, attempt, cursor, limit).await
    }

    async fn register_worker(
        &self,
        hello: &WorkerHello,
        ttl: Duration,
    ) -> Result<Registration, StoreError> {
        workers::register(&self.pool, hello, ttl).await
    }

    async fn set_draining(&self, session: SessionRef) -> Result<bool, StoreError> {
        workers::set_draining(&self.pool, session).await
    }

    async fn list_workers(
        &self,
        include_gone: bool,
        offset: u64,
        limit: u32,
    ) -> Result<Vec<WorkerRecord>, StoreError> {
        workers::list(&self.pool, include_gone, offset, limit).await
    }

    async fn claim(&self, kind: &str, slots: &[ClaimSlot]) -> Result<Vec<JobRecord>, StoreError> {
        queue::claim(&self.pool, kind, slots).await
    }

    async fn write_batch(
        &self,
        batch: &WriteBatch,
        ttl: Duration,
    ) -> Result<WriteOutcome, StoreError> {
        queue::write_batch(&self.pool, batch, ttl).await
    }

    async fn listen(&self, events: mpsc::Sender<StoreEvent>, shutdown: Shutdown) {
        let mut retries =
            Backoff::new(Duration::from_millis(100), Duration::from_secs(5)).retries();
        while !shutdown.is_triggered() {
            match listen_once(&self.pool, &events, &shutdown).await {
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

    async fn try_lease(
        &self,
        name: &str,
        holder: Uuid,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        leases::try_lease(&self.pool, name, holder, lease).await
    }

    async fn release_lease(&self, name: &str, holder: Uuid) -> Result<(), StoreError> {
        leases::release_lease(&self.pool, name, holder).await
    }

    async fn reap_expired_workers(&self, fence: Fence) -> Result<Reaped, StoreError> {
        workers::reap(&self.pool, fence).await
    }

    async fn set_worker_capacity(
        &self,
        worker_id: Uuid,
        capacity: &HashMap<String, u32>,
    ) -> Result<CapacityOutcome, StoreError> {
        workers::set_capacity(&self.pool, worker_id, capacity).await
    }

    async fn create_cron(&self, cron: NewCron) -> Result<Option<CronRecord>, StoreError> {
        crons::create(&self.pool, cron).await
    }

    async fn get_cron(&self, name: &str) -> Result<Option<CronRecord>, StoreError> {
        crons::get(&self.pool, name).await
    }

    async fn list_crons(&self) -> Result<Vec<CronRecord>, StoreError> {
        crons::list(&self.pool).await
    }

    async fn update_cron(&self, cron: NewCron) -> Result<Option<CronRecord>, StoreError> {
        crons::update(&self.pool, cron).await
    }

    async fn delete_cron(&self, name: &str) -> Result<bool, StoreError> {
        crons::delete(&self.pool, name).await
    }

    async fn fire_due_crons(&self, next: NextFire, fence: Fence) -> Result<Vec<Fired>, StoreError> {
        crons::fire_due(&self.pool, next, fence).await
    }

    async fn next_cron_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        crons::next_due(&self.pool).await
    }

    async fn purge_jobs(&self, older_than: Duration, keep_last: u64) -> Result<Purged, StoreError> {
        retention::purge(&self.pool, older_than, keep_last).await
    }

    async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        stats::queue(&self.pool).await
    }
}

#[async_trait]
impl CatalogStore for PgStore {
    async fn create_registry(&self, r: NewRegistry) -> Result<Option<RegistryRecord>, StoreError> {
        registries::create_registry(&self.pool, r).await
    }

    async fn get_registry(&self, name: &str) -> Result<Option<RegistryRecord>, StoreError> {
        registries::get_registry(&self.pool, name).await
    }

    async fn list_registries(&self) -> Result<Vec<RegistryRecord>, StoreError> {
        registries::list_registries(&self.pool).await
    }

    async fn set_registry_capabilities(
        &self,
        id: i64,
        capabilities: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE registries SET capabilities = $2 WHERE id = $1")
            .bind(id)
            .bind(capabilities)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn update_registry(&self, r: NewRegistry) -> Result<Option<RegistryRecord>, StoreError> {
        registries::update_registry(&self.pool, r).await
    }

    async fn delete_registry(&self, name: &str) -> Result<DeleteRegistryOutcome, StoreError> {
        registries::delete_registry(&self.pool, name).await
    }

    async fn create_policy(&self, p: NewPolicy) -> Result<Option<PolicyRecord>, StoreError> {
        registries::create_policy(&self.pool, p).await
    }

    async fn get_policy(
        &self,
        name: &str,
        counted: Counted,
    ) -> Result<Option<PolicyRecord>, StoreError> {
        registries::get_policy(&self.pool, name, counted).await
    }

    async fn list_policies(
        &self,
        registry_id: Option<i64>,
        counted: Counted,
    ) -> Result<Vec<PolicyRecord>, StoreError> {
        registries::list_policies(&self.pool, registry_id, counted).await
    }

    async fn update_policy(&self, p: NewPolicy) -> Result<Option<PolicyRecord>, StoreError> {
        registries::update_policy(&self.pool, p).await
    }

    async fn delete_policy(&self, name: &str) -> Result<bool, StoreError> {
        registries::delete_policy(&self.pool, name).await
    }

    async fn run_policy(&self, name: &str) -> Result<Option<PolicyRecord>, StoreError> {
        registries::run_policy(&self.pool, name).await
    }

    async fn reassign_repositories(
        &self,
        registry_id: i64,
        matcher: &PolicyMatcher,
    ) -> Result<u64, StoreError> {
        repositories::reassign(&self.pool, registry_id, matcher).await
    }

    async fn report_repositories(
        &self,
        job_id: i64,
        attempt: u32,
        registry_id: i64,
        names: &[String],
        complete: bool,
        matcher: &PolicyMatcher,
    ) -> Result<ReportOutcome, StoreError> {
        repositories::report(&self.pool, job_id, attempt, registry_id, names, complete, matcher)
            .await
    }

    async fn record_deletions(&self, job_id: i64, deleted_tags: u32) -> Result<bool, StoreError> {
        repositories::record_deletions(&self.pool, job_id, deleted_tags).await
    }

    async fn record_sightings(
        &self,
        batch: crate::store::sightings::SightingBatch<'_>,
    ) -> Result<Vec<DateTime<Utc>>, StoreError> {
        repositories::record_sightings(&self.pool, batch).await
    }

    async fn mark_in_use(
        &self,
        marks: crate::store::in_use::InUseMarks<'_>,
    ) -> Result<crate::store::in_use::MarkOutcome, StoreError> {
        in_use::mark(&self.pool, marks).await
    }
    async fn live_marks(
        &self,
        registry_id: i64,
        repository: &str,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<crate::store::in_use::LiveMark>, StoreError> {
        in_use::live(&self.pool, registry_id, repository, now, limit).await
    }

    async fn list_repositories(
        &self,
        filter: &RepositoryFilter,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<RepositoryRecord>, StoreError> {
        repositories::list(&self.pool, filter, after, limit).await
    }

    async fn select_cleanups(
        &self,
        config: &SelectionConfig,
        advance: AdvanceRun,
        fence: Fence,
    ) -> Result<Selection, StoreError> {
        selection::select(&self.pool, config, advance, fence).await
    }

    async fn cleanup_stats(&self) -> Result<CleanupStats, StoreError> {
        stats::cleanups(&self.pool).await
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
