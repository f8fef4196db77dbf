//! The admin reads and moves of a job, written once for both stores (see
//! `engines`): read, list, cancel and delete, and the paging of its logs.
//! How the stores announce a cancel or an ended cleanup differs (a
//! PostgreSQL notification inside the transaction; an in-process event
//! after SQLite's commit), so that stays with them.

use chrono::{DateTime, Utc};
use sqlx::Executor;

use crate::store::engines::per_engine;
use crate::store::rows::{self, JOB_COLUMNS};
use crate::store::transitions::{self, CancelMove};
use crate::store::{
    CancelOutcome, CreateOutcome, DeleteOutcome, JobFilter, JobRecord, LogCursor, LogLine, NewJob,
    StoreError,
};
use regsweep_proto::v1::JobStatus;

/// One stored chunk of a job's log: its attempt, its sequence number in
/// the attempt, and its lines with their times.
pub(crate) struct LogChunk {
    pub attempt: i32,
    pub seq: i32,
    pub lines: Vec<(DateTime<Utc>, String)>,
}

/// The lines from `start` on, at most `limit`, out of `chunks` read from
/// `start`'s chunk on in order; and where the next read starts (after the
/// last line returned).
pub(crate) fn page_logs(
    chunks: Vec<LogChunk>,
    start: LogCursor,
    limit: u32,
) -> Result<(Vec<LogLine>, LogCursor), StoreError> {
    let mut lines = Vec::new();
    let mut next = start;
    'chunks: for chunk in chunks {
        let attempt = rows::non_negative(chunk.attempt, "log attempt")?;
        let seq = rows::non_negative(chunk.seq, "log seq")?;
        let skip = if (attempt, seq) == (start.attempt, start.seq) { start.line } else { 0 };
        for (index, (time, text)) in chunk.lines.into_iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            if index < skip {
                continue;
            }
            if lines.len() >= limit as usize {
                break 'chunks;
            }
            lines.push(LogLine { attempt, time, text });
            next = LogCursor { attempt, seq, line: index + 1 };
        }
    }
    Ok((lines, next))
}

/// A job that holds a unique key while active (a cron firing, a cleanup).
pub(crate) struct KeyedJob<'a> {
    pub kind: &'a str,
    pub args: &'a serde_json::Value,
    pub priority: i32,
    pub max_attempts: i32,
    pub key: &'a str,
    pub trace_context: Option<&'a str>,
}

/// Whether a write failed on a foreign key (a parent that does not exist):
/// both drivers report it as the same kind.
fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    e.as_database_error().map(|d| d.kind()) == Some(sqlx::error::ErrorKind::ForeignKeyViolation)
}

per_engine! {
    type JobRow = rows::JobRow<Time>;

    /// Creates `job` unless an active job holds its key (then that job is
    /// the answer, whatever the parent: the insert skips the row before
    /// its foreign key is checked).
    pub async fn create(
        conn: &mut Connection,
        job: &NewJob,
        now: Option<Time>,
    ) -> Result<CreateOutcome, StoreError> {
        let now_sql = DIALECT.now(9);
        let insert = format!(
            concat!(
                "INSERT INTO jobs (kind, args, priority, scheduled_at, max_attempts, unique_key,
                                   parent_id, trace_context, created_at, updated_at)
                 VALUES ($1, $2, $3, coalesce({scheduled}, {now}), $5, $6, $7, $8, {now}, {now})
                 ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND status IN ",
                crate::store::sets::active!(),
                " DO NOTHING RETURNING {columns}"
            ),
            scheduled = DIALECT.time_parameter(4),
            now = now_sql,
            columns = JOB_COLUMNS,
        );
        let existing = format!(
            concat!(
                "SELECT {columns} FROM jobs WHERE unique_key = $1 AND status IN ",
                crate::store::sets::active!()
            ),
            columns = JOB_COLUMNS,
        );
        // The holder of the key may finish between the two statements; then
        // the insert succeeds on the next round.
        for _ in 0..3 {
            let mut query = sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(insert.as_str()))
                .bind(&job.kind)
                .bind(sqlx::types::Json(&job.args))
                .bind(job.priority)
                .bind(job.scheduled_at.map(time))
                .bind(rows::to_i32(job.max_attempts))
                .bind(&job.unique_key)
                .bind(job.parent_id)
                .bind(&job.trace_context);
            if let Some(now) = now {
                query = query.bind(now);
            }
            match query.fetch_optional(&mut *conn).await {
                Ok(Some(row)) => return Ok(CreateOutcome::Created(row.try_into()?)),
                Ok(None) => {}
                Err(e) if is_foreign_key_violation(&e) => return Ok(CreateOutcome::ParentNotFound),
                Err(e) => return Err(e.into()),
            }
            let holder = sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(existing.as_str()))
                .bind(&job.unique_key)
                .fetch_optional(&mut *conn)
                .await?;
            if let Some(row) = holder {
                return Ok(CreateOutcome::Duplicate(row.try_into()?));
            }
        }
        Err(StoreError::Corrupt("unique key neither insertable nor held".into()))
    }

    /// Inserts `job`, due now, unless an active job holds its key; its id
    /// when inserted.
    pub async fn insert_keyed(
        conn: &mut Connection,
        job: KeyedJob<'_>,
        now: Option<Time>,
    ) -> Result<Option<i64>, StoreError> {
        let now_sql = DIALECT.now(7);
        let sql = format!(
            concat!(
                "INSERT INTO jobs (kind, args, priority, max_attempts, unique_key, trace_context,
                                   scheduled_at, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, {now}, {now}, {now})
                 ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND status IN ",
                crate::store::sets::active!(),
                " DO NOTHING RETURNING id"
            ),
            now = now_sql,
        );
        let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(job.kind)
            .bind(sqlx::types::Json(job.args))
            .bind(job.priority)
            .bind(job.max_attempts)
            .bind(job.key)
            .bind(job.trace_context);
        if let Some(now) = now {
            query = query.bind(now);
        }
        Ok(query.fetch_optional(&mut *conn).await?)
    }

    /// The job `id`.
    pub async fn get<'e>(
        exec: impl Executor<'e, Database = DB>,
        id: i64,
    ) -> Result<Option<JobRecord>, StoreError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
        let row: Option<JobRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(exec).await?;
        row.map(JobRecord::try_from).transpose()
    }

    /// Jobs matching `filter`, newest first, before the id `before`.
    pub async fn list<'e>(
        exec: impl Executor<'e, Database = DB>,
        filter: &JobFilter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<JobRecord>, StoreError> {
        // Built per filter combination so each gets its own plan; a generic
        // `$1 IS NULL OR ...` plan would scan.
        let mut q =
            sqlx::QueryBuilder::<DB>::new(format!("SELECT {JOB_COLUMNS} FROM jobs WHERE "));
        if filter.statuses.is_empty() {
            q.push("status <> 'deleted'");
        } else {
            q.push("status IN (");
            let mut names = q.separated(", ");
            for status in &filter.statuses {
                names.push_bind(status.short_name());
            }
            q.push(")");
        }
        if let Some(kind) = &filter.kind {
            q.push(" AND kind = ").push_bind(kind.clone());
        }
        if let Some(worker) = filter.worker_id {
            q.push(" AND worker_id = ").push_bind(worker);
        }
        if let Some(before) = before {
            q.push(" AND id < ").push_bind(before);
        }
        q.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(limit));
        let rows = q.build_query_as::<JobRow>().fetch_all(exec).await?;
        rows::jobs(rows)
    }

    /// The status and kind of job `id`, its row locked for the rest of the
    /// transaction.
    async fn locked(
        conn: &mut Connection,
        id: i64,
    ) -> Result<Option<(JobStatus, String)>, StoreError> {
        let sql = format!("SELECT status, kind FROM jobs WHERE id = $1{}", DIALECT.row_lock());
        let found: Option<(String, String)> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&mut *conn).await?;
        found.map(|(status, kind)| Ok((rows::job_status(&status)?, kind))).transpose()
    }

    /// Cancels job `id` inside the caller's transaction: a running attempt
    /// is asked to stop (`Requested`: its worker must be told), one not
    /// started ends at once, a finished one is left as it is.
    pub async fn cancel(
        conn: &mut Connection,
        id: i64,
        reason: &str,
        now: Option<Time>,
    ) -> Result<CancelOutcome, StoreError> {
        let Some((status, _)) = locked(conn, id).await? else {
            return Ok(CancelOutcome::NotFound);
        };
        let requested = match transitions::cancel_move(status) {
            CancelMove::Finished => {
                let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
                let row: JobRow =
                    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_one(&mut *conn).await?;
                return Ok(CancelOutcome::Terminal(row.try_into()?));
            }
            CancelMove::Request => true,
            CancelMove::End => false,
        };
        let sql = format!(
            "UPDATE jobs SET {} WHERE id = $1 RETURNING {JOB_COLUMNS}",
            transitions::cancel_set(&DIALECT.now(4)),
        );
        let mut query = sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(requested)
            .bind(reason);
        if let Some(now) = now {
            query = query.bind(now);
        }
        let job: JobRecord = query.fetch_one(&mut *conn).await?.try_into()?;
        Ok(if requested { CancelOutcome::Requested(job) } else { CancelOutcome::Cancelled(job) })
    }

    /// Deletes job `id` and its logs inside the caller's transaction unless
    /// it is active; with its kind when deleted.
    pub async fn delete(
        conn: &mut Connection,
        id: i64,
        now: Option<Time>,
    ) -> Result<(DeleteOutcome, Option<String>), StoreError> {
        let Some((status, kind)) = locked(conn, id).await? else {
            return Ok((DeleteOutcome::NotFound, None));
        };
        if !transitions::deletable(status) {
            return Ok((DeleteOutcome::Active(status), None));
        }
        sqlx::query("DELETE FROM job_logs WHERE job_id = $1").bind(id).execute(&mut *conn).await?;
        let sql =
            format!("UPDATE jobs SET {} WHERE id = $1", transitions::delete_set(&DIALECT.now(2)));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id);
        if let Some(now) = now {
            query = query.bind(now);
        }
        query.execute(&mut *conn).await?;
        Ok((DeleteOutcome::Deleted, Some(kind)))
    }
}
