//! Admin operations on jobs: create, read, list, cancel, delete, logs.

use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;
use sqlx::postgres::PgPool;
use sqlx::types::Json;

use crate::store::job_sql::{LogChunk, page_logs, postgres as sql};
use crate::store::rows::{self, JOB_COLUMNS, to_i32};
use crate::store::sets;
use crate::store::{
    CancelOutcome, CreateOutcome, DeleteOutcome, JobFilter, JobRecord, LogCursor, LogLine, NewJob,
    StoreError,
};

type JobRow = rows::JobRow<chrono::DateTime<chrono::Utc>>;

/// A stored chunk: attempt, sequence, line times, line texts.
type LogChunkRow = (i32, i32, Vec<DateTime<Utc>>, Vec<String>);

pub async fn create(pool: &PgPool, job: NewJob) -> Result<CreateOutcome, StoreError> {
    sql::create(&mut *pool.acquire().await?, &job, None).await
}

pub async fn get(pool: &PgPool, id: i64) -> Result<Option<JobRecord>, StoreError> {
    sql::get(pool, id).await
}

pub async fn list(
    pool: &PgPool,
    filter: &JobFilter,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<JobRecord>, StoreError> {
    sql::list(pool, filter, before, limit).await
}

pub async fn cancel(pool: &PgPool, id: i64, reason: &str) -> Result<CancelOutcome, StoreError> {
    let mut tx = pool.begin().await?;
    let outcome = sql::cancel(&mut tx, id, reason, None).await?;
    if let CancelOutcome::Requested(job) = &outcome
        && let Some(worker) = job.worker_id
    {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(super::CANCEL_CHANNEL)
            .bind(rows::cancel_payload(worker, job.id, job.attempt, reason))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(outcome)
}

pub async fn delete(pool: &PgPool, id: i64) -> Result<DeleteOutcome, StoreError> {
    let mut tx = pool.begin().await?;
    let (outcome, _) = sql::delete(&mut tx, id, None).await?;
    tx.commit().await?;
    Ok(outcome)
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
    let chunks = chunks
        .into_iter()
        .map(|(attempt, seq, times, texts)| LogChunk {
            attempt,
            seq,
            lines: times.into_iter().zip(texts).collect(),
        })
        .collect();
    page_logs(chunks, start, limit).map(Some)
}

/// The statuses a `unique_key` is held in (non-terminal).
const HOLDING: &str = sets::active!();

/// Creates a batch in one transaction: parents checked and locked against
/// deletion first (a foreign-key failure would abort every item), then one
/// multi-row insert under ids drawn up front so each row is matched to its
/// item, then the holders of the unique keys that conflicted. A holder
/// that finished in between frees its key; such items go round again.
pub async fn create_many(
    pool: &PgPool,
    jobs: Vec<NewJob>,
) -> Result<Vec<CreateOutcome>, StoreError> {
    let mut tx = pool.begin().await?;
    let parents: Vec<i64> = jobs.iter().filter_map(|j| j.parent_id).collect();
    let found: std::collections::HashSet<i64> =
        sqlx::query_scalar("SELECT id FROM jobs WHERE id = ANY($1) FOR KEY SHARE")
            .bind(&parents)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
    let mut outcomes: Vec<Option<CreateOutcome>> = Vec::with_capacity(jobs.len());
    // Answered as one `create` after another would be: a key held (before
    // or earlier in the batch) makes a duplicate whatever the parent, since
    // the insert skips the row before its foreign key is checked.
    let mut repeats: Vec<(usize, usize)> = Vec::new();
    let mut first_with_key: std::collections::HashMap<&str, usize> = Default::default();
    let mut orphans_with_key: Vec<usize> = Vec::new();
    let mut pending: Vec<usize> = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        outcomes.push(None);
        let key = job.unique_key.as_deref();
        if let Some(&first) = key.and_then(|k| first_with_key.get(k)) {
            repeats.push((i, first));
        } else if job.parent_id.is_some_and(|p| !found.contains(&p)) {
            match key {
                Some(_) => orphans_with_key.push(i),
                None => outcomes[i] = Some(CreateOutcome::ParentNotFound),
            }
        } else {
            if let Some(key) = key {
                first_with_key.insert(key, i);
            }
            pending.push(i);
        }
    }
    // Before anything is inserted: only keys held before the batch count.
    for i in holders(&mut tx, &jobs, orphans_with_key, &mut outcomes).await? {
        outcomes[i] = Some(CreateOutcome::ParentNotFound);
    }
    for _ in 0..3 {
        if pending.is_empty() {
            break;
        }
        let conflicted = insert_rows(&mut tx, &jobs, &pending, &mut outcomes).await?;
        pending = holders(&mut tx, &jobs, conflicted, &mut outcomes).await?;
    }
    if !pending.is_empty() {
        return Err(StoreError::Corrupt("unique key neither insertable nor held".into()));
    }
    tx.commit().await?;
    for (i, first) in repeats {
        // The first of a key was inserted or found held.
        let Some(CreateOutcome::Created(job) | CreateOutcome::Duplicate(job)) = &outcomes[first]
        else {
            return Err(StoreError::Corrupt("a batch key neither created nor held".into()));
        };
        outcomes[i] = Some(CreateOutcome::Duplicate(job.clone()));
    }
    outcomes
        .into_iter()
        .map(|o| o.ok_or_else(|| StoreError::Corrupt("a batch item left unanswered".into())))
        .collect()
}

/// Inserts the `pending` items; returns those whose unique key a
/// non-terminal job holds.
async fn insert_rows(
    tx: &mut sqlx::PgConnection,
    jobs: &[NewJob],
    pending: &[usize],
    outcomes: &mut [Option<CreateOutcome>],
) -> Result<Vec<usize>, StoreError> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT nextval(pg_get_serial_sequence('jobs', 'id')) FROM generate_series(1, $1)",
    )
    .bind(i64::try_from(pending.len()).unwrap_or(i64::MAX))
    .fetch_all(&mut *tx)
    .await?;
    // Rows in key order: two batches taking the same keys lock them in
    // the same order instead of deadlocking.
    let mut pending = pending.to_vec();
    pending.sort_by(|&a, &b| jobs[a].unique_key.cmp(&jobs[b].unique_key));
    let items: Vec<&NewJob> = pending.iter().map(|&i| &jobs[i]).collect();
    let insert = format!(
        "INSERT INTO jobs (id, kind, args, priority, scheduled_at, max_attempts, unique_key,
                           parent_id, trace_context)
         OVERRIDING SYSTEM VALUE
         SELECT id, kind, args, priority, coalesce(scheduled_at, store_now()), max_attempts, unique_key,
                parent_id, trace_context
         FROM unnest($1::bigint[], $2::text[], $3::jsonb[], $4::int[], $5::timestamptz[],
                     $6::int[], $7::text[], $8::bigint[], $9::text[])
              AS n(id, kind, args, priority, scheduled_at, max_attempts, unique_key, parent_id,
                   trace_context)
         ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND status IN {HOLDING}
         DO NOTHING
         RETURNING {JOB_COLUMNS}"
    );
    let rows: Vec<JobRow> = sqlx::query_as(AssertSqlSafe(insert))
        .bind(&ids)
        .bind(items.iter().map(|j| j.kind.as_str()).collect::<Vec<_>>())
        .bind(items.iter().map(|j| Json(&j.args)).collect::<Vec<_>>())
        .bind(items.iter().map(|j| j.priority).collect::<Vec<_>>())
        .bind(items.iter().map(|j| j.scheduled_at).collect::<Vec<_>>())
        .bind(items.iter().map(|j| to_i32(j.max_attempts)).collect::<Vec<_>>())
        .bind(items.iter().map(|j| j.unique_key.as_deref()).collect::<Vec<_>>())
        .bind(items.iter().map(|j| j.parent_id).collect::<Vec<_>>())
        .bind(items.iter().map(|j| j.trace_context.as_deref()).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?;
    let mut by_id: std::collections::HashMap<i64, JobRecord> = std::collections::HashMap::new();
    for row in rows {
        let record = JobRecord::try_from(row)?;
        by_id.insert(record.id, record);
    }
    let mut conflicted = Vec::new();
    for (&i, id) in pending.iter().zip(&ids) {
        match by_id.remove(id) {
            Some(record) => outcomes[i] = Some(CreateOutcome::Created(record)),
            None => conflicted.push(i),
        }
    }
    Ok(conflicted)
}

/// Answers each conflicted item with the job holding its key; returns the
/// items whose key is no longer held.
async fn holders(
    tx: &mut sqlx::PgConnection,
    jobs: &[NewJob],
    conflicted: Vec<usize>,
    outcomes: &mut [Option<CreateOutcome>],
) -> Result<Vec<usize>, StoreError> {
    if conflicted.is_empty() {
        return Ok(conflicted);
    }
    let keys: Vec<&str> =
        conflicted.iter().filter_map(|&i| jobs[i].unique_key.as_deref()).collect();
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE unique_key = ANY($1) AND status IN {HOLDING}"
    );
    let rows: Vec<JobRow> =
        sqlx::query_as(AssertSqlSafe(sql)).bind(&keys).fetch_all(&mut *tx).await?;
    let mut by_key = std::collections::HashMap::new();
    for row in rows {
        let record = JobRecord::try_from(row)?;
        if let Some(key) = record.unique_key.clone() {
            by_key.insert(key, record);
        }
    }
    let mut again = Vec::new();
    for i in conflicted {
        match jobs[i].unique_key.as_deref().and_then(|k| by_key.get(k)) {
            Some(holder) => outcomes[i] = Some(CreateOutcome::Duplicate(holder.clone())),
            None => again.push(i),
        }
    }
    Ok(again)
}
