//! Leases on SQLite (written once in `lease_sql`), by the store's clock.

use std::time::Duration;

use uuid::Uuid;

use super::SqliteStore;
use crate::store::StoreError;
use crate::store::lease_sql::sqlite as sql;

pub async fn try_lease(
    store: &SqliteStore,
    name: &str,
    holder: Uuid,
    lease: Duration,
) -> Result<bool, StoreError> {
    let mut tx = store.begin().await?;
    let held = sql::try_lease(&mut tx, name, holder, lease, Some(store.now_micros())).await?;
    tx.commit().await?;
    Ok(held)
}

pub async fn release_lease(
    store: &SqliteStore,
    name: &str,
    holder: Uuid,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    sql::release_lease(&mut tx, name, holder).await?;
    tx.commit().await?;
    Ok(())
}
