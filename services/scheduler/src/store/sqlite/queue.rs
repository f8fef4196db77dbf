//! The hot path on SQLite: claims and batched worker writes, each in one
//! write transaction. With one writer at a time, reading the candidates
//! and updating them cannot interleave with another claim.

use std::collections::HashSet;
use std::time::Duration;

use regsweep_proto::v1::JobStatus;
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, SqliteConnection};

use super::rows::{self, CLAIMABLE, JOB_COLUMNS, JobRow, to_i32};
use super::workers::{self, Taken};
use super::{SqliteStore, error_time, now_micros, span_micros};
use crate::store::{
    ClaimSlot, HeartbeatWrite, JobRecord, LogWrite, SessionRef, StaleRun, StoreError, StoreEvent,
    UpdateWrite, WriteBatch, WriteOutcome,
};

pub async fn claim(
    store: &SqliteStore,
    kind: &str,
    slots: &[ClaimSlot],
) -> Result<Vec<JobRecord>, StoreError> {
    if slots.is_empty() {
        return Ok(Vec::new());
    }
    let now = now_micros();
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
    let sql = format!(
        "SELECT id FROM jobs
         WHERE kind = ? AND status IN {CLAIMABLE} AND scheduled_at <= ?
         ORDER BY priority DESC, scheduled_at, id
         LIMIT ?"
    );
    let ids: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(sql))
        .bind(kind)
        .bind(now)
        .bind(i64::try_from(open.len()).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await?;
    let update = format!(
        "UPDATE jobs SET status = 'running', attempt = attempt + 1, worker_id = ?2,
             claimed_at = ?3, started_at = NULL, heartbeat_at = ?3, finished_at = NULL,
             progress = 0, updated_at = ?3
         WHERE id = ?1
         RETURNING {JOB_COLUMNS}"
    );
    let mut claimed = Vec::with_capacity(ids.len());
    for (id, worker) in ids.into_iter().zip(open) {
        let row = sqlx::query_as::<_, JobRow>(AssertSqlSafe(update.as_str()))
            .bind(id)
            .bind(worker)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        claimed.push(row);
    }
    tx.commit().await?;
    rows::jobs(claimed)
}

/// What a batch changed that others must hear of.
#[derive(Default)]
pub struct Changed {
    /// Kinds with jobs that became claimable.
    pub kinds: Vec<String>,
    /// Some job ended (a cleanup slot may be free).
    pub ended: bool,
}

impl Changed {
    pub fn add(&mut self, taken: Taken) {
        self.kinds.extend(taken.claimable);
        self.ended |= taken.ended;
    }

    pub fn announce(self, store: &SqliteStore) {
        store.announce_kinds(self.kinds);
        if self.ended {
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
    let now = now_micros();
    let mut changed = Changed::default();
    let mut tx = store.begin().await?;
    insert_logs(&mut tx, &batch.logs, now).await?;
    for update in &batch.updates {
        apply_update(&mut tx, update, now, &mut outcome, &mut changed).await?;
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
        sqlx::query(
            "INSERT OR IGNORE INTO job_logs (job_id, attempt, seq, created_at, lines)
             SELECT id, attempt, ?3, ?5, ?6 FROM jobs
             WHERE id = ?1 AND attempt = ?2 AND worker_id = ?4
               AND status IN ('running', 'cancel_request')",
        )
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

/// The fenced job state an update is applied to.
#[derive(sqlx::FromRow)]
struct Current {
    kind: String,
    status: String,
    attempt: i32,
    given_back: i32,
    max_attempts: i32,
}

/// The status an update moves its job to (PostgreSQL's `NEW_STATUS`).
fn new_status(job: &Current, update: &UpdateWrite) -> &'static str {
    let retryable = update.status == JobStatus::Error
        && update.retryable
        && job.attempt - job.given_back < job.max_attempts;
    if job.status == "worker_resurrection" {
        "worker_dead"
    } else if update.status == JobStatus::Running {
        if job.status == "cancel_request" { "cancel_request" } else { "running" }
    } else if retryable {
        "waiting"
    } else {
        update.status.short_name()
    }
}

/// Retry backoff: 2^(attempt-1) seconds, at most an hour, jittered ×0.5–1.5.
fn backoff_micros(attempts: i32) -> i64 {
    let exponent = attempts.clamp(1, 13) - 1;
    let base = (2_f64.powi(exponent)).min(3600.0);
    let jitter = 0.5 + rand::random::<f64>();
    (base * jitter * 1e6) as i64
}

async fn apply_update(
    tx: &mut SqliteConnection,
    update: &UpdateWrite,
    now: i64,
    outcome: &mut WriteOutcome,
    changed: &mut Changed,
) -> Result<(), StoreError> {
    let job: Option<Current> = sqlx::query_as(
        "SELECT kind, status, attempt, given_back, max_attempts FROM jobs
         WHERE id = ?1 AND attempt = ?2 AND worker_id = ?3
           AND (status IN ('running', 'cancel_request')
                OR (status = 'worker_resurrection' AND ?4 = 'cancel'))",
    )
    .bind(update.job_id)
    .bind(to_i32(update.attempt))
    .bind(update.worker_id)
    .bind(update.status.short_name())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(job) = job else {
        outcome.stale.push((
            update.worker_id,
            StaleRun {
                job_id: update.job_id,
                attempt: update.attempt,
                reason: "stale attempt".into(),
            },
        ));
        return Ok(());
    };
    let status = new_status(&job, update);
    let is_error = update.status == JobStatus::Error;
    let is_done = update.status == JobStatus::Done;
    let scheduled_at =
        (status == "waiting").then(|| now + backoff_micros(job.attempt - job.given_back));
    sqlx::query(
        "UPDATE jobs SET
             status = ?2,
             started_at = coalesce(started_at, ?3),
             heartbeat_at = ?3,
             progress = CASE WHEN ?4 THEN 1 ELSE ?5 END,
             result = CASE WHEN ?4 THEN ?6 ELSE result END,
             last_error = CASE WHEN ?7 THEN ?8 ELSE last_error END,
             errors = CASE WHEN ?7 THEN json_insert(errors, '$[#]',
                     json_object('attempt', attempt, 'error', ?8, 'at', ?9))
                 ELSE errors END,
             scheduled_at = coalesce(?10, scheduled_at),
             finished_at = CASE WHEN ?2 IN ('done', 'error', 'cancel') THEN ?3 END,
             given_back = given_back + ?11,
             updated_at = ?3
         WHERE id = ?1",
    )
    .bind(update.job_id)
    .bind(status)
    .bind(now)
    .bind(is_done)
    .bind(update.progress)
    .bind(update.result.as_ref().map(Json))
    .bind(is_error)
    .bind(update.error.as_deref())
    .bind(error_time(now))
    .bind(scheduled_at)
    .bind(i32::from(update.status == JobStatus::WorkerShutdown))
    .execute(&mut *tx)
    .await?;
    if matches!(status, "waiting" | "worker_dead" | "worker_shutdown") {
        changed.kinds.push(job.kind);
    }
    changed.ended |= matches!(status, "done" | "error" | "cancel");
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
        let live = sqlx::query(
            "UPDATE workers SET last_heartbeat = ?3, heartbeat_expiration = ?3 + ?4
             WHERE id = ?1 AND session_epoch = ?2 AND status IN ('alive', 'draining')",
        )
        .bind(worker_id)
        .bind(epoch)
        .bind(now)
        .bind(span_micros(ttl))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !live {
            // Its attempts were taken back (or belong to a newer session):
            // tell it to stop them before its stream is ended.
            for run in &heartbeat.running {
                outcome.stale.push((
                    worker_id,
                    StaleRun {
                        job_id: run.job_id,
                        attempt: run.attempt,
                        reason: "worker was declared dead or reconnected".into(),
                    },
                ));
            }
            outcome.superseded.push(heartbeat.session);
            continue;
        }
        let mut reported = HashSet::new();
        for run in &heartbeat.running {
            reported.insert((run.job_id, run.attempt));
            let status: Option<String> = sqlx::query_scalar(
                "UPDATE jobs SET heartbeat_at = ?4, progress = ?5
                 WHERE id = ?1 AND attempt = ?2 AND worker_id = ?3
                   AND status IN ('running', 'cancel_request')
                 RETURNING status",
            )
            .bind(run.job_id)
            .bind(to_i32(run.attempt))
            .bind(worker_id)
            .bind(now)
            .bind(run.progress)
            .fetch_optional(&mut *tx)
            .await?;
            match status.as_deref() {
                None => outcome.stale.push((
                    worker_id,
                    StaleRun {
                        job_id: run.job_id,
                        attempt: run.attempt,
                        reason: "stale attempt".into(),
                    },
                )),
                Some("cancel_request") => outcome.cancel_requested.push((
                    worker_id,
                    StaleRun {
                        job_id: run.job_id,
                        attempt: run.attempt,
                        reason: "cancel requested".into(),
                    },
                )),
                Some(_) => {}
            }
        }
        // Attempts a live worker no longer reports, claimed long enough ago
        // that the assignment must have reached it: lost.
        let held: Vec<(i64, i32)> = sqlx::query_as(
            "SELECT id, attempt FROM jobs
             WHERE worker_id = ?1 AND status IN ('running', 'cancel_request') AND claimed_at < ?2",
        )
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
            let taken =
                workers::lose_attempts(tx, &lost, "worker no longer reports this attempt", now)
                    .await?;
            changed.add(taken);
        }
    }
    Ok(())
}
