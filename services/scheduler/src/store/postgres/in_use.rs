//! In-use marks on PostgreSQL, written once in `store::in_use`.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgPool;

use crate::store::StoreError;
use crate::store::in_use::{self, InUseMarks, LiveMark, MarkOutcome};

pub async fn mark(pool: &PgPool, m: InUseMarks<'_>) -> Result<MarkOutcome, StoreError> {
    in_use::postgres::mark(pool, m).await
}

pub async fn live(
    pool: &PgPool,
    registry_id: i64,
    repository: &str,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<LiveMark>, StoreError> {
    in_use::postgres::live(pool, registry_id, repository, now, limit).await
}
