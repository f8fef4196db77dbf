//! Crons on PostgreSQL, written once in `cron_sql`.

use crate::store::Fence;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgPool;

use crate::store::cron_sql::postgres as sql;
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

/// Fires due crons in one transaction fenced by the leader's lease
/// (`cron_sql::fire_due`).
pub async fn fire_due(
    pool: &PgPool,
    next: NextFire,
    fence: Fence,
) -> Result<Vec<Fired>, StoreError> {
    let mut tx = pool.begin().await?;
    if !crate::store::lease_sql::postgres::holds(&mut tx, fence, None).await? {
        return Ok(Vec::new());
    }
    let fired = sql::fire_due(&mut tx, next, None).await?;
    tx.commit().await?;
    Ok(fired.into_iter().map(|(fired, _)| fired).collect())
}
