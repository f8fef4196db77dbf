//! Crons, leases and retention on SQLite.

use crate::store::Fence;
use std::time::Duration;

use chrono::DateTime;
use sqlx::AssertSqlSafe;
use sqlx::types::Json;
use uuid::Uuid;

use super::jobs::{KeyedJob, insert_keyed_job};
use super::rows::{CRON_COLUMNS as COLUMNS, CronRow};
use super::{SqliteStore, micros, now_micros, span_micros, time};
use crate::store::{CronRecord, Fired, NewCron, NextFire, Purged, StoreError};

pub async fn create(store: &SqliteStore, cron: NewCron) -> Result<Option<CronRecord>, StoreError> {
    let now = now_micros();
    let mut tx = store.begin().await?;
    let sql = format!(
        "INSERT INTO crons (name, schedule, kind, args, enabled, priority, next_fire_at,
                            created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
         ON CONFLICT (name) DO NOTHING
         RETURNING {COLUMNS}"
    );
    let row = sqlx::query_as::<_, CronRow>(AssertSqlSafe(sql))
        .bind(&cron.name)
        .bind(&cron.schedule)
        .bind(&cron.kind)
        .bind(Json(&cron.args))
        .bind(cron.enabled)
        .bind(cron.priority)
        .bind(micros(cron.next_fire_at))
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(row.map(CronRecord::from))
}

pub async fn get(store: &SqliteStore, name: &str) -> Result<Option<CronRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM crons WHERE name = ?");
    let row = sqlx::query_as::<_, CronRow>(AssertSqlSafe(sql))
        .bind(name)
        .fetch_optional(store.reader())
        .await?;
    Ok(row.map(CronRecord::from))
}

pub async fn list(store: &SqliteStore) -> Result<Vec<CronRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM crons ORDER BY name");
    let rows = sqlx::query_as::<_, CronRow>(AssertSqlSafe(sql)).fetch_all(store.reader()).await?;
    Ok(rows.into_iter().map(CronRecord::from).collect())
}

pub async fn update(store: &SqliteStore, cron: NewCron) -> Result<Option<CronRecord>, StoreError> {
    let mut tx = store.begin().await?;
    let sql = format!(
        "UPDATE crons SET schedule = ?2, kind = ?3, args = ?4, enabled = ?5, priority = ?6,
                          next_fire_at = ?7, updated_at = ?8
         WHERE name = ?1
         RETURNING {COLUMNS}"
    );
    let row = sqlx::query_as::<_, CronRow>(AssertSqlSafe(sql))
        .bind(&cron.name)
        .bind(&cron.schedule)
        .bind(&cron.kind)
        .bind(Json(&cron.args))
        .bind(cron.enabled)
        .bind(cron.priority)
        .bind(micros(cron.next_fire_at))
        .bind(now_micros())
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(row.map(CronRecord::from))
}

pub async fn delete(store: &SqliteStore, name: &str) -> Result<bool, StoreError> {
    let mut tx = store.begin().await?;
    let done = sqlx::query("DELETE FROM crons WHERE name = ?").bind(name).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

pub async fn next_due(store: &SqliteStore) -> Result<Option<DateTime<chrono::Utc>>, StoreError> {
    let due: Option<i64> = sqlx::query_scalar("SELECT min(next_fire_at) FROM crons WHERE enabled")
        .fetch_one(store.reader())
        .await?;
    Ok(due.map(time))
}

/// A due cron: name, schedule, kind, args, priority, due time.
type DueCron = (String, String, String, Json<serde_json::Value>, i32, i64);

/// Fires due crons in one write transaction: each firing is enqueued once
/// (its unique key), and each cron moves to its next firing after now.
pub async fn fire_due(
    store: &SqliteStore,
    next: NextFire,
    fence: Fence,
) -> Result<Vec<Fired>, StoreError> {
    let now = now_micros();
    let mut tx = store.begin().await?;
    if !holds(&mut tx, fence, now).await? {
        return Ok(Vec::new());
    }
    let due: Vec<DueCron> = sqlx::query_as(
        "SELECT name, schedule, kind, args, priority, next_fire_at FROM crons
         WHERE enabled AND next_fire_at <= ? ORDER BY next_fire_at LIMIT 100",
    )
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let mut fired = Vec::new();
    let mut kinds = Vec::new();
    for (name, schedule, kind, args, priority, fire_at) in due {
        let key = format!("cron:{name}:{fire_at}");
        let keyed = KeyedJob {
            kind: &kind,
            args: &args.0,
            priority,
            max_attempts: 3,
            key: &key,
            trace_context: None,
        };
        let job = insert_keyed_job(&mut tx, keyed, now).await?;
        // At most one catch-up: missed firings are skipped, not replayed.
        let next_fire = next(&schedule, time(fire_at.max(now)));
        sqlx::query(
            "UPDATE crons SET
                 next_fire_at = coalesce(?2, next_fire_at), enabled = enabled AND ?2 IS NOT NULL,
                 last_fire_at = ?3, last_job_id = coalesce(?4, last_job_id), updated_at = ?5
             WHERE name = ?1",
        )
        .bind(&name)
        .bind(next_fire.map(micros))
        .bind(fire_at)
        .bind(job)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if let Some(job_id) = job {
            kinds.push(kind);
            fired.push(Fired { cron: name, fire_at: time(fire_at), job_id });
        }
    }
    tx.commit().await?;
    store.announce_kinds(kinds);
    Ok(fired)
}

pub async fn try_lease(
    store: &SqliteStore,
    name: &str,
    holder: Uuid,
    lease: Duration,
) -> Result<bool, StoreError> {
    let now = now_micros();
    let mut tx = store.begin().await?;
    let held: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO leases (name, holder, acquired_at, expires_at) VALUES (?1, ?2, ?3, ?3 + ?4)
         ON CONFLICT (name) DO UPDATE SET
             holder = excluded.holder,
             expires_at = excluded.expires_at,
             acquired_at = CASE WHEN leases.holder = excluded.holder
                                THEN leases.acquired_at ELSE excluded.acquired_at END
         WHERE leases.holder = excluded.holder OR leases.expires_at < ?3
         RETURNING holder",
    )
    .bind(name)
    .bind(holder)
    .bind(now)
    .bind(span_micros(lease))
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(held.is_some())
}

pub async fn release_lease(
    store: &SqliteStore,
    name: &str,
    holder: Uuid,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    sqlx::query("DELETE FROM leases WHERE name = ? AND holder = ?")
        .bind(name)
        .bind(holder)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Rows deleted per transaction: the writer is never held long.
const BATCH: i64 = 5000;

/// Deletes finished jobs and their logs older than `older_than`, then
/// beyond the newest `keep_last` (none when 0), a batch per transaction.
pub async fn purge(
    store: &SqliteStore,
    older_than: Duration,
    keep_last: u64,
) -> Result<Purged, StoreError> {
    const FINISHED: &str = "status IN ('done', 'error', 'cancel', 'deleted')";
    let by_age = format!("SELECT id FROM jobs WHERE {FINISHED} AND finished_at < ?1 LIMIT ?2");
    let mut purged = purge_batches(store, &by_age, now_micros() - span_micros(older_than)).await?;
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

/// Whether `fence.holder` holds `fence.lease` at `now`. The writer runs one
/// transaction at a time, so the lease cannot change hands before the
/// caller's transaction ends.
pub async fn holds(
    conn: &mut sqlx::SqliteConnection,
    fence: Fence,
    now: i64,
) -> Result<bool, StoreError> {
    let held: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM leases WHERE name = $1 AND holder = $2 AND expires_at > $3",
    )
    .bind(fence.lease)
    .bind(fence.holder)
    .bind(now)
    .fetch_optional(conn)
    .await?;
    Ok(held.is_some())
}
