//! Retention of finished jobs and their logs.

use std::time::Duration;

use sqlx::postgres::PgPool;

use crate::store::sets;
use crate::store::{Purged, StoreError};

/// Rows deleted per statement: short transactions, no long locks.
const BATCH: i64 = 5000;

pub async fn purge(
    pool: &PgPool,
    older_than: Duration,
    keep_last: u64,
) -> Result<Purged, StoreError> {
    let mut purged = Purged::default();
    loop {
        let (jobs, logs): (i64, i64) = sqlx::query_as(concat!(
            "WITH doomed AS (
                 SELECT id FROM jobs
                 WHERE status IN ",
            sets::finished!(),
            "
                   AND finished_at < store_now() - make_interval(secs => $1)
                 LIMIT $2
             ),
             logs AS (DELETE FROM job_logs WHERE job_id IN (SELECT id FROM doomed) RETURNING 1),
             gone AS (DELETE FROM jobs WHERE id IN (SELECT id FROM doomed) RETURNING 1)
             SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM logs)"
        ))
        .bind(older_than.as_secs_f64())
        .bind(BATCH)
        .fetch_one(pool)
        .await?;
        purged.jobs += u64::try_from(jobs).unwrap_or_default();
        purged.log_chunks += u64::try_from(logs).unwrap_or_default();
        if jobs < BATCH {
            break;
        }
    }
    if keep_last == 0 {
        return Ok(purged);
    }
    loop {
        let (jobs, logs): (i64, i64) = sqlx::query_as(concat!(
            "WITH doomed AS (
                 SELECT id FROM jobs
                 WHERE status IN ",
            sets::finished!(),
            "
                 ORDER BY id DESC
                 OFFSET $1 LIMIT $2
             ),
             logs AS (DELETE FROM job_logs WHERE job_id IN (SELECT id FROM doomed) RETURNING 1),
             gone AS (DELETE FROM jobs WHERE id IN (SELECT id FROM doomed) RETURNING 1)
             SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM logs)"
        ))
        .bind(i64::try_from(keep_last).unwrap_or(i64::MAX))
        .bind(BATCH)
        .fetch_one(pool)
        .await?;
        purged.jobs += u64::try_from(jobs).unwrap_or_default();
        purged.log_chunks += u64::try_from(logs).unwrap_or_default();
        if jobs < BATCH {
            break;
        }
    }
    Ok(purged)
}
