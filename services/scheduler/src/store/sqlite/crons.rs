//! Crons on SQLite, written once in `cron_sql`; here, SQLite's one writer
//! and its clock.

use crate::store::Fence;

use chrono::DateTime;

use super::SqliteStore;
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

/// Fires due crons in one write transaction, fenced by the leader's lease
/// (`cron_sql::fire_due`).
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
    let fired = sql::fire_due(&mut tx, next, Some(now)).await?;
    tx.commit().await?;
    let (fired, kinds): (Vec<Fired>, Vec<String>) = fired.into_iter().unzip();
    store.announce_kinds(kinds);
    Ok(fired)
}
