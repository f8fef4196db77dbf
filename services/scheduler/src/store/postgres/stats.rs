//! Metrics reads (see `store::stats`).

use sqlx::postgres::PgPool;

use crate::store::StoreError;
use crate::store::sets;
use crate::store::stats::{CleanupStats, QueueStats};

pub async fn queue(pool: &PgPool) -> Result<QueueStats, StoreError> {
    let jobs = sqlx::query_as("SELECT kind, status, count(*) FROM jobs GROUP BY kind, status")
        .fetch_all(pool)
        .await?;
    let backlog = sqlx::query_as(
        "SELECT kind, count(*), EXTRACT(EPOCH FROM store_now() - min(scheduled_at))::float8
         FROM jobs WHERE status = 'waiting' AND scheduled_at <= store_now()
         GROUP BY kind",
    )
    .fetch_all(pool)
    .await?;
    Ok(QueueStats { jobs, backlog })
}

pub async fn cleanups(pool: &PgPool) -> Result<CleanupStats, StoreError> {
    let (running, remaining): (i64, i64) = sqlx::query_as(concat!(
        "SELECT count(*) FILTER (WHERE cleanup_status = 'ongoing'),
                count(*) FILTER (WHERE cleanup_status IN ",
        sets::cleanup_waiting!(),
        ")
         FROM repositories WHERE cleanup_status <> 'unscheduled'"
    ))
    .fetch_one(pool)
    .await?;
    let (overdue, max_overdue_seconds): (i64, Option<f64>) = sqlx::query_as(concat!(
        "SELECT count(*), EXTRACT(EPOCH FROM store_now() - min(p.next_run_at))::float8
         FROM repositories r JOIN policies p ON p.id = r.policy_id
         WHERE r.cleanup_status IN ",
        sets::cleanup_waiting!(),
        " AND p.next_run_at <= store_now()"
    ))
    .fetch_one(pool)
    .await?;
    Ok(CleanupStats {
        running,
        remaining,
        overdue,
        max_overdue_seconds: max_overdue_seconds.unwrap_or(0.0),
    })
}
