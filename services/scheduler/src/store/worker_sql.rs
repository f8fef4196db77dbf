//! Worker sessions' statements, written once for both stores (see
//! `engines`): opening a session, draining, listing, capacity, and
//! declaring expired workers dead. What each store does around them (its
//! transaction, how it tells the dispatcher) stays in its `workers`.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::types::Json;
use uuid::Uuid;

use crate::store::dialect::Dialect;
use crate::store::engines::per_engine;
use crate::store::{Fence, SessionRef, StoreError, WorkerHello, WorkerRecord, rows, sets};
use crate::store::{model::SessionStart, transitions};

/// Worker columns with `running`: what each runs, per kind, as a JSON
/// object (empty when it runs nothing).
fn worker_select(dialect: Dialect) -> String {
    format!(
        concat!(
            "SELECT w.id, w.name, w.version, w.status, w.capacity,
                    coalesce((SELECT {agg} FROM (
                                  SELECT kind, count(*) AS n FROM jobs
                                  WHERE worker_id = w.id AND status IN ",
            sets::on_worker!(),
            "
                                  GROUP BY kind) k), {empty}) AS running,
                    w.session_epoch, w.connected_at, w.last_heartbeat, w.heartbeat_expiration
             FROM workers w"
        ),
        agg = dialect.json_object_agg("kind", "n"),
        empty = dialect.empty_json_object(),
    )
}

per_engine! {
    /// A worker row with what it runs.
    #[derive(sqlx::FromRow)]
    struct WorkerRow {
        #[sqlx(flatten)]
        row: rows::WorkerRow<Time>,
        running: Json<serde_json::Value>,
    }

    /// The status and operator's capacity of the worker a hello resumes,
    /// locked until the session opens (PostgreSQL; SQLite's one writer
    /// holds the database).
    pub async fn previous_session(
        conn: &mut Connection,
        hello: &WorkerHello,
    ) -> Result<Option<(String, Json<serde_json::Value>)>, StoreError> {
        let Some(id) = hello.resume_worker_id else { return Ok(None) };
        let sql = format!(
            "SELECT status, capacity_override FROM workers WHERE id = $1{}",
            DIALECT.row_lock()
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&mut *conn).await?)
    }

    /// Opens `start`'s session: a new worker, or a new epoch of a known
    /// one, heartbeating until `ttl` from now. Returns its epoch.
    pub async fn open_session(
        conn: &mut Connection,
        hello: &WorkerHello,
        start: &SessionStart,
        ttl: Duration,
        now: Option<Time>,
    ) -> Result<i64, StoreError> {
        let now_sql = DIALECT.now(6);
        let sql = format!(
            "INSERT INTO workers (id, name, version, status, capacity, created_at,
                                  connected_at, last_heartbeat, heartbeat_expiration)
             VALUES ($1, $2, $3, 'alive', $4, {now_sql}, {now_sql}, {now_sql}, {})
             ON CONFLICT (id) DO UPDATE SET
                 name = excluded.name, version = excluded.version, status = 'alive',
                 capacity = excluded.capacity, session_epoch = workers.session_epoch + 1,
                 connected_at = excluded.connected_at, last_heartbeat = excluded.last_heartbeat,
                 heartbeat_expiration = excluded.heartbeat_expiration
             RETURNING session_epoch",
            DIALECT.after(&now_sql, "$5"),
        );
        let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(start.worker_id)
            .bind(&hello.name)
            .bind(&hello.version)
            .bind(Json(&start.capacity))
            .bind(span(ttl));
        if let Some(now) = now {
            query = query.bind(now);
        }
        Ok(query.fetch_one(&mut *conn).await?)
    }

    /// Marks `session` draining if it is the worker's live session.
    pub async fn set_draining(
        conn: &mut Connection,
        session: SessionRef,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE workers SET status = 'draining'
             WHERE id = $1 AND session_epoch = $2 AND status = 'alive'",
        )
        .bind(session.worker_id)
        .bind(session.epoch)
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Workers newest connection first; the gone ones only if asked.
    pub async fn list(
        conn: &mut Connection,
        include_gone: bool,
        offset: u64,
        limit: u32,
    ) -> Result<Vec<WorkerRecord>, StoreError> {
        let sql = format!(
            concat!(
                "{select} WHERE $1 OR w.status IN ",
                crate::store::sets::live_worker!(),
                " ORDER BY w.connected_at DESC, w.id LIMIT $3 OFFSET $2"
            ),
            select = worker_select(DIALECT),
        );
        let rows: Vec<WorkerRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(include_gone)
            .bind(i64::try_from(offset).unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?;
        rows.into_iter().map(|r| r.row.into_record(&r.running.0)).collect()
    }

    /// The status and declared capacity of `worker_id`, locked until the
    /// transaction ends (see `previous_session`).
    pub async fn declared_capacity(
        conn: &mut Connection,
        worker_id: Uuid,
    ) -> Result<Option<(String, Json<serde_json::Value>)>, StoreError> {
        let sql = format!("SELECT status, capacity FROM workers WHERE id = $1{}", DIALECT.row_lock());
        let found = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(worker_id);
        Ok(found.fetch_optional(&mut *conn).await?)
    }

    /// Sets an operator's capacity for the kinds in `capacity`: effective
    /// now, and kept over the worker's reconnections. Returns the worker.
    pub async fn patch_capacity(
        conn: &mut Connection,
        worker_id: Uuid,
        capacity: &HashMap<String, u32>,
    ) -> Result<WorkerRecord, StoreError> {
        let sql = format!(
            "UPDATE workers SET capacity = {}, capacity_override = {} WHERE id = $1",
            DIALECT.json_merge("capacity", "$2"),
            DIALECT.json_merge("capacity_override", "$2"),
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(worker_id)
            .bind(Json(capacity))
            .execute(&mut *conn)
            .await?;
        let sql = format!("{} WHERE w.id = $1", worker_select(DIALECT));
        let row: WorkerRow =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(worker_id).fetch_one(&mut *conn).await?;
        row.row.into_record(&row.running.0)
    }

    /// Declares the live workers whose heartbeat expired dead, if `fence`
    /// still holds its lease (which cannot change hands before the
    /// transaction ends: see `lease_sql::holds`). Returns them.
    pub async fn mark_dead(
        conn: &mut Connection,
        fence: Fence,
        now: Option<Time>,
    ) -> Result<Vec<Uuid>, StoreError> {
        let now_sql = DIALECT.now(3);
        let sql = format!(
            concat!(
                "UPDATE workers SET status = 'dead'
                 WHERE status IN ",
                crate::store::sets::live_worker!(),
                " AND heartbeat_expiration < {now}
                   AND EXISTS (SELECT 1 FROM leases
                               WHERE name = $1 AND holder = $2 AND expires_at > {now}{lock})
                 RETURNING id"
            ),
            now = now_sql,
            lock = DIALECT.share_lock(),
        );
        let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(fence.lease)
            .bind(fence.holder);
        if let Some(now) = now {
            query = query.bind(now);
        }
        Ok(query.fetch_all(&mut *conn).await?)
    }

    /// Takes back every attempt the dead worker `worker_id` held
    /// (`transitions::take_back_set`, spent under `reason`), and releases
    /// those held back for its resurrection. Returns each one's kind and
    /// new status.
    pub async fn take_back_from_dead(
        conn: &mut Connection,
        worker_id: Uuid,
        reason: &str,
        now: Option<Time>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let set = transitions::take_back_set(
            DIALECT,
            "false",
            &DIALECT.text("$2"),
            &DIALECT.now(3),
            &DIALECT.error_time(4),
        );
        let sql = format!(
            concat!(
                "UPDATE jobs SET {set} WHERE worker_id = $1 AND status IN ",
                crate::store::sets::on_worker_or_resurrecting!(),
                " RETURNING kind, status"
            ),
            set = set,
        );
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(worker_id).bind(reason);
        if let Some(now) = now {
            query = query.bind(now).bind(error_time(now));
        }
        Ok(query.fetch_all(&mut *conn).await?)
    }
}
