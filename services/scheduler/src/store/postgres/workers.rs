//! Worker sessions: registration (new or resumed), draining, listing.

use crate::store::Fence;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use sqlx::postgres::{PgConnection, PgPool};
use uuid::Uuid;

use crate::store::dialect::{self, Dialect};
use crate::store::model::{SessionStart, capacity_change};
use crate::store::rows::{self, to_i32};
use crate::store::sets;
use crate::store::stale_runs;
use crate::store::transitions;
use crate::store::worker_sql::postgres as sql;
use crate::store::{
    CapacityOutcome, Reaped, Registration, SessionRef, StoreError, WorkerHello, WorkerRecord,
};

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
    let previous = sql::previous_session(&mut tx, hello).await?;
    let start = SessionStart::new(hello, previous.as_ref().map(|(s, o)| (s.as_str(), &o.0)));
    let epoch = sql::open_session(&mut tx, hello, &start, ttl, None).await?;
    let SessionStart { worker_id, resumed, capacity_override, .. } = start;
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
    sql::set_draining(&mut *pool.acquire().await?, session).await
}

pub async fn list(
    pool: &PgPool,
    include_gone: bool,
    offset: u64,
    limit: u32,
) -> Result<Vec<WorkerRecord>, StoreError> {
    sql::list(&mut *pool.acquire().await?, include_gone, offset, limit).await
}

/// Declares workers whose heartbeat expired dead and takes their attempts
/// back, in one transaction fenced by the leader's lease.
pub async fn reap(pool: &PgPool, fence: Fence) -> Result<Reaped, StoreError> {
    let mut tx = pool.begin().await?;
    let workers = sql::mark_dead(&mut tx, fence, None).await?;
    let mut jobs = 0;
    for worker in &workers {
        let reason = "worker heartbeat expired";
        jobs += sql::take_back_from_dead(&mut tx, *worker, reason, None).await?.len() as u64;
    }
    tx.commit().await?;
    Ok(Reaped { workers, jobs })
}

pub async fn set_capacity(
    pool: &PgPool,
    worker_id: Uuid,
    capacity: &HashMap<String, u32>,
) -> Result<CapacityOutcome, StoreError> {
    let mut tx = pool.begin().await?;
    let Some((status, declared)) = sql::declared_capacity(&mut tx, worker_id).await? else {
        return Ok(CapacityOutcome::NotFound);
    };
    let effective = match capacity_change(&status, &declared.0, capacity)? {
        Ok(effective) => effective,
        Err(refused) => return Ok(refused),
    };
    let record = sql::patch_capacity(&mut tx, worker_id, capacity).await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(super::CAPACITY_CHANNEL)
        .bind(serde_json::json!({"worker_id": worker_id, "capacity": effective}).to_string())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(CapacityOutcome::Updated(record))
}
