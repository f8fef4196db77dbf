//! Registries and policies on SQLite: the operations are written once in
//! `catalog_ops`; here, how a policy run wakes the selection.

use super::SqliteStore;
use crate::store::StoreError;
use crate::store::catalog::PolicyRecord;
use crate::store::catalog_sql::sqlite as sql;

pub use crate::store::catalog_ops::sqlite::*;

pub async fn run_policy(
    store: &SqliteStore,
    name: &str,
) -> Result<Option<PolicyRecord>, StoreError> {
    let mut tx = store.begin().await?;
    let policy = sql::run_policy(&mut tx, name, Some(store.now_micros())).await?;
    tx.commit().await?;
    if policy.is_some() {
        // Wakes the selection: the run starts now, not at the next tick.
        store.announce(crate::store::StoreEvent::CleanupEnded);
    }
    Ok(policy)
}
