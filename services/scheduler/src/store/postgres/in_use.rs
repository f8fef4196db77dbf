//! In-use marks on PostgreSQL: a request's marks in one `unnest` upsert.

use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;
use sqlx::postgres::PgPool;

use crate::store::StoreError;
use crate::store::in_use::{self, InUseMarks, LiveMark, MarkOutcome};

pub async fn mark(pool: &PgPool, m: InUseMarks<'_>) -> Result<MarkOutcome, StoreError> {
    let (repositories, digests): (Vec<&str>, Vec<&str>) =
        m.images.iter().map(|(r, d)| (r.as_str(), d.as_str())).unzip();
    let mut tx = pool.begin().await?;
    sqlx::query(in_use::PRUNE).bind(m.registry_id).bind(m.now).execute(&mut *tx).await?;
    let marked = sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO in_use_marks (registry_id, repository, digest, holder, expires_at)
         SELECT $1, i.repository, i.digest, $4, $5
         FROM unnest($2::text[], $3::text[]) AS i(repository, digest)
         {}",
        in_use::UPSERT
    )))
    .bind(m.registry_id)
    .bind(&repositories)
    .bind(&digests)
    .bind(m.holder)
    .bind(m.expires_at)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let released = if m.replace {
        sqlx::query(in_use::RELEASE_OTHERS)
            .bind(m.registry_id)
            .bind(m.holder)
            .bind(m.expires_at)
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
    pool: &PgPool,
    registry_id: i64,
    repository: &str,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<LiveMark>, StoreError> {
    in_use::postgres::live(pool, registry_id, repository, now, limit).await
}
