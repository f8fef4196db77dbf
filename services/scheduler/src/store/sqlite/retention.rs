//! Retention of finished jobs and their logs (`retention_sql`).

use std::time::Duration;

use super::SqliteStore;
use crate::store::retention_sql::sqlite as sql;
use crate::store::{Purged, StoreError};

pub async fn purge(
    store: &SqliteStore,
    older_than: Duration,
    keep_last: u64,
) -> Result<Purged, StoreError> {
    sql::purge(store.writer(), older_than, keep_last, Some(store.now_micros())).await
}
