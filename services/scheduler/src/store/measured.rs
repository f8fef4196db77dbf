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
use super::forward::{catalog_store_ops, job_store_ops, store_impl};
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

job_store_ops! {
    store_impl! { impl JobStore for MeasuredJobs, timed; }
    {
        // A listener runs for the life of the process: there is no one
        // duration to record.
        async fn listen(&self, events: mpsc::Sender<StoreEvent>, shutdown: Shutdown) {
            self.0.listen(events, shutdown).await;
        }
    }
}

pub struct MeasuredCatalog(pub Arc<dyn CatalogStore>);

catalog_store_ops! { store_impl! { impl CatalogStore for MeasuredCatalog, timed; } }
