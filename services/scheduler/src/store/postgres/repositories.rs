//! Repositories: catalog sync, policy assignment, listing.

use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;
use sqlx::postgres::PgPool;

use crate::store::StoreError;
use crate::store::catalog::{PolicyMatcher, ReportOutcome, RepositoryFilter, RepositoryRecord};
use crate::store::catalog_sql::postgres as sql;
use crate::store::sets;
use crate::store::sightings::{self, SightingBatch};

/// Repositories read per statement when reassigning a whole registry.
const REASSIGN_BATCH: i64 = 5_000;

pub async fn reassign(
    pool: &PgPool,
    registry_id: i64,
    matcher: &PolicyMatcher,
) -> Result<u64, StoreError> {
    let mut after = 0_i64;
    let mut changed = 0_u64;
    loop {
        let rows: Vec<(i64, String, Option<i64>)> = sqlx::query_as(
            "SELECT id, name, policy_id FROM repositories
             WHERE registry_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(registry_id)
        .bind(after)
        .bind(REASSIGN_BATCH)
        .fetch_all(pool)
        .await?;
        let Some(last) = rows.last() else { break };
        after = last.0;
        let (ids, policies): (Vec<i64>, Vec<Option<i64>>) = rows
            .iter()
            .filter_map(|(id, name, current)| {
                let wanted = matcher(name);
                (wanted != *current).then_some((*id, wanted))
            })
            .unzip();
        if !ids.is_empty() {
            // A repository waiting for its old policy's run does not wait
            // for the new one's; a running cleanup finishes.
            let updated = sqlx::query(
                "UPDATE repositories r SET policy_id = u.policy_id,
                     cleanup_status = CASE WHEN r.cleanup_status = 'ongoing' THEN 'ongoing'
                                           ELSE 'unscheduled' END
                 FROM unnest($1::bigint[], $2::bigint[]) AS u(id, policy_id)
                 WHERE r.id = u.id",
            )
            .bind(&ids)
            .bind(&policies)
            .execute(pool)
            .await?;
            changed += updated.rows_affected();
        }
        if rows.len() < REASSIGN_BATCH as usize {
            break;
        }
    }
    Ok(changed)
}

pub async fn report(
    pool: &PgPool,
    job_id: i64,
    attempt: u32,
    registry_id: i64,
    names: &[String],
    complete: bool,
    matcher: &PolicyMatcher,
) -> Result<ReportOutcome, StoreError> {
    let mut tx = pool.begin().await?;
    // The fence: the row lock holds the job in this attempt until commit.
    let current: Option<i64> = sqlx::query_scalar(concat!(
        "SELECT id FROM jobs WHERE id = $1 AND attempt = $2 AND kind = 'catalog_sync'
             AND status IN ",
        sets::on_worker!(),
        "
         FOR SHARE"
    ))
    .bind(job_id)
    .bind(i64::from(attempt))
    .fetch_optional(&mut *tx)
    .await?;
    if current.is_none() {
        return Ok(ReportOutcome::Stale);
    }
    let policies: Vec<Option<i64>> = names.iter().map(|n| matcher(n)).collect();
    // `xmax = 0` tells inserted rows from updated ones.
    let added: i64 = sqlx::query_scalar(
        "WITH upserted AS (
             INSERT INTO repositories (registry_id, name, policy_id, last_sync_job_id)
             SELECT $1, n.name, n.policy_id, $4
             FROM unnest($2::text[], $3::bigint[]) AS n(name, policy_id)
             ON CONFLICT (registry_id, name) DO UPDATE SET last_sync_job_id = EXCLUDED.last_sync_job_id
             RETURNING (xmax = 0) AS inserted
         )
         SELECT count(*) FILTER (WHERE inserted) FROM upserted",
    )
    .bind(registry_id)
    .bind(names)
    .bind(&policies)
    .bind(job_id)
    .fetch_one(&mut *tx)
    .await?;
    let mut removed = 0;
    if complete {
        removed = sqlx::query(
            "DELETE FROM repositories
             WHERE registry_id = $1 AND last_sync_job_id IS DISTINCT FROM $2
               AND cleanup_status <> 'ongoing'",
        )
        .bind(registry_id)
        .bind(job_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(sightings::FORGET_REMOVED).bind(registry_id).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(ReportOutcome::Reported {
        added: u32::try_from(added).unwrap_or(u32::MAX),
        removed: u32::try_from(removed).unwrap_or(u32::MAX),
    })
}

pub async fn record_deletions(
    pool: &PgPool,
    job_id: i64,
    deleted_tags: u32,
) -> Result<bool, StoreError> {
    sql::record_deletions(&mut *pool.acquire().await?, job_id, deleted_tags).await
}

pub async fn list(
    pool: &PgPool,
    filter: &RepositoryFilter,
    after: Option<i64>,
    limit: u32,
) -> Result<Vec<RepositoryRecord>, StoreError> {
    sql::list_repositories(pool, filter, after, limit).await
}

/// Records one part of a read of a repository in one statement.
pub async fn record_sightings(
    pool: &PgPool,
    batch: SightingBatch<'_>,
) -> Result<Vec<DateTime<Utc>>, StoreError> {
    let (tags, digests): (Vec<&str>, Vec<&str>) =
        batch.sightings.iter().map(|s| (s.tag.as_str(), s.digest.as_str())).unzip();
    let mut tx = pool.begin().await?;
    let returned: Vec<(String, DateTime<Utc>)> = sqlx::query_as(AssertSqlSafe(format!(
        "INSERT INTO tag_sightings (registry_id, repository, tag, digest, first_seen, last_seen)
         SELECT $1, $2, t.tag, t.digest, $5, $5 FROM unnest($3::text[], $4::text[]) AS t(tag, digest)
         {}
         RETURNING tag, first_seen",
        sightings::UPSERT
    )))
    .bind(batch.registry_id)
    .bind(batch.repository)
    .bind(&tags)
    .bind(&digests)
    .bind(batch.now)
    .fetch_all(&mut *tx)
    .await?;
    if let Some(since) = batch.forget_unseen_since {
        sqlx::query(sightings::FORGET)
            .bind(batch.registry_id)
            .bind(batch.repository)
            .bind(since)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    sightings::in_order(&batch, returned.into_iter().collect())
}
