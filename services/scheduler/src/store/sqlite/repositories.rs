//! Repositories on SQLite: sync reports, reassignment and sightings are
//! written once in `repository_sql`.

use super::SqliteStore;
use crate::store::StoreError;
use crate::store::catalog::{RepositoryFilter, RepositoryRecord};
use crate::store::catalog_sql::sqlite as sql;

pub use crate::store::repository_sql::sqlite::{reassign, record_sightings, report};

pub async fn record_deletions(
    store: &SqliteStore,
    job_id: i64,
    deleted_tags: u32,
) -> Result<bool, StoreError> {
    let mut tx = store.begin().await?;
    let recorded = sql::record_deletions(&mut tx, job_id, deleted_tags).await?;
    tx.commit().await?;
    Ok(recorded)
}

pub async fn list(
    store: &SqliteStore,
    filter: &RepositoryFilter,
    after: Option<i64>,
    limit: u32,
) -> Result<Vec<RepositoryRecord>, StoreError> {
    sql::list_repositories(store.reader(), filter, after, limit).await
}
