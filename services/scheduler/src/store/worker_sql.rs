//! Worker sessions' statements, written once for both stores (see
//! `engines`): opening a session, draining, listing, capacity, and
//! declaring expired workers dead. What each store does around them (its
//! transaction, how it tells the dispatcher) stays in its `workers`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use sqlx::types::Json;
use uuid::Uuid;

use crate::store::dialect::Dialect;
use crate::store::engines::per_engine;
use crate::store::model::{SessionStart, capacity_change};
use crate::store::{CapacityOutcome, transitions};
use crate::store::{Fence, SessionRef, StoreError, WorkerHello, WorkerRecord, rows, sets};

/// An attempt list's columns (`Dialect::zipped`).
const RUNS: &[(&str, &str)] = &[("id", "bigint"), ("attempt", "int")];

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

    /// Sets an operator's capacity for `worker_id` if its status and the
    /// kinds it declares allow (`model::capacity_change`). Returns the
    /// outcome, and when updated the capacity now in effect, for the
    /// dispatcher to hear of.
    pub async fn set_capacity(
        conn: &mut Connection,
        worker_id: Uuid,
        capacity: &HashMap<String, u32>,
    ) -> Result<(CapacityOutcome, Option<HashMap<String, u32>>), StoreError> {
        let Some((status, declared)) = declared_capacity(conn, worker_id).await? else {
            return Ok((CapacityOutcome::NotFound, None));
        };
        let effective = match capacity_change(&status, &declared.0, capacity)? {
            Ok(effective) => effective,
            Err(refused) => return Ok((refused, None)),
        };
        let record = patch_capacity(conn, worker_id, capacity).await?;
        Ok((CapacityOutcome::Updated(record), Some(effective)))
    }

    /// The status and declared capacity of `worker_id`, locked until the
    /// transaction ends (see `previous_session`).
    async fn declared_capacity(
        conn: &mut Connection,
        worker_id: Uuid,
    ) -> Result<Option<(String, Json<serde_json::Value>)>, StoreError> {
        let sql = format!("SELECT status, capacity FROM workers WHERE id = $1{}", DIALECT.row_lock());
        let found = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(worker_id);
        Ok(found.fetch_optional(&mut *conn).await?)
    }

    /// Sets an operator's capacity for the kinds in `capacity`: effective
    /// now, and kept over the worker's reconnections. Returns the worker.
    async fn patch_capacity(
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

    /// Of the attempts a returning worker reports: those still its own (and
    /// whether a cancel was requested meanwhile), and those taken from it
    /// when it was declared dead and not claimed again yet, which become
    /// `worker_resurrection` until it acknowledges the cancel.
    pub async fn reclaim(
        conn: &mut Connection,
        worker_id: Uuid,
        hello: &WorkerHello,
        now: Option<Time>,
    ) -> Result<(HashMap<(i64, u32), bool>, HashSet<(i64, u32)>), StoreError> {
        let (ids, attempts): (Vec<i64>, Vec<i32>) =
            hello.running.iter().map(|r| (r.job_id, rows::to_i32(r.attempt))).unzip();
        let reported = DIALECT.zipped("u", RUNS, 2);
        let sql = format!(
            concat!(
                "SELECT j.id, j.attempt, j.status = 'cancel_request' FROM jobs j
                 JOIN {reported} ON j.id = u.id AND j.attempt = u.attempt
                 WHERE j.worker_id = $1 AND j.status IN ",
                crate::store::sets::on_worker!()
            ),
            reported = reported,
        );
        let own: Vec<(i64, i32, bool)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(worker_id)
            .bind(column(ids.clone()))
            .bind(column(attempts.clone()))
            .fetch_all(&mut *conn)
            .await?;
        let sql = format!(
            "UPDATE jobs SET status = 'worker_resurrection', updated_at = {}
             WHERE worker_id = $1 AND status = 'worker_dead'
               AND (id, attempt) IN (SELECT u.id, u.attempt FROM {reported})
             RETURNING id, attempt",
            DIALECT.now(4),
        );
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(worker_id)
            .bind(column(ids))
            .bind(column(attempts));
        if let Some(now) = now {
            query = query.bind(now);
        }
        let resurrected: Vec<(i64, i32)> = query.fetch_all(&mut *conn).await?;
        let own = own
            .into_iter()
            .map(|(id, attempt, cancel)| Ok(((id, rows::non_negative(attempt, "attempt")?), cancel)))
            .collect::<Result<_, StoreError>>()?;
        let resurrected = resurrected
            .into_iter()
            .map(|(id, attempt)| Ok((id, rows::non_negative(attempt, "attempt")?)))
            .collect::<Result<_, StoreError>>()?;
        Ok((own, resurrected))
    }

    /// What the store has on a resumed worker but the worker does not
    /// account for was lost with the previous stream (an assignment never
    /// received): taken back (`transitions::take_back_set`), given back
    /// when the worker keeps its ends. Returns each one's kind and status.
    pub async fn take_lost(
        conn: &mut Connection,
        worker_id: Uuid,
        hello: &WorkerHello,
        now: Option<Time>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let (ids, attempts): (Vec<i64>, Vec<i32>) =
            hello.accounted().map(|(id, attempt)| (id, rows::to_i32(attempt))).unzip();
        let set = transitions::take_back_set(
            DIALECT,
            "$5",
            &DIALECT.text("$4"),
            &DIALECT.now(6),
            &DIALECT.error_time(7),
        );
        let sql = format!(
            concat!(
                "UPDATE jobs SET {set}
                 WHERE worker_id = $1 AND status IN ",
                crate::store::sets::on_worker!(),
                " AND (id, attempt) NOT IN (SELECT u.id, u.attempt FROM {accounted})
                 RETURNING kind, status"
            ),
            set = set,
            accounted = DIALECT.zipped("u", RUNS, 2),
        );
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(worker_id)
            .bind(column(ids))
            .bind(column(attempts))
            .bind("worker reconnected without this attempt")
            .bind(hello.end_acks);
        if let Some(now) = now {
            query = query.bind(now).bind(error_time(now));
        }
        Ok(query.fetch_all(&mut *conn).await?)
    }

    /// Marks a drained session offline; what it still held is given back
    /// (`transitions::offline_set`: not a failed attempt). Returns each
    /// such attempt's kind and new status.
    pub async fn mark_offline(
        conn: &mut Connection,
        session: SessionRef,
        now: Option<Time>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let gone = sqlx::query(concat!(
            "UPDATE workers SET status = 'offline'
             WHERE id = $1 AND session_epoch = $2 AND status IN ",
            crate::store::sets::live_worker!()
        ))
        .bind(session.worker_id)
        .bind(session.epoch)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if gone == 0 {
            return Ok(Vec::new());
        }
        let sql = format!(
            concat!(
                "UPDATE jobs SET {set} WHERE worker_id = $1 AND status IN ",
                crate::store::sets::on_worker_or_resurrecting!(),
                " RETURNING kind, status"
            ),
            set = transitions::offline_set(&DIALECT.now(2)),
        );
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(session.worker_id);
        if let Some(now) = now {
            query = query.bind(now);
        }
        Ok(query.fetch_all(&mut *conn).await?)
    }
}
