//! The hot path: batched claims and batched worker writes.

use std::collections::HashMap;
use std::time::Duration;

use regsweep_common::backoff;
use sqlx::postgres::PgPool;
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, PgConnection};
use uuid::Uuid;

use super::workers::take_omitted;
use crate::store::dialect::{self, Dialect};
use crate::store::rows::{self, JOB_COLUMNS, to_i32};
use crate::store::sets;
use crate::store::transitions;
use crate::store::{
    ClaimSlot, HeartbeatWrite, JobRecord, LogWrite, SessionRef, StoreError, UpdateWrite,
    WriteBatch, WriteOutcome,
};

type JobRow = rows::JobRow<chrono::DateTime<chrono::Utc>>;

/// Claims up to `slots.len()` due jobs in one statement: the candidates are
/// locked with `SKIP LOCKED` (so concurrent claims on other replicas take
/// other rows), numbered in priority order, and matched to the slots of
/// sessions that are still current. Slots are matched by array subscript,
/// not by a join on the number: the planner cannot estimate `unnest` and
/// picks a nested loop that is quadratic in the batch size.
pub async fn claim(
    pool: &PgPool,
    kind: &str,
    slots: &[ClaimSlot],
    token: Uuid,
) -> Result<Vec<JobRecord>, StoreError> {
    if slots.is_empty() {
        return Ok(Vec::new());
    }
    let workers: Vec<Uuid> = slots.iter().map(|s| s.session.worker_id).collect();
    let epochs: Vec<i64> = slots.iter().map(|s| s.session.epoch).collect();
    let sql = format!(
        concat!(
            "WITH claim AS MATERIALIZED (SELECT pg_advisory_xact_lock($5)),
         slots AS (
             SELECT coalesce(array_agg(s.worker_id ORDER BY s.ord), '{{}}') AS workers
             FROM claim, unnest($2::uuid[], $3::bigint[]) WITH ORDINALITY AS s(worker_id, epoch, ord)
             JOIN workers w ON w.id = s.worker_id AND w.session_epoch = s.epoch
                           AND w.status = 'alive'
         ),
         candidates AS (
             SELECT id, priority, scheduled_at FROM jobs
             WHERE kind = $1 AND status IN ",
            sets::claimable!(),
            "
               AND scheduled_at <= store_now()
             ORDER BY priority DESC, scheduled_at, id
             LIMIT (SELECT cardinality(workers) FROM slots)
             FOR UPDATE SKIP LOCKED
         ),
         picked AS (
             SELECT id, row_number() OVER (ORDER BY priority DESC, scheduled_at, id) AS ord
             FROM candidates
         )
         UPDATE jobs j SET
             status = 'running', attempt = j.attempt + 1,
             worker_id = (SELECT workers FROM slots)[picked.ord],
             claimed_at = store_now(), started_at = NULL, heartbeat_at = store_now(), finished_at = NULL,
             progress = 0, updated_at = store_now(), claim_token = $4
         FROM picked
         WHERE j.id = picked.id
         RETURNING {columns}"
        ),
        columns = JOB_COLUMNS.split(", ").map(|c| format!("j.{c}")).collect::<Vec<_>>().join(", ")
    );
    let rows = sqlx::query_as::<_, JobRow>(AssertSqlSafe(sql))
        .bind(kind)
        .bind(&workers)
        .bind(&epochs)
        .bind(token)
        .bind(claim_lock(token))
        .fetch_all(pool)
        .await?;
    rows::claimed(rows)
}

/// The advisory lock a claim holds until it commits or aborts.
fn claim_lock(token: Uuid) -> i64 {
    let (high, _) = token.as_u64_pair();
    i64::from_ne_bytes(high.to_ne_bytes())
}

/// The jobs claim `token` holds still, running. (One whose cancel was
/// asked for since is not handed out: it ends when its worker's
/// heartbeats omit it.) The running-worker index finds them; the token
/// picks this claim's out of the workers' jobs.
///
/// A claim's connection can die while the server still runs the claim,
/// which then commits: the claim holds an advisory lock from its start,
/// and this waits for it, then reads in a new statement (a new snapshot)
/// what the claim left.
pub async fn claimed(
    pool: &PgPool,
    token: Uuid,
    workers: &[Uuid],
) -> Result<Vec<JobRecord>, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock_shared($1)")
        .bind(claim_lock(token))
        .execute(&mut *tx)
        .await?;
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs
         WHERE worker_id = ANY($1) AND status = 'running' AND claim_token = $2
         ORDER BY priority DESC, scheduled_at, id"
    );
    let rows = sqlx::query_as::<_, JobRow>(AssertSqlSafe(sql))
        .bind(workers)
        .bind(token)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    rows::claimed(rows)
}

/// Applies logs, then updates, then heartbeats, then offline sessions, in
/// one transaction: a worker's log lines land before the update that ends
/// its attempt, and its last updates before it is marked offline.
pub async fn write_batch(
    pool: &PgPool,
    batch: &WriteBatch,
    ttl: Duration,
) -> Result<WriteOutcome, StoreError> {
    let mut outcome = WriteOutcome::default();
    if batch.is_empty() {
        return Ok(outcome);
    }
    let mut tx = pool.begin().await?;
    if !batch.logs.is_empty() {
        insert_logs(&mut tx, &batch.logs).await?;
    }
    if !batch.updates.is_empty() {
        apply_updates(&mut tx, &batch.updates, &mut outcome).await?;
    }
    if !batch.heartbeats.is_empty() {
        apply_heartbeats(&mut tx, &batch.heartbeats, ttl, &mut outcome).await?;
    }
    if !batch.offline.is_empty() {
        mark_offline(&mut tx, &batch.offline).await?;
    }
    tx.commit().await?;
    Ok(outcome)
}

async fn insert_logs(tx: &mut PgConnection, logs: &[LogWrite]) -> Result<(), StoreError> {
    let mut chunk_of_line = Vec::new();
    let mut times = Vec::new();
    let mut texts = Vec::new();
    for (index, chunk) in logs.iter().enumerate() {
        let chunk_no = i64::try_from(index + 1).unwrap_or(i64::MAX);
        for line in &chunk.lines {
            chunk_of_line.push(chunk_no);
            times.push(line.time);
            texts.push(line.text.as_str());
        }
    }
    sqlx::query(concat!(
        "INSERT INTO job_logs (job_id, attempt, seq, times, lines)
         SELECT c.job_id, c.attempt, c.seq, l.times, l.lines
         FROM unnest($1::bigint[], $2::int[], $3::int[], $4::uuid[])
                  WITH ORDINALITY AS c(job_id, attempt, seq, worker_id, n)
         JOIN (SELECT chunk, array_agg(t ORDER BY i) AS times, array_agg(line ORDER BY i) AS lines
               FROM unnest($5::bigint[], $6::timestamptz[], $7::text[])
                        WITH ORDINALITY AS x(chunk, t, line, i)
               GROUP BY chunk) l ON l.chunk = c.n
         JOIN jobs j ON j.id = c.job_id AND j.attempt = c.attempt AND j.worker_id = c.worker_id
                    AND j.status IN ",
        sets::on_worker!(),
        "
         ON CONFLICT DO NOTHING"
    ))
    .bind(logs.iter().map(|l| l.job_id).collect::<Vec<_>>())
    .bind(logs.iter().map(|l| to_i32(l.attempt)).collect::<Vec<_>>())
    .bind(logs.iter().map(|l| to_i32(l.seq)).collect::<Vec<_>>())
    .bind(logs.iter().map(|l| l.worker_id).collect::<Vec<_>>())
    .bind(&chunk_of_line)
    .bind(&times)
    .bind(&texts)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn apply_updates(
    tx: &mut PgConnection,
    updates: &[UpdateWrite],
    outcome: &mut WriteOutcome,
) -> Result<(), StoreError> {
    // A retry waits the step of its attempt ($10, `store::JOB_RETRY`),
    // jittered.
    let retry_at = "store_now() + make_interval(secs => u.jitter * ($10::float8[])[
        greatest(1, least(j.attempt - j.given_back, cardinality($10::float8[])))])";
    let set = transitions::update_set(
        Dialect::Postgres,
        "store_now()",
        dialect::POSTGRES_ERROR_TIME,
        retry_at,
    );
    let sql = format!(
        "UPDATE jobs j SET {set}
         FROM unnest($1::bigint[], $2::int[], $3::uuid[], $4::text[], $5::real[], $6::jsonb[],
                     $7::text[], $8::bool[], $9::float8[])
              AS u(id, attempt, worker_id, status, progress, result, error, retryable, jitter)
         WHERE {fence}
         RETURNING j.id, j.attempt",
        set = set,
        fence = transitions::UPDATE_FENCE,
    );
    let accepted: Vec<(i64, i32)> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(updates.iter().map(|u| u.job_id).collect::<Vec<_>>())
        .bind(updates.iter().map(|u| to_i32(u.attempt)).collect::<Vec<_>>())
        .bind(updates.iter().map(|u| u.worker_id).collect::<Vec<_>>())
        .bind(updates.iter().map(|u| u.status.short_name()).collect::<Vec<_>>())
        .bind(updates.iter().map(|u| u.progress).collect::<Vec<_>>())
        .bind(updates.iter().map(|u| u.result.as_ref().map(Json)).collect::<Vec<_>>())
        .bind(updates.iter().map(|u| u.error.as_deref()).collect::<Vec<_>>())
        .bind(updates.iter().map(|u| u.retryable).collect::<Vec<_>>())
        .bind(updates.iter().map(|_| backoff::jitter()).collect::<Vec<_>>())
        .bind(crate::store::job_retry_steps())
        .fetch_all(&mut *tx)
        .await?;
    let accepted: std::collections::HashSet<(i64, i32)> = accepted.into_iter().collect();
    outcome.stale_unless_applied(updates, &accepted);
    Ok(())
}

async fn apply_heartbeats(
    tx: &mut PgConnection,
    heartbeats: &[HeartbeatWrite],
    ttl: Duration,
    outcome: &mut WriteOutcome,
) -> Result<(), StoreError> {
    let live: Vec<(Uuid,)> = sqlx::query_as(concat!(
        "UPDATE workers w SET last_heartbeat = store_now(),
                heartbeat_expiration = store_now() + make_interval(secs => $3)
         FROM unnest($1::uuid[], $2::bigint[]) AS h(id, epoch)
         WHERE w.id = h.id AND w.session_epoch = h.epoch AND w.status IN ",
        sets::live_worker!(),
        "
         RETURNING w.id"
    ))
    .bind(heartbeats.iter().map(|h| h.session.worker_id).collect::<Vec<_>>())
    .bind(heartbeats.iter().map(|h| h.session.epoch).collect::<Vec<_>>())
    .bind(ttl.as_secs_f64())
    .fetch_all(&mut *tx)
    .await?;
    let live: std::collections::HashSet<Uuid> = live.into_iter().map(|(id,)| id).collect();

    let (mut ids, mut attempts, mut workers, mut progress) = (vec![], vec![], vec![], vec![]);
    for heartbeat in heartbeats {
        if !live.contains(&heartbeat.session.worker_id) {
            outcome.superseded(heartbeat);
            continue;
        }
        for run in &heartbeat.running {
            ids.push(run.job_id);
            attempts.push(to_i32(run.attempt));
            workers.push(heartbeat.session.worker_id);
            progress.push(run.progress);
        }
    }
    let current: Vec<(i64, i32, bool)> = sqlx::query_as(concat!(
        "UPDATE jobs j SET heartbeat_at = store_now(), progress = r.progress
         FROM unnest($1::bigint[], $2::int[], $3::uuid[], $4::real[])
              AS r(id, attempt, worker_id, progress)
         WHERE j.id = r.id AND j.attempt = r.attempt AND j.worker_id = r.worker_id
           AND j.status IN ",
        sets::on_worker!(),
        "
         RETURNING j.id, j.attempt, j.status = 'cancel_request'"
    ))
    .bind(&ids)
    .bind(&attempts)
    .bind(&workers)
    .bind(&progress)
    .fetch_all(&mut *tx)
    .await?;
    let current: HashMap<(i64, i32), bool> =
        current.into_iter().map(|(id, attempt, cancel)| ((id, attempt), cancel)).collect();
    for ((id, attempt), worker) in ids.iter().zip(&attempts).zip(&workers) {
        let run = (*id, u32::try_from(*attempt).unwrap_or_default());
        outcome.reported(*worker, run, current.get(&(*id, *attempt)).copied());
    }

    take_unreported(tx, heartbeats, live, (&ids, &attempts), ttl).await
}

/// Attempts a live worker no longer reports, claimed long enough ago that
/// the assignment must have reached it if it ever will: taken back (a
/// dropped stream or a claim whose commit was never heard of swallowed the
/// assignment, or a worker that does not keep its ends lost one). They
/// become claimable again, as do attempts taken from the worker when it
/// was declared dead that it no longer runs (it may have fenced itself and
/// sent a give-back the store did not wait for).
async fn take_unreported(
    tx: &mut PgConnection,
    heartbeats: &[HeartbeatWrite],
    live: std::collections::HashSet<Uuid>,
    reported: (&[i64], &[i32]),
    ttl: Duration,
) -> Result<(), StoreError> {
    let live_ids: Vec<Uuid> = live.into_iter().collect();
    let (ids, attempts) = reported;
    let keeping_ends: Vec<Uuid> =
        heartbeats.iter().filter(|h| h.end_acks).map(|h| h.session.worker_id).collect();
    let sql = format!(
        concat!(
            "UPDATE jobs SET {set}
         WHERE worker_id = ANY($1)
           AND ((status IN ",
            sets::on_worker!(),
            " AND claimed_at < store_now() - make_interval(secs => $4))
                OR status = 'worker_resurrection')
           AND (id, attempt) NOT IN (SELECT * FROM unnest($2::bigint[], $3::int[]))"
        ),
        set = take_omitted("worker_id = ANY($6)", "$5"),
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(&live_ids)
        .bind(ids)
        .bind(attempts)
        .bind(ttl.as_secs_f64())
        .bind("worker no longer reports this attempt")
        .bind(&keeping_ends)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

async fn mark_offline(tx: &mut PgConnection, sessions: &[SessionRef]) -> Result<(), StoreError> {
    for session in sessions {
        crate::store::worker_sql::postgres::mark_offline(tx, *session, None).await?;
    }
    Ok(())
}
