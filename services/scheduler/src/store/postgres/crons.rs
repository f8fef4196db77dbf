//! Crons on PostgreSQL: definitions are written once in `cron_sql`; here,
//! their firing.

use crate::store::Fence;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgPool;
use sqlx::types::Json;

use crate::store::cron_sql::postgres as sql;
use crate::store::sets;
use crate::store::{CronRecord, Fired, NewCron, NextFire, StoreError};

pub async fn create(pool: &PgPool, cron: NewCron) -> Result<Option<CronRecord>, StoreError> {
    sql::create(&mut *pool.acquire().await?, &cron, None).await
}

pub async fn get(pool: &PgPool, name: &str) -> Result<Option<CronRecord>, StoreError> {
    sql::get(pool, name).await
}

pub async fn list(pool: &PgPool) -> Result<Vec<CronRecord>, StoreError> {
    sql::list(pool).await
}

pub async fn update(pool: &PgPool, cron: NewCron) -> Result<Option<CronRecord>, StoreError> {
    sql::update(&mut *pool.acquire().await?, &cron, None).await
}

pub async fn delete(pool: &PgPool, name: &str) -> Result<bool, StoreError> {
    sql::delete(&mut *pool.acquire().await?, name).await
}

pub async fn next_due(pool: &PgPool) -> Result<Option<DateTime<Utc>>, StoreError> {
    sql::next_due(pool).await
}

/// A due cron: name, schedule, kind, args, priority, due time.
type DueCron = (String, String, String, Json<serde_json::Value>, i32, DateTime<Utc>);

/// Fires due crons in one transaction. The rows stay locked until their
/// `next_fire_at` has moved on, so a concurrent firing (a replica that
/// still believes it leads) skips them: each firing is enqueued once.
pub async fn fire_due(
    pool: &PgPool,
    next: NextFire,
    fence: Fence,
) -> Result<Vec<Fired>, StoreError> {
    let mut tx = pool.begin().await?;
    if !crate::store::lease_sql::postgres::holds(&mut tx, fence, None).await? {
        return Ok(Vec::new());
    }
    let due: Vec<DueCron> = sqlx::query_as(
        "SELECT name, schedule, kind, args, priority, next_fire_at FROM crons
             WHERE enabled AND next_fire_at <= store_now()
             ORDER BY next_fire_at
             LIMIT 100
             FOR UPDATE SKIP LOCKED",
    )
    .fetch_all(&mut *tx)
    .await?;
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let (now,): (DateTime<Utc>,) = sqlx::query_as("SELECT store_now()").fetch_one(&mut *tx).await?;
    let mut fired = Vec::new();
    for (name, schedule, kind, args, priority, fire_at) in due {
        let key = format!("cron:{name}:{}", fire_at.timestamp_micros());
        let job: Option<(i64,)> = sqlx::query_as(concat!(
            "INSERT INTO jobs (kind, args, priority, unique_key) VALUES ($1, $2, $3, $4)
             ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL
                 AND status IN ",
            sets::active!(),
            "
             DO NOTHING
             RETURNING id"
        ))
        .bind(&kind)
        .bind(&args)
        .bind(priority)
        .bind(&key)
        .fetch_optional(&mut *tx)
        .await?;
        // At most one catch-up: the next firing is computed from now, so
        // firings missed while no leader ran are skipped.
        let next_fire = next(&schedule, fire_at.max(now));
        sqlx::query(
            "UPDATE crons SET
                 next_fire_at = coalesce($2, next_fire_at), enabled = enabled AND $2 IS NOT NULL,
                 last_fire_at = $3, last_job_id = coalesce($4, last_job_id), updated_at = store_now()
             WHERE name = $1",
        )
        .bind(&name)
        .bind(next_fire)
        .bind(fire_at)
        .bind(job.map(|(id,)| id))
        .execute(&mut *tx)
        .await?;
        if let Some((job_id,)) = job {
            fired.push(Fired { cron: name, fire_at, job_id });
        }
    }
    tx.commit().await?;
    Ok(fired)
}
