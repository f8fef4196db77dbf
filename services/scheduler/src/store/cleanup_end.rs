//! How a repository's cleanup ends once its `tag_cleanup` job has: decided
//! here, once, for both stores. Each store only reads the repositories
//! whose job ended ([`ENDED_SELECT`], the same statement in both) and
//! writes what [`EndedCleanup::closing`] decides ([`close_sql`]); the
//! leader's selection tick does both before it counts free slots, so a
//! slot freed by an ended job is refilled in the same tick.
//!
//! Closing in the tick rather than in every statement that can end a job
//! (an update, a reap, a give-back, an omission, a cancel, a delete) means
//! no path can forget it: a job ended by any of them, or by hand, is
//! closed by the next tick. A job's end wakes the tick at once (the
//! PostgreSQL trigger `jobs_cleanup_ended` notifies, the SQLite store
//! announces it after its commit), so the repository leaves `ongoing`
//! within one tick of its job.

use regsweep_common::db::StoredTime;
use regsweep_proto::v1::{CleanupStatus, JobStatus};
use serde_json::Value;
use sqlx::types::Json;

use crate::store::StoreError;
use crate::store::catalog::cleanup_status_name;
use crate::store::rows::job_status;
use crate::store::sets;

/// The `ongoing` repositories whose cleanup job ended, in [`EndedRow`]'s
/// shape. Both stores run it as written: the columns and operators are
/// common SQL.
pub const ENDED_SELECT: &str = concat!(
    "SELECT r.id AS repository_id, j.id AS job_id, j.status AS job_status, j.result,
            j.last_error AS job_error, r.cleanup_started_at,
            p.enabled AS policy_enabled, p.armed_run_at, p.next_run_at
     FROM repositories r
     JOIN jobs j ON j.id = r.cleanup_job_id
     LEFT JOIN policies p ON p.id = r.policy_id
     WHERE r.cleanup_status = 'ongoing' AND j.status IN ",
    sets::finished!(),
    "
     ORDER BY r.id"
);

/// The statement that writes one [`Closing`]: `$1` repository, `$2` its
/// job (a repository that moved on to another job is left alone), `$3`
/// status, `$4` deleted count to add (the scrubber may have added its own
/// before the job ended), `$5` error, `$6` the plan's reclaimable bytes
/// (kept when null). `now` is how the store writes the time: the wall
/// clock, not a transaction's start, so a selection that sees this
/// commit starts its cleanups strictly after it.
pub fn close_sql(now: &str) -> String {
    format!(
        "UPDATE repositories SET cleanup_status = $3, cleanup_finished_at = {now},
             last_deleted_count = last_deleted_count + $4, last_error = $5,
             last_reclaimable_bytes = coalesce($6, last_reclaimable_bytes)
         WHERE id = $1 AND cleanup_job_id = $2 AND cleanup_status = 'ongoing'"
    )
}

crate::store::engines::per_engine! {
    /// Closes every `ongoing` cleanup whose job ended, inside the caller's
    /// transaction (the selection's, which no other closes race); returns
    /// each repository closed with the status it ended in. The time written
    /// is the wall clock (see [`close_sql`]): the store's on SQLite (`now`),
    /// the database's on PostgreSQL (`None`).
    pub async fn close_ended(
        conn: &mut Connection,
        now: Option<Time>,
    ) -> Result<Vec<(i64, CleanupStatus)>, StoreError> {
        let rows: Vec<EndedRow<Time>> =
            sqlx::query_as(ENDED_SELECT).fetch_all(&mut *conn).await?;
        let sql = close_sql(&DIALECT.clock(7));
        let mut closed = Vec::with_capacity(rows.len());
        for row in rows {
            let closing = EndedCleanup::try_from(row)?.closing();
            closed.push((closing.repository_id, closing.status));
            let mut write = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(closing.repository_id)
                .bind(closing.job_id)
                .bind(closing.status_name())
                .bind(closing.deleted)
                .bind(closing.last_error)
                .bind(closing.reclaimable_bytes);
            if let Some(now) = now {
                write = write.bind(now);
            }
            write.execute(&mut *conn).await?;
        }
        Ok(closed)
    }
}

/// A repository whose cleanup job ended, as both stores read it.
#[derive(sqlx::FromRow)]
pub struct EndedRow<T> {
    repository_id: i64,
    job_id: i64,
    job_status: String,
    result: Option<Json<Value>>,
    job_error: Option<String>,
    cleanup_started_at: Option<T>,
    policy_enabled: Option<bool>,
    armed_run_at: Option<T>,
    next_run_at: Option<T>,
}

/// The policy run a repository belongs to when its cleanup ends.
#[derive(Clone, Copy, Debug)]
pub struct PolicyRun {
    pub enabled: bool,
    /// The run the policy's repositories were last marked for.
    pub armed_run_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The policy's current run.
    pub next_run_at: chrono::DateTime<chrono::Utc>,
}

/// A repository whose cleanup job ended: what the decision reads.
#[derive(Clone, Debug)]
pub struct EndedCleanup {
    pub repository_id: i64,
    pub job_id: i64,
    pub job_status: JobStatus,
    pub result: Option<Value>,
    pub job_error: Option<String>,
    pub cleanup_started_at: Option<chrono::DateTime<chrono::Utc>>,
    /// None when the repository has no policy any more.
    pub policy: Option<PolicyRun>,
}

/// How a repository's cleanup ends: what the store writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Closing {
    pub repository_id: i64,
    pub job_id: i64,
    pub status: CleanupStatus,
    /// Added to the repository's deleted count.
    pub deleted: i64,
    pub last_error: Option<String>,
    /// The bytes the completed plan frees; None keeps the last figure.
    pub reclaimable_bytes: Option<i64>,
}

impl Closing {
    /// The stored name of its status.
    pub fn status_name(&self) -> &'static str {
        cleanup_status_name(self.status)
    }
}

impl<T: StoredTime> TryFrom<EndedRow<T>> for EndedCleanup {
    type Error = StoreError;

    fn try_from(row: EndedRow<T>) -> Result<Self, StoreError> {
        let next_run_at = row.next_run_at.map(StoredTime::into_time);
        let policy = match (row.policy_enabled, next_run_at) {
            (Some(enabled), Some(next_run_at)) => Some(PolicyRun {
                enabled,
                armed_run_at: row.armed_run_at.map(StoredTime::into_time),
                next_run_at,
            }),
            _ => None,
        };
        Ok(Self {
            repository_id: row.repository_id,
            job_id: row.job_id,
            job_status: job_status(&row.job_status)?,
            result: row.result.map(|r| r.0),
            job_error: row.job_error,
            cleanup_started_at: row.cleanup_started_at.map(StoredTime::into_time),
            policy,
        })
    }
}

impl EndedCleanup {
    /// Decides how the cleanup ends:
    /// * `unfinished` when the job is done but ran out of its time budget
    ///   (its result's `outcome`), so it resumes after the due ones;
    /// * `scheduled` again when its enabled policy's current run began
    ///   after this cleanup started (it was busy when the run was marked);
    /// * `unscheduled` otherwise.
    ///
    /// A done job clears the error and adds the deletions it reports; a
    /// done job with a complete plan records the bytes the plan frees.
    pub fn closing(&self) -> Closing {
        let done = self.job_status == JobStatus::Done;
        let field = |name: &str| self.result.as_ref().and_then(|r| r.get(name));
        let unfinished = done && field("outcome").and_then(Value::as_str) == Some("unfinished");
        let status = if unfinished {
            CleanupStatus::Unfinished
        } else if self.run_began_after_start() {
            CleanupStatus::Scheduled
        } else {
            CleanupStatus::Unscheduled
        };
        let last_error = match self.job_status {
            JobStatus::Done => None,
            JobStatus::Error => Some(self.job_error.clone().unwrap_or_else(|| "failed".into())),
            other => Some(format!("cleanup {}", other.short_name())),
        };
        let deleted = if done { field("deleted_count").map_or(0, count) } else { 0 };
        let reclaim = field("reclaim").and_then(|r| r.get("bytes"));
        let reclaimable_bytes = (done && !unfinished).then(|| reclaim.map_or(0, count));
        Closing {
            repository_id: self.repository_id,
            job_id: self.job_id,
            status,
            deleted,
            last_error,
            reclaimable_bytes,
        }
    }

    /// The policy's current run was marked while this cleanup ran, so the
    /// repository was skipped and is due again.
    fn run_began_after_start(&self) -> bool {
        let (Some(run), Some(started)) = (self.policy, self.cleanup_started_at) else {
            return false;
        };
        run.enabled && run.armed_run_at == Some(run.next_run_at) && started < run.next_run_at
    }
}

/// A count from a job's result: a non-negative integer, saturated at the
/// column's range; anything else counts nothing (a worker's result is
/// outside input).
fn count(value: &Value) -> i64 {
    match value {
        Value::Number(n) => n
            .as_i64()
            .map(|n| n.max(0))
            .or_else(|| n.as_u64().map(|_| i64::MAX))
            .or_else(|| n.as_f64().map(|f| f.clamp(0.0, i64::MAX as f64) as i64))
            .unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Duration, Utc};
    use serde_json::json;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).expect("a time")
    }

    fn ended(status: JobStatus, result: Option<Value>) -> EndedCleanup {
        EndedCleanup {
            repository_id: 7,
            job_id: 9,
            job_status: status,
            result,
            job_error: None,
            cleanup_started_at: Some(at(0)),
            policy: Some(PolicyRun {
                enabled: true,
                armed_run_at: Some(at(-60)),
                next_run_at: at(-60),
            }),
        }
    }

    #[test]
    fn a_done_cleanup_records_its_deletions_and_plan() {
        let result = json!({"deleted_count": 4, "reclaim": {"bytes": 1024}});
        let closing = ended(JobStatus::Done, Some(result)).closing();
        assert_eq!(
            closing,
            Closing {
                repository_id: 7,
                job_id: 9,
                status: CleanupStatus::Unscheduled,
                deleted: 4,
                last_error: None,
                reclaimable_bytes: Some(1024),
            }
        );
        assert_eq!(closing.status_name(), "unscheduled");
        let bare = ended(JobStatus::Done, None).closing();
        assert_eq!((bare.deleted, bare.reclaimable_bytes), (0, Some(0)), "a plan freeing nothing");
    }

    #[test]
    fn an_unfinished_cleanup_resumes_and_keeps_the_last_plan() {
        let result = json!({"outcome": "unfinished", "deleted_count": 2, "reclaim": {"bytes": 9}});
        let closing = ended(JobStatus::Done, Some(result)).closing();
        assert_eq!(
            (closing.status, closing.deleted, closing.reclaimable_bytes),
            (CleanupStatus::Unfinished, 2, None)
        );
    }

    #[test]
    fn a_run_marked_while_the_cleanup_ran_schedules_it_again() {
        let mut busy = ended(JobStatus::Done, None);
        busy.policy =
            Some(PolicyRun { enabled: true, armed_run_at: Some(at(60)), next_run_at: at(60) });
        assert_eq!(busy.closing().status, CleanupStatus::Scheduled);
        // Not while the run is not marked yet, nor for a disabled policy,
        // nor for a repository without one.
        let mut unarmed = busy.clone();
        unarmed.policy = Some(PolicyRun { armed_run_at: Some(at(-60)), ..busy.policy.unwrap() });
        assert_eq!(unarmed.closing().status, CleanupStatus::Unscheduled);
        let mut disabled = busy.clone();
        disabled.policy = Some(PolicyRun { enabled: false, ..busy.policy.unwrap() });
        assert_eq!(disabled.closing().status, CleanupStatus::Unscheduled);
        let mut orphan = busy.clone();
        orphan.policy = None;
        assert_eq!(orphan.closing().status, CleanupStatus::Unscheduled);
        // A run that began before the cleanup started was this cleanup's.
        let mut started_later = busy.clone();
        started_later.cleanup_started_at = Some(at(60) + Duration::seconds(1));
        assert_eq!(started_later.closing().status, CleanupStatus::Unscheduled);
        // An unfinished cleanup resumes as unfinished either way.
        let mut unfinished = busy;
        unfinished.result = Some(json!({"outcome": "unfinished"}));
        assert_eq!(unfinished.closing().status, CleanupStatus::Unfinished);
    }

    #[test]
    fn a_failed_or_stopped_cleanup_says_why_and_counts_nothing() {
        let mut failed = ended(JobStatus::Error, Some(json!({"deleted_count": 3})));
        assert_eq!(failed.closing().last_error.as_deref(), Some("failed"));
        failed.job_error = Some("registry refused".into());
        let closing = failed.closing();
        assert_eq!(
            (closing.last_error.as_deref(), closing.deleted, closing.reclaimable_bytes),
            (Some("registry refused"), 0, None)
        );
        for (status, error) in
            [(JobStatus::Cancel, "cleanup cancel"), (JobStatus::Deleted, "cleanup deleted")]
        {
            assert_eq!(ended(status, None).closing().last_error.as_deref(), Some(error));
        }
    }

    #[test]
    fn counts_from_a_result_are_non_negative_and_saturate() {
        let cases = [
            (json!(5), 5),
            (json!(-5), 0),
            (json!(u64::MAX), i64::MAX),
            (json!(2.5), 2),
            (json!(1e300), i64::MAX),
            (json!("12"), 0),
            (json!(null), 0),
        ];
        for (value, want) in cases {
            assert_eq!(count(&value), want, "{value}");
        }
    }
}
