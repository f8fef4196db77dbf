//! Admin operations on jobs: create, read, list, cancel, delete, logs.

use sqlx::types::Json;

use super::rows::to_i32;
use super::{SqliteStore, time};
use crate::store::job_sql::{LogChunk, page_logs, sqlite as sql};
use crate::store::rows::{cancel_payload, parse_cancel_payload};
use crate::store::{
    CancelOutcome, CreateOutcome, DeleteOutcome, JobFilter, JobRecord, LogCursor, LogLine, NewJob,
    StoreError, StoreEvent,
};

pub async fn create(store: &SqliteStore, job: NewJob) -> Result<CreateOutcome, StoreError> {
    let mut tx = store.begin().await?;
    let outcome = sql::create(&mut tx, &job, Some(store.now_micros())).await?;
    tx.commit().await?;
    if let CreateOutcome::Created(record) = &outcome {
        store.announce_kinds([record.kind.clone()]);
    }
    Ok(outcome)
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
