//! In-use marks on SQLite: one statement per mark, in one transaction of
//! the single writer.

use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;

use super::{SqliteStore, micros};
use crate::store::StoreError;
use crate::store::in_use::{self, InUseMarks, LiveMark, MarkOutcome};

pub async fn mark(store: &SqliteStore, m: InUseMarks<'_>) -> Result<MarkOutcome, StoreError> {
    let sql = format!(
        "INSERT INTO in_use_marks (registry_id, repository, digest, holder, expires_at)
         VALUES ($1, $2, $3, $4, $5)
         {}",
        in_use::UPSERT
    );
    let expires_at = micros(m.expires_at);
    let mut tx = store.begin().await?;
    sqlx::query(in_use::PRUNE).bind(m.registry_id).bind(micros(m.now)).execute(&mut *tx).await?;
    let mut marked = 0;
    for (repository, digest) in m.images {
        marked += sqlx::query(AssertSqlSafe(sql.as_str()))
            .bind(m.registry_id)
            .bind(repository)
            .bind(digest)
            .bind(m.holder)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    let released = if m.replace {
        sqlx::query(in_use::RELEASE_OTHERS)
            .bind(m.registry_id)
            .bind(m.holder)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?
            .rows_affected()
    } else {
        0
    };
    tx.commit().await?;
    Ok(MarkOutcome { marked, released })
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
