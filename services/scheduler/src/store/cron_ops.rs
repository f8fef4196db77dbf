//! The cron operations of both stores, written once (see `engines` and
//! `catalog_ops`). Firing stays with the stores: SQLite announces the
//! kinds it enqueued after its commit.

use chrono::{DateTime, Utc};

use crate::store::engines::per_engine;
use crate::store::{CronRecord, NewCron, StoreError};

per_engine! {
    use engine::cron_sql as sql;

    pub async fn create(store: &Store, cron: NewCron) -> Result<Option<CronRecord>, StoreError> {
        let mut tx = begin_write(writer(store)).await?;
        let created = sql::create(&mut tx, &cron, stamp(store)).await?;
        tx.commit().await?;
        Ok(created)
    }

    pub async fn get(store: &Store, name: &str) -> Result<Option<CronRecord>, StoreError> {
        sql::get(reader(store), name).await
    }

    pub async fn list(store: &Store) -> Result<Vec<CronRecord>, StoreError> {
        sql::list(reader(store)).await
    }

    pub async fn update(store: &Store, cron: NewCron) -> Result<Option<CronRecord>, StoreError> {
        let mut tx = begin_write(writer(store)).await?;
        let updated = sql::update(&mut tx, &cron, stamp(store)).await?;
        tx.commit().await?;
        Ok(updated)
    }

    pub async fn delete(store: &Store, name: &str) -> Result<bool, StoreError> {
        let mut tx = begin_write(writer(store)).await?;
        let deleted = sql::delete(&mut tx, name).await?;
        tx.commit().await?;
        Ok(deleted)
    }

    pub async fn next_due(store: &Store) -> Result<Option<DateTime<Utc>>, StoreError> {
        sql::next_due(reader(store)).await
    }
}
