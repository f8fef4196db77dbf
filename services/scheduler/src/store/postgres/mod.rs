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
use crate::store::forward::{catalog_store_ops, job_store_ops, store_impl};
use crate::store::in_use::{InUseMarks, LiveMark, MarkOutcome};
use crate::store::sightings::SightingBatch;
use crate::store::stats::{CleanupStats, QueueStats};
use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use regsweep_common::Shutdown;
use regsweep_common::backoff::Backoff;
use regsweep_common::clock::Clock;
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
    pub async fn connect(
        url: &str,
        max_connections: u32,
        clock: &Clock,
    ) -> Result<Self, StoreError> {
        let pool = regsweep_common::db::open_postgres(
            url,
            SCHEMA,
            "regsweep-scheduler",
            max_connections,
            &MIGRATOR,
            clock,
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

job_store_ops! {
    store_impl! { impl JobStore for PgStore, via |s| &s.pool; }
    {
        async fn listen(&self, events: mpsc::Sender<StoreEvent>, shutdown: Shutdown) {
            listen(&self.pool, events, shutdown).await;
        }
    }
}

catalog_store_ops! { store_impl! { impl CatalogStore for PgStore, via |s| &s.pool; } }

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
