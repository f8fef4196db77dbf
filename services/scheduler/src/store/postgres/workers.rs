//! Worker sessions: registration (new or resumed), draining, listing.

use crate::store::Fence;
use std::collections::HashMap;
use std::time::Duration;

use sqlx::postgres::PgPool;
use uuid::Uuid;

use crate::store::dialect::{self, Dialect};
use crate::store::model::SessionStart;
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
        Some(_) => sql::reclaim(&mut tx, worker_id, hello, None).await?,
        None => Default::default(),
    };
    let stale = stale_runs(&hello.running, &own, &resurrected);
    let lost = match resumed {
        true => sql::take_lost(&mut tx, worker_id, hello, None).await?.len() as u64,
        false => 0,
    };
    tx.commit().await?;
    Ok(Registration { worker_id, epoch, resumed, stale, lost, capacity_override })
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
    let (outcome, effective) = sql::set_capacity(&mut tx, worker_id, capacity).await?;
    if let Some(effective) = effective {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(super::CAPACITY_CHANNEL)
            .bind(serde_json::json!({"worker_id": worker_id, "capacity": effective}).to_string())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(outcome)
}
