//! The audit record: every destructive request the scrubber sends to a
//! registry is written before it leaves (a request that cannot be written
//! is not sent) and answered when it returns, under the deletion it was
//! sent for. `regsweep scrub history` reads it.
//!
//! The record before the request is synchronous: it is the guarantee. The
//! answers are batched by one writer task (a process killed before it
//! flushes leaves requests on record without their answer, shown as
//! such), which keeps the record from halving the deletion rate; the
//! writer lets answers gather for a moment first, so that a scrubber
//! deleting one image at a time does not write one statement per answer
//! on the cores its registry and database share. The
//! records themselves are one insert each: grouping concurrent ones into
//! one insert through a writer task was measured no faster (PostgreSQL
//! already flushes concurrent commits together; BENCHMARKS.md).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use regsweep_common::Shutdown;
use regsweep_registry::{Audit, Error, Outgoing};
use tokio::sync::mpsc;

use crate::store::{Answer, DeletionStore, SentRequest};

/// How often requests past their retention are pruned.
const PRUNE_PERIOD: Duration = Duration::from_secs(3600);
/// Answers waiting for the writer; past this, answering waits.
const ANSWER_QUEUE: usize = 4096;
/// Most answers written per statement.
const ANSWER_BATCH: usize = 512;
/// How long answers gather after the first of a batch arrives.
const ANSWER_GATHER: Duration = Duration::from_millis(50);

tokio::task_local! {
    /// The deletion being carried out, and its registry's name.
    static SCRUBBING: (i64, Arc<str>);
}

/// Runs `work` as the scrub of deletion `id` of `registry`: the requests it
/// sends are recorded under it.
pub async fn scrubbing<F: Future>(id: i64, registry: &str, work: F) -> F::Output {
    SCRUBBING.scope((id, Arc::from(registry)), work).await
}

/// Records requests in the deletions' store.
pub struct AuditLog {
    store: Arc<dyn DeletionStore>,
    answers: mpsc::Sender<Answer>,
}

impl AuditLog {
    /// The log, and its answer writer to run until every sender is gone.
    pub fn new(store: Arc<dyn DeletionStore>) -> (Self, impl Future<Output = ()>) {
        let (answers, queue) = mpsc::channel(ANSWER_QUEUE);
        (Self { store: store.clone(), answers }, write_answers(store, queue))
    }
}

/// Writes answers in batches: whatever queued within [`ANSWER_GATHER`]
/// of the first, or while the last batch was written, goes in the next
/// statement.
async fn write_answers(store: Arc<dyn DeletionStore>, mut queue: mpsc::Receiver<Answer>) {
    let mut batch = Vec::with_capacity(ANSWER_BATCH);
    while queue.recv_many(&mut batch, ANSWER_BATCH).await > 0 {
        let gathered = tokio::time::sleep(ANSWER_GATHER);
        tokio::pin!(gathered);
        while batch.len() < ANSWER_BATCH {
            let room = ANSWER_BATCH - batch.len();
            tokio::select! {
                received = queue.recv_many(&mut batch, room) => {
                    if received == 0 {
                        break;
                    }
                }
                () = &mut gathered => break,
            }
        }
        if let Err(e) = store.requests_answered(&batch).await {
            tracing::warn!(answers = batch.len(), error = %e, "cannot record registry answers");
        }
        batch.clear();
    }
}

impl Audit for AuditLog {
    fn sending<'a>(
        &'a self,
        request: Outgoing<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<i64, Error>> + Send + 'a>> {
        Box::pin(async move {
            let Ok((deletion_id, registry)) = SCRUBBING.try_with(Clone::clone) else {
                // Every destructive call of the scrubber runs in a scrub.
                return Err(Error::Unrecorded("sent outside a deletion".into()));
            };
            let sent = SentRequest {
                deletion_id,
                registry: &registry,
                method: request.method,
                path: request.path,
            };
            self.store.request_sent(&sent).await.map_err(|e| Error::Unrecorded(e.to_string()))
        })
    }

    fn answered(&self, id: i64, status: u16) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let answer = Answer { id, status, at: Utc::now() };
            // Only when the writer is gone (shutting down): the request is
            // on record, its answer is not.
            if self.answers.send(answer).await.is_err() {
                tracing::warn!(request = id, status, "registry answer not recorded: shutting down");
            }
        })
    }
}

/// Forgets requests older than `retention`, hourly, until `stop`.
pub async fn prune(store: Arc<dyn DeletionStore>, retention: Duration, stop: Shutdown) {
    loop {
        let before = Utc::now() - chrono::Duration::from_std(retention).unwrap_or_default();
        match store.prune_requests(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(requests = n, "audit record pruned"),
            Err(e) => tracing::warn!(error = %e, "cannot prune the audit record"),
        }
        tokio::select! {
            () = tokio::time::sleep(PRUNE_PERIOD) => {}
            () = stop.cancelled() => return,
        }
    }
}
