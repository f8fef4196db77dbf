//! The steps of a selection tick both stores run as written (see `engines`
//! and the README, "How cleanups are selected"): before the pick, after
//! ended cleanups closed (`cleanup_end`), stale ones become `unfinished`, due policies mark their
//! repositories `scheduled` (a bounded number per tick) and the free slots
//! are counted; after it, policies whose run completed move to their next
//! run. The pick itself, and how a tick is kept from racing another, stay
//! with each store: PostgreSQL takes an advisory lock and picks with one
//! `SKIP LOCKED` statement; SQLite's one writer inserts job by job.

use crate::store::StoreError;
use crate::store::catalog::{AdvanceRun, Selection, SelectionConfig};
use crate::store::engines::per_engine;
use crate::store::model::policy_run_span;
use crate::store::sets;

/// Policies armed per statement.
const DUE_POLICIES: i64 = 100;

per_engine! {
    /// The tick up to the pick, in the caller's transaction, after ended
    /// cleanups closed (`cleanup_end`): how many cleanups may start (the
    /// capacity less those running; none when not positive).
    pub async fn before_pick(
        conn: &mut Connection,
        config: &SelectionConfig,
        now: Option<Time>,
        selection: &mut Selection,
    ) -> Result<i64, StoreError> {
        selection.stale = mark_stale(conn, config, now).await?;
        let (armed, incomplete) = arm_due_policies(conn, config.arm_limit, now).await?;
        selection.armed = armed;
        selection.arming_incomplete = incomplete;
        let running: (i64,) =
            sqlx::query_as("SELECT count(*) FROM repositories WHERE cleanup_status = 'ongoing'")
                .fetch_one(&mut *conn)
                .await?;
        selection.running = u32::try_from(running.0).unwrap_or(u32::MAX);
        Ok(i64::from(config.capacity) - running.0)
    }

    /// Cleanups running past `stale_after` become `unfinished`.
    async fn mark_stale(
        conn: &mut Connection,
        config: &SelectionConfig,
        now: Option<Time>,
    ) -> Result<u64, StoreError> {
        let sql = format!(
            "UPDATE repositories SET cleanup_status = 'unfinished',
                 last_error = 'cleanup did not end within its time budget'
             WHERE cleanup_status = 'ongoing' AND cleanup_started_at < {}",
            DIALECT.before(&DIALECT.now(2), "$1"),
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(span(config.stale_after));
        if let Some(now) = now {
            query = query.bind(now);
        }
        Ok(query.execute(&mut *conn).await?.rows_affected())
    }

    /// Marks the repositories of due policies `scheduled`, at most `limit`
    /// in all; a policy is armed for its `next_run_at` once none is left.
    /// True as well when the limit cut the marking short.
    async fn arm_due_policies(
        conn: &mut Connection,
        limit: u32,
        now: Option<Time>,
    ) -> Result<(u64, bool), StoreError> {
        let sql = format!(
            "SELECT id, next_run_at FROM policies
             WHERE enabled AND next_run_at <= {} AND armed_run_at IS DISTINCT FROM next_run_at
             ORDER BY next_run_at
             LIMIT $1",
            DIALECT.now(2),
        );
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(DUE_POLICIES);
        if let Some(now) = now {
            query = query.bind(now);
        }
        let due: Vec<(i64, Time)> = query.fetch_all(&mut *conn).await?;
        let mut budget = i64::from(limit);
        let mut armed = 0;
        for (policy_id, run_at) in due {
            if budget <= 0 {
                return Ok((armed, true));
            }
            let (_run, traceparent) = policy_run_span(policy_id);
            let marked = sqlx::query(
                "UPDATE repositories SET cleanup_status = 'scheduled', trace_context = $4
                 WHERE id IN (
                     SELECT id FROM repositories
                     WHERE policy_id = $1 AND cleanup_status = 'unscheduled'
                       AND (cleanup_started_at IS NULL OR cleanup_started_at < $2)
                     LIMIT $3)",
            )
            .bind(policy_id)
            .bind(run_at)
            .bind(budget)
            .bind(traceparent)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            armed += marked;
            budget -= i64::try_from(marked).unwrap_or(i64::MAX);
            if budget <= 0 {
                // Maybe exactly done; the next tick finds out cheaply.
                return Ok((armed, true));
            }
            sqlx::query("UPDATE policies SET armed_run_at = next_run_at WHERE id = $1")
                .bind(policy_id)
                .execute(&mut *conn)
                .await?;
        }
        Ok((armed, false))
    }

    /// Moves every armed policy whose repositories all started after its
    /// `next_run_at` (none `scheduled`, none still running from before) to
    /// its next run, after the store's time (not this host's).
    pub async fn advance_completed(
        conn: &mut Connection,
        advance: AdvanceRun,
        now: Option<Time>,
    ) -> Result<Vec<String>, StoreError> {
        let now_sql = DIALECT.now(1);
        let sql = format!(
            "SELECT p.id, p.name, p.cadence, p.next_run_at, {now_sql} FROM policies p
             WHERE p.enabled AND p.next_run_at <= {now_sql} AND p.armed_run_at = p.next_run_at
               AND NOT EXISTS (
                   SELECT 1 FROM repositories r
                   WHERE r.policy_id = p.id AND r.cleanup_status = 'scheduled')
               AND NOT EXISTS (
                   SELECT 1 FROM repositories r
                   WHERE r.policy_id = p.id AND r.cleanup_status IN {}
                     AND (r.cleanup_started_at IS NULL OR r.cleanup_started_at < p.next_run_at))
             {}",
            sets::cleanup_in_cycle!(),
            DIALECT.row_lock_of("p"),
        );
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
        if let Some(now) = now {
            query = query.bind(now);
        }
        let completed: Vec<(i64, String, String, Time, Time)> =
            query.fetch_all(&mut *conn).await?;
        let mut advanced = Vec::with_capacity(completed.len());
        for (id, name, cadence, due, now) in completed {
            let Some(next) = advance(&cadence, read_time(due), read_time(now)) else {
                tracing::warn!(policy = %name, %cadence, "policy cadence never fires again");
                continue;
            };
            sqlx::query("UPDATE policies SET next_run_at = $2 WHERE id = $1")
                .bind(id)
                .bind(time(next))
                .execute(&mut *conn)
                .await?;
            advanced.push(name);
        }
        Ok(advanced)
    }
}
