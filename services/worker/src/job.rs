//! Running one job attempt: the context a kind sees, and the task that
//! reports its start and end.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use chrono::Utc;
use regsweep_common::trace;
use regsweep_proto::v1::{self, JobStatus};
use regsweep_proto::{json_to_struct, timestamp_from_chrono};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::kinds;
use crate::lease::Lease;
use crate::outbox::OutboxSender;
use crate::services::Services;

/// Identifies a job attempt.
pub type AttemptKey = (i64, u32);

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Done(serde_json::Value),
    Failed { error: String, retryable: bool },
    Cancelled,
}

/// What job tasks hand to the connection to send.
#[derive(Debug)]
pub enum Outgoing {
    /// The attempt started.
    Started(AttemptKey),
    /// A log line of an attempt.
    Log { key: AttemptKey, line: v1::JobLogLine },
    /// The attempt ended with this update.
    Finished { key: AttemptKey, update: v1::JobUpdate },
}

/// State shared between a running attempt and the connection.
#[derive(Debug, Default)]
pub struct AttemptControl {
    pub cancel: CancellationToken,
    /// Set before `cancel` when the worker drains: the attempt is given
    /// back rather than cancelled.
    pub give_back: AtomicBool,
    /// Progress as `f32` bits.
    progress: AtomicU32,
}

impl AttemptControl {
    pub fn progress(&self) -> f32 {
        f32::from_bits(self.progress.load(Ordering::Relaxed))
    }
}

/// What a kind sees of its attempt.
#[derive(Clone)]
pub struct JobContext {
    key: AttemptKey,
    control: Arc<AttemptControl>,
    outbox: OutboxSender,
    services: Arc<Services>,
    lease: Lease,
}

impl JobContext {
    pub fn job_id(&self) -> i64 {
        self.key.0
    }

    /// The attempt: the fencing token of everything this run reports.
    pub fn attempt(&self) -> u32 {
        self.key.1
    }

    /// The scheduler's APIs and registry clients.
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Appends a line to the attempt's log.
    pub fn log(&self, text: impl Into<String>) {
        let line = v1::JobLogLine {
            attempt: self.key.1,
            time: Some(timestamp_from_chrono(Utc::now())),
            text: text.into(),
        };
        self.outbox.send(Outgoing::Log { key: self.key, line });
    }

    /// Reports progress between 0 and 1 with the next heartbeat.
    pub fn set_progress(&self, progress: f32) {
        let progress = if progress.is_finite() { progress.clamp(0.0, 1.0) } else { 0.0 };
        self.control.progress.store(progress.to_bits(), Ordering::Relaxed);
    }

    /// Resolves when the attempt must stop (cancel, shutdown, or the lease
    /// on it lost).
    pub async fn cancelled(&self) {
        self.control.cancel.cancelled().await;
    }

    /// Checked right before a side effect another attempt of the job could
    /// repeat (a plan handed to the scrubber): false when the scheduler no
    /// longer vouches for this attempt, which is then given back.
    pub fn still_mine(&self) -> bool {
        // Stopping already (cancelled, or its lease lost once: final, even
        // if a later ack moves the worker's deadline on).
        if self.control.cancel.is_cancelled() {
            return false;
        }
        if self.lease.held() {
            return true;
        }
        give_back(&self.control);
        false
    }
}

/// The span of an attempt: a child of the dispatch that handed it out, so
/// the run joins the trace of the work that created the job.
pub fn span(job: &v1::Job, trace_context: &HashMap<String, String>) -> tracing::Span {
    let span = tracing::info_span!(
        "job",
        otel.name = %format_args!("job {}", job.kind),
        job_id = job.id,
        attempt = job.attempt,
        kind = %job.kind,
    );
    trace::set_parent(&span, trace_context.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    span
}

/// Describes the worker's own series.
pub fn describe_metrics() {
    metrics::describe_counter!(
        "regsweep_worker_jobs_total",
        "job attempts this worker ended, by kind and status"
    );
    metrics::describe_histogram!(
        "regsweep_worker_job_seconds",
        "how long attempts ran on this worker, by kind"
    );
    metrics::describe_gauge!("regsweep_worker_running_jobs", "attempts running, by kind");
    metrics::describe_counter!(
        "regsweep_worker_reclaimable_bytes_total",
        metrics::Unit::Bytes,
        "bytes the plans of this worker's cleanups free, by registry and run (live or \
         dry_run); an upper bound until the registry's garbage collection runs"
    );
}

/// Starts an attempt on its own task, in `span`, and reports its start and
/// end.
pub fn spawn(
    job: v1::Job,
    span: tracing::Span,
    control: Arc<AttemptControl>,
    outbox: OutboxSender,
    services: Arc<Services>,
    lease: Lease,
) {
    let key = (job.id, job.attempt);
    let ctx = JobContext {
        key,
        control: control.clone(),
        outbox: outbox.clone(),
        services,
        lease: lease.clone(),
    };
    let args =
        job.args.as_ref().map_or_else(|| serde_json::json!({}), regsweep_proto::struct_to_json);
    tokio::spawn(
        async move {
            outbox.send(Outgoing::Started(key));
            let kind = job.kind.clone();
            let running = metrics::gauge!("regsweep_worker_running_jobs", "kind" => kind.clone());
            running.increment(1.0);
            let started = std::time::Instant::now();
            // Its own task, so a panicking kind fails the attempt instead of
            // taking the worker down with it; in the attempt's span.
            let run = {
                let kind = kind.clone();
                async move { kinds::run(&kind, ctx, args).await }.in_current_span()
            };
            let outcome = match fenced(tokio::spawn(run), &lease, &control).await {
                Ok(outcome) => outcome,
                Err(e) => Outcome::Failed { error: format!("job panicked: {e}"), retryable: false },
            };
            running.decrement(1.0);
            let given_back = control.give_back.load(Ordering::SeqCst);
            tracing::debug!(?outcome, given_back, "attempt ended");
            let update = final_update(key, outcome, given_back, control.progress());
            let status = JobStatus::try_from(update.status).unwrap_or(JobStatus::Unspecified);
            metrics::counter!(
                "regsweep_worker_jobs_total",
                "kind" => kind.clone(),
                "status" => status_label(status),
            )
            .increment(1);
            metrics::histogram!("regsweep_worker_job_seconds", "kind" => kind)
                .record(started.elapsed().as_secs_f64());
            outbox.send(Outgoing::Finished { key, update });
        }
        .instrument(span),
    );
}

/// Runs the attempt's task; gives it back if the lease on it is lost first
/// (it then stops as for a cancel, and reports `worker_shutdown`).
async fn fenced<T>(
    mut task: tokio::task::JoinHandle<T>,
    lease: &Lease,
    control: &AttemptControl,
) -> Result<T, tokio::task::JoinError> {
    tokio::select! {
        biased;
        ended = &mut task => return ended,
        () = lease.lost() => {}
    }
    tracing::warn!("no heartbeat acknowledged in time: giving the attempt back");
    give_back(control);
    task.await
}

/// Stops an attempt that is to be reported given back, not cancelled.
pub fn give_back(control: &AttemptControl) {
    control.give_back.store(true, Ordering::SeqCst);
    control.cancel.cancel();
}

/// `JOB_STATUS_DONE` as `done`, the form the scheduler's metrics use.
fn status_label(status: JobStatus) -> String {
    status.as_str_name().trim_start_matches("JOB_STATUS_").to_ascii_lowercase()
}

fn final_update(
    key: AttemptKey,
    outcome: Outcome,
    given_back: bool,
    progress: f32,
) -> v1::JobUpdate {
    let mut update =
        v1::JobUpdate { job_id: key.0, attempt: key.1, progress, ..Default::default() };
    match outcome {
        Outcome::Done(result) => {
            update.status = JobStatus::Done.into();
            update.progress = 1.0;
            update.result = Some(json_to_struct(result));
        }
        Outcome::Failed { error, retryable } => {
            update.status = JobStatus::Error.into();
            update.error = error;
            update.retryable = retryable;
        }
        Outcome::Cancelled if given_back => update.status = JobStatus::WorkerShutdown.into(),
        Outcome::Cancelled => update.status = JobStatus::Cancel.into(),
    }
    update
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancelled_while_draining_is_given_back() {
        let update = final_update((1, 2), Outcome::Cancelled, true, 0.5);
        assert_eq!(update.status, JobStatus::WorkerShutdown as i32);
        let update = final_update((1, 2), Outcome::Cancelled, false, 0.5);
        assert_eq!(update.status, JobStatus::Cancel as i32);
    }

    #[test]
    fn failures_carry_error_and_retryability() {
        let update = final_update(
            (1, 1),
            Outcome::Failed { error: "x".into(), retryable: true },
            false,
            0.0,
        );
        assert_eq!(
            (update.status, update.error.as_str(), update.retryable),
            (JobStatus::Error as i32, "x", true)
        );
    }

    #[tokio::test]
    async fn an_attempt_past_its_lease_is_no_longer_its_own_and_is_given_back() {
        let services = Services::new(&["http://127.0.0.1:9".to_string()], &[]).expect("valid url");
        let lease = Lease::new();
        let control = Arc::new(AttemptControl::default());
        let (outbox, _rx) = crate::outbox::outbox(10);
        let ctx = JobContext {
            key: (1, 1),
            control: control.clone(),
            outbox,
            services: Arc::new(services),
            lease: lease.clone(),
        };
        assert!(ctx.still_mine(), "no fence before a scheduler vouches");
        lease.welcomed(std::time::Instant::now(), Some(std::time::Duration::from_millis(5)));
        assert!(ctx.still_mine());
        assert!(!control.cancel.is_cancelled());
        lease.lost().await;
        assert!(!ctx.still_mine());
        assert!(control.cancel.is_cancelled());
        assert!(control.give_back.load(Ordering::SeqCst), "given back, not cancelled");
        // A later ack moves the worker's deadline on, not this attempt's.
        let sequence = lease.heartbeat_sent();
        lease.acknowledged(sequence, std::time::Duration::from_secs(60));
        assert!(lease.held());
        assert!(!ctx.still_mine(), "an attempt whose lease lapsed stays given back");
    }
}
