//! Opening the scheduler's store named by `--database-url`.

use std::sync::Arc;

use regsweep_common::clock::Clock;
use regsweep_common::db::Backend;

use super::catalog::CatalogStore;
use super::measured::{MeasuredCatalog, MeasuredJobs};
use super::postgres::PgStore;
use super::sqlite::SqliteStore;
use super::{JobStore, StoreError};

/// The scheduler's stores on one database.
#[derive(Clone)]
pub struct Stores {
    pub jobs: Arc<dyn JobStore>,
    pub catalog: Arc<dyn CatalogStore>,
    backend: Opened,
}

#[derive(Clone)]
enum Opened {
    Postgres(PgStore),
    Sqlite(SqliteStore),
}

impl Stores {
    /// Opens and migrates the database of `url`: `postgres://...` (with up
    /// to `max_connections` connections) or `sqlite://PATH`.
    pub async fn open(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        Self::open_with_clock(url, max_connections, Clock::Database).await
    }

    /// [`Stores::open`], reading the time from `clock` (tests set theirs).
    pub async fn open_with_clock(
        url: &str,
        max_connections: u32,
        clock: Clock,
    ) -> Result<Self, StoreError> {
        let backend = match Backend::of(url)? {
            Backend::Postgres => {
                Opened::Postgres(PgStore::connect(url, max_connections, &clock).await?)
            }
            Backend::Sqlite => {
                Opened::Sqlite(SqliteStore::connect(url, max_connections, clock).await?)
            }
        };
        let (mut jobs, mut catalog): (Arc<dyn JobStore>, Arc<dyn CatalogStore>) = match &backend {
            Opened::Postgres(pg) => (Arc::new(pg.clone()), Arc::new(pg.clone())),
            Opened::Sqlite(lite) => (Arc::new(lite.clone()), Arc::new(lite.clone())),
        };
        if regsweep_common::prometheus::enabled() {
            jobs = Arc::new(MeasuredJobs(jobs));
            catalog = Arc::new(MeasuredCatalog(catalog));
        }
        Ok(Self { jobs, catalog, backend })
    }

    /// Which database this is, for the start-up log.
    pub fn backend(&self) -> &'static str {
        match self.backend {
            Opened::Postgres(_) => "postgres",
            Opened::Sqlite(_) => "sqlite",
        }
    }

    /// Closes every connection.
    pub async fn close(&self) {
        match &self.backend {
            Opened::Postgres(pg) => pg.close().await,
            Opened::Sqlite(lite) => lite.close().await,
        }
    }
}
