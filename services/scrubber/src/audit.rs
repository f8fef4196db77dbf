//! The audit record: every destructive request the scrubber sends to a
//! registry is written before it leaves (a request that cannot be written
//! is not sent) and answered when it returns, under the deletion it was
//! sent for. `regsweep scrub history` reads it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use regsweep_common::Shutdown;
use regsweep_registry::{Audit, Error, Outgoing};

use crate::store::{DeletionStore, SentRequest};

/// How often requests past their retention are pruned.
const PRUNE_PERIOD: Duration = Duration::from_secs(3600);

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
    pub store: Arc<dyn DeletionStore>,
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
            // The request is on record; only its answer is missing.
            if let Err(e) = self.store.request_answered(id, status).await {
                tracing::warn!(request = id, status, error = %e, "cannot record a registry answer");
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
