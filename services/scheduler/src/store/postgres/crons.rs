//! Crons: definitions and their firing.

use crate::store::Fence;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgPool;
use sqlx::types::Json;

use crate::store::rows::{self, CRON_COLUMNS as COLUMNS};
use crate::store::sets;
use crate::store::{CronRecord, Fired, NewCron, NextFire, StoreError};

type CronRow = rows::CronRow<DateTime<Utc>>;

/// PostgreSQL's `unique_violation`.
const UNIQUE_VIOLATION: &str = "23505";

pub async fn create(pool: &PgPool, cron: NewCron) -> Result<Option<CronRecord>, StoreError> {
    let sql = format!(
        "INSERT INTO crons (name, schedule, kind, args, enabled, priority, next_fire_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         RETURNING {COLUMNS}"
    );
    let inserted = sqlx::query_as::<_, CronRow>(sqlx::AssertSqlSafe(sql))
        .bind(&cron.name)
        .bind(&cron.schedule)
        .bind(&cron.kind)
        .bind(Json(&cron.args))
        .bind(cron.enabled)
        .bind(cron.priority)
        .bind(cron.next_fire_at)
        .fetch_one(pool)
        .await;
    match inserted {
        Ok(row) => Ok(Some(row.into())),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(UNIQUE_VIOLATION) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub async fn get(pool: &PgPool, name: &str) -> Result<Option<CronRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM crons WHERE name = $1");
    let row = sqlx::query_as::<_, CronRow>(sqlx::AssertSqlSafe(sql))
        .bind(name)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(CronRecord::from))
}

pub async fn list(pool: &PgPool) -> Result<Vec<CronRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM crons ORDER BY name");
    let rows = sqlx::query_as::<_, CronRow>(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await?;
    Ok(rows.into_iter().map(CronRecord::from).collect())
}

pub async fn update(pool: &PgPool, cron: NewCron) -> Result<Option<CronRecord>, StoreError> {
    let sql = format!(
        "UPDATE crons SET schedule = $2, kind = $3, args = $4, enabled = $5, priority = $6,
                          next_fire_at = $7, updated_at = store_now()
         WHERE name = $1
         RETURNING {COLUMNS}"
    );
    let row = sqlx::query_as::<_, CronRow>(sqlx::AssertSqlSafe(sql))
        .bind(&cron.name)
        .bind(&cron.schedule)
        .bind(&cron.kind)
        .bind(Json(&cron.args))
        .bind(cron.enabled)
        .bind(cron.priority)
        .bind(cron.next_fire_at)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(CronRecord::from))
}

pub async fn delete(pool: &PgPool, name: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM crons WHERE name = $1").bind(name).execute(pool).await?;
    Ok(done.rows_affected() == 1)
}

pub async fn next_due(pool: &PgPool) -> Result<Option<DateTime<Utc>>, StoreError> {
    let (due,): (Option<DateTime<Utc>>,) =
        sqlx::query_as("SELECT min(next_fire_at) FROM crons WHERE enabled").fetch_one(pool).await?;
    Ok(due)
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
    if !super::leases::holds(&mut tx, fence).await? {
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
