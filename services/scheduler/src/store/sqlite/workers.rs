//! Worker sessions on SQLite: registration, draining, listing, reaping,
//! capacity, and taking back the attempts a worker lost.

use crate::store::Fence;
use std::collections::HashMap;
use std::time::Duration;

use sqlx::{AssertSqlSafe, SqliteConnection};
use uuid::Uuid;

use super::{SqliteStore, error_time};
use crate::store::model::SessionStart;
use crate::store::stale_runs;
use crate::store::worker_sql::sqlite as sql;

use crate::store::dialect::Dialect;
use crate::store::sets;
use crate::store::transitions;
use crate::store::{
    CapacityOutcome, Reaped, Registration, SessionRef, StoreError, StoreEvent, WorkerHello,
    WorkerRecord,
};

/// What taking attempts back changed.
#[derive(Debug, Default)]
pub struct Taken {
    pub count: u64,
    /// Kinds of jobs that became claimable again.
    pub claimable: Vec<String>,
    /// A cleanup job ended.
    pub cleanup_ended: bool,
}

impl Taken {
    fn add(&mut self, kind: String, status: &str) {
        self.count += 1;
        self.cleanup_ended |= super::queue::ends_cleanup(&kind, status);
        if matches!(status, "waiting" | "worker_dead" | "worker_shutdown") {
            self.claimable.push(kind);
        }
    }
}

/// Takes back the attempts of `ids` their worker no longer holds, by
/// `transitions::take_back_set`: spent under `reason` unless `give_back`
/// (the worker keeps its ends until recorded, so they never reached it).
pub async fn take_omitted(
    tx: &mut SqliteConnection,
    ids: &[i64],
    give_back: bool,
    reason: &str,
    now: i64,
) -> Result<Taken, StoreError> {
    let set = transitions::take_back_set(Dialect::Sqlite, "?5", "?2", "?4", "?3");
    let sql = format!(
        concat!(
            "UPDATE jobs SET {set} WHERE id = ?1 AND status IN ",
            sets::on_worker_or_resurrecting!(),
            " RETURNING kind, status"
        ),
        set = set,
    );
    let mut taken = Taken::default();
    for id in ids {
        let row: Option<(String, String)> = sqlx::query_as(AssertSqlSafe(sql.as_str()))
            .bind(id)
            .bind(reason)
            .bind(error_time(now))
            .bind(now)
            .bind(give_back)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some((kind, status)) = row {
            taken.add(kind, &status);
        }
    }
    Ok(taken)
}

pub async fn register(
    store: &SqliteStore,
    hello: &WorkerHello,
    ttl: Duration,
) -> Result<Registration, StoreError> {
    let now = store.now_micros();
    let mut tx = store.begin().await?;
    let previous = sql::previous_session(&mut tx, hello).await?;
    let start = SessionStart::new(hello, previous.as_ref().map(|(s, o)| (s.as_str(), &o.0)));
    let epoch = sql::open_session(&mut tx, hello, &start, ttl, Some(now)).await?;
    let SessionStart { worker_id, resumed, capacity_override, .. } = start;
    let (own, resurrected) = match previous {
        Some(_) => sql::reclaim(&mut tx, worker_id, hello, Some(now)).await?,
        None => Default::default(),
    };
    let stale = stale_runs(&hello.running, &own, &resurrected);
    let mut taken = Taken::default();
    if resumed {
        for (kind, status) in sql::take_lost(&mut tx, worker_id, hello, Some(now)).await? {
            taken.add(kind, &status);
        }
    }
    tx.commit().await?;
    let lost = taken.count;
    let mut changed = super::queue::Changed::default();
    changed.add(taken);
    changed.announce(store);
    Ok(Registration { worker_id, epoch, resumed, stale, lost, capacity_override })
}

pub async fn set_draining(store: &SqliteStore, session: SessionRef) -> Result<bool, StoreError> {
    let mut tx = store.begin().await?;
    let done = sql::set_draining(&mut tx, session).await?;
    tx.commit().await?;
    Ok(done)
}

pub async fn list(
    store: &SqliteStore,
    include_gone: bool,
    offset: u64,
    limit: u32,
) -> Result<Vec<WorkerRecord>, StoreError> {
    let mut conn = store.reader().acquire().await?;
    sql::list(&mut conn, include_gone, offset, limit).await
}

/// Declares workers whose heartbeat expired dead and takes their attempts
/// back; an attempt held back for a resurrected worker becomes claimable.
pub async fn reap(store: &SqliteStore, fence: Fence) -> Result<Reaped, StoreError> {
    let now = store.now_micros();
    let mut tx = store.begin().await?;
    let dead = sql::mark_dead(&mut tx, fence, Some(now)).await?;
    let mut taken = Taken::default();
    for worker in &dead {
        let reason = "worker heartbeat expired";
        for (kind, status) in sql::take_back_from_dead(&mut tx, *worker, reason, Some(now)).await? {
            taken.add(kind, &status);
        }
    }
    tx.commit().await?;
    let jobs = taken.count;
    let mut changed = super::queue::Changed::default();
    changed.add(taken);
    changed.announce(store);
    Ok(Reaped { workers: dead, jobs })
}

/// Marks a drained session offline (`worker_sql::mark_offline`).
pub async fn mark_offline(
    tx: &mut SqliteConnection,
    session: SessionRef,
    now: i64,
) -> Result<Taken, StoreError> {
    let mut taken = Taken::default();
    for (kind, status) in sql::mark_offline(tx, session, Some(now)).await? {
        taken.add(kind, &status);
    }
    Ok(taken)
}

pub async fn set_capacity(
    store: &SqliteStore,
    worker_id: Uuid,
    capacity: &HashMap<String, u32>,
) -> Result<CapacityOutcome, StoreError> {
    let mut tx = store.begin().await?;
    let (outcome, effective) = sql::set_capacity(&mut tx, worker_id, capacity).await?;
    tx.commit().await?;
    if let Some(capacity) = effective {
        store.announce(StoreEvent::CapacityChanged { worker_id, capacity });
    }
    Ok(outcome)
}
