//! Crons on SQLite.

use crate::store::Fence;

use chrono::DateTime;
use sqlx::AssertSqlSafe;
use sqlx::types::Json;

use super::jobs::{KeyedJob, insert_keyed_job};
use super::leases::holds;
use super::rows::{CRON_COLUMNS as COLUMNS, CronRow};
use super::{SqliteStore, micros, time};
use crate::store::{CronRecord, Fired, NewCron, NextFire, StoreError};

pub async fn create(store: &SqliteStore, cron: NewCron) -> Result<Option<CronRecord>, StoreError> {
    let now = store.now_micros();
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
        .bind(store.now_micros())
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
    let now = store.now_micros();
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
