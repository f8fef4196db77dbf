//! The claim loop: claims due deletions in batches under a lease, scrubs up
//! to `parallelism` images at once, renews the leases of what it holds, and
//! records each outcome fenced by its lease.
//!
//! An outcome is recorded off the scrub's path: a scrub hands it to the
//! outcome writer and its slot takes the next image while the outcome is
//! written, so the database round trip does not sit between two images of
//! a one-at-a-time registry. The deletion stays held (its lease renewed)
//! until its outcome is on record, and the writer drains before the runner
//! ends; a process killed in between leaves the deletion to its lease, as
//! a kill right after the registry answered always has.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use regsweep_common::backoff::Backoff;
use regsweep_common::{Shutdown, supervisor, trace};
use regsweep_proto::v1::{self, repository_service_client::RepositoryServiceClient};
use regsweep_registry::{Directory, DirectoryError};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

use crate::limits::Limits;
use crate::plans::{Plans, Standing};
use crate::scrub::{self, Lease, ScrubError};
use crate::snapshot::Snapshots;
use crate::store::{DeletionRecord, DeletionStore, Finish};

/// A lease is trusted locally until this long before it expires in the
/// database (clock drift, the time of a registry call in flight).
const LEASE_MARGIN_DIVISOR: u32 = 3;
/// Retries of a failed deletion: from 1 s, doubled per attempt, at most
/// 5 min.
const RETRY: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
/// How often deleted-tag counts are reported to the scheduler.
const REPORT_PERIOD: Duration = Duration::from_millis(500);
/// Fewest deletions claimed per statement.
const CLAIM_AHEAD: usize = 16;
/// How long a deletion whose policy could not be checked waits before it
/// is tried again (the attempt is not counted).
const UNCHECKED_WAIT: Duration = Duration::from_secs(5);
/// Outcomes waiting for the writer, per scrub slot; past this a scrub
/// waits to hand its outcome over (and so claims slow down).
const ENDINGS_PER_SLOT: usize = 4;

/// A scrubbed deletion and how it ended, on its way to the record.
type Ending = (DeletionRecord, Finish);

#[derive(Clone, Debug)]
pub struct RunnerConfig {
    pub parallelism: u32,
    pub lease: Duration,
    pub poll_interval: Duration,
    pub max_attempts: u32,
    pub drain_timeout: Duration,
}

/// The leases this replica holds: deletion id -> local deadline.
#[derive(Default)]
struct Held(Mutex<HashMap<i64, Instant>>);

impl Lease for Held {
    fn valid_until(&self, id: i64) -> Option<Instant> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).get(&id).copied()
    }
}

impl Held {
    fn hold(&self, ids: impl IntoIterator<Item = i64>, until: Instant) {
        let mut held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for id in ids {
            held.insert(id, until);
        }
    }

    fn release(&self, id: i64) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
    }

    fn ids(&self) -> Vec<i64> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).keys().copied().collect()
    }

    /// Keeps `renewed` until `until` and forgets the rest of `asked`.
    fn renewed(&self, asked: &[i64], renewed: &[i64], until: Instant) {
        let mut held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for id in asked {
            if renewed.contains(id) {
                if let Some(deadline) = held.get_mut(id) {
                    *deadline = until;
                }
            } else if held.remove(id).is_some() {
                tracing::warn!(deletion = id, "lease lost");
            }
        }
    }
}

pub struct Runner {
    pub store: Arc<dyn DeletionStore>,
    pub directory: Arc<Directory>,
    pub limits: Arc<Limits>,
    /// Whether the policy of a deletion still stands, asked right before
    /// it runs.
    pub plans: Arc<Plans>,
    pub holder: Uuid,
    pub snapshots: Snapshots,
    /// Where deleted tags are reported (the repository's deleted count).
    pub repositories: RepositoryServiceClient<regsweep_common::grpc::Client>,
    /// Deleted tags per job not reported yet; flushed every
    /// [`REPORT_PERIOD`] rather than once per deletion.
    pub unreported: Mutex<HashMap<i64, u32>>,
    /// Wakes an idle claim loop: deletions became due (taken back from a
    /// dead replica, submitted with no delay, approved).
    pub due: Arc<tokio::sync::Notify>,
    pub config: RunnerConfig,
}

/// The runner's helper tasks, named: watched while it runs, aborted when
/// it ends however it ends (a panic included), so none outlives it.
struct Helpers(Vec<(&'static str, tokio::task::JoinHandle<()>)>);

impl Helpers {
    /// The first helper that ended.
    fn ended(&self) -> Option<&'static str> {
        self.0.iter().find(|(_, task)| task.is_finished()).map(|(name, _)| *name)
    }
}

impl Drop for Helpers {
    fn drop(&mut self) {
        for (_, task) in &self.0 {
            task.abort();
        }
    }
}

impl Runner {
    fn trusted_until(&self, asked_at: Instant) -> Instant {
        asked_at + self.config.lease - self.config.lease / LEASE_MARGIN_DIVISOR
    }

    pub async fn run(self, stop: Shutdown) {
        let this = Arc::new(self);
        let held = Arc::new(Held::default());
        let slots = this.config.parallelism as usize;
        let (endings, ended) = mpsc::channel(slots.max(1) * ENDINGS_PER_SLOT);
        let writer = record_endings(this.clone(), held.clone(), ended, slots);
        let writer = tokio::spawn(supervisor::armed("outcome writer", writer));
        let helpers = this.helpers(&held, &stop);
        let permits = Arc::new(Semaphore::new(slots));
        let mut tasks = JoinSet::new();
        loop {
            // A helper that died (leases no longer renewed, outcomes no
            // longer written, say) stops the runner, and so the process:
            // its supervisor restarts it.
            let died = helpers.ended().or(writer.is_finished().then_some("outcome writer"));
            if !stop.is_triggered()
                && let Some(helper) = died
            {
                tracing::error!(helper, "a runner helper task ended, stopping the runner");
                return;
            }
            while tasks.try_join_next().is_some() {}
            let free = permits.available_permits();
            if free == 0 {
                tokio::select! {
                    _ = tasks.join_next() => continue,
                    () = stop.cancelled() => break,
                }
            }
            let claimed = this.claim(free, &held).await;
            if claimed.is_empty() {
                tokio::select! {
                    () = tokio::time::sleep(this.config.poll_interval) => continue,
                    () = this.due.notified() => continue,
                    () = stop.cancelled() => break,
                }
            }
            for deletion in claimed {
                let Ok(permit) = permits.clone().acquire_owned().await else { break };
                start(&this, &held, permit, deletion, endings.clone(), &mut tasks);
            }
        }
        this.drain(tasks, endings, writer).await;
        drop(helpers);
        this.report().await;
    }

    /// The renewer, the taker and the reporter, running until `stop`.
    fn helpers(self: &Arc<Self>, held: &Arc<Held>, stop: &Shutdown) -> Helpers {
        let renewer = tokio::spawn(renew(self.clone(), held.clone(), stop.clone()));
        let taker = tokio::spawn(take_back(self.clone(), stop.clone()));
        let reporter = tokio::spawn({
            let this = self.clone();
            async move {
                loop {
                    tokio::time::sleep(REPORT_PERIOD).await;
                    this.report().await;
                }
            }
        });
        Helpers(vec![("renewer", renewer), ("taker", taker), ("reporter", reporter)])
    }

    /// Stops claiming; lets images in flight finish and their outcomes be
    /// written, within the drain timeout (past it, their leases make them
    /// someone else's).
    async fn drain(
        &self,
        mut tasks: JoinSet<()>,
        endings: mpsc::Sender<Ending>,
        writer: tokio::task::JoinHandle<()>,
    ) {
        let drained = tokio::time::timeout(self.config.drain_timeout, async {
            while tasks.join_next().await.is_some() {}
            // The writer ends once every scrub's sender is gone.
            drop(endings);
            let _ = writer.await;
        })
        .await;
        if drained.is_err() {
            tracing::warn!("deletions still in flight at shutdown; their leases will expire");
            tasks.abort_all();
        }
    }

    /// Claims due deletions ahead of the `free` slots, so one statement
    /// feeds several images, and holds them: the queued ones are leased
    /// (and renewed) meanwhile. Nothing when the claim failed.
    async fn claim(&self, free: usize, held: &Held) -> Vec<DeletionRecord> {
        let asked_at = Instant::now();
        let want = free.max(self.config.parallelism as usize * 2).max(CLAIM_AHEAD);
        let want = u32::try_from(want).unwrap_or(u32::MAX);
        match self.store.claim_due(self.holder, self.config.lease, want).await {
            Ok(claimed) => {
                held.hold(claimed.iter().map(|d| d.id), self.trusted_until(asked_at));
                claimed
            }
            Err(e) => {
                tracing::warn!(error = %e, "claiming deletions failed");
                Vec::new()
            }
        }
    }

    /// How scrubbing `d` ended; `None` when its lease was lost meanwhile
    /// (it is its new holder's to record).
    async fn process(&self, held: &Held, d: &DeletionRecord) -> Option<Finish> {
        let finish = match self.directory.get(&d.registry).await {
            Err(DirectoryError::Unknown(name)) => {
                Finish::Failed { error: format!("registry {name:?} is not defined") }
            }
            Err(e) => self.retry(d, e.to_string()),
            Ok((client, definition)) => {
                let limits = self.limits.of(&definition);
                let _slot = limits.slot().await;
                // Right before the registry is touched: a policy changed
                // while this waited stops it here.
                let verdict = match self.unless_standing(d).await {
                    None => self.unless_unshielded(d).await,
                    stop => stop,
                };
                if verdict.is_some() {
                    return verdict;
                }
                let scrub = scrub::scrub(&client, &self.snapshots, held, d);
                match crate::audit::scrubbing(d.id, &d.registry, scrub).await {
                    Ok(done) => {
                        tracing::info!(deletion = d.id, repository = %d.repository, digest = %d.digest,
                            deleted = ?done.deleted_tags, skipped = ?done.skipped_tags,
                            digest_deleted = done.digest_deleted, linked = ?done.linked_deleted, "deleted");
                        done.into_finish()
                    }
                    Err(ScrubError::LeaseLost) => {
                        tracing::warn!(
                            deletion = d.id,
                            "lease lost mid-scrub, leaving it to its new holder"
                        );
                        held.release(d.id);
                        return None;
                    }
                    // 400/405 UNSUPPORTED (deletes disabled): final.
                    Err(ScrubError::Registry(e)) if e.is_unsupported() => {
                        tracing::warn!(deletion = d.id, registry = %d.registry, error = %e, "registry refuses deletes");
                        Finish::Failed { error: format!("the registry refuses: {e}") }
                    }
                    Err(ScrubError::Registry(e)) => {
                        tracing::warn!(deletion = d.id, error = %e, attempts = d.attempts, "scrub failed");
                        self.retry(d, e.to_string())
                    }
                }
            }
        };
        Some(finish)
    }

    /// `None` when the deletion's policy still stands; else how it ends:
    /// cancelled, or postponed when the scheduler cannot say.
    async fn unless_standing(&self, d: &DeletionRecord) -> Option<Finish> {
        match self.plans.standing(&d.policy, &d.repository).await {
            Ok(Standing::Current) => None,
            Ok(Standing::Gone(reason)) => {
                tracing::warn!(deletion = d.id, policy = %d.policy.name, reason = %reason,
                    "deletion cancelled");
                Some(Finish::Cancelled { reason })
            }
            Err(status) => {
                tracing::warn!(deletion = d.id, policy = %d.policy.name, error = %status.message(),
                    "cannot check the policy; deletion postponed");
                Some(Finish::Postpone {
                    error: format!("cannot check policy {:?}: {}", d.policy.name, status.message()),
                    after: UNCHECKED_WAIT,
                })
            }
        }
    }

    /// `None` when nothing of the deletion is protected or in use; else
    /// how it ends: cancelled, or postponed when the scheduler cannot say.
    async fn unless_unshielded(&self, d: &DeletionRecord) -> Option<Finish> {
        match self.plans.shielded(d).await {
            Ok(None) => None,
            Ok(Some(why)) => {
                tracing::warn!(deletion = d.id, repository = %d.repository, reason = %why,
                    "deletion cancelled: protected");
                Some(Finish::Cancelled { reason: format!("protected: {why}") })
            }
            Err(status) => {
                tracing::warn!(deletion = d.id, error = %status.message(),
                    "cannot check protection; deletion postponed");
                Some(Finish::Postpone {
                    error: format!("cannot check protection: {}", status.message()),
                    after: UNCHECKED_WAIT,
                })
            }
        }
    }

    /// Records how a deletion ended, fenced by its lease, and lets it go.
    async fn record(&self, held: &Held, d: &DeletionRecord, finish: Finish) {
        match self.store.finish(self.holder, d.id, &finish).await {
            Ok(true) => {
                metrics::counter!("regsweep_deletions_total", "outcome" => finish.outcome())
                    .increment(1);
                if let Finish::Deleted { deleted_tags, .. } = &finish
                    && !deleted_tags.is_empty()
                {
                    let mut unreported =
                        self.unreported.lock().unwrap_or_else(PoisonError::into_inner);
                    let count = unreported.entry(d.job_id).or_default();
                    *count =
                        count.saturating_add(u32::try_from(deleted_tags.len()).unwrap_or(u32::MAX));
                }
            }
            Ok(false) => {
                tracing::warn!(deletion = d.id, "lease lost before the outcome was recorded")
            }
            Err(e) => {
                tracing::warn!(deletion = d.id, error = %e, "cannot record outcome; the lease will expire")
            }
        }
        held.release(d.id);
    }

    /// Tells the scheduler what was deleted since the last report, and
    /// which registries pushed back. A failure only loses a count or a
    /// pushback, never a deletion: logged, not retried.
    async fn report(&self) {
        let pending =
            std::mem::take(&mut *self.unreported.lock().unwrap_or_else(PoisonError::into_inner));
        for (job_id, deleted_tags) in pending {
            let request = v1::RecordDeletionsRequest { job_id, deleted_tags };
            if let Err(status) = self.repositories.clone().record_deletions(request).await {
                tracing::warn!(job_id, error = %status.message(), "cannot report deleted tags to the scheduler");
            }
        }
        for pushback in self.limits.take_pushbacks() {
            let request = v1::RecordPushbackRequest {
                registry: pushback.registry.clone(),
                rate: pushback.rate,
                status: u32::from(pushback.status),
            };
            if let Err(status) = self.repositories.clone().record_pushback(request).await {
                tracing::warn!(registry = %pushback.registry, error = %status.message(),
                    "cannot report a registry's pushback to the scheduler");
            }
        }
    }

    fn retry(&self, d: &DeletionRecord, error: String) -> Finish {
        let retry = u32::try_from(d.attempts.max(1) - 1).unwrap_or(0);
        let after = RETRY.delay(retry);
        Finish::Retry { error, after, max_attempts: self.config.max_attempts }
    }
}

/// Makes the deletions of a replica that died claimable as soon as their
/// lease expires, whatever this replica is busy with: the takeover bound
/// is the lease plus one poll interval.
async fn take_back(runner: Arc<Runner>, stop: Shutdown) {
    loop {
        match runner.store.take_back_expired().await {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(deletions = n, "took back deletions of an expired lease");
                runner.due.notify_one();
            }
            Err(e) => tracing::warn!(error = %e, "cannot take back expired leases"),
        }
        tokio::select! {
            () = tokio::time::sleep(runner.config.poll_interval) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Renews every held lease a third of the way through it.
async fn renew(runner: Arc<Runner>, held: Arc<Held>, stop: Shutdown) {
    let period = runner.config.lease / 3;
    loop {
        // Leases are renewed while images drain after shutdown too.
        tokio::time::sleep(period).await;
        let ids = held.ids();
        if ids.is_empty() {
            if stop.is_triggered() {
                return;
            }
            continue;
        }
        let asked_at = Instant::now();
        match runner.store.renew(runner.holder, &ids, runner.config.lease).await {
            Ok(renewed) => held.renewed(&ids, &renewed, runner.trusted_until(asked_at)),
            Err(e) => tracing::warn!(error = %e, "cannot renew leases"),
        }
    }
}

/// Processes `deletion` on its own task, holding `permit` until its
/// outcome is handed to the writer, under a root span that continues the
/// trace of the cleanup that planned it (which may have ended an hour ago).
fn start(
    runner: &Arc<Runner>,
    held: &Arc<Held>,
    permit: tokio::sync::OwnedSemaphorePermit,
    deletion: DeletionRecord,
    endings: mpsc::Sender<Ending>,
    tasks: &mut JoinSet<()>,
) {
    let (runner, held) = (runner.clone(), held.clone());
    let span = tracing::info_span!(
        parent: None,
        "scrub",
        deletion = deletion.id,
        registry = %deletion.registry,
        repository = %deletion.repository,
    );
    trace::set_parent_from(&span, deletion.trace_context.as_deref());
    tasks.spawn(tracing::Instrument::instrument(
        async move {
            if let Some(finish) = runner.process(&held, &deletion).await
                && endings.send((deletion, finish)).await.is_err()
            {
                // Only when the writer died: the runner is stopping.
                tracing::warn!("outcome not recorded: the writer is gone; the lease will expire");
            }
            drop(permit);
        },
        span,
    ));
}

/// Records outcomes as scrubs hand them over, as many at once as there
/// are scrub `slots`, until every sender is gone.
async fn record_endings(
    runner: Arc<Runner>,
    held: Arc<Held>,
    mut ended: mpsc::Receiver<Ending>,
    slots: usize,
) {
    futures::stream::poll_fn(|cx| ended.poll_recv(cx))
        .for_each_concurrent(slots.max(1), |(deletion, finish)| {
            let (runner, held) = (&runner, &held);
            async move { runner.record(held, &deletion, finish).await }
        })
        .await;
}
