//! The scheduler's storage, behind one trait so the PostgreSQL and SQLite
//! implementations answer the same conformance suite.
//!
//! Hot-path operations (`claim`, `write_batch`) take whole batches: the
//! dispatcher and the writer group work from every worker session so that
//! one statement serves many jobs.

pub mod catalog;
mod catalog_ops;
mod catalog_sql;
mod cleanup_end;
mod cron_ops;
mod cron_sql;
mod dialect;
mod engines;
mod forward;
pub mod in_use;
mod job_sql;
mod lease_sql;
mod measured;
mod model;
mod open;
pub mod postgres;
mod repository_sql;
mod retention_sql;
pub(crate) mod rows;
mod selection_sql;
mod sets;
pub mod sightings;
pub mod sqlite;
pub mod stats;
mod transitions;
mod worker_sql;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use regsweep_common::Shutdown;
use regsweep_common::backoff::Backoff;
use regsweep_proto::v1::JobStatus;
use tokio::sync::mpsc;
use uuid::Uuid;

pub use model::{CronRecord, JobRecord, LogLine, WorkerRecord};
pub use open::Stores;
pub use regsweep_common::StoreError;

/// Retries of a failed attempt marked retryable: from 1 s, doubled per
/// attempt (attempts given back do not count), at most an hour, each
/// jittered. The stores take the steps and each update's jitter as
/// parameters: the rule is here, the statements only index it.
pub const JOB_RETRY: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(3600));

/// The steps of `JOB_RETRY` the stores index by attempt, in seconds; an
/// attempt past the last waits the last (2^12 s is past the hour).
pub fn job_retry_steps() -> Vec<f64> {
    JOB_RETRY.steps_secs(13)
}

/// A job to insert.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub kind: String,
    pub args: serde_json::Value,
    pub priority: i32,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub max_attempts: u32,
    pub unique_key: Option<String>,
    pub parent_id: Option<i64>,
    /// The `traceparent` of the work that created it, continued by its runs.
    pub trace_context: Option<String>,
}

/// Outcome of inserting a job.
#[derive(Debug)]
pub enum CreateOutcome {
    /// Inserted.
    Created(JobRecord),
    /// A non-terminal job already holds the unique key.
    Duplicate(JobRecord),
    /// `parent_id` names no job.
    ParentNotFound,
}

/// Filters of a job listing.
#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    /// Any of these; empty means every status but `deleted`.
    pub statuses: Vec<JobStatus>,
    pub kind: Option<String>,
    pub worker_id: Option<Uuid>,
}

/// Outcome of a cancel request.
#[derive(Debug)]
pub enum CancelOutcome {
    NotFound,
    /// Already terminal; nothing changed.
    Terminal(JobRecord),
    /// Was not running: now `cancel`.
    Cancelled(JobRecord),
    /// Running: now `cancel_request`; the worker must be told.
    Requested(JobRecord),
}

/// Outcome of a delete request.
#[derive(Debug)]
pub enum DeleteOutcome {
    NotFound,
    /// Running or being cancelled: cancel it first.
    Active(JobStatus),
    Deleted,
}

/// A worker's `Hello`, validated.
#[derive(Clone, Debug)]
pub struct WorkerHello {
    pub name: String,
    pub version: String,
    pub capacity: serde_json::Map<String, serde_json::Value>,
    pub resume_worker_id: Option<Uuid>,
    pub running: Vec<RunningJob>,
    /// Attempts that ended on the worker whose final update follows the
    /// Hello (`Hello.ending`): not lost with the previous stream.
    pub ending: Vec<(i64, u32)>,
    /// The worker keeps every end until it is recorded (`Hello.end_acks`):
    /// an attempt it neither runs nor ends never reached it.
    pub end_acks: bool,
}

impl WorkerHello {
    /// Every attempt the worker still accounts for, running or ending:
    /// what a resumed session takes as lost is what the store has on the
    /// worker and this omits.
    pub fn accounted(&self) -> impl Iterator<Item = (i64, u32)> + '_ {
        self.running.iter().map(|r| (r.job_id, r.attempt)).chain(self.ending.iter().copied())
    }
}

/// One job attempt a worker says it runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunningJob {
    pub job_id: i64,
    pub attempt: u32,
    pub progress: f32,
}

/// A job attempt to cancel on a worker, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaleRun {
    pub job_id: i64,
    pub attempt: u32,
    pub reason: StaleReason,
}

/// Why a worker is told to cancel an attempt (the `Cancel.reason` it reads).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StaleReason {
    /// An operator asked to cancel the job.
    CancelRequested,
    /// The attempt was taken from the worker when it was declared dead.
    DeclaredDead,
    /// An update came from a session that is no longer the worker's: it
    /// was declared dead, or it reconnected on another stream.
    SessionSuperseded,
    /// The attempt is no longer the job's current one on this worker.
    Stale,
}

impl StaleReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CancelRequested => "cancel requested",
            Self::DeclaredDead => "worker was declared dead",
            Self::SessionSuperseded => "worker was declared dead or reconnected",
            Self::Stale => "stale attempt",
        }
    }
}

impl std::fmt::Display for StaleReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a reconnecting worker must cancel of the attempts it says it runs,
/// in the order it listed them. `own` maps each attempt the store still
/// has running on it to whether a cancel was requested meanwhile (sent
/// again); `resurrected` holds those taken from it when it was declared
/// dead and not claimed again yet (held back until it acknowledges the
/// cancel). Anything else is no longer its to run.
pub(crate) fn stale_runs(
    running: &[RunningJob],
    own: &HashMap<(i64, u32), bool>,
    resurrected: &HashSet<(i64, u32)>,
) -> Vec<StaleRun> {
    let reason = |key: &(i64, u32)| match own.get(key) {
        Some(true) => Some(StaleReason::CancelRequested),
        Some(false) => None,
        None if resurrected.contains(key) => Some(StaleReason::DeclaredDead),
        None => Some(StaleReason::Stale),
    };
    running
        .iter()
        .filter_map(|run| {
            let key = (run.job_id, run.attempt);
            reason(&key).map(|reason| StaleRun { job_id: run.job_id, attempt: run.attempt, reason })
        })
        .collect()
}

/// Result of registering a worker session.
#[derive(Debug)]
pub struct Registration {
    pub worker_id: Uuid,
    pub epoch: i64,
    /// True when a live previous session was resumed with its jobs.
    pub resumed: bool,
    /// Runs the worker reported that are not its own (any more).
    pub stale: Vec<StaleRun>,
    /// Jobs the store had on this worker that it no longer reports; they
    /// were made claimable again.
    pub lost: u64,
    /// Capacity an operator set for this worker id, to apply on top of
    /// what it declared (empty when none).
    pub capacity_override: HashMap<String, u32>,
}

/// One session of one worker: the fence of every session-level write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SessionRef {
    pub worker_id: Uuid,
    pub epoch: i64,
}

/// One open slot of a worker, in the order jobs should fill them
/// (least-loaded worker first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClaimSlot {
    pub session: SessionRef,
}

/// A job update from a worker.
#[derive(Clone, Debug, PartialEq)]
pub struct UpdateWrite {
    pub worker_id: Uuid,
    pub job_id: i64,
    pub attempt: u32,
    /// running, done, error, cancel or worker_shutdown.
    pub status: JobStatus,
    pub progress: f32,
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
    pub retryable: bool,
}

/// A log chunk from a worker.
#[derive(Clone, Debug, PartialEq)]
pub struct LogWrite {
    pub worker_id: Uuid,
    pub job_id: i64,
    pub attempt: u32,
    pub seq: u32,
    pub lines: Vec<LogLine>,
}

/// A heartbeat from a worker session.
#[derive(Clone, Debug, PartialEq)]
pub struct HeartbeatWrite {
    pub session: SessionRef,
    pub running: Vec<RunningJob>,
    /// The worker keeps its ends until recorded (`Hello.end_acks`): an
    /// attempt it omits never reached it and is given back, not spent.
    pub end_acks: bool,
}

/// Everything the writer flushes in one transaction, applied in this order.
#[derive(Clone, Debug, Default)]
pub struct WriteBatch {
    pub logs: Vec<LogWrite>,
    /// At most one per `(job_id, attempt)`.
    pub updates: Vec<UpdateWrite>,
    pub heartbeats: Vec<HeartbeatWrite>,
    /// Sessions that drained and closed: marked offline, and what they
    /// still held given back as `worker_shutdown`.
    pub offline: Vec<SessionRef>,
}

impl WriteBatch {
    pub fn is_empty(&self) -> bool {
        self.logs.is_empty()
            && self.updates.is_empty()
            && self.heartbeats.is_empty()
            && self.offline.is_empty()
    }
}

/// What a flushed batch tells the sessions.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Updates and heartbeat entries for attempts that are not the
    /// worker's current ones: tell the worker to cancel them.
    pub stale: Vec<(Uuid, StaleRun)>,
    /// Heartbeat entries of jobs an operator asked to cancel: (re)send
    /// `Cancel` in case the first one was missed.
    pub cancel_requested: Vec<(Uuid, StaleRun)>,
    /// Heartbeats whose session is no longer current (superseded or
    /// declared dead): the stream must end.
    pub superseded: Vec<SessionRef>,
}

impl WriteOutcome {
    /// A heartbeat from a session that is no longer live: its attempts were
    /// taken back (or belong to a newer session), so the worker is told to
    /// stop them before its stream is ended.
    pub(crate) fn superseded(&mut self, heartbeat: &HeartbeatWrite) {
        let worker_id = heartbeat.session.worker_id;
        for run in &heartbeat.running {
            let reason = StaleReason::SessionSuperseded;
            self.stale
                .push((worker_id, StaleRun { job_id: run.job_id, attempt: run.attempt, reason }));
        }
        self.superseded.push(heartbeat.session);
    }

    /// One attempt a live heartbeat reports, against the store: `current`
    /// is `None` when the store no longer runs it on that worker (cancel
    /// it), else whether a cancel was requested (send it again, in case
    /// the first was missed).
    pub(crate) fn reported(&mut self, worker_id: Uuid, run: (i64, u32), current: Option<bool>) {
        let (job_id, attempt) = run;
        match current {
            None => {
                let reason = StaleReason::Stale;
                self.stale.push((worker_id, StaleRun { job_id, attempt, reason }));
            }
            Some(true) => {
                let reason = StaleReason::CancelRequested;
                self.cancel_requested.push((worker_id, StaleRun { job_id, attempt, reason }));
            }
            Some(false) => {}
        }
    }

    /// Reports every update whose `(job_id, attempt)` is not in `applied`
    /// as stale: the worker must stop that attempt. An update that ends
    /// its attempt needs no cancel: the worker has stopped it already.
    pub(crate) fn stale_unless_applied(
        &mut self,
        updates: &[UpdateWrite],
        applied: &std::collections::HashSet<(i64, i32)>,
    ) {
        for update in updates {
            let running = update.status == JobStatus::Running;
            if running && !applied.contains(&(update.job_id, rows::to_i32(update.attempt))) {
                self.stale.push((
                    update.worker_id,
                    StaleRun {
                        job_id: update.job_id,
                        attempt: update.attempt,
                        reason: StaleReason::Stale,
                    },
                ));
            }
        }
    }
}

/// Outcome of an operator changing a worker's capacity.
#[derive(Debug)]
pub enum CapacityOutcome {
    NotFound,
    /// The worker is dead or offline.
    NotLive(regsweep_proto::v1::WorkerStatus),
    /// The worker does not run these kinds.
    KindsNotRun(Vec<String>),
    /// Stored and announced to the replica holding the worker's stream.
    Updated(WorkerRecord),
}

/// Leader-only work names the lease it runs under: each such write checks,
/// in its own transaction, that `holder` still holds `lease` (and keeps it
/// from changing hands until it commits), else changes nothing. A replica
/// whose calls outlived its leadership cannot act as a second leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fence {
    pub lease: &'static str,
    pub holder: Uuid,
}

/// What the reaper did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reaped {
    /// Workers declared dead.
    pub workers: Vec<Uuid>,
    /// Their attempts taken back (claimable again, or ended when no
    /// attempts remain or a cancel was requested).
    pub jobs: u64,
}

/// A cron to insert.
#[derive(Clone, Debug)]
pub struct NewCron {
    pub name: String,
    pub schedule: String,
    pub kind: String,
    pub args: serde_json::Value,
    pub enabled: bool,
    pub priority: i32,
    pub next_fire_at: DateTime<Utc>,
}

/// Computes a schedule's next firing strictly after a time; `None` when it
/// never fires again.
pub type NextFire = fn(&str, DateTime<Utc>) -> Option<DateTime<Utc>>;

/// A firing the leader enqueued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fired {
    pub cron: String,
    pub fire_at: DateTime<Utc>,
    pub job_id: i64,
}

/// What retention removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    pub jobs: u64,
    pub log_chunks: u64,
}

/// What other replicas (or this one) announce through the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreEvent {
    /// A job of this kind became claimable.
    JobsAvailable(String),
    /// An operator asked to cancel a running job.
    CancelRequested { worker_id: Uuid, job_id: i64, attempt: u32, reason: String },
    /// An operator changed a worker's capacity (the full effective map).
    CapacityChanged { worker_id: Uuid, capacity: HashMap<String, u32> },
    /// A cleanup job ended (a cleanup slot is free) or a policy was made
    /// due: the leader runs the selection now.
    CleanupEnded,
    /// Notifications may have been missed (listener reconnected): re-check.
    Resync,
}

/// The scheduler's job queue storage.
#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Inserts a job, or finds the non-terminal one holding its unique key.
    async fn create_job(&self, job: NewJob) -> Result<CreateOutcome, StoreError>;
    /// Creates a batch, answering each job in order as `create_job` would;
    /// a unique key repeated within the batch creates one job, and later
    /// items with it are its duplicates. PostgreSQL writes the batch in one
    /// transaction; SQLite (one writer, development) one job at a time.
    async fn create_jobs(&self, jobs: Vec<NewJob>) -> Result<Vec<CreateOutcome>, StoreError>;
    async fn get_job(&self, id: i64) -> Result<Option<JobRecord>, StoreError>;
    /// Jobs matching `filter` with ids below `before`, newest first.
    async fn list_jobs(
        &self,
        filter: &JobFilter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<JobRecord>, StoreError>;
    /// Cancels a job; a running one is announced through
    /// [`StoreEvent::CancelRequested`] to the replica holding its worker.
    async fn cancel_job(&self, id: i64, reason: &str) -> Result<CancelOutcome, StoreError>;
    async fn delete_job(&self, id: i64) -> Result<DeleteOutcome, StoreError>;
    /// Up to `limit` log lines of a job from `cursor` on, and the cursor
    /// after the last one (`cursor` itself when there is none yet); `None`
    /// when the job does not exist.
    async fn job_logs(
        &self,
        id: i64,
        attempt: Option<u32>,
        cursor: Option<LogCursor>,
        limit: u32,
    ) -> Result<Option<(Vec<LogLine>, LogCursor)>, StoreError>;

    /// Starts or resumes a worker session (see [`Registration`]).
    async fn register_worker(
        &self,
        hello: &WorkerHello,
        ttl: Duration,
    ) -> Result<Registration, StoreError>;
    /// Marks a session draining; false when it is not current.
    async fn set_draining(&self, session: SessionRef) -> Result<bool, StoreError>;
    /// Workers, most recently connected first, with what they run.
    async fn list_workers(
        &self,
        include_gone: bool,
        offset: u64,
        limit: u32,
    ) -> Result<Vec<WorkerRecord>, StoreError>;

    /// Claims up to `slots.len()` due jobs of `kind`, the first (highest
    /// priority) into the first slot, marking them with `token`. Slots of
    /// sessions that are no longer current get nothing. Never hands one job
    /// to two claims.
    async fn claim(
        &self,
        kind: &str,
        slots: &[ClaimSlot],
        token: Uuid,
    ) -> Result<Vec<JobRecord>, StoreError>;
    /// The jobs the claim marked with `token` holds still, on `workers`:
    /// what a claim whose answer was lost (its connection cut after the
    /// commit) claimed, so that they are handed out, not left waiting for
    /// their worker's heartbeat TTL.
    async fn claimed(&self, token: Uuid, workers: &[Uuid]) -> Result<Vec<JobRecord>, StoreError>;
    /// Applies a batch of worker writes in one transaction, fencing every
    /// one by `(job_id, attempt, worker_id)` or session.
    async fn write_batch(
        &self,
        batch: &WriteBatch,
        ttl: Duration,
    ) -> Result<WriteOutcome, StoreError>;

    /// Delivers [`StoreEvent`]s until `shutdown`; reconnects on failure
    /// and sends [`StoreEvent::Resync`] after every reconnection.
    async fn listen(&self, events: mpsc::Sender<StoreEvent>, shutdown: Shutdown);

    /// Takes or renews lease `name` for `holder` until `now + lease`;
    /// false when another holder's lease has not expired.
    async fn try_lease(
        &self,
        name: &str,
        holder: Uuid,
        lease: Duration,
    ) -> Result<bool, StoreError>;
    /// Gives lease `name` up if `holder` has it, so another replica can
    /// take it at once.
    async fn release_lease(&self, name: &str, holder: Uuid) -> Result<(), StoreError>;
    /// Declares workers whose heartbeat expired dead and takes back their
    /// attempts, under `fence`.
    async fn reap_expired_workers(&self, fence: Fence) -> Result<Reaped, StoreError>;
    /// Sets an operator capacity for a live worker and announces it.
    async fn set_worker_capacity(
        &self,
        worker_id: Uuid,
        capacity: &HashMap<String, u32>,
    ) -> Result<CapacityOutcome, StoreError>;

    /// Inserts a cron; `None` when the name is taken.
    async fn create_cron(&self, cron: NewCron) -> Result<Option<CronRecord>, StoreError>;
    async fn get_cron(&self, name: &str) -> Result<Option<CronRecord>, StoreError>;
    async fn list_crons(&self) -> Result<Vec<CronRecord>, StoreError>;
    /// Replaces a cron's definition (`next_fire_at` included); `None` when
    /// it does not exist.
    async fn update_cron(&self, cron: NewCron) -> Result<Option<CronRecord>, StoreError>;
    async fn delete_cron(&self, name: &str) -> Result<bool, StoreError>;
    /// Enqueues one job for every enabled cron that is due, and moves each
    /// to its next firing after now: missed firings are skipped, not
    /// replayed. Safe to run on several replicas at once; under `fence`.
    async fn fire_due_crons(&self, next: NextFire, fence: Fence) -> Result<Vec<Fired>, StoreError>;
    /// The earliest `next_fire_at` of the enabled crons.
    async fn next_cron_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Deletes finished jobs (and their logs) that finished longer than
    /// `older_than` ago or are beyond the newest `keep_last` finished ones.
    async fn purge_jobs(&self, older_than: Duration, keep_last: u64) -> Result<Purged, StoreError>;

    /// Jobs by kind and status, and the due backlog, for metrics.
    async fn queue_stats(&self) -> Result<stats::QueueStats, StoreError>;
}

/// Position in a job's log: the next line is line `line` of chunk
/// `(attempt, seq)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogCursor {
    pub attempt: u32,
    pub seq: u32,
    pub line: u32,
}

impl LogCursor {
    /// Packs the cursor into a page token's integer: 23 bits of attempt,
    /// 24 of sequence, 16 of line (chunks hold at most 1000 lines).
    pub fn to_i64(self) -> i64 {
        (i64::from(self.attempt & 0x7f_ffff) << 40)
            | (i64::from(self.seq & 0xff_ffff) << 16)
            | i64::from(self.line & 0xffff)
    }

    pub fn from_i64(value: i64) -> Option<Self> {
        if value < 0 {
            return None;
        }
        Some(Self {
            attempt: u32::try_from(value >> 40).ok()?,
            seq: u32::try_from((value >> 16) & 0xff_ffff).ok()?,
            line: u32::try_from(value & 0xffff).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::{
        HeartbeatWrite, LogCursor, RunningJob, SessionRef, StaleReason, WriteOutcome, stale_runs,
    };

    fn running(attempts: &[(i64, u32)]) -> Vec<RunningJob> {
        attempts
            .iter()
            .map(|&(job_id, attempt)| RunningJob { job_id, attempt, progress: 0.0 })
            .collect()
    }

    #[test]
    fn a_returning_worker_cancels_what_is_no_longer_its_own_in_its_order() {
        let reported = running(&[(1, 1), (2, 1), (3, 2), (4, 1)]);
        // 1 still runs there; 2 still runs, with a cancel requested; 3 was
        // taken back when the worker was declared dead; 4 is someone else's.
        let own = HashMap::from([((1, 1), false), ((2, 1), true)]);
        let resurrected = HashSet::from([(3, 2)]);
        let stale: Vec<_> = stale_runs(&reported, &own, &resurrected)
            .into_iter()
            .map(|r| (r.job_id, r.attempt, r.reason))
            .collect();
        assert_eq!(
            stale,
            [
                (2, 1, StaleReason::CancelRequested),
                (3, 2, StaleReason::DeclaredDead),
                (4, 1, StaleReason::Stale),
            ]
        );
        assert_eq!(StaleReason::DeclaredDead.to_string(), "worker was declared dead");
    }

    #[test]
    fn heartbeats_are_judged_attempt_by_attempt() {
        let worker = uuid::Uuid::nil();
        let mut outcome = WriteOutcome::default();
        outcome.reported(worker, (1, 1), Some(false));
        outcome.reported(worker, (2, 1), Some(true));
        outcome.reported(worker, (3, 1), None);
        let reasons = |runs: &[(uuid::Uuid, super::StaleRun)]| {
            runs.iter().map(|(_, r)| (r.job_id, r.reason)).collect::<Vec<_>>()
        };
        assert_eq!(reasons(&outcome.cancel_requested), [(2, StaleReason::CancelRequested)]);
        assert_eq!(reasons(&outcome.stale), [(3, StaleReason::Stale)]);

        let session = SessionRef { worker_id: worker, epoch: 3 };
        let heartbeat = HeartbeatWrite { session, running: running(&[(7, 2)]), end_acks: true };
        outcome.superseded(&heartbeat);
        assert_eq!(outcome.superseded, [session]);
        assert_eq!(reasons(&outcome.stale)[1], (7, StaleReason::SessionSuperseded));
    }

    #[test]
    fn log_cursor_packs() {
        for cursor in [
            LogCursor { attempt: 0, seq: 0, line: 0 },
            LogCursor { attempt: 1, seq: 2, line: 999 },
            LogCursor { attempt: 0x7f_ffff, seq: 0xff_ffff, line: 0xffff },
        ] {
            assert_eq!(LogCursor::from_i64(cursor.to_i64()), Some(cursor));
        }
        assert_eq!(LogCursor::from_i64(-1), None);
    }
}
