//! Admin operations on jobs: create, read, list, cancel, delete, logs.

use chrono::{DateTime, Utc};
use regsweep_proto::v1::JobStatus;
use sqlx::postgres::PgPool;
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Postgres, QueryBuilder};

use crate::store::rows::{self, JOB_COLUMNS, to_i32};
use crate::store::{
    CancelOutcome, CreateOutcome, DeleteOutcome, JobFilter, JobRecord, LogCursor, LogLine, NewJob,
    StoreError,
};

type JobRow = rows::JobRow<chrono::DateTime<chrono::Utc>>;

/// A stored chunk: attempt, sequence, line times, line texts.
type LogChunkRow = (i32, i32, Vec<DateTime<Utc>>, Vec<String>);

/// PostgreSQL's `foreign_key_violation`.
const FOREIGN_KEY_VIOLATION: &str = "23503";

pub async fn create(pool: &PgPool, job: NewJob) -> Result<CreateOutcome, StoreError> {
    let insert = format!(
        "INSERT INTO jobs (kind, args, priority, scheduled_at, max_attempts, unique_key, parent_id,
                           trace_context)
         VALUES ($1, $2, $3, coalesce($4, now()), $5, $6, $7, $8)
         ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL
             AND status IN ('waiting', 'running', 'cancel_request', 'worker_dead',
                            'worker_shutdown', 'worker_resurrection')
         DO NOTHING
         RETURNING {JOB_COLUMNS}"
    );
    let existing = format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE unique_key = $1
           AND status IN ('waiting', 'running', 'cancel_request', 'worker_dead',
                          'worker_shutdown', 'worker_resurrection')"
    );
    // The holder of the key may finish between the two statements; then
    // the insert succeeds on the next round.
    for _ in 0..3 {
        let inserted = sqlx::query_as::<_, JobRow>(AssertSqlSafe(insert.as_str()))
            .bind(&job.kind)
            .bind(Json(&job.args))
            .bind(job.priority)
            .bind(job.scheduled_at)
            .bind(to_i32(job.max_attempts))
            .bind(&job.unique_key)
            .bind(job.parent_id)
            .bind(&job.trace_context)
            .fetch_optional(pool)
            .await;
        match inserted {
            Ok(Some(row)) => return Ok(CreateOutcome::Created(row.try_into()?)),
            Ok(None) => {}
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(FOREIGN_KEY_VIOLATION) => {
                return Ok(CreateOutcome::ParentNotFound);
            }
            Err(e) => return Err(e.into()),
        }
        let holder = sqlx::query_as::<_, JobRow>(AssertSqlSafe(existing.as_str()))
            .bind(&job.unique_key)
            .fetch_optional(pool)
            .await?;
        if let Some(row) = holder {
            return Ok(CreateOutcome::Duplicate(row.try_into()?));
        }
    }
    Err(StoreError::Corrupt("unique key neither insertable nor held".into()))
}

pub async fn get(pool: &PgPool, id: i64) -> Result<Option<JobRecord>, StoreError> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
    sqlx::query_as::<_, JobRow>(AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .map(JobRecord::try_from)
        .transpose()
}

pub async fn list(
    pool: &PgPool,
    filter: &JobFilter,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<JobRecord>, StoreError> {
    // Built per filter combination so each gets its own plan; a generic
    // `$1 IS NULL OR ...` plan would scan.
    let mut q = QueryBuilder::<Postgres>::new(format!("SELECT {JOB_COLUMNS} FROM jobs WHERE "));
    if filter.statuses.is_empty() {
        q.push("status <> 'deleted'");
    } else {
        let names: Vec<&str> = filter.statuses.iter().map(|s| s.short_name()).collect();
        q.push("status = ANY(").push_bind(names).push(")");
    }
    if let Some(kind) = &filter.kind {
        q.push(" AND kind = ").push_bind(kind.clone());
    }
    if let Some(worker) = filter.worker_id {
        q.push(" AND worker_id = ").push_bind(worker);
    }
    if let Some(before) = before {
        q.push(" AND id < ").push_bind(before);
    }
    q.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(limit));
    let rows = q.build_query_as::<JobRow>().fetch_all(pool).await?;
    rows::jobs(rows)
}

pub async fn cancel(pool: &PgPool, id: i64, reason: &str) -> Result<CancelOutcome, StoreError> {
    let mut tx = pool.begin().await?;
    let current: Option<(String,)> =
        sqlx::query_as("SELECT status FROM jobs WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((status,)) = current else {
        return Ok(CancelOutcome::NotFound);
    };
    let status = rows::job_status(&status)?;
    let requested = matches!(status, JobStatus::Running | JobStatus::CancelRequest);
    if status.is_terminal() {
        let job = get_in(&mut tx, id).await?;
        return Ok(CancelOutcome::Terminal(job));
    }
    let sql = format!(
        "UPDATE jobs SET
             status = CASE WHEN $2 THEN 'cancel_request' ELSE 'cancel' END,
             finished_at = CASE WHEN $2 THEN NULL ELSE now() END,
             last_error = $3,
             updated_at = now()
         WHERE id = $1
         RETURNING {JOB_COLUMNS}"
    );
    let job: JobRecord = sqlx::query_as::<_, JobRow>(AssertSqlSafe(sql))
        .bind(id)
        .bind(requested)
        .bind(reason)
        .fetch_one(&mut *tx)
        .await?
        .try_into()?;
    if requested && let Some(worker) = job.worker_id {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(super::CANCEL_CHANNEL)
            .bind(rows::cancel_payload(worker, job.id, job.attempt, reason))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(if requested { CancelOutcome::Requested(job) } else { CancelOutcome::Cancelled(job) })
}

async fn get_in(tx: &mut sqlx::PgConnection, id: i64) -> Result<JobRecord, StoreError> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
    sqlx::query_as::<_, JobRow>(AssertSqlSafe(sql)).bind(id).fetch_one(tx).await?.try_into()
}

pub async fn delete(pool: &PgPool, id: i64) -> Result<DeleteOutcome, StoreError> {
    let mut tx = pool.begin().await?;
    let current: Option<(String,)> =
        sqlx::query_as("SELECT status FROM jobs WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((status,)) = current else {
        return Ok(DeleteOutcome::NotFound);
    };
    let status = rows::job_status(&status)?;
    if matches!(
        status,
        JobStatus::Running | JobStatus::CancelRequest | JobStatus::WorkerResurrection
    ) {
        return Ok(DeleteOutcome::Active(status));
    }
    sqlx::query("DELETE FROM job_logs WHERE job_id = $1").bind(id).execute(&mut *tx).await?;
    sqlx::query(
        "UPDATE jobs SET status = 'deleted', result = NULL, finished_at = coalesce(finished_at, now()),
                         updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(DeleteOutcome::Deleted)
}

pub async fn logs(
    pool: &PgPool,
    id: i64,
    attempt: Option<u32>,
    cursor: Option<LogCursor>,
    limit: u32,
) -> Result<Option<(Vec<LogLine>, LogCursor)>, StoreError> {
    let exists: Option<(i64,)> =
        sqlx::query_as("SELECT id FROM jobs WHERE id = $1").bind(id).fetch_optional(pool).await?;
    if exists.is_none() {
        return Ok(None);
    }
    let start = cursor.unwrap_or(LogCursor { attempt: 0, seq: 0, line: 0 });
    // Every chunk holds at least one line, so `limit` chunks always suffice,
    // plus the first one, whose lines may all be before the cursor.
    let chunks: Vec<LogChunkRow> = sqlx::query_as(
        "SELECT attempt, seq, times, lines FROM job_logs
         WHERE job_id = $1 AND ($2 = 0 OR attempt = $2) AND (attempt, seq) >= ($3, $4)
         ORDER BY attempt, seq
         LIMIT $5",
    )
    .bind(id)
    .bind(to_i32(attempt.unwrap_or(0)))
    .bind(to_i32(start.attempt))
    .bind(to_i32(start.seq))
    .bind(i64::from(limit) + 1)
    .fetch_all(pool)
    .await?;

    let mut lines = Vec::new();
    // Where the next read starts: after the last line returned.
    let mut next = start;
    'chunks: for (chunk_attempt, seq, times, texts) in chunks {
        let chunk_attempt = rows::non_negative(chunk_attempt, "log attempt")?;
        let seq = rows::non_negative(seq, "log seq")?;
        let skip = if (chunk_attempt, seq) == (start.attempt, start.seq) { start.line } else { 0 };
        for (index, (time, text)) in times.into_iter().zip(texts).enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            if index < skip {
                continue;
            }
            if lines.len() >= limit as usize {
                break 'chunks;
            }
            lines.push(LogLine { attempt: chunk_attempt, time, text });
            next = LogCursor { attempt: chunk_attempt, seq, line: index + 1 };
        }
    }
    Ok(Some((lines, next)))
}
