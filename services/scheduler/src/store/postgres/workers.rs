//! Worker sessions: registration (new or resumed), draining, listing.

use crate::store::Fence;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use sqlx::postgres::{PgConnection, PgPool};
use sqlx::types::Json;
use uuid::Uuid;

use crate::store::dialect::{self, Dialect};
use crate::store::model::{SessionStart, capacity_change};
use crate::store::rows::{self, to_i32};
use crate::store::sets;
use crate::store::stale_runs;
use crate::store::transitions;
use crate::store::{
    CapacityOutcome, Reaped, Registration, SessionRef, StoreError, WorkerHello, WorkerRecord,
};

/// A worker row with a `running` map of what it runs, per kind.
#[derive(sqlx::FromRow)]
struct WorkerRow {
    #[sqlx(flatten)]
    row: rows::WorkerRow<chrono::DateTime<chrono::Utc>>,
    running: Json<serde_json::Value>,
}

impl WorkerRow {
    fn into_record(self) -> Result<WorkerRecord, StoreError> {
        self.row.into_record(&self.running.0)
    }
}

/// The `SET` clause that takes back attempts (`transitions::take_back_set`)
/// in a PostgreSQL statement: `give_back` an SQL boolean, `reason` the
/// placeholder of the error text.
pub fn take_omitted(give_back: &str, reason: &str) -> String {
    let reason = format!("{reason}::text");
    transitions::take_back_set(
        Dialect::Postgres,
        give_back,
        &reason,
        "store_now()",
        dialect::POSTGRES_ERROR_TIME,
    )
}

pub async fn register(
    pool: &PgPool,
    hello: &WorkerHello,
    ttl: Duration,
) -> Result<Registration, StoreError> {
    let mut tx = pool.begin().await?;
    let previous: Option<(String, Json<serde_json::Value>)> = match hello.resume_worker_id {
        Some(id) => {
            sqlx::query_as("SELECT status, capacity_override FROM workers WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
        }
        None => None,
    };
    let SessionStart { worker_id, resumed, capacity_override, capacity } =
        SessionStart::new(hello, previous.as_ref().map(|(s, o)| (s.as_str(), &o.0)));
    let (epoch,): (i64,) = sqlx::query_as(
        "INSERT INTO workers (id, name, version, status, capacity, heartbeat_expiration)
         VALUES ($1, $2, $3, 'alive', $4, store_now() + make_interval(secs => $5))
         ON CONFLICT (id) DO UPDATE SET
             name = EXCLUDED.name, version = EXCLUDED.version, status = 'alive',
             capacity = EXCLUDED.capacity, session_epoch = workers.session_epoch + 1,
             connected_at = store_now(), last_heartbeat = store_now(),
             heartbeat_expiration = EXCLUDED.heartbeat_expiration
         RETURNING session_epoch",
    )
    .bind(worker_id)
    .bind(&hello.name)
    .bind(&hello.version)
    .bind(Json(&capacity))
    .bind(ttl.as_secs_f64())
    .fetch_one(&mut *tx)
    .await?;
    let (own, resurrected) = match previous {
        Some(_) => reclaim(&mut tx, worker_id, hello).await?,
        None => Default::default(),
    };
    let stale = stale_runs(&hello.running, &own, &resurrected);
    let lost = if resumed { take_lost(&mut tx, worker_id, hello).await? } else { 0 };
    tx.commit().await?;
    Ok(Registration { worker_id, epoch, resumed, stale, lost, capacity_override })
}

/// Of the attempts a returning worker reports: those still its own (and
/// whether a cancel was requested meanwhile), and those taken from it when
/// it was declared dead and not claimed again yet, which become
/// `worker_resurrection` until it acknowledges the cancel.
async fn reclaim(
    tx: &mut PgConnection,
    worker_id: Uuid,
    hello: &WorkerHello,
) -> Result<(HashMap<(i64, u32), bool>, HashSet<(i64, u32)>), StoreError> {
    let ids: Vec<i64> = hello.running.iter().map(|r| r.job_id).collect();
    let attempts: Vec<i32> = hello.running.iter().map(|r| to_i32(r.attempt)).collect();
    let own: Vec<(i64, i32, bool)> = sqlx::query_as(concat!(
        "SELECT j.id, j.attempt, j.status = 'cancel_request' FROM jobs j
         JOIN unnest($2::bigint[], $3::int[]) AS u(id, attempt)
           ON j.id = u.id AND j.attempt = u.attempt
         WHERE j.worker_id = $1 AND j.status IN ",
        sets::on_worker!()
    ))
    .bind(worker_id)
    .bind(&ids)
    .bind(&attempts)
    .fetch_all(&mut *tx)
    .await?;
    let resurrected: Vec<(i64, i32)> = sqlx::query_as(
        "UPDATE jobs j SET status = 'worker_resurrection', updated_at = store_now()
         FROM unnest($2::bigint[], $3::int[]) AS u(id, attempt)
         WHERE j.id = u.id AND j.attempt = u.attempt AND j.worker_id = $1
           AND j.status = 'worker_dead'
         RETURNING j.id, j.attempt",
    )
    .bind(worker_id)
    .bind(&ids)
    .bind(&attempts)
    .fetch_all(&mut *tx)
    .await?;
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

/// What the store has on a resumed worker but the worker does not report
/// was lost with the previous stream (an assignment never received):
/// spent or given back ($5) as `gives_back_omitted` says. Returns how many.
async fn take_lost(
    tx: &mut PgConnection,
    worker_id: Uuid,
    hello: &WorkerHello,
) -> Result<u64, StoreError> {
    let (ids, attempts): (Vec<i64>, Vec<i32>) =
        hello.accounted().map(|(id, attempt)| (id, to_i32(attempt))).unzip();
    let sql = format!(
        concat!(
            "UPDATE jobs SET {set}
         WHERE worker_id = $1 AND status IN ",
            sets::on_worker!(),
            "
           AND (id, attempt) NOT IN (SELECT * FROM unnest($2::bigint[], $3::int[]))"
        ),
        set = take_omitted("$5", "$4"),
    );
    let taken = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(worker_id)
        .bind(&ids)
        .bind(&attempts)
        .bind("worker reconnected without this attempt")
        .bind(hello.end_acks)
        .execute(&mut *tx)
        .await?;
    Ok(taken.rows_affected())
}

pub async fn set_draining(pool: &PgPool, session: SessionRef) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE workers SET status = 'draining'
         WHERE id = $1 AND session_epoch = $2 AND status = 'alive'",
    )
    .bind(session.worker_id)
    .bind(session.epoch)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Worker columns with a `running` map of what each runs, per kind.
const WORKER_SELECT: &str = concat!(
    "SELECT w.id, w.name, w.version, w.status, w.capacity,
            coalesce(r.running, '{}'::jsonb) AS running,
            w.session_epoch, w.connected_at, w.last_heartbeat, w.heartbeat_expiration
     FROM workers w
     LEFT JOIN LATERAL (
         SELECT jsonb_object_agg(kind, n) AS running
         FROM (SELECT kind, count(*) AS n FROM jobs
               WHERE worker_id = w.id AND status IN ",
    sets::on_worker!(),
    "
               GROUP BY kind) k
     ) r ON true"
);

pub async fn list(
    pool: &PgPool,
    include_gone: bool,
    offset: u64,
    limit: u32,
) -> Result<Vec<WorkerRecord>, StoreError> {
    let sql = format!(
        concat!(
            "{WORKER_SELECT}
         WHERE $1 OR w.status IN ",
            sets::live_worker!(),
            "
         ORDER BY w.connected_at DESC, w.id
         OFFSET $2 LIMIT $3"
        ),
        WORKER_SELECT = WORKER_SELECT
    );
    let rows: Vec<WorkerRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(include_gone)
        .bind(i64::try_from(offset).unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
    rows.into_iter().map(WorkerRow::into_record).collect()
}

/// Declares workers whose heartbeat expired dead and takes their attempts
/// back in one statement.
pub async fn reap(pool: &PgPool, fence: Fence) -> Result<Reaped, StoreError> {
    let sql = format!(
        concat!(
            "WITH dead AS (
             UPDATE workers SET status = 'dead'
             WHERE status IN ",
            sets::live_worker!(),
            concat!(
                " AND heartbeat_expiration < store_now()
               AND EXISTS (SELECT 1 FROM leases
                           WHERE name = $2 AND holder = $3 AND expires_at > store_now()
                           FOR SHARE)
             RETURNING id
         ),
         taken AS (
             UPDATE jobs SET {set}
             WHERE worker_id IN (SELECT id FROM dead)
               AND status IN ",
                sets::on_worker_or_resurrecting!(),
                "
             RETURNING 1
         )
         SELECT coalesce((SELECT array_agg(id) FROM dead), '{{}}'), (SELECT count(*) FROM taken)"
            )
        ),
        set = take_omitted("false", "$1"),
    );
    let (workers, jobs): (Vec<Uuid>, i64) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind("worker heartbeat expired")
        .bind(fence.lease)
        .bind(fence.holder)
        .fetch_one(pool)
        .await?;
    Ok(Reaped { workers, jobs: u64::try_from(jobs).unwrap_or_default() })
}

pub async fn set_capacity(
    pool: &PgPool,
    worker_id: Uuid,
    capacity: &HashMap<String, u32>,
) -> Result<CapacityOutcome, StoreError> {
    let mut tx = pool.begin().await?;
    let current: Option<(String, Json<serde_json::Value>)> =
        sqlx::query_as("SELECT status, capacity FROM workers WHERE id = $1 FOR UPDATE")
            .bind(worker_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((status, declared)) = current else {
        return Ok(CapacityOutcome::NotFound);
    };
    let effective = match capacity_change(&status, &declared.0, capacity)? {
        Ok(effective) => effective,
        Err(refused) => return Ok(refused),
    };
    sqlx::query(
        "UPDATE workers SET capacity = capacity || $2, capacity_override = capacity_override || $2
         WHERE id = $1",
    )
    .bind(worker_id)
    .bind(Json(capacity))
    .execute(&mut *tx)
    .await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(super::CAPACITY_CHANNEL)
        .bind(serde_json::json!({"worker_id": worker_id, "capacity": effective}).to_string())
        .execute(&mut *tx)
        .await?;
    let sql = format!("{WORKER_SELECT} WHERE w.id = $1");
    let row: WorkerRow =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(worker_id).fetch_one(&mut *tx).await?;
    tx.commit().await?;
    Ok(CapacityOutcome::Updated(row.into_record()?))
}
