//! Metrics reads (written once in `store::stats`), by the store's clock.

use super::SqliteStore;
use crate::store::StoreError;
use crate::store::stats::{CleanupStats, QueueStats, sqlite as sql};

pub async fn queue(store: &SqliteStore) -> Result<QueueStats, StoreError> {
    sql::queue(store.reader(), Some(store.now_micros())).await
}

pub async fn cleanups(store: &SqliteStore) -> Result<CleanupStats, StoreError> {
    sql::cleanups(store.reader(), Some(store.now_micros())).await
}
