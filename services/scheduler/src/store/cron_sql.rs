//! Crons, written once for both stores (see `engines`): their definitions
//! and their firing.

use sqlx::Executor;
use sqlx::types::Json;

use crate::store::dialect::is_unique_violation;
use crate::store::engines::per_engine;
use crate::store::job_sql::KeyedJob;
use crate::store::rows::{self, CRON_COLUMNS};
use crate::store::{CronRecord, Fired, NewCron, NextFire, StoreError};

per_engine! {
    type CronRow = rows::CronRow<Time>;
    /// A statement returning a cron.
    type CronQuery<'q> = sqlx::query::QueryAs<'q, DB, CronRow, <DB as sqlx::Database>::Arguments>;

    /// Binds `cron` as $1 to $7: name, schedule, kind, args, enabled,
    /// priority, next firing.
    fn bind_cron<'q>(query: CronQuery<'q>, cron: &'q NewCron) -> CronQuery<'q> {
        query
            .bind(&cron.name)
            .bind(&cron.schedule)
            .bind(&cron.kind)
            .bind(Json(&cron.args))
            .bind(cron.enabled)
            .bind(cron.priority)
            .bind(time(cron.next_fire_at))
    }

    /// Inserts a cron; `None` when the name is taken.
    pub async fn create(
        conn: &mut Connection,
        cron: &NewCron,
        now: Option<Time>,
    ) -> Result<Option<CronRecord>, StoreError> {
        let now_sql = DIALECT.now(8);
        let sql = format!(
            "INSERT INTO crons (name, schedule, kind, args, enabled, priority, next_fire_at,
                                created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, {now_sql}, {now_sql})
             RETURNING {CRON_COLUMNS}"
        );
        let mut query = bind_cron(sqlx::query_as(sqlx::AssertSqlSafe(sql)), cron);
        if let Some(now) = now {
            query = query.bind(now);
        }
        match query.fetch_one(&mut *conn).await {
            Ok(row) => Ok(Some(row.into())),
            Err(e) if is_unique_violation(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The cron named.
    pub async fn get<'e>(
        exec: impl Executor<'e, Database = DB>,
        name: &'e str,
    ) -> Result<Option<CronRecord>, StoreError> {
        let sql = format!("SELECT {CRON_COLUMNS} FROM crons WHERE name = $1");
        let row: Option<CronRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(name).fetch_optional(exec).await?;
        Ok(row.map(CronRecord::from))
    }

    /// Every cron, by name.
    pub async fn list<'e>(
        exec: impl Executor<'e, Database = DB>,
    ) -> Result<Vec<CronRecord>, StoreError> {
        let sql = format!("SELECT {CRON_COLUMNS} FROM crons ORDER BY name");
        let rows: Vec<CronRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(exec).await?;
        Ok(rows.into_iter().map(CronRecord::from).collect())
    }

    /// Replaces a cron's definition; `None` when there is none by its name.
    pub async fn update(
        conn: &mut Connection,
        cron: &NewCron,
        now: Option<Time>,
    ) -> Result<Option<CronRecord>, StoreError> {
        let sql = format!(
            "UPDATE crons SET schedule = $2, kind = $3, args = $4, enabled = $5, priority = $6,
                              next_fire_at = $7, updated_at = {}
             WHERE name = $1
             RETURNING {CRON_COLUMNS}",
            DIALECT.now(8),
        );
        let mut query = bind_cron(sqlx::query_as(sqlx::AssertSqlSafe(sql)), cron);
        if let Some(now) = now {
            query = query.bind(now);
        }
        let row = query.fetch_optional(&mut *conn).await?;
        Ok(row.map(CronRecord::from))
    }

    /// Deletes the cron named; false when there is none.
    pub async fn delete(conn: &mut Connection, name: &str) -> Result<bool, StoreError> {
        let done =
            sqlx::query("DELETE FROM crons WHERE name = $1").bind(name).execute(&mut *conn).await?;
        Ok(done.rows_affected() == 1)
    }

    /// When the next enabled cron is due.
    pub async fn next_due<'e>(
        exec: impl Executor<'e, Database = DB>,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
        let due = "SELECT min(next_fire_at) FROM crons WHERE enabled";
        let (due,): (Option<Time>,) = sqlx::query_as(due).fetch_one(exec).await?;
        Ok(due.map(read_time))
    }

    /// Fires the due crons, in `conn`'s transaction: each firing enqueued
    /// once (its unique key), and each cron moved to its next firing after
    /// now. The due rows stay locked until then, and a concurrent firing
    /// (a replica that still believes it leads) skips them (`skip_locked`).
    /// Returns the firings with their jobs' kinds.
    pub async fn fire_due(
        conn: &mut Connection,
        next: NextFire,
        now: Option<Time>,
    ) -> Result<Vec<(Fired, String)>, StoreError> {
        let sql = format!(
            "SELECT name, schedule, kind, args, priority, next_fire_at FROM crons
             WHERE enabled AND next_fire_at <= {} ORDER BY next_fire_at LIMIT 100{}",
            DIALECT.now(1),
            DIALECT.skip_locked(),
        );
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
        if let Some(now) = now {
            query = query.bind(now);
        }
        let due: Vec<(String, String, String, Json<serde_json::Value>, i32, Time)> =
            query.fetch_all(&mut *conn).await?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT {}", DIALECT.now(1))));
        if let Some(now) = now {
            query = query.bind(now);
        }
        let now_at: Time = query.fetch_one(&mut *conn).await?;
        let mut fired = Vec::new();
        for (name, schedule, kind, args, priority, fire_at) in due {
            let fire_at = read_time(fire_at);
            let key = format!("cron:{name}:{}", fire_at.timestamp_micros());
            let keyed = KeyedJob {
                kind: &kind,
                args: &args.0,
                priority,
                max_attempts: 3,
                key: &key,
                trace_context: None,
            };
            let job = engine::job_sql::insert_keyed(conn, keyed, now).await?;
            // At most one catch-up: the next firing is computed from now, so
            // firings missed while no leader ran are skipped.
            let next_fire = next(&schedule, fire_at.max(read_time(now_at)));
            let sql = format!(
                "UPDATE crons SET
                     next_fire_at = coalesce($2, next_fire_at), enabled = enabled AND $2 IS NOT NULL,
                     last_fire_at = $3, last_job_id = coalesce($4, last_job_id), updated_at = {}
                 WHERE name = $1",
                DIALECT.now(5),
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&name)
                .bind(next_fire.map(time))
                .bind(time(fire_at))
                .bind(job);
            if let Some(now) = now {
                query = query.bind(now);
            }
            query.execute(&mut *conn).await?;
            if let Some(job_id) = job {
                fired.push((Fired { cron: name, fire_at, job_id }, kind));
            }
        }
        Ok(fired)
    }
}
