//! The writer: one task per replica that flushes what worker sessions
//! report (updates, log chunks, heartbeats, offline sessions) in batched
//! transactions, and tells sessions which of their attempts were stale.
//!
//! One flush runs at a time; what arrives meanwhile forms the next batch.
//! Ops of one session keep their order: a batch applies logs, then updates,
//! then heartbeats, then offline sessions, and batches apply in sequence.
//! Once a batch is written, the workers that asked hear which of their
//! attempts' ends it recorded, then which heartbeats.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use regsweep_common::backoff::Backoff;
use regsweep_proto::v1::{self, connect_response::Message};
use tokio::sync::{broadcast, mpsc};
use tonic::Status;
use uuid::Uuid;

use crate::acks::written_validity;
use crate::dispatch::SessionTx;
use crate::health::DbHealth;
use crate::store::{
    HeartbeatWrite, JobStore, LogWrite, SessionRef, StaleReason, StoreError, UpdateWrite,
    WriteBatch, WriteOutcome,
};

/// One write from a session, with the way back to it.
#[derive(Debug)]
pub enum WriteOp {
    /// With the session to tell once it is written, for an end its worker
    /// keeps until then.
    Update(UpdateWrite, SessionTx, Option<SessionRef>),
    Log(LogWrite),
    /// With the ack to send once written, if the worker asked for acks.
    Heartbeat(HeartbeatWrite, SessionTx, Option<PendingAck>),
    Offline(SessionRef),
}

/// A heartbeat to acknowledge once written: its sequence, and when the
/// session received it.
#[derive(Clone, Copy, Debug)]
pub struct PendingAck {
    pub sequence: u64,
    pub received: Instant,
}

/// Where the writer's batches go: the job store (a seam where tests make
/// some batches fail).
#[async_trait::async_trait]
pub trait BatchSink: Send + Sync {
    async fn write_batch(
        &self,
        batch: &WriteBatch,
        ttl: Duration,
    ) -> Result<WriteOutcome, StoreError>;
}

#[async_trait::async_trait]
impl BatchSink for Arc<dyn JobStore> {
    async fn write_batch(
        &self,
        batch: &WriteBatch,
        ttl: Duration,
    ) -> Result<WriteOutcome, StoreError> {
        JobStore::write_batch(self.as_ref(), batch, ttl).await
    }
}

pub struct Writer {
    store: Box<dyn BatchSink>,
    rx: mpsc::Receiver<WriteOp>,
    ttl: Duration,
    max_batch: usize,
    written: broadcast::Sender<i64>,
    /// Told of every failed flush: heartbeats not written hold the reaper.
    health: Arc<DbHealth>,
}

/// Failed flushes of a batch that is not failing for want of the database
/// are retried this often before the batch is split, or dropped if it is
/// one worker's. Dropped updates are not lost work: their streams are
/// ended, and their workers send their ends again.
const MAX_FLUSH_FAILURES: u32 = 3;

/// Waits between the flushes of a failing batch: short, since updates
/// queue up behind it.
const FLUSH_RETRY: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));

impl Writer {
    /// `written` hears the id of every job whose logs or status a flush
    /// changed (log tails wait on it).
    pub fn new(
        store: impl BatchSink + 'static,
        ttl: Duration,
        max_batch: usize,
        written: broadcast::Sender<i64>,
        health: Arc<DbHealth>,
    ) -> (mpsc::Sender<WriteOp>, Self) {
        // Bounded so a slow database pushes back on worker streams (and
        // through HTTP/2 flow control on the workers) instead of growing
        // memory.
        let (tx, rx) = mpsc::channel(max_batch * 4);
        (tx, Self { store: Box::new(store), rx, ttl, max_batch, written, health })
    }

    /// Runs until every sender is dropped and the queue is flushed.
    pub async fn run(mut self) {
        let mut ops = Vec::with_capacity(self.max_batch);
        while self.rx.recv_many(&mut ops, self.max_batch).await > 0 {
            let built = build_batch(std::mem::take(&mut ops));
            self.flush(built).await;
        }
        tracing::debug!("writer stopped");
    }

    /// Writes a batch. One that keeps failing, not for want of the
    /// database, is split between its workers, in halves, until the part
    /// that fails is one worker's: only that part is dropped, and every
    /// other worker's reports are written and answered. (One worker's ops
    /// are never split: its heartbeat must not be written without the ends
    /// it follows, or the attempts it no longer lists would look lost.)
    async fn flush(&self, built: Built) {
        let Some(built) = self.write(built, MAX_FLUSH_FAILURES).await else { return };
        // The writer is one task and every worker's heartbeat waits behind
        // this, so the split has a budget well inside the TTL; a failure
        // that is everyone's (not one worker's) then costs no more.
        self.isolate(built, Instant::now() + self.ttl / 3).await;
    }

    /// Splits a failing batch and writes its parts, each once (the batch
    /// was just retried: what fails now fails for what it holds), until
    /// the failing parts are one worker's or `deadline` passes; what is
    /// left then is dropped.
    fn isolate(&self, built: Built, deadline: Instant) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(async move {
            if Instant::now() >= deadline {
                tracing::error!(
                    workers = built.workers().len(),
                    "dropping a failing batch: no time left to split it"
                );
                return abandon(&built.ends);
            }
            match built.split() {
                Split::Two(first, second) => {
                    tracing::warn!(
                        workers = first.workers().len() + second.workers().len(),
                        "splitting a batch that keeps failing"
                    );
                    for part in [first, second] {
                        if let Some(failed) = self.write(part, 1).await {
                            self.isolate(failed, deadline).await;
                        }
                    }
                }
                Split::One(built) => {
                    tracing::error!(
                        worker_id = ?built.workers().first(),
                        updates = built.batch.updates.len(),
                        logs = built.batch.logs.len(),
                        "dropping one worker's reports: they keep failing"
                    );
                    abandon(&built.ends);
                }
            }
        })
    }

    /// Writes a batch and answers its sessions, retrying while the
    /// database is away; gives the batch back after it failed `tries`
    /// times for another reason.
    async fn write(&self, built: Built, tries: u32) -> Option<Built> {
        let Built { batch, routes, acks, ends } = &built;
        let mut failures = 0;
        let mut retries = FLUSH_RETRY.retries();
        loop {
            let started = Instant::now();
            let delay = match self.store.write_batch(batch, self.ttl).await {
                Ok(outcome) => {
                    tracing::debug!(
                        updates = batch.updates.len(),
                        logs = batch.logs.len(),
                        heartbeats = batch.heartbeats.len(),
                        elapsed = ?started.elapsed(),
                        "flushed"
                    );
                    if self.written.receiver_count() > 0 {
                        let ids: std::collections::BTreeSet<i64> = batch
                            .logs
                            .iter()
                            .map(|l| l.job_id)
                            .chain(batch.updates.iter().map(|u| u.job_id))
                            .collect();
                        for id in ids {
                            let _ = self.written.send(id);
                        }
                    }
                    // Written with the transaction's `now()`, which is no
                    // earlier than `started`: the wait in the queue before
                    // it is no part of the worker's TTL.
                    let acks = acks.iter().map(|&(session, ack)| {
                        let queued = started.saturating_duration_since(ack.received);
                        (session, ack.sequence, written_validity(self.ttl) + queued)
                    });
                    deliver(outcome, routes, ends, acks);
                    return None;
                }
                Err(e @ StoreError::Unavailable(_)) => {
                    self.health.trouble();
                    let delay = retries.next_delay();
                    tracing::warn!(error = %e, retry_in = ?delay, "flush failed, database unavailable");
                    delay
                }
                Err(e) => {
                    self.health.trouble();
                    failures += 1;
                    if failures >= tries {
                        tracing::warn!(error = %e, failures, "flush failed, giving up on this batch");
                        return Some(built);
                    }
                    let delay = retries.next_delay();
                    tracing::warn!(error = %e, failures, retry_in = ?delay, "flush failed, retrying");
                    delay
                }
            };
            tokio::time::sleep(delay).await;
        }
    }
}

/// The streams of a batch's ops.
#[derive(Clone, Default)]
struct Routes {
    /// Each worker's latest stream in the batch: where cancels its live
    /// sessions' reports call for go.
    by_worker: HashMap<Uuid, SessionTx>,
    /// Each session's own stream. A worker that reconnected has two in one
    /// batch; what concerns the old session (its end, its cancels, its
    /// acks) must never reach the new one, which may own the same
    /// attempts now.
    by_session: HashMap<SessionRef, SessionTx>,
}

/// A batch to write, and who to tell what once it is written.
struct Built {
    batch: WriteBatch,
    routes: Routes,
    /// Heartbeats to acknowledge.
    acks: Vec<(SessionRef, PendingAck)>,
    /// Ends of attempts to acknowledge, per session (its stream).
    ends: HashMap<SessionRef, (SessionTx, Vec<v1::JobAttempt>)>,
}

impl Built {
    /// The workers whose ops this batch holds, in order.
    fn workers(&self) -> Vec<Uuid> {
        let b = &self.batch;
        let all = b.updates.iter().map(|u| u.worker_id).chain(b.logs.iter().map(|l| l.worker_id));
        let sessions = b.heartbeats.iter().map(|h| h.session).chain(b.offline.iter().copied());
        let mut workers: Vec<Uuid> = all.chain(sessions.map(|s| s.worker_id)).collect();
        workers.sort_unstable();
        workers.dedup();
        workers
    }

    /// The batch in two, each worker's ops whole in one of them, unless
    /// it is one worker's.
    fn split(self) -> Split {
        let workers = self.workers();
        if workers.len() < 2 {
            return Split::One(self);
        }
        let first: std::collections::HashSet<Uuid> =
            workers[..workers.len() / 2].iter().copied().collect();
        let Built { batch, routes, acks, ends } = self;
        let (mut a, mut b) = (WriteBatch::default(), WriteBatch::default());
        let part = |w: &Uuid| first.contains(w);
        (a.updates, b.updates) = batch.updates.into_iter().partition(|u| part(&u.worker_id));
        (a.logs, b.logs) = batch.logs.into_iter().partition(|l| part(&l.worker_id));
        (a.heartbeats, b.heartbeats) =
            batch.heartbeats.into_iter().partition(|h| part(&h.session.worker_id));
        (a.offline, b.offline) = batch.offline.into_iter().partition(|s| part(&s.worker_id));
        let (acks_a, acks_b) = acks.into_iter().partition(|(s, _)| part(&s.worker_id));
        let (ends_a, ends_b) = ends.into_iter().partition(|(s, _)| part(&s.worker_id));
        Split::Two(
            Built { batch: a, routes: routes.clone(), acks: acks_a, ends: ends_a },
            Built { batch: b, routes, acks: acks_b, ends: ends_b },
        )
    }
}

/// A batch split between its workers, or one worker's.
enum Split {
    Two(Built, Built),
    One(Built),
}

/// Groups ops into a batch, keeping one update per attempt (the latest:
/// a worker sends `running` before the end of the same attempt).
fn build_batch(ops: Vec<WriteOp>) -> Built {
    let mut batch = WriteBatch::default();
    let mut routes = Routes::default();
    let mut acks = Vec::new();
    let mut ends: HashMap<SessionRef, (SessionTx, Vec<v1::JobAttempt>)> = HashMap::new();
    let mut update_index: HashMap<(i64, u32, Uuid), usize> = HashMap::new();
    for op in ops {
        match op {
            WriteOp::Update(update, out, ack_end) => {
                if let Some(session) = ack_end {
                    let attempt = v1::JobAttempt { job_id: update.job_id, attempt: update.attempt };
                    ends.entry(session)
                        .or_insert_with(|| (out.clone(), Vec::new()))
                        .1
                        .push(attempt);
                    routes.by_session.insert(session, out.clone());
                }
                routes.by_worker.insert(update.worker_id, out);
                let key = (update.job_id, update.attempt, update.worker_id);
                match update_index.get(&key) {
                    Some(&i) => batch.updates[i] = update,
                    None => {
                        update_index.insert(key, batch.updates.len());
                        batch.updates.push(update);
                    }
                }
            }
            WriteOp::Log(log) => batch.logs.push(log),
            WriteOp::Heartbeat(heartbeat, out, ack) => {
                routes.by_session.insert(heartbeat.session, out.clone());
                routes.by_worker.insert(heartbeat.session.worker_id, out);
                if let Some(ack) = ack {
                    acks.push((heartbeat.session, ack));
                }
                batch.heartbeats.push(heartbeat);
            }
            WriteOp::Offline(session) => batch.offline.push(session),
        }
    }
    Built { batch, routes, acks, ends }
}

/// Ends the streams whose kept ends a dropped batch lost: their workers
/// reconnect and send them again (a worker that stayed on would never hear
/// them recorded, and its heartbeats, which leave them out, would have
/// their attempts given back as never received). Streams that lost only
/// heartbeats, progress or ends they do not keep stay up: reconnecting
/// would send nothing again.
fn abandon(ends: &HashMap<SessionRef, (SessionTx, Vec<v1::JobAttempt>)>) {
    for (out, _) in ends.values() {
        out.fail(Status::unavailable("ends of this stream were lost; reconnect"));
    }
}

/// Sends the cancels a flush found due, ends superseded sessions, and
/// then acknowledges the ends of attempts and the heartbeats it wrote
/// (not those of a session that is no longer current: nothing of it was
/// written; its worker sends the ends again on its next stream). Cancels
/// go first so a worker stops a stale attempt before an ack could vouch
/// for it.
fn deliver(
    outcome: WriteOutcome,
    routes: &Routes,
    ends: &HashMap<SessionRef, (SessionTx, Vec<v1::JobAttempt>)>,
    acks: impl Iterator<Item = (SessionRef, u64, Duration)>,
) {
    let superseded: std::collections::HashSet<SessionRef> =
        outcome.superseded.iter().copied().collect();
    // One cancel per attempt and stream: a batch holding several
    // heartbeats of one session reports its attempts once per heartbeat.
    let mut cancelled = std::collections::HashSet::new();
    for (worker_id, run) in outcome.stale.into_iter().chain(outcome.cancel_requested) {
        // A superseded session's attempts are stopped on its own stream,
        // just before it ends.
        let old_stream = run.reason == StaleReason::SessionSuperseded;
        if !cancelled.insert((worker_id, run.job_id, run.attempt, old_stream)) {
            continue;
        }
        let out = if old_stream {
            let old = superseded.iter().filter(|s| s.worker_id == worker_id);
            old.filter_map(|s| routes.by_session.get(s)).next()
        } else {
            routes.by_worker.get(&worker_id)
        };
        if let Some(out) = out {
            tracing::debug!(%worker_id, job_id = run.job_id, attempt = run.attempt, reason = %run.reason, "sending cancel");
            out.send(Message::Cancel(v1::Cancel {
                job_id: run.job_id,
                attempt: run.attempt,
                reason: run.reason.to_string(),
            }));
        }
    }
    for session in outcome.superseded {
        if let Some(out) = routes.by_session.get(&session) {
            tracing::info!(worker_id = %session.worker_id, epoch = session.epoch, "ending superseded session");
            out.fail(Status::failed_precondition("session superseded or declared dead; reconnect"));
        }
    }
    for (session, (out, attempts)) in ends {
        if !superseded.contains(session) {
            let attempts = attempts.clone();
            out.send(Message::EndsRecorded(v1::EndsRecorded { attempts }));
        }
    }
    for (session, sequence, valid_for) in acks {
        if let (false, Some(out)) = (superseded.contains(&session), routes.by_session.get(&session))
        {
            let valid_for = Some(regsweep_proto::duration_from_std(valid_for));
            out.send(Message::HeartbeatAck(v1::HeartbeatAck { sequence, valid_for }));
        }
    }
}

#[cfg(test)]
mod tests {
    use regsweep_proto::v1::JobStatus;

    use super::*;

    fn update(job_id: i64, status: JobStatus, worker_id: Uuid) -> UpdateWrite {
        UpdateWrite {
            worker_id,
            job_id,
            attempt: 1,
            status,
            progress: 0.0,
            result: None,
            error: None,
            retryable: false,
        }
    }

    #[test]
    fn later_update_of_an_attempt_wins() {
        let worker = Uuid::new_v4();
        let session = Some(SessionRef { worker_id: worker, epoch: 1 });
        let (tx, _rx) = crate::outbound::channel(16);
        let ops = vec![
            WriteOp::Update(update(1, JobStatus::Running, worker), tx.clone(), None),
            WriteOp::Update(update(2, JobStatus::Running, worker), tx.clone(), None),
            WriteOp::Update(update(1, JobStatus::Done, worker), tx.clone(), session),
        ];
        let built = build_batch(ops);
        let statuses: Vec<_> = built.batch.updates.iter().map(|u| (u.job_id, u.status)).collect();
        assert_eq!(statuses, [(1, JobStatus::Done), (2, JobStatus::Running)]);
        assert!(built.routes.by_worker.contains_key(&worker));
    }

    /// A worker that reconnected: its old session and stream, and its new
    /// ones.
    struct Reconnected {
        worker: Uuid,
        old: SessionRef,
        new: SessionRef,
        old_tx: SessionTx,
        old_rx: crate::outbound::Outbound,
        new_tx: SessionTx,
        new_rx: crate::outbound::Outbound,
    }

    fn reconnected() -> Reconnected {
        let worker = Uuid::new_v4();
        let (old_tx, old_rx) = crate::outbound::channel(16);
        let (new_tx, new_rx) = crate::outbound::channel(16);
        Reconnected {
            worker,
            old: SessionRef { worker_id: worker, epoch: 1 },
            new: SessionRef { worker_id: worker, epoch: 2 },
            old_tx,
            old_rx,
            new_tx,
            new_rx,
        }
    }

    /// What each stream heard, in order, as short text.
    fn heard(rx: &mut crate::outbound::Outbound) -> Vec<String> {
        let mut heard = Vec::new();
        while let Ok(message) = rx.try_recv() {
            heard.push(match message {
                Ok(v1::ConnectResponse { message: Some(Message::Cancel(c)) }) => {
                    format!("cancel {} ({})", c.job_id, c.reason)
                }
                Ok(v1::ConnectResponse { message: Some(Message::HeartbeatAck(a)) }) => {
                    format!("ack {}", a.sequence)
                }
                Ok(v1::ConnectResponse { message: Some(Message::EndsRecorded(r)) }) => {
                    let jobs: Vec<i64> = r.attempts.iter().map(|a| a.job_id).collect();
                    format!("recorded {jobs:?}")
                }
                Ok(other) => format!("{other:?}"),
                Err(status) => format!("ended: {:?}", status.code()),
            });
        }
        heard
    }

    fn recorded(rx: &mut crate::outbound::Outbound) -> Vec<i64> {
        let Ok(Ok(v1::ConnectResponse { message: Some(Message::EndsRecorded(recorded)) })) =
            rx.try_recv()
        else {
            panic!("expected the recorded ends");
        };
        recorded.attempts.iter().map(|a| a.job_id).collect()
    }

    /// Once written, each session hears the ends it sent and asked about,
    /// on its own stream, even beside a superseded session of the same
    /// worker, which hears nothing recorded.
    #[test]
    fn written_ends_are_acknowledged_to_the_stream_that_sent_them() {
        let Reconnected { worker, old, new, old_tx, mut old_rx, new_tx, mut new_rx } =
            reconnected();
        let ops = vec![
            WriteOp::Update(update(1, JobStatus::Done, worker), new_tx.clone(), Some(new)),
            WriteOp::Update(update(2, JobStatus::Error, worker), new_tx.clone(), Some(new)),
            WriteOp::Update(update(3, JobStatus::Done, worker), new_tx.clone(), None),
            WriteOp::Update(update(4, JobStatus::Done, worker), old_tx, Some(old)),
        ];
        let Built { routes, ends, .. } = build_batch(ops);
        let outcome = WriteOutcome { superseded: vec![old], ..Default::default() };
        deliver(outcome, &routes, &ends, std::iter::empty());
        let mut named = recorded(&mut new_rx);
        named.sort_unstable();
        assert_eq!(named, [1, 2]);
        assert!(new_rx.try_recv().is_err(), "one message for the batch");
        while let Ok(message) = old_rx.try_recv() {
            let recorded =
                matches!(&message, Ok(m) if matches!(m.message, Some(Message::EndsRecorded(_))));
            assert!(!recorded, "the superseded session hears nothing recorded");
        }
    }

    /// Two heartbeats of one session in a batch report its attempts twice;
    /// the worker hears one cancel per attempt.
    #[test]
    fn an_attempt_reported_twice_in_a_batch_gets_one_cancel() {
        use crate::store::{StaleReason, StaleRun};
        let worker = Uuid::new_v4();
        let (tx, mut rx) = crate::outbound::channel(16);
        let routes = Routes { by_worker: HashMap::from([(worker, tx)]), ..Routes::default() };
        let run = |job_id, reason| (worker, StaleRun { job_id, attempt: 2, reason });
        let outcome = WriteOutcome {
            stale: vec![run(7, StaleReason::Stale), run(7, StaleReason::Stale)],
            cancel_requested: vec![
                run(7, StaleReason::CancelRequested),
                run(8, StaleReason::CancelRequested),
                run(8, StaleReason::CancelRequested),
            ],
            ..Default::default()
        };
        deliver(outcome, &routes, &HashMap::new(), std::iter::empty());
        let mut cancels = Vec::new();
        while let Ok(Ok(message)) = rx.try_recv() {
            if let Some(Message::Cancel(c)) = message.message {
                cancels.push((c.job_id, c.attempt, c.reason));
            }
        }
        assert_eq!(
            cancels,
            [(7, 2, "stale attempt".to_string()), (8, 2, "cancel requested".to_string())]
        );
    }

    /// A worker that reconnected has both sessions in one batch. What its
    /// old session's heartbeat calls for (cancels, the end of the stream)
    /// goes to the old stream; the new one, which may own the same
    /// attempts now, hears none of it and gets its own ack.
    #[test]
    fn what_concerns_a_superseded_session_never_reaches_the_new_one() {
        use crate::store::StaleRun;
        let Reconnected { worker, old, new, old_tx, mut old_rx, new_tx, mut new_rx } =
            reconnected();
        let heartbeat = |session| HeartbeatWrite { session, running: Vec::new(), end_acks: true };
        let ack = PendingAck { sequence: 9, received: Instant::now() };
        let ops = vec![
            WriteOp::Heartbeat(heartbeat(old), old_tx, Some(PendingAck { sequence: 4, ..ack })),
            WriteOp::Heartbeat(heartbeat(new), new_tx, Some(ack)),
        ];
        let Built { routes, ends, acks, .. } = build_batch(ops);
        let run = StaleRun { job_id: 7, attempt: 1, reason: StaleReason::SessionSuperseded };
        let outcome = WriteOutcome {
            stale: vec![(worker, run)],
            superseded: vec![old],
            ..Default::default()
        };
        let acks = acks.iter().map(|&(s, a)| (s, a.sequence, Duration::from_secs(5)));
        deliver(outcome, &routes, &ends, acks);
        assert_eq!(
            heard(&mut old_rx),
            ["cancel 7 (worker was declared dead or reconnected)", "ended: FailedPrecondition"]
        );
        assert_eq!(heard(&mut new_rx), ["ack 9"]);
    }

    /// An attempt the old session is told to stop, and whose cancel was
    /// also requested, gets each cancel on its stream: one per attempt and
    /// stream, not one per attempt.
    #[test]
    fn cancels_of_one_attempt_for_two_streams_each_reach_theirs() {
        use crate::store::StaleRun;
        let Reconnected { worker, old, new, old_tx, mut old_rx, new_tx, mut new_rx } =
            reconnected();
        let heartbeat = |session| HeartbeatWrite { session, running: Vec::new(), end_acks: true };
        let ops = vec![
            WriteOp::Heartbeat(heartbeat(old), old_tx, None),
            WriteOp::Heartbeat(heartbeat(new), new_tx, None),
        ];
        let Built { routes, ends, .. } = build_batch(ops);
        let run = |reason| (worker, StaleRun { job_id: 7, attempt: 1, reason });
        let outcome = WriteOutcome {
            stale: vec![run(StaleReason::SessionSuperseded)],
            cancel_requested: vec![run(StaleReason::CancelRequested)],
            superseded: vec![old],
        };
        deliver(outcome, &routes, &ends, std::iter::empty());
        assert_eq!(
            heard(&mut old_rx),
            ["cancel 7 (worker was declared dead or reconnected)", "ended: FailedPrecondition"]
        );
        assert_eq!(heard(&mut new_rx), ["cancel 7 (cancel requested)"]);
    }

    /// A dropped batch ends the streams whose kept ends it lost: their
    /// workers send them again; other streams stay up.
    #[test]
    fn a_dropped_batch_ends_the_streams_of_its_kept_ends() {
        let worker = Uuid::new_v4();
        let session = Some(SessionRef { worker_id: worker, epoch: 1 });
        let (tx, mut rx) = crate::outbound::channel(16);
        let (bystander_tx, mut bystander_rx) = crate::outbound::channel(16);
        let ops = vec![
            WriteOp::Update(update(1, JobStatus::Done, worker), tx, session),
            WriteOp::Update(update(2, JobStatus::Running, Uuid::new_v4()), bystander_tx, None),
        ];
        let Built { ends, .. } = build_batch(ops);
        abandon(&ends);
        assert!(
            matches!(rx.try_recv(), Ok(Err(status)) if status.code() == tonic::Code::Unavailable)
        );
        assert!(bystander_rx.try_recv().is_err(), "a stream that lost no kept end stays up");
    }

    /// Fails every batch holding an op of `poison` (every batch, without
    /// one); keeps the workers of each batch it writes, and counts tries.
    struct Poisoned {
        poison: Option<Uuid>,
        written: std::sync::Mutex<Vec<Vec<Uuid>>>,
        tries: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl BatchSink for Arc<Poisoned> {
        async fn write_batch(
            &self,
            batch: &WriteBatch,
            _ttl: Duration,
        ) -> Result<WriteOutcome, StoreError> {
            let built = Built {
                batch: batch.clone(),
                routes: Routes::default(),
                acks: Vec::new(),
                ends: HashMap::new(),
            };
            let workers = built.workers();
            self.tries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if self.poison.is_none_or(|p| workers.contains(&p)) {
                return Err(StoreError::Corrupt("poisoned".into()));
            }
            self.written.lock().expect("lock").push(workers);
            Ok(WriteOutcome::default())
        }
    }

    /// A writer over `sink` with `n` workers, each having queued an end
    /// and a heartbeat; their streams.
    async fn queued(sink: Arc<Poisoned>, workers: &[Uuid]) -> Vec<crate::outbound::Outbound> {
        let (written, _) = broadcast::channel(16);
        let health = Arc::new(DbHealth::new());
        let (tx, writer) = Writer::new(sink, Duration::from_secs(3), 64, written, health);
        let mut streams = Vec::new();
        for (n, &worker) in workers.iter().enumerate() {
            let session = SessionRef { worker_id: worker, epoch: 1 };
            let (out, rx) = crate::outbound::channel(16);
            let end = update(n as i64 + 1, JobStatus::Done, worker);
            tx.send(WriteOp::Update(end, out.clone(), Some(session))).await.expect("queued");
            let heartbeat = HeartbeatWrite { session, running: Vec::new(), end_acks: true };
            let ack = PendingAck { sequence: 1, received: Instant::now() };
            tx.send(WriteOp::Heartbeat(heartbeat, out, Some(ack))).await.expect("queued");
            streams.push(rx);
        }
        drop(tx);
        // The whole batch is one flush: every op was queued before it ran.
        writer.run().await;
        streams
    }

    /// One worker's report that the store keeps refusing costs that worker
    /// alone: the others' ends and heartbeats are written and answered,
    /// and only the poisoned worker's stream is ended (it sends them
    /// again).
    #[tokio::test]
    async fn a_batch_that_keeps_failing_drops_only_the_failing_workers_reports() {
        let workers: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
        let poison = workers[2];
        let sink = Arc::new(Poisoned {
            poison: Some(poison),
            written: Default::default(),
            tries: Default::default(),
        });
        let mut streams = queued(sink.clone(), &workers).await;
        for (worker, rx) in workers.iter().zip(&mut streams) {
            let heard = heard(rx);
            if *worker == poison {
                assert_eq!(heard, ["ended: Unavailable"]);
            } else {
                assert_eq!(heard.len(), 2, "{heard:?}");
                assert!(heard[0].starts_with("recorded"), "{heard:?}");
                assert_eq!(heard[1], "ack 1");
            }
        }
        let mut written: Vec<Uuid> =
            sink.written.lock().expect("lock").iter().flatten().copied().collect();
        written.sort_unstable();
        let mut others: Vec<Uuid> = workers.iter().copied().filter(|w| *w != poison).collect();
        others.sort_unstable();
        assert_eq!(written, others);
    }

    /// A failure that is everyone's is not retried per part: the batch is
    /// retried, then each part of the split is tried once, and every
    /// stream with kept ends is ended.
    #[tokio::test]
    async fn a_batch_failing_for_everyone_tries_each_part_once() {
        let workers: Vec<Uuid> = (0..8).map(|_| Uuid::new_v4()).collect();
        let sink = Arc::new(Poisoned {
            poison: None,
            written: Default::default(),
            tries: Default::default(),
        });
        let mut streams = queued(sink.clone(), &workers).await;
        for rx in &mut streams {
            assert_eq!(heard(rx), ["ended: Unavailable"]);
        }
        // 3 tries of the batch, then at most the 2 x 8 - 2 parts of the
        // halving once each (fewer if its time ran out).
        let tries = sink.tries.load(std::sync::atomic::Ordering::Relaxed);
        assert!((3..=3 + 14).contains(&tries), "{tries} tries");
    }
}
