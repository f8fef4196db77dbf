//! Retention of finished jobs and their logs, written once for both stores
//! (see `engines`): a batch at a time, each in its own transaction, so the
//! writer (SQLite's one, PostgreSQL's locks) is never held long.

use std::time::Duration;

use crate::store::engines::per_engine;
use crate::store::{Purged, StoreError};

/// Rows deleted per batch.
pub(crate) const BATCH: i64 = 5000;

/// Which finished jobs a purge takes.
#[derive(Clone, Copy, Debug)]
enum Purge {
    /// Those finished longer ago than this.
    OlderThan(Duration),
    /// Those beyond the newest this many.
    BeyondNewest(u64),
}

per_engine! {
    /// Deletes finished jobs and their logs older than `older_than`, then
    /// beyond the newest `keep_last` (none when 0), a batch per
    /// transaction on `writer`.
    pub async fn purge(
        writer: &sqlx::Pool<DB>,
        older_than: Duration,
        keep_last: u64,
        now: Option<Time>,
    ) -> Result<Purged, StoreError> {
        let mut purged = Purged::default();
        let purges = [Purge::OlderThan(older_than), Purge::BeyondNewest(keep_last)];
        for purge in purges.into_iter().take(if keep_last == 0 { 1 } else { 2 }) {
            loop {
                let mut tx = begin_write(writer).await?;
                let (batch, more) = purge_batch(&mut tx, purge, now).await?;
                tx.commit().await?;
                purged.jobs += batch.jobs;
                purged.log_chunks += batch.log_chunks;
                if !more {
                    break;
                }
            }
        }
        Ok(purged)
    }

    /// Deletes one batch of the finished jobs `purge` names, with their
    /// logs. Returns what it deleted, and whether a full batch went (more
    /// may be left).
    async fn purge_batch(
        conn: &mut Connection,
        purge: Purge,
        now: Option<Time>,
    ) -> Result<(Purged, bool), StoreError> {
        let finished = concat!("status IN ", crate::store::sets::finished!());
        let (select, bound) = match purge {
            Purge::OlderThan(age) => (
                format!(
                    "SELECT id FROM jobs WHERE {finished} AND finished_at < {} LIMIT $2",
                    DIALECT.before(&DIALECT.now(3), "$1"),
                ),
                Bound::Span(span(age)),
            ),
            Purge::BeyondNewest(keep) => (
                format!("SELECT id FROM jobs WHERE {finished} ORDER BY id DESC LIMIT $2 OFFSET $1"),
                Bound::Count(i64::try_from(keep).unwrap_or(i64::MAX)),
            ),
        };
        let query = sqlx::query_scalar(sqlx::AssertSqlSafe(select));
        let mut query = match bound {
            Bound::Span(s) => query.bind(s),
            Bound::Count(n) => query.bind(n),
        }
        .bind(BATCH);
        if let (Purge::OlderThan(_), Some(now)) = (purge, now) {
            query = query.bind(now);
        }
        let ids: Vec<i64> = query.fetch_all(&mut *conn).await?;
        let logs = format!("DELETE FROM job_logs WHERE job_id {}", DIALECT.in_list(1));
        let log_chunks = sqlx::query(sqlx::AssertSqlSafe(logs))
            .bind(ids_column(&ids))
            .execute(&mut *conn)
            .await?
            .rows_affected();
        let jobs = format!("DELETE FROM jobs WHERE id {}", DIALECT.in_list(1));
        let jobs = sqlx::query(sqlx::AssertSqlSafe(jobs))
            .bind(ids_column(&ids))
            .execute(&mut *conn)
            .await?
            .rows_affected();
        Ok((Purged { jobs, log_chunks }, ids.len() as i64 >= BATCH))
    }

    /// What a purge's first parameter binds.
    enum Bound {
        Span(Span),
        Count(i64),
    }
}
