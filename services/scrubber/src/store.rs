//! The scrubber's storage: deletions, their leases and outcomes, in the
//! `scrubber` schema of PostgreSQL.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use regsweep_proto::timestamp_from_chrono;
use regsweep_proto::v1::{self, DeletionStatus};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use uuid::Uuid;

/// The schema the scrubber owns.
pub const SCHEMA: &str = "scrubber";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("cannot migrate schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_) => Self::Unavailable(e),
            other => Self::Database(other),
        }
    }
}

/// One image of a submitted plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDeletion {
    pub digest: String,
    pub tags: Vec<String>,
    pub delete_digest: bool,
}

/// A deletion row.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct DeletionRecord {
    pub id: i64,
    pub registry: String,
    pub repository: String,
    pub digest: String,
    pub tags: Vec<String>,
    pub delete_digest: bool,
    pub job_id: i64,
    pub attempt: i32,
    pub status: String,
    pub submitted_at: DateTime<Utc>,
    pub delete_after: DateTime<Utc>,
    pub attempts: i32,
    pub error: Option<String>,
    pub deleted_tags: Vec<String>,
    pub skipped_tags: Vec<String>,
    pub digest_deleted: bool,
    pub finished_at: Option<DateTime<Utc>>,
}

pub fn status_name(status: DeletionStatus) -> &'static str {
    match status {
        DeletionStatus::Unspecified | DeletionStatus::PendingDelete => "pending_delete",
        DeletionStatus::Deleting => "deleting",
        DeletionStatus::Deleted => "deleted",
        DeletionStatus::Restored => "restored",
        DeletionStatus::Failed => "failed",
    }
}

pub fn parse_status(name: &str) -> DeletionStatus {
    match name {
        "pending_delete" => DeletionStatus::PendingDelete,
        "deleting" => DeletionStatus::Deleting,
        "deleted" => DeletionStatus::Deleted,
        "restored" => DeletionStatus::Restored,
        "failed" => DeletionStatus::Failed,
        _ => DeletionStatus::Unspecified,
    }
}

impl DeletionRecord {
    pub fn to_proto(&self) -> v1::Deletion {
        v1::Deletion {
            id: self.id,
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            image: Some(v1::ImageDeletion {
                digest: self.digest.clone(),
                tags: self.tags.clone(),
                delete_digest: self.delete_digest,
            }),
            job_id: self.job_id,
            attempt: u32::try_from(self.attempt).unwrap_or_default(),
            status: parse_status(&self.status).into(),
            submitted_at: Some(timestamp_from_chrono(self.submitted_at)),
            delete_after: Some(timestamp_from_chrono(self.delete_after)),
            finished_at: self.finished_at.map(timestamp_from_chrono),
            attempts: u32::try_from(self.attempts).unwrap_or_default(),
            error: self.error.clone().unwrap_or_default(),
            deleted_tags: self.deleted_tags.clone(),
            skipped_tags: self.skipped_tags.clone(),
            digest_deleted: self.digest_deleted,
        }
    }
}

const COLUMNS: &str = "id, registry, repository, digest, tags, delete_digest, job_id, attempt, status, \
     submitted_at, delete_after, attempts, error, deleted_tags, skipped_tags, digest_deleted, finished_at";

/// Filters of a listing.
#[derive(Clone, Debug, Default)]
pub struct DeletionFilter {
    pub status: Option<DeletionStatus>,
    pub registry: Option<String>,
    pub repository: Option<String>,
    pub job_id: Option<i64>,
}

/// How a scrub of one deletion ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finish {
    Deleted {
        deleted_tags: Vec<String>,
        skipped_tags: Vec<String>,
        digest_deleted: bool,
    },
    /// Try again after `after`, unless the attempts are spent.
    Retry {
        error: String,
        after: Duration,
        max_attempts: u32,
    },
    Failed {
        error: String,
    },
}

#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(StoreError::Database)?.options([
            ("search_path", SCHEMA),
            ("idle_in_transaction_session_timeout", "10s"),
            ("application_name", "regsweep-scrubber"),
        ]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('regsweep.scrubber.schema'))")
            .execute(&mut *tx)
            .await?;
        sqlx::query("CREATE SCHEMA IF NOT EXISTS scrubber").execute(&mut *tx).await?;
        tx.commit().await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Stores a plan once per (job, attempt, digest); returns the stored rows.
    pub async fn submit(
        &self,
        job_id: i64,
        attempt: u32,
        registry: &str,
        repository: &str,
        images: &[NewDeletion],
        delay: Duration,
    ) -> Result<Vec<DeletionRecord>, StoreError> {
        let digests: Vec<&str> = images.iter().map(|i| i.digest.as_str()).collect();
        // Arrays of arrays must be rectangular: carry tags as JSON.
        let tags: Vec<serde_json::Value> =
            images.iter().map(|i| serde_json::json!(i.tags)).collect();
        let whole: Vec<bool> = images.iter().map(|i| i.delete_digest).collect();
        sqlx::query(
            "WITH input AS (
                 SELECT * FROM unnest($5::text[], $6::jsonb[], $7::bool[]) AS i(digest, tags, delete_digest)
             )
             INSERT INTO deletions (registry, repository, digest, tags, delete_digest, job_id, attempt, delete_after)
             SELECT $3, $4, i.digest, ARRAY(SELECT jsonb_array_elements_text(i.tags)), i.delete_digest,
                    $1, $2, now() + make_interval(secs => $8)
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
            .execute(&self.pool)
            .await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM deletions WHERE job_id = $1 AND attempt = $2 AND digest = ANY($3) ORDER BY id"
        );
        Ok(sqlx::query_as::<_, DeletionRecord>(sqlx::AssertSqlSafe(sql))
            .bind(job_id)
            .bind(i64::from(attempt))
            .bind(&digests)
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn list(
        &self,
        filter: &DeletionFilter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DeletionRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM deletions
             WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR registry = $2)
               AND ($3::text IS NULL OR repository = $3) AND ($4::bigint IS NULL OR job_id = $4)
               AND id < $5
             ORDER BY id DESC LIMIT $6"
        );
        Ok(sqlx::query_as::<_, DeletionRecord>(sqlx::AssertSqlSafe(sql))
            .bind(filter.status.map(status_name))
            .bind(&filter.registry)
            .bind(&filter.repository)
            .bind(filter.job_id)
            .bind(before.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?)
    }

    /// Restores the pending ones of `ids`; returns `(id, restored, reason)`
    /// in request order.
    pub async fn restore(&self, ids: &[i64]) -> Result<Vec<(i64, bool, String)>, StoreError> {
        let restored: Vec<i64> = sqlx::query_scalar(
            "UPDATE deletions SET status = 'restored', finished_at = now()
             WHERE id = ANY($1) AND status = 'pending_delete' RETURNING id",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        let others: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, status FROM deletions WHERE id = ANY($1)")
                .bind(ids)
                .fetch_all(&self.pool)
                .await?;
        Ok(ids
            .iter()
            .map(|id| {
                if restored.contains(id) {
                    return (*id, true, String::new());
                }
                let reason = match others.iter().find(|(o, _)| o == id).map(|(_, s)| s.as_str()) {
                    None => "no such deletion".to_string(),
                    Some("deleting") => "already being deleted".to_string(),
                    Some("deleted") => "already deleted".to_string(),
                    Some("restored") => "already restored".to_string(),
                    Some("failed") => "deletion failed; nothing to restore".to_string(),
                    Some(other) => format!("is {other}"),
                };
                (*id, false, reason)
            })
            .collect())
    }

    /// Takes back deletions whose scrubber's lease expired, then claims up
    /// to `limit` due ones for `holder` until `now + lease`.
    pub async fn claim(
        &self,
        holder: Uuid,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<DeletionRecord>, StoreError> {
        self.take_back_expired().await?;
        self.claim_due(holder, lease, limit).await
    }

    /// Makes deletions whose lease expired (their scrubber died) claimable.
    pub async fn take_back_expired(&self) -> Result<u64, StoreError> {
        let expired = sqlx::query(
            "UPDATE deletions SET status = 'pending_delete', lease_holder = NULL, lease_until = NULL
             WHERE status = 'deleting' AND lease_until < now()",
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        if expired > 0 {
            tracing::warn!(deletions = expired, "took back deletions of an expired lease");
        }
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
                 lease_until = now() + make_interval(secs => $2), attempts = attempts + 1
             WHERE id IN (
                 SELECT id FROM deletions
                 WHERE status = 'pending_delete' AND delete_after <= now()
                 ORDER BY delete_after, id
                 LIMIT $3
                 FOR UPDATE SKIP LOCKED)
             RETURNING {COLUMNS}"
        );
        Ok(sqlx::query_as::<_, DeletionRecord>(sqlx::AssertSqlSafe(sql))
            .bind(holder)
            .bind(lease.as_secs_f64())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?)
    }

    /// Extends `holder`'s leases on `ids`; returns the ids still held.
    pub async fn renew(
        &self,
        holder: Uuid,
        ids: &[i64],
        lease: Duration,
    ) -> Result<Vec<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "UPDATE deletions SET lease_until = now() + make_interval(secs => $3)
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
    pub async fn finish(&self, holder: Uuid, id: i64, finish: &Finish) -> Result<bool, StoreError> {
        let fence = "WHERE id = $1 AND lease_holder = $2 AND status = 'deleting'";
        let done = match finish {
            Finish::Deleted { deleted_tags, skipped_tags, digest_deleted } => {
                let sql = format!(
                    "UPDATE deletions SET status = 'deleted', finished_at = now(), lease_holder = NULL,
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
                         finished_at = CASE WHEN attempts >= $5 THEN now() END,
                         delete_after = now() + make_interval(secs => $4) {fence}"
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
            Finish::Failed { error } => {
                let sql = format!(
                    "UPDATE deletions SET status = 'failed', finished_at = now(), lease_holder = NULL,
                         lease_until = NULL, error = $3 {fence}"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .bind(holder)
                    .bind(error)
                    .execute(&self.pool)
                    .await?
            }
        };
        Ok(done.rows_affected() == 1)
    }

    /// Deletions per status, and the age of the oldest due pending one.
    pub async fn status(&self) -> Result<(Vec<(String, i64)>, f64), StoreError> {
        let counts: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, count(*) FROM deletions GROUP BY status ORDER BY status",
        )
        .fetch_all(&self.pool)
        .await?;
        let oldest: Option<f64> = sqlx::query_scalar(
            "SELECT extract(epoch FROM now() - min(delete_after))::float8 FROM deletions
             WHERE status = 'pending_delete' AND delete_after <= now()",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((counts, oldest.unwrap_or(0.0)))
    }
}
