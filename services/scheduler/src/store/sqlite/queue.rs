//! The hot path on SQLite: claims and batched worker writes, each in one
//! write transaction. With one writer at a time, reading the candidates
//! and updating them cannot interleave with another claim.

use std::collections::HashSet;
use std::time::Duration;

use regsweep_common::backoff;
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, SqliteConnection};
use uuid::Uuid;

use super::rows::{self, CLAIMABLE, JOB_COLUMNS, JobRow, to_i32};
use super::workers::{self, Taken};
use super::{SqliteStore, error_time, span_micros};
use crate::store::dialect::Dialect;
use crate::store::sets;
use crate::store::transitions;
use crate::store::{
    ClaimSlot, HeartbeatWrite, JobRecord, LogWrite, SessionRef, StoreError, StoreEvent,
    UpdateWrite, WriteBatch, WriteOutcome,
};

pub async fn claim(
    store: &SqliteStore,
    kind: &str,
    slots: &[ClaimSlot],
    token: Uuid,
) -> Result<Vec<JobRecord>, StoreError> {
    if slots.is_empty() {
        return Ok(Vec::new());
    }
    let now = store.now_micros();
    let mut tx = store.begin().await?;
    // Only slots of current sessions get jobs, in the order given.
    let mut current = HashSet::new();
    let mut stale = HashSet::new();
    let mut open = Vec::with_capacity(slots.len());
    for slot in slots {
        let session = slot.session;
        if !current.contains(&session) && !stale.contains(&session) {
            let alive: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM workers WHERE id = ? AND session_epoch = ? AND status = 'alive'",
            )
            .bind(session.worker_id)
            .bind(session.epoch)
            .fetch_optional(&mut *tx)
            .await?;
            if alive.is_some() {
                current.insert(session)
            } else {
                stale.insert(session)
            };
        }
        if current.contains(&session) {
            open.push(session.worker_id);
        }
    }
    if open.is_empty() {
        return Ok(Vec::new());
    }
    // One statement for the batch: the candidates in priority order, the
    // n-th into the n-th open slot.
    let workers: Vec<String> = open.iter().map(|w| w.simple().to_string()).collect();
    let sql = format!(
        "WITH slots AS (SELECT key AS ord, value AS worker FROM json_each(?1)),
         picked AS (
             SELECT id, row_number() OVER (ORDER BY priority DESC, scheduled_at, id) - 1 AS ord
             FROM (SELECT id, priority, scheduled_at FROM jobs
                   WHERE kind = ?2 AND status IN {CLAIMABLE} AND scheduled_at <= ?3
                   ORDER BY priority DESC, scheduled_at, id
                   LIMIT ?4)
         )
         UPDATE jobs SET status = 'running', attempt = attempt + 1,
             worker_id = unhex((SELECT worker FROM slots WHERE slots.ord = picked.ord)),
             claimed_at = ?3, started_at = NULL, heartbeat_at = ?3, finished_at = NULL,
             progress = 0, updated_at = ?3, claim_token = ?5
         FROM picked
         WHERE jobs.id = picked.id
         RETURNING {JOB_COLUMNS}"
    );
    let claimed = sqlx::query_as::<_, JobRow>(AssertSqlSafe(sql))
        .bind(Json(&workers))
        .bind(kind)
        .bind(now)
        .bind(i64::try_from(open.len()).unwrap_or(i64::MAX))
        .bind(token)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    rows::claimed(claimed)
}

/// The jobs claim `token` holds still, running (as PostgreSQL's store).
/// A claim's answer is never lost here (the database is in-process), but
/// the store answers the same question.
pub async fn claimed(
    store: &SqliteStore,
    token: Uuid,
    workers: &[Uuid],
) -> Result<Vec<JobRecord>, StoreError> {
    let workers: Vec<String> = workers.iter().map(|w| w.simple().to_string()).collect();
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs
         WHERE worker_id IN (SELECT unhex(value) FROM json_each(?1))
           AND status = 'running' AND claim_token = ?2
         ORDER BY priority DESC, scheduled_at, id"
    );
    let rows = sqlx::query_as::<_, JobRow>(AssertSqlSafe(sql))
        .bind(Json(&workers))
        .bind(token)
        .fetch_all(store.reader())
        .await?;
    rows::claimed(rows)
}

/// Whether a job of `kind` reaching `status` frees a cleanup slot (when
/// PostgreSQL's `jobs_cleanup_ended` trigger notifies): other jobs ending
/// must not wake the selection.
pub fn ends_cleanup(kind: &str, status: &str) -> bool {
    kind == "tag_cleanup" && matches!(status, "done" | "error" | "cancel" | "deleted")
}

/// What a batch changed that others must hear of.
#[derive(Default)]
pub struct Changed {
    /// Kinds with jobs that became claimable.
    pub kinds: Vec<String>,
    /// A cleanup job ended: its slot is free.
    pub cleanup_ended: bool,
}

impl Changed {
    pub fn add(&mut self, taken: Taken) {
        self.kinds.extend(taken.claimable);
        self.cleanup_ended |= taken.cleanup_ended;
    }

    pub fn announce(self, store: &SqliteStore) {
        store.announce_kinds(self.kinds);
        if self.cleanup_ended {
            store.announce(StoreEvent::CleanupEnded);
        }
    }
}

/// Applies logs, then updates, then heartbeats, then offline sessions, in
/// one transaction (the order PostgreSQL's store keeps).
pub async fn write_batch(
    store: &SqliteStore,
    batch: &WriteBatch,
    ttl: Duration,
) -> Result<WriteOutcome, StoreError> {
    let mut outcome = WriteOutcome::default();
    if batch.is_empty() {
        return Ok(outcome);
    }
    let now = store.now_micros();
    let mut changed = Changed::default();
    let mut tx = store.begin().await?;
    insert_logs(&mut tx, &batch.logs, now).await?;
    if !batch.updates.is_empty() {
        apply_updates(&mut tx, &batch.updates, now, &mut outcome, &mut changed).await?;
    }
    if !batch.heartbeats.is_empty() {
        apply_heartbeats(&mut tx, &batch.heartbeats, ttl, now, &mut outcome, &mut changed).await?;
    }
    for session in &batch.offline {
        changed.add(workers::mark_offline(&mut tx, *session, now).await?);
    }
    tx.commit().await?;
    changed.announce(store);
    Ok(outcome)
}

async fn insert_logs(
    tx: &mut SqliteConnection,
    logs: &[LogWrite],
    now: i64,
) -> Result<(), StoreError> {
    for chunk in logs {
        let lines: Vec<(i64, &str)> =
            chunk.lines.iter().map(|l| (super::micros(l.time), l.text.as_str())).collect();
        sqlx::query(concat!(
            "INSERT OR IGNORE INTO job_logs (job_id, attempt, seq, created_at, lines)
             SELECT id, attempt, ?3, ?5, ?6 FROM jobs
             WHERE id = ?1 AND attempt = ?2 AND worker_id = ?4
               AND status IN ",
            sets::on_worker!()
        ))
        .bind(chunk.job_id)
        .bind(to_i32(chunk.attempt))
        .bind(to_i32(chunk.seq))
        .bind(chunk.worker_id)
        .bind(now)
        .bind(Json(lines))
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// One update as the batch statement reads it from JSON.
#[derive(serde::Serialize)]
struct UpdateRow<'a> {
    id: i64,
    attempt: u32,
    worker: String,
    status: &'a str,
    progress: f32,
    result: Option<&'a serde_json::Value>,
    error: Option<&'a str>,
    retryable: bool,
    /// Backoff jitter (`regsweep_common::backoff::jitter`).
    jitter: f64,
}

/// Applies every update in one statement, each fenced by
/// `(job_id, attempt, worker_id)`; the rest are reported stale.
async fn apply_updates(
    tx: &mut SqliteConnection,
    updates: &[UpdateWrite],
    now: i64,
    outcome: &mut WriteOutcome,
    changed: &mut Changed,
) -> Result<(), StoreError> {
    let rows: Vec<UpdateRow<'_>> = updates
        .iter()
        .map(|u| UpdateRow {
            id: u.job_id,
            attempt: u.attempt,
            worker: u.worker_id.simple().to_string(),
            status: u.status.short_name(),
            progress: u.progress,
            result: u.result.as_ref(),
            error: u.error.as_deref(),
            retryable: u.retryable,
            jitter: backoff::jitter(),
        })
        .collect();
    // A retry waits the step of its attempt (?4, `store::JOB_RETRY`),
    // jittered.
    let retry_at = "?2 + CAST(u.jitter * 1000000 * json_extract(?4, '$[' ||
        (max(1, min(j.attempt - j.given_back, json_array_length(?4))) - 1) || ']') AS INTEGER)";
    let set = transitions::update_set(Dialect::Sqlite, "?2", "?3", retry_at);
    let sql = format!(
        "WITH u AS (
             SELECT value ->> 'id' AS id, value ->> 'attempt' AS attempt,
                    unhex(value ->> 'worker') AS worker_id, value ->> 'status' AS status,
                    value ->> 'progress' AS progress,
                    nullif(value -> 'result', 'null') AS result,
                    value ->> 'error' AS error, value ->> 'retryable' AS retryable,
                    value ->> 'jitter' AS jitter
             FROM json_each(?1)
         )
         UPDATE jobs AS j SET {set}
         FROM u
         WHERE {fence}
         RETURNING id, attempt, kind, status",
        fence = transitions::UPDATE_FENCE,
    );
    let accepted: Vec<(i64, i32, String, String)> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(Json(&rows))
        .bind(now)
        .bind(error_time(now))
        .bind(Json(crate::store::job_retry_steps()))
        .fetch_all(&mut *tx)
        .await?;
    let mut applied = HashSet::new();
    for (id, attempt, kind, status) in accepted {
        applied.insert((id, attempt));
        changed.cleanup_ended |= ends_cleanup(&kind, &status);
        if matches!(status.as_str(), "waiting" | "worker_dead" | "worker_shutdown") {
            changed.kinds.push(kind);
        }
    }
    outcome.stale_unless_applied(updates, &applied);
    Ok(())
}

async fn apply_heartbeats(
    tx: &mut SqliteConnection,
    heartbeats: &[HeartbeatWrite],
    ttl: Duration,
    now: i64,
    outcome: &mut WriteOutcome,
    changed: &mut Changed,
) -> Result<(), StoreError> {
    for heartbeat in heartbeats {
        let SessionRef { worker_id, epoch } = heartbeat.session;
        let live = sqlx::query(concat!(
            "UPDATE workers SET last_heartbeat = ?3, heartbeat_expiration = ?3 + ?4
             WHERE id = ?1 AND session_epoch = ?2 AND status IN ",
            sets::live_worker!()
        ))
        .bind(worker_id)
        .bind(epoch)
        .bind(now)
        .bind(span_micros(ttl))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !live {
            outcome.superseded(heartbeat);
            continue;
        }
        let mut reported = HashSet::new();
        for run in &heartbeat.running {
            reported.insert((run.job_id, run.attempt));
            let cancel_requested: Option<bool> = sqlx::query_scalar(concat!(
                "UPDATE jobs SET heartbeat_at = ?4, progress = ?5
                 WHERE id = ?1 AND attempt = ?2 AND worker_id = ?3
                   AND status IN ",
                sets::on_worker!(),
                "
                 RETURNING status = 'cancel_request'"
            ))
            .bind(run.job_id)
            .bind(to_i32(run.attempt))
            .bind(worker_id)
            .bind(now)
            .bind(run.progress)
            .fetch_optional(&mut *tx)
            .await?;
            outcome.reported(worker_id, (run.job_id, run.attempt), cancel_requested);
        }
        // Attempts a live worker no longer reports, claimed long enough ago
        // that the assignment must have reached it if it ever will: taken
        // back (given back when the worker keeps its ends); and attempts
        // taken from it when it was declared dead that it no longer runs:
        // released.
        let held: Vec<(i64, i32)> = sqlx::query_as(concat!(
            "SELECT id, attempt FROM jobs
             WHERE worker_id = ?1
               AND ((status IN ",
            sets::on_worker!(),
            " AND claimed_at < ?2) OR status = 'worker_resurrection')"
        ))
        .bind(worker_id)
        .bind(now - span_micros(ttl))
        .fetch_all(&mut *tx)
        .await?;
        let lost: Vec<i64> = held
            .into_iter()
            .filter(|(id, attempt)| {
                !reported.contains(&(*id, u32::try_from(*attempt).unwrap_or_default()))
            })
            .map(|(id, _)| id)
            .collect();
        if !lost.is_empty() {
            let reason = "worker no longer reports this attempt";
            let taken = workers::take_omitted(tx, &lost, heartbeat.end_acks, reason, now).await?;
            changed.add(taken);
        }
    }
    Ok(())
}
