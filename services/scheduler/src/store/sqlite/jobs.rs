//! Admin operations on jobs: create, read, list, cancel, delete, logs.

use sqlx::types::Json;
use sqlx::{AssertSqlSafe, QueryBuilder, Sqlite, SqliteConnection};

use super::rows::{self, ACTIVE, JOB_COLUMNS, JobRow, to_i32};
use super::{SqliteStore, micros, time};
use crate::store::rows::{cancel_payload, non_negative, parse_cancel_payload};
use crate::store::transitions::{self, CancelMove};
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
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?");
    sqlx::query_as::<_, JobRow>(AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(store.reader())
        .await?
        .map(JobRecord::try_from)
        .transpose()
}

pub async fn get_in(tx: &mut SqliteConnection, id: i64) -> Result<JobRecord, StoreError> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?");
    sqlx::query_as::<_, JobRow>(AssertSqlSafe(sql)).bind(id).fetch_one(tx).await?.try_into()
}

pub async fn list(
    store: &SqliteStore,
    filter: &JobFilter,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<JobRecord>, StoreError> {
    let mut q = QueryBuilder::<Sqlite>::new(format!("SELECT {JOB_COLUMNS} FROM jobs WHERE "));
    if filter.statuses.is_empty() {
        q.push("status <> 'deleted'");
    } else {
        q.push("status IN (");
        let mut names = q.separated(", ");
        for status in &filter.statuses {
            names.push_bind(status.short_name());
        }
        q.push(")");
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
    let rows = q.build_query_as::<JobRow>().fetch_all(store.reader()).await?;
    rows::jobs(rows)
}

pub async fn cancel(
    store: &SqliteStore,
    id: i64,
    reason: &str,
) -> Result<CancelOutcome, StoreError> {
    let now = store.now_micros();
    let mut tx = store.begin().await?;
    let status: Option<String> = sqlx::query_scalar("SELECT status FROM jobs WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(status) = status else {
        return Ok(CancelOutcome::NotFound);
    };
    let requested = match transitions::cancel_move(rows::job_status(&status)?) {
        CancelMove::Finished => return Ok(CancelOutcome::Terminal(get_in(&mut tx, id).await?)),
        CancelMove::Request => true,
        CancelMove::End => false,
    };
    let sql = format!(
        "UPDATE jobs SET {set} WHERE id = $1 RETURNING {JOB_COLUMNS}",
        set = transitions::cancel_set("$4")
    );
    let job: JobRecord = sqlx::query_as::<_, JobRow>(AssertSqlSafe(sql))
        .bind(id)
        .bind(requested)
        .bind(reason)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .try_into()?;
    tx.commit().await?;
    if requested {
        if let Some(worker) = job.worker_id {
            // The same (truncated) reason PostgreSQL's notification carries.
            let payload = cancel_payload(worker, job.id, job.attempt, reason);
            if let Some(event) = parse_cancel_payload(&payload) {
                store.announce(event);
            }
        }
        Ok(CancelOutcome::Requested(job))
    } else {
        if super::queue::ends_cleanup(&job.kind, "cancel") {
            store.announce(StoreEvent::CleanupEnded);
        }
        Ok(CancelOutcome::Cancelled(job))
    }
}

pub async fn delete(store: &SqliteStore, id: i64) -> Result<DeleteOutcome, StoreError> {
    let now = store.now_micros();
    let mut tx = store.begin().await?;
    let found: Option<(String, String)> =
        sqlx::query_as("SELECT kind, status FROM jobs WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((kind, status)) = found else {
        return Ok(DeleteOutcome::NotFound);
    };
    let status = rows::job_status(&status)?;
    if !transitions::deletable(status) {
        return Ok(DeleteOutcome::Active(status));
    }
    sqlx::query("DELETE FROM job_logs WHERE job_id = ?").bind(id).execute(&mut *tx).await?;
    let sql = format!("UPDATE jobs SET {} WHERE id = $1", transitions::delete_set("$2"));
    sqlx::query(AssertSqlSafe(sql)).bind(id).bind(now).execute(&mut *tx).await?;
    tx.commit().await?;
    // As PostgreSQL's trigger, which fires on any move to `deleted`.
    if super::queue::ends_cleanup(&kind, "deleted") {
        store.announce(StoreEvent::CleanupEnded);
    }
    Ok(DeleteOutcome::Deleted)
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

    let mut lines = Vec::new();
    let mut next = start;
    'chunks: for (chunk_attempt, seq, Json(entries)) in chunks {
        let chunk_attempt = non_negative(chunk_attempt, "log attempt")?;
        let seq = non_negative(seq, "log seq")?;
        let skip = if (chunk_attempt, seq) == (start.attempt, start.seq) { start.line } else { 0 };
        for (index, (at, text)) in entries.into_iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            if index < skip {
                continue;
            }
            if lines.len() >= limit as usize {
                break 'chunks;
            }
            lines.push(LogLine { attempt: chunk_attempt, time: time(at), text });
            next = LogCursor { attempt: chunk_attempt, seq, line: index + 1 };
        }
    }
    Ok(Some((lines, next)))
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
