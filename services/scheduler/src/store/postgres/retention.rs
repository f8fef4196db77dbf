//! Retention of finished jobs and their logs (`retention_sql`).

use std::time::Duration;

use sqlx::postgres::PgPool;

use crate::store::retention_sql::postgres as sql;
use crate::store::{Purged, StoreError};

pub async fn purge(
    pool: &PgPool,
    older_than: Duration,
    keep_last: u64,
) -> Result<Purged, StoreError> {
    sql::purge(pool, older_than, keep_last, None).await
}
