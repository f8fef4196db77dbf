//! The scheduler's own job kinds (`joblogs_gc`), run by the leader as an
//! in-process worker: it registers like a worker, heartbeats, claims and
//! reports through the store, so its jobs follow the same life cycle and
//! fencing as everyone else's.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use regsweep_common::Shutdown;
use regsweep_proto::v1::JobStatus;
use uuid::Uuid;

use crate::kinds::{self, Retention};
use crate::store::{
    ClaimSlot, HeartbeatWrite, JobRecord, JobStore, RunningJob, SessionRef, UpdateWrite,
    WorkerHello, WriteBatch,
};

/// How often the runner looks for due internal jobs.
const POLL: Duration = Duration::from_secs(1);

/// The worker id of this replica's runner, kept across its terms as
/// leader: each term resumes it instead of leaving a dead worker behind
/// when the last term could not mark it offline (the database was away).
pub type RunnerIdentity = Arc<std::sync::Mutex<Option<Uuid>>>;

pub struct InternalRunner {
    store: Arc<dyn JobStore>,
    replica: Uuid,
    ttl: Duration,
    identity: RunnerIdentity,
}

impl InternalRunner {
    pub fn new(
        store: Arc<dyn JobStore>,
        replica: Uuid,
        ttl: Duration,
        identity: RunnerIdentity,
    ) -> Self {
        Self { store, replica, ttl, identity }
    }

    fn known_id(&self) -> Option<Uuid> {
        *self.identity.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub async fn run(self, stop: Shutdown) {
        let capacity: serde_json::Map<String, serde_json::Value> = kinds::KINDS
            .iter()
            .filter(|k| !kinds::is_worker_kind(k))
            .map(|k| (k.to_string(), 1.into()))
            .collect();
        let hello = WorkerHello {
            name: format!("scheduler-{}", &self.replica.to_string()[..8]),
            version: env!("CARGO_PKG_VERSION").to_string(),
            capacity,
            resume_worker_id: self.known_id(),
            running: Vec::new(),
            ending: Vec::new(),
            end_acks: false,
        };
        let session = loop {
            match self.store.register_worker(&hello, self.ttl).await {
                Ok(r) => {
                    let id = &mut *self.identity.lock().unwrap_or_else(PoisonError::into_inner);
                    *id = Some(r.worker_id);
                    break SessionRef { worker_id: r.worker_id, epoch: r.epoch };
                }
                Err(e) => tracing::warn!(error = %e, "cannot register the internal runner"),
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = stop.cancelled() => return,
            }
        };
        let mut ticker = tokio::time::interval(POLL.min(self.ttl / 3));
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = stop.cancelled() => break,
            }
            self.heartbeat(session, &[]).await;
            for kind in hello.capacity.keys() {
                let jobs =
                    match self.store.claim(kind, &[ClaimSlot { session }], Uuid::new_v4()).await {
                        Ok(jobs) => jobs,
                        Err(e) => {
                            tracing::warn!(error = %e, kind, "internal claim failed");
                            continue;
                        }
                    };
                for job in jobs {
                    self.execute(session, job).await;
                }
            }
        }
        let offline = WriteBatch { offline: vec![session], ..Default::default() };
        if let Err(e) = self.store.write_batch(&offline, self.ttl).await {
            tracing::warn!(error = %e, "cannot mark the internal runner offline");
        }
    }

    async fn heartbeat(&self, session: SessionRef, running: &[RunningJob]) {
        let batch = WriteBatch {
            heartbeats: vec![HeartbeatWrite {
                session,
                running: running.to_vec(),
                end_acks: false,
            }],
            ..Default::default()
        };
        if let Err(e) = self.store.write_batch(&batch, self.ttl).await {
            tracing::warn!(error = %e, "internal runner heartbeat failed");
        }
    }

    async fn execute(&self, session: SessionRef, job: JobRecord) {
        let running = [RunningJob { job_id: job.id, attempt: job.attempt, progress: 0.0 }];
        self.heartbeat(session, &running).await;
        let outcome = match job.kind.as_str() {
            "joblogs_gc" => self.joblogs_gc(&job).await,
            other => Err((format!("no internal runner for kind {other:?}"), false)),
        };
        let mut update = UpdateWrite {
            worker_id: session.worker_id,
            job_id: job.id,
            attempt: job.attempt,
            status: JobStatus::Done,
            progress: 1.0,
            result: None,
            error: None,
            retryable: false,
        };
        match outcome {
            Ok(result) => update.result = Some(result),
            Err((error, retryable)) => {
                update.status = JobStatus::Error;
                update.error = Some(error);
                update.retryable = retryable;
            }
        }
        let batch = WriteBatch { updates: vec![update], ..Default::default() };
        if let Err(e) = self.store.write_batch(&batch, self.ttl).await {
            tracing::warn!(job_id = job.id, error = %e, "cannot report internal job");
        }
    }

    async fn joblogs_gc(&self, job: &JobRecord) -> Result<serde_json::Value, (String, bool)> {
        let Some(retention) = Retention::from_args(&job.args) else {
            return Err(("invalid joblogs_gc arguments".to_string(), false));
        };
        let older_than = Duration::from_secs_f64(retention.older_than_seconds);
        match self.store.purge_jobs(older_than, retention.keep_last).await {
            Ok(purged) => {
                tracing::info!(
                    job_id = job.id,
                    jobs = purged.jobs,
                    log_chunks = purged.log_chunks,
                    "retention purged"
                );
                let result: BTreeMap<&str, u64> = BTreeMap::from([
                    ("deleted_jobs", purged.jobs),
                    ("deleted_log_chunks", purged.log_chunks),
                ]);
                Ok(serde_json::json!(result))
            }
            Err(e) => Err((format!("purge failed: {e}"), true)),
        }
    }
}
