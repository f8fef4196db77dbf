//! In-use marks on SQLite, written once in `store::in_use`.

use chrono::{DateTime, Utc};

use super::SqliteStore;
use crate::store::StoreError;
use crate::store::in_use::{self, InUseMarks, LiveMark, MarkOutcome};

pub async fn mark(store: &SqliteStore, m: InUseMarks<'_>) -> Result<MarkOutcome, StoreError> {
    in_use::sqlite::mark(store.writer(), m).await
}

pub async fn live(
    store: &SqliteStore,
    registry_id: i64,
    repository: &str,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<LiveMark>, StoreError> {
    in_use::sqlite::live(store.reader(), registry_id, repository, now, limit).await
}
