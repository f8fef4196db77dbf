//! Repositories as catalog syncs and reads see them, written once for both
//! stores (see `engines`): a sync's report, policy reassignment, and tag
//! sightings. Each batch is one statement per step on both engines
//! (`Dialect::zipped`).

use chrono::{DateTime, Utc};

use crate::store::StoreError;
use crate::store::catalog::{PolicyMatcher, ReportOutcome};
use crate::store::engines::per_engine;
use crate::store::sightings::{self, SightingBatch};

/// Repositories read per statement when reassigning a whole registry.
const REASSIGN_BATCH: i64 = 5_000;

per_engine! {
    /// Records what a `catalog_sync` attempt found: new repositories added
    /// with the policy `matcher` gives them, known ones marked seen by this
    /// job, and when the listing was `complete`, those it did not list
    /// removed (unless a cleanup runs on them). Stale when the job is not
    /// in that attempt any more: it is held there until the commit (a row
    /// lock on PostgreSQL; SQLite's one writer).
    pub async fn report(
        store: &Store,
        job_id: i64,
        attempt: u32,
        registry_id: i64,
        names: &[String],
        complete: bool,
        matcher: &PolicyMatcher,
    ) -> Result<ReportOutcome, StoreError> {
        let mut tx = begin_write(writer(store)).await?;
        let fence = format!(
            concat!(
                "SELECT id FROM jobs WHERE id = $1 AND attempt = $2 AND kind = 'catalog_sync'
                 AND status IN ",
                crate::store::sets::on_worker!(),
                "{}"
            ),
            DIALECT.share_lock(),
        );
        let current: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(fence))
            .bind(job_id)
            .bind(i64::from(attempt))
            .fetch_optional(&mut *tx)
            .await?;
        if current.is_none() {
            return Ok(ReportOutcome::Stale);
        }
        let added = upsert_listed(&mut tx, store, registry_id, names, job_id, matcher).await?;
        let mut removed = 0;
        if complete {
            removed = sqlx::query(
                "DELETE FROM repositories
                 WHERE registry_id = $1 AND (last_sync_job_id IS NULL OR last_sync_job_id <> $2)
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

    /// Adds the listed repositories not known yet and marks every listed
    /// one seen by `job_id`; returns how many were added.
    async fn upsert_listed(
        tx: &mut Connection,
        store: &Store,
        registry_id: i64,
        names: &[String],
        job_id: i64,
        matcher: &PolicyMatcher,
    ) -> Result<u64, StoreError> {
        let policies: Vec<Option<i64>> = names.iter().map(|n| matcher(n)).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let listed = DIALECT.zipped("n", &[("name", "text"), ("policy_id", "bigint")], 2);
        // `WHERE true`: SQLite reads an upsert's `ON` after a `FROM` as a
        // join's without it.
        let new = format!(
            "INSERT INTO repositories (registry_id, name, policy_id, last_sync_job_id, created_at)
             SELECT $1, n.name, n.policy_id, $4, {} FROM {listed} WHERE true
             ON CONFLICT (registry_id, name) DO NOTHING",
            DIALECT.now(5),
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(new))
            .bind(registry_id)
            .bind(column(names.clone()))
            .bind(column(policies.clone()))
            .bind(job_id);
        if let Some(now) = stamp(store) {
            query = query.bind(now);
        }
        let added = query.execute(&mut *tx).await?.rows_affected();
        // Then every listed one, new or not (or added meanwhile by
        // another), is marked seen by this job.
        let seen = format!(
            "UPDATE repositories SET last_sync_job_id = $4
             WHERE registry_id = $1 AND name IN (SELECT n.name FROM {listed})"
        );
        sqlx::query(sqlx::AssertSqlSafe(seen))
            .bind(registry_id)
            .bind(column(names.clone()))
            .bind(column(policies))
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        Ok(added)
    }

    /// Gives every repository of the registry the policy `matcher` names
    /// now, a batch per transaction; returns how many changed.
    pub async fn reassign(
        store: &Store,
        registry_id: i64,
        matcher: &PolicyMatcher,
    ) -> Result<u64, StoreError> {
        let mut after = 0_i64;
        let mut changed = 0_u64;
        loop {
            let mut tx = begin_write(writer(store)).await?;
            let rows: Vec<(i64, String, Option<i64>)> = sqlx::query_as(
                "SELECT id, name, policy_id FROM repositories
                 WHERE registry_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            )
            .bind(registry_id)
            .bind(after)
            .bind(REASSIGN_BATCH)
            .fetch_all(&mut *tx)
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
            // A repository waiting for its old policy's run does not wait
            // for the new one's; a running cleanup finishes.
            let sql = format!(
                "UPDATE repositories SET policy_id = u.policy_id,
                     cleanup_status = CASE WHEN cleanup_status = 'ongoing' THEN 'ongoing'
                                           ELSE 'unscheduled' END
                 FROM {} WHERE repositories.id = u.id",
                DIALECT.zipped("u", &[("id", "bigint"), ("policy_id", "bigint")], 1),
            );
            changed += sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(column(ids))
                .bind(column(policies))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            if rows.len() < REASSIGN_BATCH as usize {
                break;
            }
        }
        Ok(changed)
    }

    /// Records one part of a read of a repository in one statement; returns
    /// when each tag was first seen on its digest, in the batch's order.
    pub async fn record_sightings(
        store: &Store,
        batch: SightingBatch<'_>,
    ) -> Result<Vec<DateTime<Utc>>, StoreError> {
        let (tags, digests): (Vec<&str>, Vec<&str>) =
            batch.sightings.iter().map(|s| (s.tag.as_str(), s.digest.as_str())).unzip();
        let seen = DIALECT.zipped("t", &[("tag", "text"), ("digest", "text")], 3);
        let sql = format!(
            "INSERT INTO tag_sightings (registry_id, repository, tag, digest, first_seen, last_seen)
             SELECT $1, $2, t.tag, t.digest, $5, $5 FROM {seen} WHERE true
             {}
             RETURNING tag, first_seen",
            sightings::UPSERT
        );
        let mut tx = begin_write(writer(store)).await?;
        let returned: Vec<(String, Time)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(batch.registry_id)
            .bind(batch.repository)
            .bind(column(tags))
            .bind(column(digests))
            .bind(time(batch.now))
            .fetch_all(&mut *tx)
            .await?;
        if let Some(since) = batch.forget_unseen_since {
            sqlx::query(sightings::FORGET)
                .bind(batch.registry_id)
                .bind(batch.repository)
                .bind(time(since))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        let returned = returned.into_iter().map(|(tag, at)| (tag, read_time(at))).collect();
        sightings::in_order(&batch, returned)
    }
}
