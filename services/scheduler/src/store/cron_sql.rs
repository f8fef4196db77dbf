//! Cron definitions, written once for both stores (see `engines`). Firing
//! stays per engine: PostgreSQL locks the due rows `SKIP LOCKED` against a
//! replica that still believes it leads; SQLite's one writer needs not.

use sqlx::Executor;
use sqlx::types::Json;

use crate::store::dialect::is_unique_violation;
use crate::store::engines::per_engine;
use crate::store::rows::{self, CRON_COLUMNS};
use crate::store::{CronRecord, NewCron, StoreError};

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
}
