//! Admin operations on jobs: create, read, list, cancel, delete, logs.

use sqlx::types::Json;
use sqlx::{AssertSqlSafe, SqliteConnection};

use super::rows::{ACTIVE, JOB_COLUMNS, JobRow, to_i32};
use super::{SqliteStore, micros, time};
use crate::store::job_sql::{LogChunk, page_logs, sqlite as sql};
use crate::store::rows::{cancel_payload, parse_cancel_payload};
use crate::store::{
    CancelOutcome, CreateOutcome, DeleteOutcome, JobFilter, JobRecord, LogCursor, LogLine, NewJob,
    StoreError, StoreEvent,
};

pub async fn create(store: &SqliteStore, job: NewJob) -> Result<CreateOutcome, StoreError> {
    let now = store.now_micros();
    let mut tx = store.begin().await?;
    if let Some(key) = &job.unique_key {
        let sql =
            format!("SELECT {JOB_COLUMNS} FROM jobs WHERE unique_key = ? AND status IN {ACTIVE}");
        let holder = sqlx::query_as::<_, JobRow>(AssertSqlSafe(sql))
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = holder {
            return Ok(CreateOutcome::Duplicate(row.try_into()?));
        }
    }
    if let Some(parent) = job.parent_id {
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM jobs WHERE id = ?")
            .bind(parent)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Ok(CreateOutcome::ParentNotFound);
        }
    }
    let sql = format!(
        "INSERT INTO jobs (kind, args, priority, scheduled_at, max_attempts, unique_key, parent_id,
                           created_at, updated_at, trace_context)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         RETURNING {JOB_COLUMNS}"
    );
    let record: JobRecord = sqlx::query_as::<_, JobRow>(AssertSqlSafe(sql))
        .bind(&job.kind)
        .bind(Json(&job.args))
        .bind(job.priority)
        .bind(job.scheduled_at.map(micros).unwrap_or(now))
        .bind(to_i32(job.max_attempts))
        .bind(&job.unique_key)
        .bind(job.parent_id)
        .bind(now)
        .bind(now)
        .bind(&job.trace_context)
        .fetch_one(&mut *tx)
        .await?
        .try_into()?;
    tx.commit().await?;
    store.announce_kinds([record.kind.clone()]);
    Ok(CreateOutcome::Created(record))
}

/// Creates each job in its own transaction: one writer takes them in turn,
/// so there is nothing to gain from one statement, and an item's failure
/// stops the batch where it is.
pub async fn create_many(
    store: &SqliteStore,
    batch: Vec<NewJob>,
) -> Result<Vec<CreateOutcome>, StoreError> {
    let mut outcomes = Vec::with_capacity(batch.len());
    for job in batch {
        outcomes.push(create(store, job).await?);
    }
    Ok(outcomes)
}

pub async fn get(store: &SqliteStore, id: i64) -> Result<Option<JobRecord>, StoreError> {
    sql::get(store.reader(), id).await
}

pub async fn list(
    store: &SqliteStore,
    filter: &JobFilter,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<JobRecord>, StoreError> {
    sql::list(store.reader(), filter, before, limit).await
}

pub async fn cancel(
    store: &SqliteStore,
    id: i64,
    reason: &str,
) -> Result<CancelOutcome, StoreError> {
    let mut tx = store.begin().await?;
    let outcome = sql::cancel(&mut tx, id, reason, Some(store.now_micros())).await?;
    tx.commit().await?;
    match &outcome {
        CancelOutcome::Requested(job) => {
            if let Some(worker) = job.worker_id {
                // The same (truncated) reason PostgreSQL's notification carries.
                let payload = cancel_payload(worker, job.id, job.attempt, reason);
                if let Some(event) = parse_cancel_payload(&payload) {
                    store.announce(event);
                }
            }
        }
        CancelOutcome::Cancelled(job) if super::queue::ends_cleanup(&job.kind, "cancel") => {
            store.announce(StoreEvent::CleanupEnded);
        }
        _ => {}
    }
    Ok(outcome)
}

pub async fn delete(store: &SqliteStore, id: i64) -> Result<DeleteOutcome, StoreError> {
    let mut tx = store.begin().await?;
    let (outcome, kind) = sql::delete(&mut tx, id, Some(store.now_micros())).await?;
    tx.commit().await?;
    // As PostgreSQL's trigger, which fires on any move to `deleted`.
    if kind.is_some_and(|kind| super::queue::ends_cleanup(&kind, "deleted")) {
        store.announce(StoreEvent::CleanupEnded);
    }
    Ok(outcome)
}

/// A stored chunk: attempt, sequence, `[[time_us, text], ...]`.
type LogChunkRow = (i32, i32, Json<Vec<(i64, String)>>);

pub async fn logs(
    store: &SqliteStore,
    id: i64,
    attempt: Option<u32>,
    cursor: Option<LogCursor>,
    limit: u32,
) -> Result<Option<(Vec<LogLine>, LogCursor)>, StoreError> {
    let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM jobs WHERE id = ?")
        .bind(id)
        .fetch_optional(store.reader())
        .await?;
    if exists.is_none() {
        return Ok(None);
    }
    let start = cursor.unwrap_or(LogCursor { attempt: 0, seq: 0, line: 0 });
    // Every chunk holds at least one line, so `limit` chunks always suffice,
    // plus the first one, whose lines may all be before the cursor.
    let chunks: Vec<LogChunkRow> = sqlx::query_as(
        "SELECT attempt, seq, lines FROM job_logs
         WHERE job_id = ?1 AND (?2 = 0 OR attempt = ?2) AND (attempt, seq) >= (?3, ?4)
         ORDER BY attempt, seq
         LIMIT ?5",
    )
    .bind(id)
    .bind(to_i32(attempt.unwrap_or(0)))
    .bind(to_i32(start.attempt))
    .bind(to_i32(start.seq))
    .bind(i64::from(limit) + 1)
    .fetch_all(store.reader())
    .await?;
    let chunks = chunks
        .into_iter()
        .map(|(attempt, seq, Json(entries))| LogChunk {
            attempt,
            seq,
            lines: entries.into_iter().map(|(at, text)| (time(at), text)).collect(),
        })
        .collect();
    page_logs(chunks, start, limit).map(Some)
}

/// A job that holds a unique key while active (a cron firing, a cleanup).
pub struct KeyedJob<'a> {
    pub kind: &'a str,
    pub args: &'a serde_json::Value,
    pub priority: i32,
    pub max_attempts: i32,
    pub key: &'a str,
    pub trace_context: Option<&'a str>,
}

/// Inserts a job unless an active one holds its key; its id when inserted.
pub async fn insert_keyed_job(
    tx: &mut SqliteConnection,
    job: KeyedJob<'_>,
    now: i64,
) -> Result<Option<i64>, StoreError> {
    let KeyedJob { kind, args, priority, max_attempts, key, trace_context } = job;
    let sql = format!("SELECT id FROM jobs WHERE unique_key = ? AND status IN {ACTIVE}");
    let held: Option<i64> =
        sqlx::query_scalar(AssertSqlSafe(sql)).bind(key).fetch_optional(&mut *tx).await?;
    if held.is_some() {
        return Ok(None);
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO jobs (kind, args, priority, max_attempts, unique_key, scheduled_at,
                           created_at, updated_at, trace_context)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?6, ?7) RETURNING id",
    )
    .bind(kind)
    .bind(Json(args))
    .bind(priority)
    .bind(max_attempts)
    .bind(key)
    .bind(now)
    .bind(trace_context)
    .fetch_one(&mut *tx)
    .await?;
    Ok(Some(id))
}
