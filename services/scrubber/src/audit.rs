//! The audit record: every destructive request the scrubber sends to a
//! registry is written before it leaves (a request that cannot be written
//! is not sent) and answered when it returns, under the deletion it was
//! sent for. `regsweep scrub history` reads it.
//!
//! The record before the request is synchronous: it is the guarantee. It
//! is group-committed: requests that come while one insert is in flight
//! are recorded together by the next, and each waits for the commit of
//! its own. The answers are batched by one writer task (a process killed
//! before it flushes leaves requests on record without their answer,
//! shown as such). Both keep the record from halving the deletion rate.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use regsweep_common::Shutdown;
use regsweep_registry::{Audit, Error, Outgoing};
use tokio::sync::{mpsc, oneshot};

use crate::store::{Answer, DeletionStore, SentRequest};

/// How often requests past their retention are pruned.
const PRUNE_PERIOD: Duration = Duration::from_secs(3600);
/// Answers waiting for the writer; past this, answering waits.
const ANSWER_QUEUE: usize = 4096;
/// Most answers written per statement.
const ANSWER_BATCH: usize = 512;
/// Requests waiting to be recorded. Each sender waits for its own
/// record, so this holds at most one per deletion in progress.
const SENT_QUEUE: usize = 1024;
/// Most requests recorded per statement.
const SENT_BATCH: usize = 256;

/// A request waiting for its record, and where its id goes.
struct Unrecorded {
    request: SentRequest,
    recorded: oneshot::Sender<Result<i64, String>>,
}

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
    sent: mpsc::Sender<Unrecorded>,
    answers: mpsc::Sender<Answer>,
}

impl AuditLog {
    /// The log, and its writer (of requests and of answers) to run until
    /// the log is dropped.
    pub fn new(store: Arc<dyn DeletionStore>) -> (Self, impl Future<Output = ()>) {
        let (sent, unrecorded) = mpsc::channel(SENT_QUEUE);
        let (answers, queue) = mpsc::channel(ANSWER_QUEUE);
        let writer = async move {
            tokio::join!(record_requests(store.clone(), unrecorded), write_answers(store, queue));
        };
        (Self { sent, answers }, writer)
    }
}

/// Records requests in batches: whatever queued while the last insert was
/// in flight goes in the next one, and each sender hears of its own id
/// only after the commit. A failed insert fails every request in it: none
/// of them is sent.
async fn record_requests(store: Arc<dyn DeletionStore>, mut queue: mpsc::Receiver<Unrecorded>) {
    let mut batch = Vec::with_capacity(SENT_BATCH);
    while queue.recv_many(&mut batch, SENT_BATCH).await > 0 {
        let (requests, waiting): (Vec<_>, Vec<_>) =
            batch.drain(..).map(|u| (u.request, u.recorded)).unzip();
        let ids = match store.requests_sent(&requests).await {
            Ok(ids) if ids.len() == waiting.len() => ids.into_iter().map(Ok).collect(),
            Ok(ids) => {
                let e = format!("{} of {} requests recorded", ids.len(), waiting.len());
                vec![Err(e); waiting.len()]
            }
            Err(e) => vec![Err(e.to_string()); waiting.len()],
        };
        for (waiter, id) in waiting.into_iter().zip(ids) {
            // A sender that stopped waiting sends nothing.
            let _ = waiter.send(id);
        }
    }
}

/// Writes answers in batches: whatever queued while the last batch was
/// written goes in the next statement.
async fn write_answers(store: Arc<dyn DeletionStore>, mut queue: mpsc::Receiver<Answer>) {
    let mut batch = Vec::with_capacity(ANSWER_BATCH);
    while queue.recv_many(&mut batch, ANSWER_BATCH).await > 0 {
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
            let request = SentRequest {
                deletion_id,
                registry,
                method: request.method.to_owned(),
                path: request.path.to_owned(),
            };
            let (recorded, id) = oneshot::channel();
            let gone = || Error::Unrecorded("the audit writer stopped".into());
            self.sent.send(Unrecorded { request, recorded }).await.map_err(|_| gone())?;
            id.await.map_err(|_| gone())?.map_err(Error::Unrecorded)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// 32 deletions sending at once: every request is on record before
    /// its sender hears its id, under its own deletion and path, and all
    /// went in one insert (the test runtime runs one task at a time, so
    /// all 32 queue before the writer first runs).
    #[tokio::test]
    async fn concurrent_requests_are_recorded_together_each_under_its_own_id() {
        let file = std::env::temp_dir().join(format!("audit-{}.db", uuid::Uuid::new_v4()));
        let url = format!("sqlite://{}", file.display());
        let store = crate::store::open(&url, 2).await.expect("store");
        let (log, writer) = AuditLog::new(store.clone());
        let writer = tokio::spawn(writer);
        let path = |deletion: i64| format!("/v2/r/manifests/sha256:{deletion}");
        let sends = (0..32).map(|deletion| {
            let (log, path) = (&log, path(deletion));
            async move {
                let request = Outgoing { method: "DELETE", path: &path };
                let id = scrubbing(deletion, "reg", log.sending(request)).await.expect("recorded");
                (deletion, id)
            }
        });
        let ids = futures::future::join_all(sends).await;
        let recorded = store.requests(&(0..32).collect::<Vec<_>>()).await.expect("read");
        assert_eq!(recorded.len(), 32);
        for (deletion, id) in ids {
            let r = recorded.iter().find(|r| r.id == id).expect("its record");
            assert_eq!((r.deletion_id, r.path.clone()), (deletion, path(deletion)));
        }
        let inserts: std::collections::HashSet<_> = recorded.iter().map(|r| r.sent_at).collect();
        assert_eq!(inserts.len(), 1, "one insert for all");
        let outside = log.sending(Outgoing { method: "DELETE", path: "/v2/r/manifests/x" }).await;
        assert!(matches!(outside, Err(Error::Unrecorded(_))), "sent outside a deletion");
        drop(log);
        writer.await.expect("the writer ends with the log");
        let _ = std::fs::remove_file(file);
    }
}
