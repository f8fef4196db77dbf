//! The limited-capacity selection of repositories due for cleanup
//! (README, "How cleanups are selected"; GitLab's container expiration policies).
//!
//! A tick: repositories whose cleanup job ended leave `ongoing`
//! (`store::cleanup_end`); stale `ongoing` repositories become `unfinished`; due policies
//! mark their repositories `scheduled` (a bounded number per tick); up to
//! `capacity - running` repositories are picked in one ordered statement
//! and get a `tag_cleanup` job each; policies whose run completed move to
//! their next run. Every statement reads index ranges bounded by the
//! capacity or by the due policies, never the whole table. The steps both
//! stores share are in `store::selection_sql`; here, the advisory lock that
//! keeps ticks apart across replicas, and the pick.

use crate::store::Fence;
use sqlx::postgres::PgPool;

use crate::store::StoreError;
use crate::store::catalog::{AdvanceRun, Selection, SelectionConfig};
use crate::store::cleanup_end;
use crate::store::selection_sql::postgres as sql;
use crate::store::sets;

/// Statuses of a job that still holds its unique key (must match the
/// `jobs_unique_key` index).
const ACTIVE_JOB: &str = sets::active!();

pub async fn select(
    pool: &PgPool,
    config: &SelectionConfig,
    advance: AdvanceRun,
    fence: Fence,
) -> Result<Selection, StoreError> {
    let mut selection = Selection::default();
    let mut tx = pool.begin().await?;
    if !crate::store::lease_sql::postgres::holds(&mut tx, fence, None).await? {
        return Ok(selection);
    }
    // One tick at a time across replicas: the free capacity is computed
    // from `ongoing`, which a concurrent tick would change under us.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('regsweep.scheduler.selection'))")
        .execute(&mut *tx)
        .await?;

    selection.ended = cleanup_end::postgres::close_ended(&mut tx, None).await?;
    let free = sql::before_pick(&mut tx, config, None, &mut selection).await?;
    if free > 0 {
        selection.started = pick(&mut tx, free, config).await?;
    }
    selection.advanced = sql::advance_completed(&mut tx, advance, None).await?;
    tx.commit().await?;
    Ok(selection)
}

/// Picks up to `free` repositories in the selection's order and starts a
/// cleanup job for each (or adopts the job still active for it).
async fn pick(
    tx: &mut sqlx::PgTransaction<'_>,
    free: i64,
    config: &SelectionConfig,
) -> Result<Vec<(i64, i64)>, StoreError> {
    let sql = format!(
        concat!(
            "WITH picked AS (
             SELECT id FROM repositories
             WHERE cleanup_status IN ",
            sets::cleanup_waiting!(),
            "
               -- Policy changes give waiting repositories back; this only
               -- guards a slot from a row that lost its policy anyway.
               AND policy_id IS NOT NULL
             ORDER BY (cleanup_status = 'unfinished'), cleanup_started_at NULLS FIRST, id
             LIMIT $1
             FOR UPDATE SKIP LOCKED
         ), info AS (
             SELECT r.id, 'tag_cleanup:' || r.id AS unique_key, r.trace_context,
                    jsonb_build_object(
                        'registry', g.name,
                        'repository', r.name,
                        'repository_id', r.id,
                        'policy', p.name,
                        'rules', jsonb_build_object(
                            'keep_n', p.keep_n,
                            'older_than_seconds', p.older_than_seconds,
                            'name_regex_delete', p.name_regex_delete,
                            'name_regex_keep', p.name_regex_keep,
                            'attachments', p.attachments,
                            'age_source', p.age_source)
                          -- Listed rules only when there are some, as
                          -- RuleSpec writes them: workers of before rules
                          -- refuse the key rather than ignore it.
                          || CASE WHEN p.rules = '[]' THEN '{{}}'::jsonb
                                  ELSE jsonb_build_object('rules', p.rules::jsonb) END,
                        'dry_run', p.dry_run,
                        'time_budget_seconds', $2::bigint) AS args
             FROM picked
             JOIN repositories r ON r.id = picked.id
             JOIN registries g ON g.id = r.registry_id
             JOIN policies p ON p.id = r.policy_id
         ), existing AS (
             SELECT j.id, j.unique_key FROM jobs j
             WHERE j.unique_key IN (SELECT unique_key FROM info)
               AND j.status IN {ACTIVE_JOB}
         ), inserted AS (
             INSERT INTO jobs (kind, args, max_attempts, unique_key, trace_context)
             SELECT 'tag_cleanup', info.args, $3, info.unique_key, info.trace_context FROM info
             WHERE info.unique_key NOT IN (SELECT unique_key FROM existing)
             RETURNING id, unique_key
         )
         UPDATE repositories r
         SET cleanup_status = 'ongoing', cleanup_started_at = store_clock(),
             cleanup_job_id = COALESCE(i.id, e.id), last_error = NULL, last_deleted_count = 0
         FROM info
         LEFT JOIN inserted i ON i.unique_key = info.unique_key
         LEFT JOIN existing e ON e.unique_key = info.unique_key
         WHERE r.id = info.id
         RETURNING r.id, r.cleanup_job_id"
        ),
        ACTIVE_JOB = ACTIVE_JOB
    );
    let started: Vec<(i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(free)
        .bind(i64::try_from(config.time_budget.as_secs()).unwrap_or(i64::MAX))
        .bind(i32::try_from(config.max_attempts).unwrap_or(i32::MAX))
        .fetch_all(&mut **tx)
        .await?;
    Ok(started)
}
