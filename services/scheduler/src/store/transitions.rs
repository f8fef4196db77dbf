//! The job state machine's moves that must happen inside one fenced
//! statement (a worker's update, an attempt taken back, a session gone
//! offline), written once: each function returns the `SET` clause both
//! stores put in their statement. What the engines spell differently is
//! passed in (the statement's time, the placeholders) or asked of
//! [`Dialect`] (appending to a JSON array); the rules are here.
//!
//! The statuses are the sets of `sets`; a move to `waiting` takes its
//! delay from the caller, who binds `store::job_retry_steps`.

use regsweep_proto::v1::JobStatus;

use crate::store::dialect::Dialect;
use crate::store::sets;

/// The status a worker's update (`u`) moves its job (`j`) to, evaluated
/// against the row being updated, so a cancel requested meanwhile is never
/// overwritten:
/// * an attempt taken from a worker declared dead (`worker_resurrection`)
///   is released by whatever end its worker sends (a cancel, a give-back
///   when it fenced itself, a result finished meanwhile): the job runs
///   again;
/// * `running` keeps the status (a cancel request stays one);
/// * a retryable error with attempts left waits for its retry;
/// * any other end is the job's.
fn update_status() -> &'static str {
    "CASE
        WHEN j.status = 'worker_resurrection' THEN 'worker_dead'
        WHEN u.status = 'running' THEN j.status
        WHEN u.status = 'error' AND u.retryable AND j.attempt - j.given_back < j.max_attempts
            THEN 'waiting'
        ELSE u.status END"
}

/// The `SET` clause of a worker's fenced update `u` (columns `status`,
/// `progress`, `result`, `error`, `retryable`) of job `j`. `now` is the
/// statement's time, `at` its text for an attempt error, `retry_at` when a
/// retry falls due. Nothing of a stale run released from
/// `worker_resurrection` is kept: no result, no error, no give-back.
pub fn update_set(dialect: Dialect, now: &str, at: &str, retry_at: &str) -> String {
    let status = update_status();
    let live = "j.status <> 'worker_resurrection'";
    let errors = dialect.append_error("j.", "u.error", at);
    format!(
        concat!(
            "status = {status},
             started_at = coalesce(j.started_at, {now}),
             heartbeat_at = {now},
             progress = CASE WHEN u.status = 'done' THEN 1 ELSE u.progress END,
             result = CASE WHEN u.status = 'done' AND {live} THEN u.result ELSE j.result END,
             last_error = CASE WHEN u.status = 'error' AND {live} THEN u.error
                               ELSE j.last_error END,
             errors = CASE WHEN u.status = 'error' AND {live} THEN {errors} ELSE j.errors END,
             scheduled_at = CASE WHEN ({status}) = 'waiting' THEN {retry_at}
                                 ELSE j.scheduled_at END,
             finished_at = CASE WHEN ({status}) IN ",
            sets::ended_by_worker!(),
            " THEN {now} END,
             given_back = j.given_back
                 + CASE WHEN u.status = 'worker_shutdown' AND {live} THEN 1 ELSE 0 END,
             updated_at = {now}"
        ),
        status = status,
        now = now,
        live = live,
        errors = errors,
        retry_at = retry_at,
    )
}

/// The fence of a worker's update `u` of job `j`: the attempt is still
/// the worker's (or held back for its resurrection, which only an end
/// releases). An update failing it is reported stale to its worker.
pub const UPDATE_FENCE: &str = concat!(
    "j.id = u.id AND j.attempt = u.attempt AND j.worker_id = u.worker_id
     AND (j.status IN ",
    sets::on_worker!(),
    " OR (j.status = 'worker_resurrection' AND u.status <> 'running'))"
);

/// The `SET` clause that takes back attempts their worker no longer holds
/// (declared dead, or a live worker omits them): spent, under `reason`
/// (an error recorded; the last attempt ends the job `error`) unless
/// `give_back`, an SQL boolean, holds: then a running one is given back
/// (claimable, not counted against `max_attempts`, no error), as it never
/// reached a worker that keeps its ends until they are recorded. A cancel
/// request ends `cancel` either way. An attempt taken from the worker when
/// it was declared dead (`worker_resurrection`) is released as it was:
/// claimable, nothing recorded (that loss was counted when it was taken).
pub fn take_back_set(
    dialect: Dialect,
    give_back: &str,
    reason: &str,
    now: &str,
    at: &str,
) -> String {
    let errors = dialect.append_error("", reason, at);
    let give_back = format!("({give_back})");
    format!(
        "status = CASE WHEN status = 'worker_resurrection' THEN 'worker_dead'
                       WHEN status = 'cancel_request' THEN 'cancel'
                       WHEN {give_back} AND status = 'running' THEN 'worker_dead'
                       WHEN attempt - given_back >= max_attempts THEN 'error'
                       ELSE 'worker_dead' END,
         errors = CASE WHEN status IN ('cancel_request', 'worker_resurrection') OR {give_back}
                       THEN errors ELSE {errors} END,
         last_error = CASE WHEN status IN ('cancel_request', 'worker_resurrection') OR {give_back}
                           THEN last_error ELSE {reason} END,
         given_back = given_back + CASE WHEN {give_back} AND status = 'running' THEN 1 ELSE 0 END,
         finished_at = CASE WHEN status = 'cancel_request'
                              OR (status = 'running' AND NOT {give_back}
                                  AND attempt - given_back >= max_attempts)
                            THEN {now} END,
         updated_at = {now}"
    )
}

/// The `SET` clause that gives back what a drained worker still held when
/// it went offline: not a failed attempt. A cancel request ends `cancel`;
/// an attempt held back for its resurrection is released.
pub fn offline_set(now: &str) -> String {
    format!(
        "status = CASE status WHEN 'cancel_request' THEN 'cancel'
                              WHEN 'worker_resurrection' THEN 'worker_dead'
                              ELSE 'worker_shutdown' END,
         finished_at = CASE WHEN status = 'cancel_request' THEN {now} END,
         given_back = given_back + CASE WHEN status = 'running' THEN 1 ELSE 0 END,
         updated_at = {now}"
    )
}

/// What an operator's cancel does to a job, by its status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelMove {
    /// Finished already: nothing changes.
    Finished,
    /// A worker holds it: the cancel is requested (`cancel_request`) and
    /// the worker told; the job ends when the worker acknowledges.
    Request,
    /// No worker runs it: it ends `cancel` at once.
    End,
}

/// The move a cancel makes from `status`.
pub fn cancel_move(status: JobStatus) -> CancelMove {
    match status {
        s if s.is_terminal() => CancelMove::Finished,
        JobStatus::Running | JobStatus::CancelRequest => CancelMove::Request,
        _ => CancelMove::End,
    }
}

/// The `SET` clause of a cancel by `cancel_move` (not `Finished`): `$2` is
/// whether it is requested (`CancelMove::Request`), `$3` the reason.
pub fn cancel_set(now: &str) -> String {
    format!(
        "status = CASE WHEN $2 THEN 'cancel_request' ELSE 'cancel' END,
         finished_at = CASE WHEN $2 THEN NULL ELSE {now} END,
         last_error = $3,
         updated_at = {now}"
    )
}

/// Whether a job in `status` may be deleted: not while a worker holds it
/// (its run would go on unrecorded); cancel it first.
pub fn deletable(status: JobStatus) -> bool {
    !matches!(status, JobStatus::Running | JobStatus::CancelRequest | JobStatus::WorkerResurrection)
}

/// The `SET` clause that deletes a job (kept as `deleted`, its result
/// dropped, its logs deleted by the caller).
pub fn delete_set(now: &str) -> String {
    format!(
        "status = 'deleted', result = NULL, finished_at = coalesce(finished_at, {now}),
         updated_at = {now}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every status has one cancel move and a deletability that agree: a
    /// job a worker holds is neither ended by a cancel nor deleted.
    #[test]
    fn cancels_and_deletes_spare_what_a_worker_holds() {
        use JobStatus::*;
        let all: Vec<JobStatus> = (1..).map_while(|n| JobStatus::try_from(n).ok()).collect();
        for status in all {
            let expected = match status {
                Done | Error | Cancel | Deleted => CancelMove::Finished,
                Running | CancelRequest => CancelMove::Request,
                Waiting | WorkerDead | WorkerShutdown | WorkerResurrection => CancelMove::End,
                Unspecified => unreachable!("not a stored status"),
            };
            assert_eq!(cancel_move(status), expected, "{status:?}");
        }
        assert!(deletable(Waiting) && deletable(Done) && deletable(WorkerDead));
        assert!(!deletable(Running) && !deletable(CancelRequest));
        assert!(!deletable(WorkerResurrection), "its stale run may still go on");
    }

    /// Every status the clauses write or test is a job status, in both
    /// dialects: a typo would be a state no code knows.
    #[test]
    fn the_clauses_name_only_job_statuses() {
        let known: Vec<&str> =
            (1..).map_while(|n| JobStatus::try_from(n).ok()).map(JobStatus::short_name).collect();
        // The keys of an attempt error, not statuses.
        let keys = ["attempt", "error", "at"];
        for dialect in [Dialect::Postgres, Dialect::Sqlite] {
            let clauses = [
                update_set(dialect, "now", "at", "retry_at"),
                take_back_set(dialect, "$5", "$2", "now", "at"),
                offline_set("now"),
                cancel_set("now"),
                delete_set("now"),
                UPDATE_FENCE.to_string(),
            ];
            for clause in clauses {
                let literals = clause.split('\'').skip(1).step_by(2);
                let names =
                    literals.filter(|l| l.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
                for name in names.filter(|n| !keys.contains(n)) {
                    assert!(
                        known.contains(&name),
                        "{dialect:?}: unknown status {name:?} in {clause}"
                    );
                }
            }
        }
    }
}
