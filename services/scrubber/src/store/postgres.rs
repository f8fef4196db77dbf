//! The deletions on PostgreSQL, in the `scrubber` schema.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use regsweep_common::clock::Clock;
use regsweep_common::db;
use sqlx::postgres::PgPool;
use uuid::Uuid;

use super::{
    Answer, COLUMNS, DeletionFilter, DeletionRecord, DeletionStore, Finish, HourCount,
    RequestRecord, SentRequest, StoreError, Submission, outcomes, status_name,
};

/// The schema the scrubber owns.
pub const SCHEMA: &str = "scrubber";

/// The stored form of a deletion.
type DeletionRow = super::DeletionRow<DateTime<Utc>, Vec<String>>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// The answer per id, after `changed` of them changed status.
    async fn outcomes(
        &self,
        ids: &[i64],
        changed: &[i64],
    ) -> Result<Vec<(i64, bool, String)>, StoreError> {
        let statuses: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, status FROM deletions WHERE id = ANY($1)")
                .bind(ids)
                .fetch_all(&self.pool)
                .await?;
        Ok(outcomes(ids, changed, &statuses))
    }

    pub async fn connect(
        url: &str,
        max_connections: u32,
        clock: &Clock,
    ) -> Result<Self, StoreError> {
        let pool =
            db::open_postgres(url, SCHEMA, "regsweep-scrubber", max_connections, &MIGRATOR, clock)
                .await?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl DeletionStore for PgStore {
    async fn close(&self) {
        self.pool.close().await;
    }

    /// Stores a plan once per (job, attempt, digest); returns the stored rows.
    async fn submit(&self, plan: &Submission<'_>) -> Result<Vec<DeletionRecord>, StoreError> {
        let Submission {
            job_id, attempt, registry, repository, images, delay, trace_context, ..
        } = *plan;
        let digests: Vec<&str> = images.iter().map(|i| i.digest.as_str()).collect();
        // Arrays of arrays must be rectangular: carry tags as JSON.
        let tags: Vec<serde_json::Value> =
            images.iter().map(|i| serde_json::json!(i.tags)).collect();
        let whole: Vec<bool> = images.iter().map(|i| i.delete_digest).collect();
        let linked: Vec<Option<String>> = images.iter().map(|i| i.linked.to_column()).collect();
        let reasons: Vec<Option<String>> = images.iter().map(|i| i.reasons_column()).collect();
        sqlx::query(
            "WITH input AS (
                 SELECT * FROM unnest($5::text[], $6::jsonb[], $7::bool[], $10::text[], $11::text[])
                     AS i(digest, tags, delete_digest, linked, reasons)
             )
             INSERT INTO deletions (registry, repository, digest, tags, delete_digest, job_id, attempt,
                                    delete_after, trace_context, linked, reasons, status, hold_reason,
                                    policy, policy_id, policy_revision)
             SELECT $3, $4, i.digest, ARRAY(SELECT jsonb_array_elements_text(i.tags)), i.delete_digest,
                    $1, $2, store_now() + make_interval(secs => $8), $9, i.linked, i.reasons, $12, $13,
                    $14, $15, $16
             FROM input i
             ON CONFLICT (job_id, attempt, digest) DO NOTHING",
        )
            .bind(job_id)
            .bind(i64::from(attempt))
            .bind(registry)
            .bind(repository)
            .bind(&digests)
            .bind(&tags)
            .bind(&whole)
            .bind(delay.as_secs_f64())
            .bind(trace_context)
            .bind(&linked)
            .bind(&reasons)
            .bind(plan.initial_status())
            .bind(plan.hold)
            .bind(&plan.policy.name)
            .bind(plan.policy.id)
            .bind(&plan.policy.revision)
            .execute(&self.pool)
            .await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM deletions WHERE job_id = $1 AND attempt = $2 AND digest = ANY($3) ORDER BY id"
        );
        super::records(
            sqlx::query_as::<_, DeletionRow>(sqlx::AssertSqlSafe(sql))
                .bind(job_id)
                .bind(i64::from(attempt))
                .bind(&digests)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn list(
        &self,
        filter: &DeletionFilter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DeletionRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM deletions
             WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR registry = $2)
               AND ($3::text IS NULL OR repository = $3) AND ($4::bigint IS NULL OR job_id = $4)
               AND id < $5 AND ($7::text IS NULL OR $7 = ANY(tags))
             ORDER BY id DESC LIMIT $6"
        );
        super::records(
            sqlx::query_as::<_, DeletionRow>(sqlx::AssertSqlSafe(sql))
                .bind(filter.status.map(status_name))
                .bind(&filter.registry)
                .bind(&filter.repository)
                .bind(filter.job_id)
                .bind(before.unwrap_or(i64::MAX))
                .bind(i64::from(limit))
                .bind(&filter.tag)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Restores the pending or held ones of `ids`; returns `(id, restored,
    /// reason)` in request order.
    async fn restore(&self, ids: &[i64]) -> Result<Vec<(i64, bool, String)>, StoreError> {
        let restored: Vec<i64> = sqlx::query_scalar(
            "UPDATE deletions SET status = 'restored', finished_at = store_now()
             WHERE id = ANY($1) AND status IN ('pending_delete', 'awaiting_approval') RETURNING id",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        self.outcomes(ids, &restored).await
    }

    async fn approve(&self, ids: &[i64]) -> Result<Vec<(i64, bool, String)>, StoreError> {
        let approved: Vec<i64> = sqlx::query_scalar(
            "UPDATE deletions SET status = 'pending_delete'
             WHERE id = ANY($1) AND status = 'awaiting_approval' RETURNING id",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        self.outcomes(ids, &approved).await
    }

    /// Makes deletions whose lease expired (their scrubber died) claimable.
    async fn take_back_expired(&self) -> Result<u64, StoreError> {
        let expired = sqlx::query(
            "UPDATE deletions SET status = 'pending_delete', lease_holder = NULL, lease_until = NULL
             WHERE status = 'deleting' AND lease_until < store_now()",
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(expired)
    }

    async fn claim_due(
        &self,
        holder: Uuid,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<DeletionRecord>, StoreError> {
        let sql = format!(
            "UPDATE deletions SET status = 'deleting', lease_holder = $1,
                 lease_until = store_now() + make_interval(secs => $2), attempts = attempts + 1
             WHERE id IN (
                 SELECT id FROM deletions
                 WHERE status = 'pending_delete' AND delete_after <= store_now()
                 ORDER BY delete_after, id
                 LIMIT $3
                 FOR UPDATE SKIP LOCKED)
             RETURNING {COLUMNS}"
        );
        super::records(
            sqlx::query_as::<_, DeletionRow>(sqlx::AssertSqlSafe(sql))
                .bind(holder)
                .bind(lease.as_secs_f64())
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Extends `holder`'s leases on `ids`; returns the ids still held.
    async fn renew(
        &self,
        holder: Uuid,
        ids: &[i64],
        lease: Duration,
    ) -> Result<Vec<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "UPDATE deletions SET lease_until = store_now() + make_interval(secs => $3)
             WHERE id = ANY($2) AND lease_holder = $1 AND status = 'deleting'
             RETURNING id",
        )
        .bind(holder)
        .bind(ids)
        .bind(lease.as_secs_f64())
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records how a scrub ended, fenced by the lease; false when the lease
    /// was lost (another replica took the deletion back).
    async fn finish(&self, holder: Uuid, id: i64, finish: &Finish) -> Result<bool, StoreError> {
        let fence = "WHERE id = $1 AND lease_holder = $2 AND status = 'deleting'";
        let done = match finish {
            Finish::Deleted { deleted_tags, skipped_tags, digest_deleted } => {
                let sql = format!(
                    "UPDATE deletions SET status = 'deleted', finished_at = store_now(), lease_holder = NULL,
                         lease_until = NULL, error = NULL, deleted_tags = $3, skipped_tags = $4,
                         digest_deleted = $5 {fence}"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .bind(holder)
                    .bind(deleted_tags)
                    .bind(skipped_tags)
                    .bind(digest_deleted)
                    .execute(&self.pool)
                    .await?
            }
            Finish::Retry { error, after, max_attempts } => {
                let sql = format!(
                    "UPDATE deletions SET lease_holder = NULL, lease_until = NULL, error = $3,
                         status = CASE WHEN attempts >= $5 THEN 'failed' ELSE 'pending_delete' END,
                         finished_at = CASE WHEN attempts >= $5 THEN store_now() END,
                         delete_after = store_now() + make_interval(secs => $4) {fence}"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .bind(holder)
                    .bind(error)
                    .bind(after.as_secs_f64())
                    .bind(i32::try_from(*max_attempts).unwrap_or(i32::MAX))
                    .execute(&self.pool)
                    .await?
            }
            Finish::Failed { error: why } | Finish::Cancelled { reason: why } => {
                let sql = format!(
                    "UPDATE deletions SET status = $4, finished_at = store_now(), lease_holder = NULL,
                         lease_until = NULL, error = $3 {fence}"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .bind(holder)
                    .bind(why)
                    .bind(finish.outcome())
                    .execute(&self.pool)
                    .await?
            }
            Finish::Postpone { error, after } => {
                let sql = format!(
                    "UPDATE deletions SET status = 'pending_delete', lease_holder = NULL,
                         lease_until = NULL, error = $3, attempts = attempts - 1,
                         delete_after = store_now() + make_interval(secs => $4) {fence}"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .bind(holder)
                    .bind(error)
                    .bind(after.as_secs_f64())
                    .execute(&self.pool)
                    .await?
            }
        };
        Ok(done.rows_affected() == 1)
    }

    async fn request_sent(&self, r: &SentRequest<'_>) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO registry_requests (deletion_id, registry, method, path)
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(r.deletion_id)
        .bind(r.registry)
        .bind(r.method)
        .bind(r.path)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn requests_answered(&self, answers: &[Answer]) -> Result<(), StoreError> {
        let ids: Vec<i64> = answers.iter().map(|a| a.id).collect();
        let statuses: Vec<i32> = answers.iter().map(|a| i32::from(a.status)).collect();
        let at: Vec<DateTime<Utc>> = answers.iter().map(|a| a.at).collect();
        sqlx::query(
            "UPDATE registry_requests r SET status = a.status, answered_at = a.at
             FROM unnest($1::bigint[], $2::int[], $3::timestamptz[]) AS a(id, status, at)
             WHERE r.id = a.id",
        )
        .bind(&ids)
        .bind(&statuses)
        .bind(&at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn requests(&self, deletion_ids: &[i64]) -> Result<Vec<RequestRecord>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, deletion_id, registry, method, path, status, sent_at, answered_at
             FROM registry_requests WHERE deletion_id = ANY($1) ORDER BY id",
        )
        .bind(deletion_ids)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn prune_requests(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM registry_requests WHERE sent_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// Deletions per status, and the age of the oldest due pending one.
    async fn status(&self) -> Result<(Vec<(String, i64)>, f64), StoreError> {
        let counts: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, count(*) FROM deletions GROUP BY status ORDER BY status",
        )
        .fetch_all(&self.pool)
        .await?;
        let oldest: Option<f64> = sqlx::query_scalar(
            "SELECT extract(epoch FROM store_now() - min(delete_after))::float8 FROM deletions
             WHERE status = 'pending_delete' AND delete_after <= store_now()",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((counts, oldest.unwrap_or(0.0)))
    }

    async fn finished_per_hour(&self, since: DateTime<Utc>) -> Result<Vec<HourCount>, StoreError> {
        let rows: Vec<(DateTime<Utc>, i64, i64)> = sqlx::query_as(
            "SELECT date_trunc('hour', finished_at, 'UTC') AS hour,
                    count(*) FILTER (WHERE status = 'deleted'),
                    count(*) FILTER (WHERE status = 'failed')
             FROM deletions
             WHERE finished_at >= $1 AND status IN ('deleted', 'failed')
             GROUP BY 1 ORDER BY 1",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(hour, deleted, failed)| HourCount { hour, deleted, failed })
            .collect())
    }
}
