//! Metrics reads on SQLite (see `store::stats`).

use super::SqliteStore;
use crate::store::StoreError;
use crate::store::sets;
use crate::store::stats::{CleanupStats, QueueStats};

pub async fn queue(store: &SqliteStore) -> Result<QueueStats, StoreError> {
    let jobs = sqlx::query_as("SELECT kind, status, count(*) FROM jobs GROUP BY kind, status")
        .fetch_all(store.reader())
        .await?;
    let backlog = sqlx::query_as(
        "SELECT kind, count(*), (?1 - min(scheduled_at)) / 1e6
         FROM jobs WHERE status = 'waiting' AND scheduled_at <= ?1
         GROUP BY kind",
    )
    .bind(store.now_micros())
    .fetch_all(store.reader())
    .await?;
    Ok(QueueStats { jobs, backlog })
}

pub async fn cleanups(store: &SqliteStore) -> Result<CleanupStats, StoreError> {
    let (running, remaining): (i64, i64) = sqlx::query_as(concat!(
        "SELECT count(*) FILTER (WHERE cleanup_status = 'ongoing'),
                count(*) FILTER (WHERE cleanup_status IN ",
        sets::cleanup_waiting!(),
        ")
         FROM repositories WHERE cleanup_status <> 'unscheduled'"
    ))
    .fetch_one(store.reader())
    .await?;
    let (overdue, max_overdue_seconds): (i64, Option<f64>) = sqlx::query_as(concat!(
        "SELECT count(*), (?1 - min(p.next_run_at)) / 1e6
         FROM repositories r JOIN policies p ON p.id = r.policy_id
         WHERE r.cleanup_status IN ",
        sets::cleanup_waiting!(),
        " AND p.next_run_at <= ?1"
    ))
    .bind(store.now_micros())
    .fetch_one(store.reader())
    .await?;
    Ok(CleanupStats {
        running,
        remaining,
        overdue,
        max_overdue_seconds: max_overdue_seconds.unwrap_or(0.0),
    })
}
