//! Repositories on SQLite: catalog sync, policy assignment, listing.

use sqlx::AssertSqlSafe;

use super::{SqliteStore, micros, time};
use crate::store::StoreError;
use crate::store::catalog::{PolicyMatcher, ReportOutcome, RepositoryFilter, RepositoryRecord};
use crate::store::catalog_sql::sqlite as sql;
use crate::store::sets;
use crate::store::sightings::{self, SightingBatch};

/// Repositories read per transaction when reassigning a whole registry.
const REASSIGN_BATCH: i64 = 5_000;

pub async fn reassign(
    store: &SqliteStore,
    registry_id: i64,
    matcher: &PolicyMatcher,
) -> Result<u64, StoreError> {
    let mut after = 0_i64;
    let mut changed = 0_u64;
    loop {
        let mut tx = store.begin().await?;
        let rows: Vec<(i64, String, Option<i64>)> = sqlx::query_as(
            "SELECT id, name, policy_id FROM repositories
             WHERE registry_id = ? AND id > ? ORDER BY id LIMIT ?",
        )
        .bind(registry_id)
        .bind(after)
        .bind(REASSIGN_BATCH)
        .fetch_all(&mut *tx)
        .await?;
        let Some(last) = rows.last() else { break };
        after = last.0;
        for (id, name, current) in &rows {
            let wanted = matcher(name);
            if wanted == *current {
                continue;
            }
            // A repository waiting for its old policy's run does not wait
            // for the new one's; a running cleanup finishes.
            changed += sqlx::query(
                "UPDATE repositories SET policy_id = ?2,
                     cleanup_status = CASE WHEN cleanup_status = 'ongoing' THEN 'ongoing'
                                           ELSE 'unscheduled' END
                 WHERE id = ?1",
            )
            .bind(id)
            .bind(wanted)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        if rows.len() < REASSIGN_BATCH as usize {
            break;
        }
    }
    Ok(changed)
}

pub async fn report(
    store: &SqliteStore,
    job_id: i64,
    attempt: u32,
    registry_id: i64,
    names: &[String],
    complete: bool,
    matcher: &PolicyMatcher,
) -> Result<ReportOutcome, StoreError> {
    let now = store.now_micros();
    let mut tx = store.begin().await?;
    // The fence: no other writer can move the job on before the commit.
    let current: Option<i64> = sqlx::query_scalar(concat!(
        "SELECT id FROM jobs WHERE id = ? AND attempt = ? AND kind = 'catalog_sync'
             AND status IN ",
        sets::on_worker!()
    ))
    .bind(job_id)
    .bind(i64::from(attempt))
    .fetch_optional(&mut *tx)
    .await?;
    if current.is_none() {
        return Ok(ReportOutcome::Stale);
    }
    let mut added = 0_u32;
    for name in names {
        let seen = sqlx::query(
            "UPDATE repositories SET last_sync_job_id = ?3 WHERE registry_id = ?1 AND name = ?2",
        )
        .bind(registry_id)
        .bind(name)
        .bind(job_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if seen == 0 {
            sqlx::query(
                "INSERT INTO repositories (registry_id, name, policy_id, last_sync_job_id, created_at)
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(registry_id)
            .bind(name)
            .bind(matcher(name))
            .bind(job_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            added += 1;
        }
    }
    let mut removed = 0;
    if complete {
        removed = sqlx::query(
            "DELETE FROM repositories
             WHERE registry_id = ? AND last_sync_job_id IS NOT ? AND cleanup_status <> 'ongoing'",
        )
        .bind(registry_id)
        .bind(job_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(sightings::FORGET_REMOVED).bind(registry_id).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(ReportOutcome::Reported { added, removed: u32::try_from(removed).unwrap_or(u32::MAX) })
}

pub async fn record_deletions(
    store: &SqliteStore,
    job_id: i64,
    deleted_tags: u32,
) -> Result<bool, StoreError> {
    let mut tx = store.begin().await?;
    let recorded = sql::record_deletions(&mut tx, job_id, deleted_tags).await?;
    tx.commit().await?;
    Ok(recorded)
}

pub async fn list(
    store: &SqliteStore,
    filter: &RepositoryFilter,
    after: Option<i64>,
    limit: u32,
) -> Result<Vec<RepositoryRecord>, StoreError> {
    sql::list_repositories(store.reader(), filter, after, limit).await
}

/// Records one part of a read of a repository: one statement per tag, in
/// one transaction of the single writer.
pub async fn record_sightings(
    store: &SqliteStore,
    batch: SightingBatch<'_>,
) -> Result<Vec<chrono::DateTime<chrono::Utc>>, StoreError> {
    let sql = format!(
        "INSERT INTO tag_sightings (registry_id, repository, tag, digest, first_seen, last_seen)
         VALUES ($1, $2, $3, $4, $5, $5)
         {}
         RETURNING first_seen",
        sightings::UPSERT
    );
    let now = micros(batch.now);
    let mut tx = store.begin().await?;
    let mut returned = std::collections::HashMap::with_capacity(batch.sightings.len());
    for s in batch.sightings {
        let first_seen: i64 = sqlx::query_scalar(AssertSqlSafe(sql.as_str()))
            .bind(batch.registry_id)
            .bind(batch.repository)
            .bind(&s.tag)
            .bind(&s.digest)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        returned.insert(s.tag.clone(), time(first_seen));
    }
    if let Some(since) = batch.forget_unseen_since {
        sqlx::query(sightings::FORGET)
            .bind(batch.registry_id)
            .bind(batch.repository)
            .bind(micros(since))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    sightings::in_order(&batch, returned)
}
