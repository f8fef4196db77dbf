//! Repositories on PostgreSQL: sync reports, reassignment and sightings
//! are written once in `repository_sql`.

use sqlx::postgres::PgPool;

use crate::store::StoreError;
use crate::store::catalog::{RepositoryFilter, RepositoryRecord};
use crate::store::catalog_sql::postgres as sql;

pub use crate::store::repository_sql::postgres::{reassign, record_sightings, report};

pub async fn record_deletions(
    pool: &PgPool,
    job_id: i64,
    deleted_tags: u32,
) -> Result<bool, StoreError> {
    sql::record_deletions(&mut *pool.acquire().await?, job_id, deleted_tags).await
}

pub async fn list(
    pool: &PgPool,
    filter: &RepositoryFilter,
    after: Option<i64>,
    limit: u32,
) -> Result<Vec<RepositoryRecord>, StoreError> {
    sql::list_repositories(pool, filter, after, limit).await
}
