//! Retention on SQLite: finished jobs and their logs purged in batches.

use std::time::Duration;

use sqlx::AssertSqlSafe;
use sqlx::types::Json;

use super::{SqliteStore, span_micros};
use crate::store::sets;
use crate::store::{Purged, StoreError};

/// Rows deleted per transaction: the writer is never held long.
const BATCH: i64 = 5000;

/// Deletes finished jobs and their logs older than `older_than`, then
/// beyond the newest `keep_last` (none when 0), a batch per transaction.
pub async fn purge(
    store: &SqliteStore,
    older_than: Duration,
    keep_last: u64,
) -> Result<Purged, StoreError> {
    const FINISHED: &str = concat!("status IN ", sets::finished!());
    let by_age = format!("SELECT id FROM jobs WHERE {FINISHED} AND finished_at < ?1 LIMIT ?2");
    let mut purged =
        purge_batches(store, &by_age, store.now_micros() - span_micros(older_than)).await?;
    if keep_last > 0 {
        let beyond =
            format!("SELECT id FROM jobs WHERE {FINISHED} ORDER BY id DESC LIMIT ?2 OFFSET ?1");
        let more =
            purge_batches(store, &beyond, i64::try_from(keep_last).unwrap_or(i64::MAX)).await?;
        purged.jobs += more.jobs;
        purged.log_chunks += more.log_chunks;
    }
    Ok(purged)
}

/// Deletes the jobs `select` (bound to `bound` and the batch size) names,
/// with their logs, until it names fewer than a batch.
async fn purge_batches(
    store: &SqliteStore,
    select: &str,
    bound: i64,
) -> Result<Purged, StoreError> {
    let mut purged = Purged::default();
    loop {
        let mut tx = store.begin().await?;
        let ids: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(select))
            .bind(bound)
            .bind(BATCH)
            .fetch_all(&mut *tx)
            .await?;
        purged.log_chunks +=
            sqlx::query("DELETE FROM job_logs WHERE job_id IN (SELECT value FROM json_each(?))")
                .bind(Json(&ids))
                .execute(&mut *tx)
                .await?
                .rows_affected();
        purged.jobs += sqlx::query("DELETE FROM jobs WHERE id IN (SELECT value FROM json_each(?))")
            .bind(Json(&ids))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        if (ids.len() as i64) < BATCH {
            return Ok(purged);
        }
    }
}
