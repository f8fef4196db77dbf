//! Metrics reads (written once in `store::stats`).

use sqlx::postgres::PgPool;

use crate::store::StoreError;
use crate::store::stats::{CleanupStats, QueueStats, postgres as sql};

pub async fn queue(pool: &PgPool) -> Result<QueueStats, StoreError> {
    sql::queue(pool, None).await
}

pub async fn cleanups(pool: &PgPool) -> Result<CleanupStats, StoreError> {
    sql::cleanups(pool, None).await
}
