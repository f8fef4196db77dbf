//! Crons on SQLite: definitions are written once in `cron_sql`; here,
//! SQLite's one writer, its clock, and the firing.

use crate::store::Fence;

use chrono::DateTime;
use sqlx::types::Json;

use super::jobs::{KeyedJob, insert_keyed_job};
use super::{SqliteStore, micros, time};
use crate::store::cron_sql::sqlite as sql;
use crate::store::{CronRecord, Fired, NewCron, NextFire, StoreError};

pub async fn create(store: &SqliteStore, cron: NewCron) -> Result<Option<CronRecord>, StoreError> {
    let mut tx = store.begin().await?;
    let created = sql::create(&mut tx, &cron, Some(store.now_micros())).await?;
    tx.commit().await?;
    Ok(created)
}

pub async fn get(store: &SqliteStore, name: &str) -> Result<Option<CronRecord>, StoreError> {
    sql::get(store.reader(), name).await
}

pub async fn list(store: &SqliteStore) -> Result<Vec<CronRecord>, StoreError> {
    sql::list(store.reader()).await
}

pub async fn update(store: &SqliteStore, cron: NewCron) -> Result<Option<CronRecord>, StoreError> {
    let mut tx = store.begin().await?;
    let updated = sql::update(&mut tx, &cron, Some(store.now_micros())).await?;
    tx.commit().await?;
    Ok(updated)
}

pub async fn delete(store: &SqliteStore, name: &str) -> Result<bool, StoreError> {
    let mut tx = store.begin().await?;
    let deleted = sql::delete(&mut tx, name).await?;
    tx.commit().await?;
    Ok(deleted)
}

pub async fn next_due(store: &SqliteStore) -> Result<Option<DateTime<chrono::Utc>>, StoreError> {
    sql::next_due(store.reader()).await
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
    if !crate::store::lease_sql::sqlite::holds(&mut tx, fence, Some(now)).await? {
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
