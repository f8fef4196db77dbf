//! The store traits on [`SqliteStore`], one call per operation.

use crate::store::Fence;
use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
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
use crate::store::stats::{CleanupStats, QueueStats};
use crate::store::{
    CancelOutcome, CapacityOutcome, ClaimSlot, CreateOutcome, CronRecord, DeleteOutcome, Fired,
    JobFilter, JobRecord, JobStore, LogCursor, LogLine, NewCron, NewJob, NextFire, Purged, Reaped,
    Registration, SessionRef, StoreError, StoreEvent, WorkerHello, WorkerRecord, WriteBatch,
    WriteOutcome,
};

#[async_trait]
impl JobStore for SqliteStore {
    async fn create_job(&self, job: NewJob) -> Result<CreateOutcome, StoreError> {
        jobs::create(self, job).await
    }

    async fn create_jobs(&self, batch: Vec<NewJob>) -> Result<Vec<CreateOutcome>, StoreError> {
        let mut outcomes = Vec::with_capacity(batch.len());
        for job in batch {
            outcomes.push(jobs::create(self, job).await?);
        }
        Ok(outcomes)
    }

    async fn get_job(&self, id: i64) -> Result<Option<JobRecord>, StoreError> {
        jobs::get(self, id).await
    }

    async fn list_jobs(
        &self,
        filter: &JobFilter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<JobRecord>, StoreError> {
        jobs::list(self, filter, before, limit).await
    }

    async fn cancel_job(&self, id: i64, reason: &str) -> Result<CancelOutcome, StoreError> {
        jobs::cancel(self, id, reason).await
    }

    async fn delete_job(&self, id: i64) -> Result<DeleteOutcome, StoreError> {
        jobs::delete(self, id).await
    }

    async fn job_logs(
        &self,
        id: i64,
        attempt: Option<u32>,
        cursor: Option<LogCursor>,
        limit: u32,
    ) -> Result<Option<(Vec<LogLine>, LogCursor)>, StoreError> {
        jobs::logs(self, id, attempt, cursor, limit).await
    }

    async fn register_worker(
        &self,
        hello: &WorkerHello,
        ttl: Duration,
    ) -> Result<Registration, StoreError> {
        workers::register(self, hello, ttl).await
    }

    async fn set_draining(&self, session: SessionRef) -> Result<bool, StoreError> {
        workers::set_draining(self, session).await
    }

    async fn list_workers(
        &self,
        include_gone: bool,
        offset: u64,
        limit: u32,
    ) -> Result<Vec<WorkerRecord>, StoreError> {
        workers::list(self, include_gone, offset, limit).await
    }

    async fn claim(&self, kind: &str, slots: &[ClaimSlot]) -> Result<Vec<JobRecord>, StoreError> {
        queue::claim(self, kind, slots).await
    }

    async fn write_batch(
        &self,
        batch: &WriteBatch,
        ttl: Duration,
    ) -> Result<WriteOutcome, StoreError> {
        queue::write_batch(self, batch, ttl).await
    }

    async fn listen(&self, events: mpsc::Sender<StoreEvent>, shutdown: Shutdown) {
        SqliteStore::listen(self, events, shutdown).await;
    }

    async fn try_lease(
        &self,
        name: &str,
        holder: Uuid,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        crons::try_lease(self, name, holder, lease).await
    }

    async fn release_lease(&self, name: &str, holder: Uuid) -> Result<(), StoreError> {
        crons::release_lease(self, name, holder).await
    }

    async fn reap_expired_workers(&self, fence: Fence) -> Result<Reaped, StoreError> {
        workers::reap(self, fence).await
    }

    async fn set_worker_capacity(
        &self,
        worker_id: Uuid,
        capacity: &HashMap<String, u32>,
    ) -> Result<CapacityOutcome, StoreError> {
        workers::set_capacity(self, worker_id, capacity).await
    }

    async fn create_cron(&self, cron: NewCron) -> Result<Option<CronRecord>, StoreError> {
        crons::create(self, cron).await
    }

    async fn get_cron(&self, name: &str) -> Result<Option<CronRecord>, StoreError> {
        crons::get(self, name).await
    }

    async fn list_crons(&self) -> Result<Vec<CronRecord>, StoreError> {
        crons::list(self).await
    }

    async fn update_cron(&self, cron: NewCron) -> Result<Option<CronRecord>, StoreError> {
        crons::update(self, cron).await
    }

    async fn delete_cron(&self, name: &str) -> Result<bool, StoreError> {
        crons::delete(self, name).await
    }

    async fn fire_due_crons(&self, next: NextFire, fence: Fence) -> Result<Vec<Fired>, StoreError> {
        crons::fire_due(self, next, fence).await
    }

    async fn next_cron_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        crons::next_due(self).await
    }

    async fn purge_jobs(&self, older_than: Duration, keep_last: u64) -> Result<Purged, StoreError> {
        crons::purge(self, older_than, keep_last).await
    }

    async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        stats::queue(self).await
    }
}

#[async_trait]
impl CatalogStore for SqliteStore {
    async fn create_registry(&self, r: NewRegistry) -> Result<Option<RegistryRecord>, StoreError> {
        catalog::create_registry(self, r).await
    }

    async fn get_registry(&self, name: &str) -> Result<Option<RegistryRecord>, StoreError> {
        catalog::get_registry(self, name).await
    }

    async fn list_registries(&self) -> Result<Vec<RegistryRecord>, StoreError> {
        catalog::list_registries(self).await
    }

    async fn set_registry_capabilities(
        &self,
        id: i64,
        capabilities: &str,
    ) -> Result<(), StoreError> {
        catalog::set_registry_capabilities(self, id, capabilities).await
    }

    async fn update_registry(&self, r: NewRegistry) -> Result<Option<RegistryRecord>, StoreError> {
        catalog::update_registry(self, r).await
    }

    async fn delete_registry(&self, name: &str) -> Result<DeleteRegistryOutcome, StoreError> {
        catalog::delete_registry(self, name).await
    }

    async fn create_policy(&self, p: NewPolicy) -> Result<Option<PolicyRecord>, StoreError> {
        catalog::create_policy(self, p).await
    }

    async fn get_policy(
        &self,
        name: &str,
        counted: Counted,
    ) -> Result<Option<PolicyRecord>, StoreError> {
        catalog::get_policy(self, name, counted).await
    }

    async fn list_policies(
        &self,
        registry_id: Option<i64>,
        counted: Counted,
    ) -> Result<Vec<PolicyRecord>, StoreError> {
        catalog::list_policies(self, registry_id, counted).await
    }

    async fn update_policy(&self, p: NewPolicy) -> Result<Option<PolicyRecord>, StoreError> {
        catalog::update_policy(self, p).await
    }

    async fn delete_policy(&self, name: &str) -> Result<bool, StoreError> {
        catalog::delete_policy(self, name).await
    }

    async fn run_policy(&self, name: &str) -> Result<Option<PolicyRecord>, StoreError> {
        catalog::run_policy(self, name).await
    }

    async fn reassign_repositories(
        &self,
        registry_id: i64,
        matcher: &PolicyMatcher,
    ) -> Result<u64, StoreError> {
        repositories::reassign(self, registry_id, matcher).await
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
        repositories::report(self, job_id, attempt, registry_id, names, complete, matcher).await
    }

    async fn record_deletions(&self, job_id: i64, deleted_tags: u32) -> Result<bool, StoreError> {
        repositories::record_deletions(self, job_id, deleted_tags).await
    }

    async fn record_sightings(
        &self,
        batch: crate::store::sightings::SightingBatch<'_>,
    ) -> Result<Vec<DateTime<Utc>>, StoreError> {
        repositories::record_sightings(self, batch).await
    }

    async fn mark_in_use(
        &self,
        marks: crate::store::in_use::InUseMarks<'_>,
    ) -> Result<crate::store::in_use::MarkOutcome, StoreError> {
        in_use::mark(self, marks).await
    }
    async fn live_marks(
        &self,
        registry_id: i64,
        repository: &str,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<crate::store::in_use::LiveMark>, StoreError> {
        in_use::live(self, registry_id, repository, now, limit).await
    }

    async fn list_repositories(
        &self,
        filter: &RepositoryFilter,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<RepositoryRecord>, StoreError> {
        repositories::list(self, filter, after, limit).await
    }

    async fn select_cleanups(
        &self,
        config: &SelectionConfig,
        advance: AdvanceRun,
        fence: Fence,
    ) -> Result<Selection, StoreError> {
        selection::select(self, config, advance, fence).await
    }

    async fn cleanup_stats(&self) -> Result<CleanupStats, StoreError> {
        stats::cleanups(self).await
    }
}
