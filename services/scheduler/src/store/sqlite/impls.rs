//! The store traits on [`SqliteStore`], one call per operation.

use crate::store::Fence;
use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use regsweep_common::Shutdown;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{
    SqliteStore, crons, in_use, jobs, leases, queue, registries, repositories, retention,
    selection, stats, workers,
};
use crate::store::catalog::{
    AdvanceRun, CatalogStore, Counted, DeleteRegistryOutcome, NewPolicy, NewRegistry,
    PolicyMatcher, PolicyRecord, RegistryRecord, ReportOutcome, RepositoryFilter, RepositoryRecord,
    Selection, SelectionConfig,
};
use crate::store::forward::{catalog_store_ops, job_store_ops, store_impl};
use crate::store::in_use::{InUseMarks, LiveMark, MarkOutcome};
use crate::store::sightings::SightingBatch;
use crate::store::stats::{CleanupStats, QueueStats};
use crate::store::{
    CancelOutcome, CapacityOutcome, ClaimSlot, CreateOutcome, CronRecord, DeleteOutcome, Fired,
    JobFilter, JobRecord, JobStore, LogCursor, LogLine, NewCron, NewJob, NextFire, Purged, Reaped,
    Registration, SessionRef, StoreError, StoreEvent, WorkerHello, WorkerRecord, WriteBatch,
    WriteOutcome,
};

job_store_ops! {
    store_impl! { impl JobStore for SqliteStore, via |s| s; }
    {
        async fn listen(&self, events: mpsc::Sender<StoreEvent>, shutdown: Shutdown) {
            SqliteStore::listen(self, events, shutdown).await;
        }
    }
}

catalog_store_ops! { store_impl! { impl CatalogStore for SqliteStore, via |s| s; } }
