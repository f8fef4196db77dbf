//! What the metrics endpoint reports from the database: the queue and the
//! limited-capacity selection. Read on the leader only, at the metrics
//! interval, and only when metrics are served. The reads are written once
//! for both engines (see `engines`); `now` is the store's clock on SQLite,
//! `None` on PostgreSQL (its statements read `store_now()`).

/// Jobs by kind and status, and the due backlog by kind.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueStats {
    /// `(kind, status, jobs)`.
    pub jobs: Vec<(String, String, i64)>,
    /// `(kind, due waiting jobs, seconds the oldest has waited)`.
    pub backlog: Vec<(String, i64, f64)>,
}

/// The selection's state across every policy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CleanupStats {
    /// Cleanups running (`ongoing`).
    pub running: i64,
    /// Repositories waiting for a cleanup slot (`scheduled`, `unfinished`).
    pub remaining: i64,
    /// Of those, repositories whose policy run is due: overdue.
    pub overdue: i64,
    /// How long the longest-overdue one has been due, in seconds.
    pub max_overdue_seconds: f64,
}

crate::store::engines::per_engine! {
    use crate::store::StoreError;
    use crate::store::sets;

    /// Jobs by kind and status, and the due backlog by kind.
    pub async fn queue(pool: &sqlx::Pool<DB>, now: Option<Time>) -> Result<QueueStats, StoreError> {
        let jobs = sqlx::query_as("SELECT kind, status, count(*) FROM jobs GROUP BY kind, status")
            .fetch_all(pool)
            .await?;
        let now_sql = DIALECT.now(1);
        let sql = format!(
            "SELECT kind, count(*), {}
             FROM jobs WHERE status = 'waiting' AND scheduled_at <= {now_sql}
             GROUP BY kind",
            DIALECT.seconds_since(&now_sql, "min(scheduled_at)"),
        );
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
        if let Some(now) = now {
            query = query.bind(now);
        }
        let backlog = query.fetch_all(pool).await?;
        Ok(QueueStats { jobs, backlog })
    }

    /// The selection's state across every policy.
    pub async fn cleanups(
        pool: &sqlx::Pool<DB>,
        now: Option<Time>,
    ) -> Result<CleanupStats, StoreError> {
        let (running, remaining): (i64, i64) = sqlx::query_as(concat!(
            "SELECT count(*) FILTER (WHERE cleanup_status = 'ongoing'),
                    count(*) FILTER (WHERE cleanup_status IN ",
            sets::cleanup_waiting!(),
            ")
             FROM repositories WHERE cleanup_status <> 'unscheduled'"
        ))
        .fetch_one(pool)
        .await?;
        let now_sql = DIALECT.now(1);
        let sql = format!(
            "SELECT count(*), {}
             FROM repositories r JOIN policies p ON p.id = r.policy_id
             WHERE r.cleanup_status IN {} AND p.next_run_at <= {now_sql}",
            DIALECT.seconds_since(&now_sql, "min(p.next_run_at)"),
            sets::cleanup_waiting!(),
        );
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
        if let Some(now) = now {
            query = query.bind(now);
        }
        let (overdue, max_overdue_seconds): (i64, Option<f64>) = query.fetch_one(pool).await?;
        Ok(CleanupStats {
            running,
            remaining,
            overdue,
            max_overdue_seconds: max_overdue_seconds.unwrap_or(0.0),
        })
    }
}
