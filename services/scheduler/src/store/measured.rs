//! Store decorators that record every operation's duration in
//! `regsweep_db_operation_seconds{operation}`; installed only when metrics
//! are served.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use regsweep_common::Shutdown;
use regsweep_common::prometheus::timed;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::catalog::{
    AdvanceRun, CatalogStore, Counted, DeleteRegistryOutcome, NewPolicy, NewRegistry,
    PolicyMatcher, PolicyRecord, RegistryRecord, ReportOutcome, RepositoryFilter, RepositoryRecord,
    Selection, SelectionConfig,
};
use super::stats::{CleanupStats, QueueStats};
use super::{
    CancelOutcome, CapacityOutcome, ClaimSlot, CreateOutcome, CronRecord, DeleteOutcome, Fence,
    Fired, JobFilter, JobRecord, JobStore, LogCursor, LogLine, NewCron, NewJob, NextFire, Purged,
    Reaped, Registration, SessionRef, StoreError, StoreEvent, WorkerHello, WorkerRecord,
    WriteBatch, WriteOutcome,
};

pub struct MeasuredJobs(pub Arc<dyn JobStore>);

#[async_trait]
impl JobStore for MeasuredJobs {
    async fn create_job(&self, job: NewJob) -> Result<CreateOutcome, StoreError> {
        timed("create_job", self.0.create_job(job)).await
    }
    async fn create_jobs(&self, jobs: Vec<NewJob>) -> Result<Vec<CreateOutcome>, StoreError> {
        timed("create_jobs", self.0.create_jobs(jobs)).await
    }
    async fn get_job(&self, id: i64) -> Result<Option<JobRecord>, StoreError> {
        timed("get_job", self.0.get_job(id)).await
    }
    async fn list_jobs(
        &self,
        filter: &JobFilter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<JobRecord>, StoreError> {
        timed("list_jobs", self.0.list_jobs(filter, before, limit)).await
    }
    async fn cancel_job(&self, id: i64, reason: &str) -> Result<CancelOutcome, StoreError> {
        timed("cancel_job", self.0.cancel_job(id, reason)).await
    }
    async fn delete_job(&self, id: i64) -> Result<DeleteOutcome, StoreError> {
        timed("delete_job", self.0.delete_job(id)).await
    }
    async fn job_logs(
        &self,
        id: i64,
        attempt: Option<u32>,
        cursor: Option<LogCursor>,
        limit: u32,
    ) -> Result<Option<(Vec<LogLine>, LogCursor)>, StoreError> {
        timed("job_logs", self.0.job_logs(id, attempt, cursor, limit)).await
    }
    async fn register_worker(
        &self,
        hello: &WorkerHello,
        ttl: Duration,
    ) -> Result<Registration, StoreError> {
        timed("register_worker", self.0.register_worker(hello, ttl)).await
    }
    async fn set_draining(&self, session: SessionRef) -> Result<bool, StoreError> {
        timed("set_draining", self.0.set_draining(session)).await
    }
    async fn list_workers(
        &self,
        include_gone: bool,
        offset: u64,
        limit: u32,
    ) -> Result<Vec<WorkerRecord>, StoreError> {
        timed("list_workers", self.0.list_workers(include_gone, offset, limit)).await
    }
    async fn claim(&self, kind: &str, slots: &[ClaimSlot]) -> Result<Vec<JobRecord>, StoreError> {
        timed("claim", self.0.claim(kind, slots)).await
    }
    async fn write_batch(
        &self,
        batch: &WriteBatch,
        ttl: Duration,
    ) -> Result<WriteOutcome, StoreError> {
        timed("write_batch", self.0.write_batch(batch, ttl)).await
    }
    async fn listen(&self, events: mpsc::Sender<StoreEvent>, shutdown: Shutdown) {
        self.0.listen(events, shutdown).await;
    }
    async fn try_lease(
        &self,
        name: &str,
        holder: Uuid,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        timed("try_lease", self.0.try_lease(name, holder, lease)).await
    }
    async fn release_lease(&self, name: &str, holder: Uuid) -> Result<(), StoreError> {
        timed("release_lease", self.0.release_lease(name, holder)).await
    }
    async fn reap_expired_workers(&self, fence: Fence) -> Result<Reaped, StoreError> {
        timed("reap_expired_workers", self.0.reap_expired_workers(fence)).await
    }
    async fn set_worker_capacity(
        &self,
        worker_id: Uuid,
        capacity: &HashMap<String, u32>,
    ) -> Result<CapacityOutcome, StoreError> {
        timed("set_worker_capacity", self.0.set_worker_capacity(worker_id, capacity)).await
    }
    async fn create_cron(&self, cron: NewCron) -> Result<Option<CronRecord>, StoreError> {
        timed("create_cron", self.0.create_cron(cron)).await
    }
    async fn get_cron(&self, name: &str) -> Result<Option<CronRecord>, StoreError> {
        timed("get_cron", self.0.get_cron(name)).await
    }
    async fn list_crons(&self) -> Result<Vec<CronRecord>, StoreError> {
        timed("list_crons", self.0.list_crons()).await
    }
    async fn update_cron(&self, cron: NewCron) -> Result<Option<CronRecord>, StoreError> {
        timed("update_cron", self.0.update_cron(cron)).await
    }
    async fn delete_cron(&self, name: &str) -> Result<bool, StoreError> {
        timed("delete_cron", self.0.delete_cron(name)).await
    }
    async fn fire_due_crons(&self, next: NextFire, fence: Fence) -> Result<Vec<Fired>, StoreError> {
        timed("fire_due_crons", self.0.fire_due_crons(next, fence)).await
    }
    async fn next_cron_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        timed("next_cron_due", self.0.next_cron_due()).await
    }
    async fn purge_jobs(&self, older_than: Duration, keep_last: u64) -> Result<Purged, StoreError> {
        timed("purge_jobs", self.0.purge_jobs(older_than, keep_last)).await
    }
    async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        timed("queue_stats", self.0.queue_stats()).await
    }
}

pub struct MeasuredCatalog(pub Arc<dyn CatalogStore>);

#[async_trait]
impl CatalogStore for MeasuredCatalog {
    async fn create_registry(&self, r: NewRegistry) -> Result<Option<RegistryRecord>, StoreError> {
        timed("create_registry", self.0.create_registry(r)).await
    }
    async fn get_registry(&self, name: &str) -> Result<Option<RegistryRecord>, StoreError> {
        timed("get_registry", self.0.get_registry(name)).await
    }
    async fn list_registries(&self) -> Result<Vec<RegistryRecord>, StoreError> {
        timed("list_registries", self.0.list_registries()).await
    }
    async fn set_registry_capabilities(
        &self,
        id: i64,
        capabilities: &str,
    ) -> Result<(), StoreError> {
        timed("set_registry_capabilities", self.0.set_registry_capabilities(id, capabilities)).await
    }
    async fn update_registry(&self, r: NewRegistry) -> Result<Option<RegistryRecord>, StoreError> {
        timed("update_registry", self.0.update_registry(r)).await
    }
    async fn delete_registry(&self, name: &str) -> Result<DeleteRegistryOutcome, StoreError> {
        timed("delete_registry", self.0.delete_registry(name)).await
    }
    async fn create_policy(&self, p: NewPolicy) -> Result<Option<PolicyRecord>, StoreError> {
        timed("create_policy", self.0.create_policy(p)).await
    }
    async fn get_policy(
        &self,
        name: &str,
        counted: Counted,
    ) -> Result<Option<PolicyRecord>, StoreError> {
        timed("get_policy", self.0.get_policy(name, counted)).await
    }
    async fn list_policies(
        &self,
        registry_id: Option<i64>,
        counted: Counted,
    ) -> Result<Vec<PolicyRecord>, StoreError> {
        timed("list_policies", self.0.list_policies(registry_id, counted)).await
    }
    async fn update_policy(&self, p: NewPolicy) -> Result<Option<PolicyRecord>, StoreError> {
        timed("update_policy", self.0.update_policy(p)).await
    }
    async fn delete_policy(&self, name: &str) -> Result<bool, StoreError> {
        timed("delete_policy", self.0.delete_policy(name)).await
    }
    async fn run_policy(&self, name: &str) -> Result<Option<PolicyRecord>, StoreError> {
        timed("run_policy", self.0.run_policy(name)).await
    }
    async fn reassign_repositories(
        &self,
        registry_id: i64,
        matcher: &PolicyMatcher,
    ) -> Result<u64, StoreError> {
        timed("reassign_repositories", self.0.reassign_repositories(registry_id, matcher)).await
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
        let report =
            self.0.report_repositories(job_id, attempt, registry_id, names, complete, matcher);
        timed("report_repositories", report).await
    }
    async fn record_deletions(&self, job_id: i64, deleted_tags: u32) -> Result<bool, StoreError> {
        timed("record_deletions", self.0.record_deletions(job_id, deleted_tags)).await
    }
    async fn record_sightings(
        &self,
        batch: crate::store::sightings::SightingBatch<'_>,
    ) -> Result<Vec<DateTime<Utc>>, StoreError> {
        timed("record_sightings", self.0.record_sightings(batch)).await
    }
    async fn mark_in_use(
        &self,
        marks: crate::store::in_use::InUseMarks<'_>,
    ) -> Result<crate::store::in_use::MarkOutcome, StoreError> {
        timed("mark_in_use", self.0.mark_in_use(marks)).await
    }
    async fn live_marks(
        &self,
        registry_id: i64,
        repository: &str,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<crate::store::in_use::LiveMark>, StoreError> {
        timed("live_marks", self.0.live_marks(registry_id, repository, now, limit)).await
    }
    async fn list_repositories(
        &self,
        filter: &RepositoryFilter,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<RepositoryRecord>, StoreError> {
        timed("list_repositories", self.0.list_repositories(filter, after, limit)).await
    }
    async fn select_cleanups(
        &self,
        config: &SelectionConfig,
        advance: AdvanceRun,
        fence: Fence,
    ) -> Result<Selection, StoreError> {
        timed("select_cleanups", self.0.select_cleanups(config, advance, fence)).await
    }
    async fn cleanup_stats(&self) -> Result<CleanupStats, StoreError> {
        timed("cleanup_stats", self.0.cleanup_stats()).await
    }
}
