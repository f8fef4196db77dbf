//! The deletions on a SQLite file. Writes run one at a time on the writer
//! connection (`BEGIN IMMEDIATE`), so a claim's read and update see no
//! other claim in between: no deletion is leased twice.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use regsweep_common::clock::Clock;
use regsweep_common::db::micros::{of as micros, span};
use regsweep_common::db::{self, SqlitePools};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, QueryBuilder, Sqlite, Transaction};
use uuid::Uuid;

use super::{
    Answer, COLUMNS, DeletionFilter, DeletionRecord, DeletionStore, Finish, HourCount,
    RequestRecord, SentRequest, StoreError, Submission, outcomes, status_name,
};

/// The stored form of a deletion.
type DeletionRow = super::DeletionRow<i64, Json<Vec<String>>>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The answer per id, after `changed` of them changed status.
async fn statuses(
    tx: &mut Transaction<'static, Sqlite>,
    ids: &[i64],
    changed: &[i64],
) -> Result<Vec<(i64, bool, String)>, StoreError> {
    let statuses: Vec<(i64, String)> = sqlx::query_as(
        "SELECT id, status FROM deletions WHERE id IN (SELECT value FROM json_each(?))",
    )
    .bind(Json(ids))
    .fetch_all(&mut **tx)
    .await?;
    Ok(outcomes(ids, changed, &statuses))
}

/// A request as SQLite stores it (times in microseconds).
#[derive(sqlx::FromRow)]
struct RequestRow {
    id: i64,
    deletion_id: i64,
    registry: String,
    method: String,
    path: String,
    status: Option<i32>,
    sent_at: i64,
    answered_at: Option<i64>,
}

impl From<RequestRow> for RequestRecord {
    fn from(r: RequestRow) -> Self {
        use regsweep_common::db::StoredTime;
        Self {
            id: r.id,
            deletion_id: r.deletion_id,
            registry: r.registry,
            method: r.method,
            path: r.path,
            status: r.status,
            sent_at: r.sent_at.into_time(),
            answered_at: r.answered_at.map(StoredTime::into_time),
        }
    }
}

#[derive(Clone, Debug)]
pub struct SqliteStore {
    pools: SqlitePools,
    clock: Clock,
}

impl SqliteStore {
    /// Opens (creating the file if missing) and migrates `sqlite://PATH`.
    pub async fn connect(url: &str, readers: u32, clock: Clock) -> Result<Self, StoreError> {
        Ok(Self { pools: db::open_sqlite(url, readers, &MIGRATOR).await?, clock })
    }

    /// The store's time, in stored form.
    fn now(&self) -> i64 {
        micros(self.clock.now())
    }

    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pools.writer.begin_with(AssertSqlSafe(db::BEGIN_WRITE)).await?)
    }
}

#[async_trait]
impl DeletionStore for SqliteStore {
    async fn submit(&self, plan: &Submission<'_>) -> Result<Vec<DeletionRecord>, StoreError> {
        let Submission {
            job_id, attempt, registry, repository, images, delay, trace_context, ..
        } = *plan;
        let now = self.now();
        let mut tx = self.begin().await?;
        let mut stored = Vec::with_capacity(images.len());
        let select = format!(
            "SELECT {COLUMNS} FROM deletions WHERE job_id = ? AND attempt = ? AND digest = ?"
        );
        for image in images {
            sqlx::query(
                "INSERT INTO deletions (registry, repository, digest, tags, delete_digest, job_id,
                                        attempt, submitted_at, delete_after, trace_context, linked,
                                        reasons, status, hold_reason, policy, policy_id,
                                        policy_revision)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8 + ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                         ?17)
                 ON CONFLICT (job_id, attempt, digest) DO NOTHING",
            )
            .bind(registry)
            .bind(repository)
            .bind(&image.digest)
            .bind(Json(&image.tags))
            .bind(image.delete_digest)
            .bind(job_id)
            .bind(i64::from(attempt))
            .bind(now)
            .bind(span(delay))
            .bind(trace_context)
            .bind(image.linked.to_column())
            .bind(image.reasons_column())
            .bind(plan.initial_status())
            .bind(plan.hold)
            .bind(&plan.policy.name)
            .bind(plan.policy.id)
            .bind(&plan.policy.revision)
            .execute(&mut *tx)
            .await?;
            let row = sqlx::query_as::<_, DeletionRow>(AssertSqlSafe(select.as_str()))
                .bind(job_id)
                .bind(i64::from(attempt))
                .bind(&image.digest)
                .fetch_one(&mut *tx)
                .await?;
            stored.push(DeletionRecord::try_from(row)?);
        }
        tx.commit().await?;
        stored.sort_by_key(|d| d.id);
        stored.dedup_by_key(|d| d.id);
        Ok(stored)
    }

    async fn list(
        &self,
        filter: &DeletionFilter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DeletionRecord>, StoreError> {
        let mut q =
            QueryBuilder::<Sqlite>::new(format!("SELECT {COLUMNS} FROM deletions WHERE id < "));
        q.push_bind(before.unwrap_or(i64::MAX));
        if let Some(status) = filter.status {
            q.push(" AND status = ").push_bind(status_name(status));
        }
        if let Some(registry) = &filter.registry {
            q.push(" AND registry = ").push_bind(registry.clone());
        }
        if let Some(repository) = &filter.repository {
            q.push(" AND repository = ").push_bind(repository.clone());
        }
        if let Some(job_id) = filter.job_id {
            q.push(" AND job_id = ").push_bind(job_id);
        }
        if let Some(tag) = &filter.tag {
            q.push(" AND EXISTS (SELECT 1 FROM json_each(tags) WHERE value = ")
                .push_bind(tag.clone())
                .push(")");
        }
        q.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(limit));
        let rows = q.build_query_as::<DeletionRow>().fetch_all(&self.pools.reader).await?;
        super::records(rows)
    }

    async fn restore(&self, ids: &[i64]) -> Result<Vec<(i64, bool, String)>, StoreError> {
        let mut tx = self.begin().await?;
        let restored: Vec<i64> = sqlx::query_scalar(
            "UPDATE deletions SET status = 'restored', finished_at = ?2
             WHERE id IN (SELECT value FROM json_each(?1))
               AND status IN ('pending_delete', 'awaiting_approval')
             RETURNING id",
        )
        .bind(Json(ids))
        .bind(self.now())
        .fetch_all(&mut *tx)
        .await?;
        let answer = statuses(&mut tx, ids, &restored).await?;
        tx.commit().await?;
        Ok(answer)
    }

    async fn approve(&self, ids: &[i64]) -> Result<Vec<(i64, bool, String)>, StoreError> {
        let mut tx = self.begin().await?;
        let approved: Vec<i64> = sqlx::query_scalar(
            "UPDATE deletions SET status = 'pending_delete'
             WHERE id IN (SELECT value FROM json_each(?1)) AND status = 'awaiting_approval'
             RETURNING id",
        )
        .bind(Json(ids))
        .fetch_all(&mut *tx)
        .await?;
        let answer = statuses(&mut tx, ids, &approved).await?;
        tx.commit().await?;
        Ok(answer)
    }

    async fn take_back_expired(&self) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let expired = sqlx::query(
            "UPDATE deletions SET status = 'pending_delete', lease_holder = NULL, lease_until = NULL
             WHERE status = 'deleting' AND lease_until < ?",
        )
        .bind(self.now())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(expired)
    }

    async fn claim_due(
        &self,
        holder: Uuid,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<DeletionRecord>, StoreError> {
        let now = self.now();
        let mut tx = self.begin().await?;
        let sql = format!(
            "UPDATE deletions SET status = 'deleting', lease_holder = ?1,
                 lease_until = ?2 + ?3, attempts = attempts + 1
             WHERE id IN (
                 SELECT id FROM deletions
                 WHERE status = 'pending_delete' AND delete_after <= ?2
                 ORDER BY delete_after, id
                 LIMIT ?4)
             RETURNING {COLUMNS}"
        );
        let rows = sqlx::query_as::<_, DeletionRow>(AssertSqlSafe(sql))
            .bind(holder)
            .bind(now)
            .bind(span(lease))
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut claimed = super::records(rows)?;
        claimed.sort_by_key(|d| (d.delete_after, d.id));
        Ok(claimed)
    }

    async fn renew(
        &self,
        holder: Uuid,
        ids: &[i64],
        lease: Duration,
    ) -> Result<Vec<i64>, StoreError> {
        let mut tx = self.begin().await?;
        let held = sqlx::query_scalar(
            "UPDATE deletions SET lease_until = ?3 + ?4
             WHERE id IN (SELECT value FROM json_each(?2)) AND lease_holder = ?1
               AND status = 'deleting'
             RETURNING id",
        )
        .bind(holder)
        .bind(Json(ids))
        .bind(self.now())
        .bind(span(lease))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(held)
    }

    async fn finish(&self, holder: Uuid, id: i64, finish: &Finish) -> Result<bool, StoreError> {
        let now = self.now();
        let fence = "WHERE id = ?1 AND lease_holder = ?2 AND status = 'deleting'";
        let mut tx = self.begin().await?;
        let done = match finish {
            Finish::Deleted { deleted_tags, skipped_tags, digest_deleted } => {
                let sql = format!(
                    "UPDATE deletions SET status = 'deleted', finished_at = ?3, lease_holder = NULL,
                         lease_until = NULL, error = NULL, deleted_tags = ?4, skipped_tags = ?5,
                         digest_deleted = ?6 {fence}"
                );
                sqlx::query(AssertSqlSafe(sql))
                    .bind(id)
                    .bind(holder)
                    .bind(now)
                    .bind(Json(deleted_tags))
                    .bind(Json(skipped_tags))
                    .bind(digest_deleted)
                    .execute(&mut *tx)
                    .await?
            }
            Finish::Retry { error, after, max_attempts } => {
                let sql = format!(
                    "UPDATE deletions SET lease_holder = NULL, lease_until = NULL, error = ?4,
                         status = CASE WHEN attempts >= ?6 THEN 'failed' ELSE 'pending_delete' END,
                         finished_at = CASE WHEN attempts >= ?6 THEN ?3 END,
                         delete_after = ?3 + ?5 {fence}"
                );
                sqlx::query(AssertSqlSafe(sql))
                    .bind(id)
                    .bind(holder)
                    .bind(now)
                    .bind(error)
                    .bind(span(*after))
                    .bind(i32::try_from(*max_attempts).unwrap_or(i32::MAX))
                    .execute(&mut *tx)
                    .await?
            }
            Finish::Failed { error: why } | Finish::Cancelled { reason: why } => {
                let sql = format!(
                    "UPDATE deletions SET status = ?5, finished_at = ?3, lease_holder = NULL,
                         lease_until = NULL, error = ?4 {fence}"
                );
                sqlx::query(AssertSqlSafe(sql))
                    .bind(id)
                    .bind(holder)
                    .bind(now)
                    .bind(why)
                    .bind(finish.outcome())
                    .execute(&mut *tx)
                    .await?
            }
            Finish::Postpone { error, after } => {
                let sql = format!(
                    "UPDATE deletions SET status = 'pending_delete', lease_holder = NULL,
                         lease_until = NULL, error = ?4, attempts = attempts - 1,
                         delete_after = ?3 + ?5 {fence}"
                );
                sqlx::query(AssertSqlSafe(sql))
                    .bind(id)
                    .bind(holder)
                    .bind(now)
                    .bind(error)
                    .bind(span(*after))
                    .execute(&mut *tx)
                    .await?
            }
        };
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn request_sent(&self, r: &SentRequest<'_>) -> Result<i64, StoreError> {
        let mut tx = self.begin().await?;
        let id = sqlx::query_scalar(
            "INSERT INTO registry_requests (deletion_id, registry, method, path, sent_at)
             VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
        )
        .bind(r.deletion_id)
        .bind(r.registry)
        .bind(r.method)
        .bind(r.path)
        .bind(self.now())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn requests_answered(&self, answers: &[Answer]) -> Result<(), StoreError> {
        // One writer: a transaction of small updates is the batch.
        let mut tx = self.begin().await?;
        for a in answers {
            sqlx::query("UPDATE registry_requests SET status = ?2, answered_at = ?3 WHERE id = ?1")
                .bind(a.id)
                .bind(i32::from(a.status))
                .bind(a.at.timestamp_micros())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn requests(&self, deletion_ids: &[i64]) -> Result<Vec<RequestRecord>, StoreError> {
        let rows: Vec<RequestRow> = sqlx::query_as(
            "SELECT id, deletion_id, registry, method, path, status, sent_at, answered_at
             FROM registry_requests WHERE deletion_id IN (SELECT value FROM json_each(?))
             ORDER BY id",
        )
        .bind(Json(deletion_ids))
        .fetch_all(&self.pools.reader)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn prune_requests(
        &self,
        before: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let pruned = sqlx::query("DELETE FROM registry_requests WHERE sent_at < ?")
            .bind(before.timestamp_micros())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(pruned)
    }

    async fn status(&self) -> Result<(Vec<(String, i64)>, f64), StoreError> {
        let counts: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, count(*) FROM deletions GROUP BY status ORDER BY status",
        )
        .fetch_all(&self.pools.reader)
        .await?;
        let now = self.now();
        let oldest: Option<i64> = sqlx::query_scalar(
            "SELECT min(delete_after) FROM deletions
             WHERE status = 'pending_delete' AND delete_after <= ?",
        )
        .bind(now)
        .fetch_one(&self.pools.reader)
        .await?;
        Ok((counts, oldest.map(|t| (now - t) as f64 / 1e6).unwrap_or(0.0)))
    }

    async fn finished_per_hour(&self, since: DateTime<Utc>) -> Result<Vec<HourCount>, StoreError> {
        // Times are integer microseconds: an hour's start is the time
        // rounded down to a multiple of 3,600,000,000.
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT finished_at / 3600000000 * 3600000000 AS hour,
                    sum(status = 'deleted'), sum(status = 'failed')
             FROM deletions
             WHERE finished_at >= ? AND status IN ('deleted', 'failed')
             GROUP BY 1 ORDER BY 1",
        )
        .bind(since.timestamp_micros())
        .fetch_all(&self.pools.reader)
        .await?;
        rows.into_iter()
            .map(|(hour, deleted, failed)| {
                let hour = DateTime::from_timestamp_micros(hour).ok_or_else(|| {
                    StoreError::Corrupt(format!("finished_at {hour} out of range"))
                })?;
                Ok(HourCount { hour, deleted, failed })
            })
            .collect()
    }

    async fn close(&self) {
        self.pools.close().await;
    }
}
