//! SQLite implementation of [`JobStore`](super::JobStore) and
//! [`CatalogStore`](super::catalog::CatalogStore), for one machine with no
//! database server (`regsweep dev`).
//!
//! SQLite has one writer at a time: every write runs on the one writer
//! connection in a `BEGIN IMMEDIATE` transaction, so a claim reads and
//! updates its rows with no other writer in between and needs no
//! `SKIP LOCKED`. Reads go to a pool of read-only connections. What
//! PostgreSQL announces with `NOTIFY`, this store announces in-process
//! after the commit: one scheduler process per database file.

mod crons;
mod in_use;
mod jobs;
mod leases;
mod queue;
mod registries;
mod repositories;
mod retention;
mod rows;
mod selection;
mod stats;
mod workers;

use regsweep_common::Shutdown;
use regsweep_common::clock::Clock;
use regsweep_common::db::{self, SqlitePools};
use sqlx::sqlite::{Sqlite, SqlitePool};
use sqlx::{AssertSqlSafe, Transaction};
use tokio::sync::{broadcast, mpsc};

use super::{StoreError, StoreEvent};

mod impls;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The scheduler's store on a SQLite file.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pools: SqlitePools,
    events: broadcast::Sender<StoreEvent>,
    clock: Clock,
}

impl SqliteStore {
    /// Opens (creating the file if missing) and migrates the database of
    /// `url` (`sqlite://PATH`); a schema from a newer version fails here.
    pub async fn connect(url: &str, readers: u32, clock: Clock) -> Result<Self, StoreError> {
        let pools = db::open_sqlite(url, readers, &MIGRATOR).await?;
        let (events, _) = broadcast::channel(1024);
        Ok(Self { pools, events, clock })
    }

    /// The store's time, in stored form.
    pub(crate) fn now_micros(&self) -> i64 {
        micros(self.clock.now())
    }

    pub async fn close(&self) {
        self.pools.close().await;
    }

    pub(crate) fn reader(&self) -> &SqlitePool {
        &self.pools.reader
    }

    /// The one writer's pool (see `engines`' `begin_write`).
    pub(crate) fn writer(&self) -> &SqlitePool {
        &self.pools.writer
    }

    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pools.writer.begin_with(AssertSqlSafe(db::BEGIN_WRITE)).await?)
    }

    /// Announces after a commit; nobody listening is fine.
    fn announce(&self, event: StoreEvent) {
        let _ = self.events.send(event);
    }

    fn announce_kinds<I: IntoIterator<Item = String>>(&self, kinds: I) {
        let mut kinds: Vec<String> = kinds.into_iter().collect();
        kinds.sort();
        kinds.dedup();
        for kind in kinds {
            self.announce(StoreEvent::JobsAvailable(kind));
        }
    }

    async fn listen(&self, events: mpsc::Sender<StoreEvent>, shutdown: Shutdown) {
        let mut rx = self.events.subscribe();
        if events.send(StoreEvent::Resync).await.is_err() {
            return;
        }
        loop {
            let event = tokio::select! {
                e = rx.recv() => e,
                () = shutdown.cancelled() => return,
            };
            let event = match event {
                Ok(event) => event,
                // Fell behind: what was missed is re-read.
                Err(broadcast::error::RecvError::Lagged(_)) => StoreEvent::Resync,
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if events.send(event).await.is_err() {
                return;
            }
        }
    }
}

pub(crate) use regsweep_common::db::micros::{of as micros, span as span_micros, time};

/// The `at` of an entry in a job's `errors`, as PostgreSQL writes it.
pub(crate) fn error_time(us: i64) -> String {
    time(us).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
