//! The scrubber's storage: deletions, their leases and outcomes, behind
//! one trait with a PostgreSQL and a SQLite implementation.

mod measured;
mod postgres;
mod sqlite;

use std::sync::Arc;

use regsweep_common::clock::Clock;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use regsweep_common::db::{Backend, StoredList, StoredTime};
use regsweep_policy::Linked;
use regsweep_proto::timestamp_from_chrono;
use regsweep_proto::v1::{self, DeletionStatus};
use uuid::Uuid;

pub use postgres::PgStore;
pub use regsweep_common::StoreError;
pub use sqlite::SqliteStore;

/// One image of a submitted plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDeletion {
    pub digest: String,
    pub tags: Vec<String>,
    pub delete_digest: bool,
    pub linked: LinkedManifests,
    /// The rule that decided each tag.
    pub reasons: Vec<TagReason>,
}

/// The rule that decided one tag's deletion.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TagReason {
    pub tag: String,
    pub rule: String,
}

/// The reasons as stored: `None` when there are none.
fn reasons_column(reasons: &[TagReason]) -> Option<String> {
    (!reasons.is_empty()).then(|| serde_json::to_string(reasons).unwrap_or_default())
}

fn reasons_from_column(column: Option<&str>) -> Vec<TagReason> {
    // Written by `reasons_column`; only shown, never acted on.
    column.and_then(|c| serde_json::from_str(c).ok()).unwrap_or_default()
}

/// The policy a plan was made under, as the scheduler vouched for it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PlanPolicy {
    /// Empty for a cleanup created by hand.
    pub name: String,
    pub id: i64,
    pub revision: String,
}

impl NewDeletion {
    pub(crate) fn reasons_column(&self) -> Option<String> {
        reasons_column(&self.reasons)
    }
}

/// The graph around an image as planned: the manifests deleted with it,
/// in order around it, and those it is attached to.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LinkedManifests {
    pub before: Vec<Linked>,
    pub after: Vec<Linked>,
    /// The image's own subjects: its digest stays while one is kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
}

impl LinkedManifests {
    /// As stored: `None` when there are none.
    pub(crate) fn to_column(&self) -> Option<String> {
        (!self.before.is_empty() || !self.after.is_empty() || !self.subjects.is_empty())
            .then(|| serde_json::to_string(self).unwrap_or_default())
    }

    fn from_column(column: Option<&str>) -> Self {
        // Written by `to_column`; unreadable means none are deleted, which
        // leaves manifests behind but never deletes one not planned.
        column.and_then(|c| serde_json::from_str(c).ok()).unwrap_or_default()
    }
}

/// One cleanup attempt's plan for a repository.
#[derive(Clone, Debug)]
pub struct Submission<'a> {
    pub job_id: i64,
    pub attempt: u32,
    pub registry: &'a str,
    pub repository: &'a str,
    pub images: &'a [NewDeletion],
    /// How long the deletions wait (and can be restored).
    pub delay: Duration,
    /// The submitter's `traceparent`, continued when each deletion runs.
    pub trace_context: Option<&'a str>,
    pub policy: &'a PlanPolicy,
    /// Why the plan waits for approval; `None` lets it run after `delay`.
    pub hold: Option<&'a str>,
}

impl Submission<'_> {
    /// The status new deletions start in.
    pub(crate) fn initial_status(&self) -> &'static str {
        if self.hold.is_some() { "awaiting_approval" } else { "pending_delete" }
    }
}

/// A deletion row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletionRecord {
    pub id: i64,
    pub registry: String,
    pub repository: String,
    pub digest: String,
    pub tags: Vec<String>,
    pub delete_digest: bool,
    pub before: Vec<Linked>,
    pub after: Vec<Linked>,
    /// The manifests the image is attached to.
    pub subjects: Vec<String>,
    pub job_id: i64,
    pub attempt: i32,
    pub status: DeletionStatus,
    pub submitted_at: DateTime<Utc>,
    pub delete_after: DateTime<Utc>,
    pub attempts: i32,
    pub error: Option<String>,
    pub deleted_tags: Vec<String>,
    pub skipped_tags: Vec<String>,
    pub digest_deleted: bool,
    pub finished_at: Option<DateTime<Utc>>,
    /// The submitter's `traceparent`.
    pub trace_context: Option<String>,
    pub policy: PlanPolicy,
    pub reasons: Vec<TagReason>,
    pub hold_reason: Option<String>,
}

pub fn status_name(status: DeletionStatus) -> &'static str {
    match status {
        DeletionStatus::Unspecified | DeletionStatus::PendingDelete => "pending_delete",
        DeletionStatus::Deleting => "deleting",
        DeletionStatus::Deleted => "deleted",
        DeletionStatus::Restored => "restored",
        DeletionStatus::Failed => "failed",
        DeletionStatus::Cancelled => "cancelled",
        DeletionStatus::AwaitingApproval => "awaiting_approval",
    }
}

/// A stored status; one no code writes is `Corrupt`, never `Unspecified`.
pub fn parse_status(name: &str) -> Result<DeletionStatus, StoreError> {
    Ok(match name {
        "pending_delete" => DeletionStatus::PendingDelete,
        "deleting" => DeletionStatus::Deleting,
        "deleted" => DeletionStatus::Deleted,
        "restored" => DeletionStatus::Restored,
        "failed" => DeletionStatus::Failed,
        "cancelled" => DeletionStatus::Cancelled,
        "awaiting_approval" => DeletionStatus::AwaitingApproval,
        _ => return Err(StoreError::Corrupt(format!("deletion status {name:?}"))),
    })
}

/// Deletion rows as records; an unreadable one fails the read.
pub(crate) fn records<T: StoredTime, L: StoredList>(
    rows: Vec<DeletionRow<T, L>>,
) -> Result<Vec<DeletionRecord>, StoreError> {
    rows.into_iter().map(DeletionRecord::try_from).collect()
}

impl DeletionRecord {
    pub fn to_proto(&self) -> v1::Deletion {
        v1::Deletion {
            id: self.id,
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            image: Some(v1::ImageDeletion {
                digest: self.digest.clone(),
                tags: self.tags.clone(),
                delete_digest: self.delete_digest,
                before: self.before.iter().map(Into::into).collect(),
                after: self.after.iter().map(Into::into).collect(),
                reasons: self
                    .reasons
                    .iter()
                    .map(|r| v1::TagReason { tag: r.tag.clone(), rule: r.rule.clone() })
                    .collect(),
                subjects: self.subjects.clone(),
            }),
            job_id: self.job_id,
            attempt: u32::try_from(self.attempt).unwrap_or_default(),
            status: self.status.into(),
            submitted_at: Some(timestamp_from_chrono(self.submitted_at)),
            delete_after: Some(timestamp_from_chrono(self.delete_after)),
            finished_at: self.finished_at.map(timestamp_from_chrono),
            attempts: u32::try_from(self.attempts).unwrap_or_default(),
            error: self.error.clone().unwrap_or_default(),
            deleted_tags: self.deleted_tags.clone(),
            skipped_tags: self.skipped_tags.clone(),
            digest_deleted: self.digest_deleted,
            policy: self.policy.name.clone(),
            policy_revision: self.policy.revision.clone(),
            hold_reason: self.hold_reason.clone().unwrap_or_default(),
        }
    }
}

/// Filters of a listing.
#[derive(Clone, Debug, Default)]
pub struct DeletionFilter {
    pub status: Option<DeletionStatus>,
    pub registry: Option<String>,
    pub repository: Option<String>,
    pub job_id: Option<i64>,
    /// Only deletions that remove this tag (of the image itself).
    pub tag: Option<String>,
}

/// A destructive request about to be sent for a deletion.
#[derive(Clone, Copy, Debug)]
pub struct SentRequest<'a> {
    pub deletion_id: i64,
    pub registry: &'a str,
    pub method: &'a str,
    pub path: &'a str,
}

/// The registry's answer to a recorded request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    pub id: i64,
    /// 0: no answer came.
    pub status: u16,
    pub at: DateTime<Utc>,
}

/// A recorded destructive request.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct RequestRecord {
    pub id: i64,
    pub deletion_id: i64,
    pub registry: String,
    pub method: String,
    pub path: String,
    /// 0: no answer; `None`: the scrubber stopped before recording one.
    pub status: Option<i32>,
    pub sent_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
}

impl RequestRecord {
    pub fn to_proto(&self) -> v1::RegistryRequest {
        v1::RegistryRequest {
            id: self.id,
            deletion_id: self.deletion_id,
            registry: self.registry.clone(),
            method: self.method.clone(),
            path: self.path.clone(),
            status: self.status.and_then(|s| u32::try_from(s).ok()).unwrap_or_default(),
            answered: self.status.is_some(),
            sent_at: Some(timestamp_from_chrono(self.sent_at)),
            answered_at: self.answered_at.map(timestamp_from_chrono),
        }
    }
}

/// Deletions that ended in one hour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HourCount {
    /// The hour's start.
    pub hour: DateTime<Utc>,
    pub deleted: i64,
    pub failed: i64,
}

/// How a scrub of one deletion ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finish {
    Deleted {
        deleted_tags: Vec<String>,
        skipped_tags: Vec<String>,
        digest_deleted: bool,
    },
    /// Try again after `after`, unless the attempts are spent.
    Retry {
        error: String,
        after: Duration,
        max_attempts: u32,
    },
    Failed {
        error: String,
    },
    /// Its policy no longer stands: nothing was deleted.
    Cancelled {
        reason: String,
    },
    /// Not tried (the plan could not be checked): back to pending after
    /// `after`, the attempt not counted.
    Postpone {
        error: String,
        after: Duration,
    },
}

impl Finish {
    /// The outcome's label in metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Deleted { .. } => "deleted",
            Self::Retry { .. } => "retry",
            Self::Failed { .. } => "failed",
            Self::Cancelled { .. } => "cancelled",
            Self::Postpone { .. } => "postponed",
        }
    }
}

/// Where deletions wait, are leased and end. Several scrubber replicas may
/// share one store: a deletion is leased to one of them at a time, and
/// every outcome is fenced by the lease.
#[async_trait]
pub trait DeletionStore: Send + Sync + 'static {
    /// Stores a plan once per (job, attempt, digest), due after `delay`;
    /// returns the stored rows (new or already there).
    async fn submit(&self, plan: &Submission<'_>) -> Result<Vec<DeletionRecord>, StoreError>;
    /// Deletions matching `filter` with ids below `before`, newest first.
    async fn list(
        &self,
        filter: &DeletionFilter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DeletionRecord>, StoreError>;
    /// Restores the pending or held ones of `ids`; returns `(id, restored,
    /// reason)` in request order.
    async fn restore(&self, ids: &[i64]) -> Result<Vec<(i64, bool, String)>, StoreError>;
    /// Makes the held ones of `ids` pending (due at their `delete_after`);
    /// returns `(id, approved, reason)` in request order.
    async fn approve(&self, ids: &[i64]) -> Result<Vec<(i64, bool, String)>, StoreError>;
    /// Makes deletions whose lease expired (their scrubber died) claimable.
    async fn take_back_expired(&self) -> Result<u64, StoreError>;
    /// Claims up to `limit` due pending deletions for `holder` until
    /// `now + lease`; never one that another holder's lease covers.
    async fn claim_due(
        &self,
        holder: Uuid,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<DeletionRecord>, StoreError>;
    /// Extends `holder`'s leases on `ids`; returns the ids still held.
    async fn renew(
        &self,
        holder: Uuid,
        ids: &[i64],
        lease: Duration,
    ) -> Result<Vec<i64>, StoreError>;
    /// Records how a scrub ended, fenced by the lease; false when the lease
    /// was lost (another replica took the deletion back).
    async fn finish(&self, holder: Uuid, id: i64, finish: &Finish) -> Result<bool, StoreError>;
    /// Records a destructive request before it is sent; returns its id.
    async fn request_sent(&self, request: &SentRequest<'_>) -> Result<i64, StoreError>;
    /// Records the registry's answers: (request id, status, when).
    async fn requests_answered(&self, answers: &[Answer]) -> Result<(), StoreError>;
    /// The requests sent for `deletion_ids`, oldest first.
    async fn requests(&self, deletion_ids: &[i64]) -> Result<Vec<RequestRecord>, StoreError>;
    /// Forgets requests sent before `before`; returns how many.
    async fn prune_requests(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Deletions per status, and the age in seconds of the oldest due
    /// pending one.
    async fn status(&self) -> Result<(Vec<(String, i64)>, f64), StoreError>;
    /// Deletions that ended `deleted` or `failed` since `since`, per hour
    /// (UTC, oldest first; hours without any are left out).
    async fn finished_per_hour(&self, since: DateTime<Utc>) -> Result<Vec<HourCount>, StoreError>;
    async fn close(&self);

    /// Takes back expired leases, then claims (see [`Self::claim_due`]).
    async fn claim(
        &self,
        holder: Uuid,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<DeletionRecord>, StoreError> {
        let expired = self.take_back_expired().await?;
        if expired > 0 {
            tracing::warn!(deletions = expired, "took back deletions of an expired lease");
        }
        self.claim_due(holder, lease, limit).await
    }
}

/// The store of the database of `url` (`postgres://...` or `sqlite://PATH`).
pub async fn open(url: &str, max_connections: u32) -> Result<Arc<dyn DeletionStore>, StoreError> {
    open_with_clock(url, max_connections, Clock::Database).await
}

/// [`open`], reading the time from `clock` (tests set theirs).
pub async fn open_with_clock(
    url: &str,
    max_connections: u32,
    clock: Clock,
) -> Result<Arc<dyn DeletionStore>, StoreError> {
    let store: Arc<dyn DeletionStore> = match Backend::of(url)? {
        Backend::Postgres => Arc::new(PgStore::connect(url, max_connections, &clock).await?),
        Backend::Sqlite => Arc::new(SqliteStore::connect(url, max_connections, clock).await?),
    };
    if regsweep_common::prometheus::enabled() {
        return Ok(Arc::new(measured::MeasuredDeletions(store)));
    }
    Ok(store)
}

/// The outcome of a restore or an approval for each requested id, from the
/// ids changed and the statuses of the others.
pub(crate) fn outcomes(
    ids: &[i64],
    changed: &[i64],
    statuses: &[(i64, String)],
) -> Vec<(i64, bool, String)> {
    ids.iter()
        .map(|id| {
            if changed.contains(id) {
                return (*id, true, String::new());
            }
            let status = statuses.iter().find(|(o, _)| o == id).map(|(_, s)| s.as_str());
            let reason = match status.map(|s| (s, parse_status(s))) {
                None => "no such deletion".to_string(),
                Some((_, Ok(DeletionStatus::Deleting))) => "already being deleted".to_string(),
                Some((_, Ok(DeletionStatus::Deleted))) => "already deleted".to_string(),
                Some((_, Ok(DeletionStatus::Restored))) => "already restored".to_string(),
                Some((_, Ok(DeletionStatus::Failed))) => {
                    "deletion failed; nothing to restore".to_string()
                }
                Some((_, Ok(DeletionStatus::Cancelled))) => {
                    "cancelled; its policy changed".to_string()
                }
                Some((_, Ok(DeletionStatus::PendingDelete))) => "not awaiting approval".to_string(),
                Some((other, _)) => format!("is {other}"),
            };
            (*id, false, reason)
        })
        .collect()
}

/// Columns every deletion query returns.
pub(crate) const COLUMNS: &str = "id, registry, repository, digest, tags, delete_digest, job_id, \
     attempt, status, submitted_at, delete_after, attempts, error, deleted_tags, skipped_tags, \
     digest_deleted, finished_at, trace_context, linked, policy, policy_id, policy_revision, \
     reasons, hold_reason";

/// A deletion as either store reads it: times as `T`, tag lists as `L`.
#[derive(sqlx::FromRow)]
pub(crate) struct DeletionRow<T, L> {
    id: i64,
    registry: String,
    repository: String,
    digest: String,
    tags: L,
    delete_digest: bool,
    job_id: i64,
    attempt: i32,
    status: String,
    submitted_at: T,
    delete_after: T,
    attempts: i32,
    error: Option<String>,
    deleted_tags: L,
    skipped_tags: L,
    digest_deleted: bool,
    finished_at: Option<T>,
    trace_context: Option<String>,
    linked: Option<String>,
    policy: String,
    policy_id: i64,
    policy_revision: String,
    reasons: Option<String>,
    hold_reason: Option<String>,
}

impl<T: StoredTime, L: StoredList> TryFrom<DeletionRow<T, L>> for DeletionRecord {
    type Error = StoreError;

    fn try_from(r: DeletionRow<T, L>) -> Result<Self, StoreError> {
        let linked = LinkedManifests::from_column(r.linked.as_deref());
        Ok(Self {
            before: linked.before,
            after: linked.after,
            subjects: linked.subjects,
            id: r.id,
            registry: r.registry,
            repository: r.repository,
            digest: r.digest,
            tags: r.tags.into_vec(),
            delete_digest: r.delete_digest,
            job_id: r.job_id,
            attempt: r.attempt,
            status: parse_status(&r.status)?,
            submitted_at: r.submitted_at.into_time(),
            delete_after: r.delete_after.into_time(),
            attempts: r.attempts,
            error: r.error,
            deleted_tags: r.deleted_tags.into_vec(),
            skipped_tags: r.skipped_tags.into_vec(),
            digest_deleted: r.digest_deleted,
            finished_at: r.finished_at.map(StoredTime::into_time),
            trace_context: r.trace_context,
            policy: PlanPolicy { name: r.policy, id: r.policy_id, revision: r.policy_revision },
            reasons: reasons_from_column(r.reasons.as_deref()),
            hold_reason: r.hold_reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every status round-trips through its stored name; a name no code
    /// writes is corrupt, never `Unspecified`.
    #[test]
    fn stored_statuses_are_typed_and_unknown_ones_corrupt() {
        for status in (1..).map_while(|n| DeletionStatus::try_from(n).ok()) {
            assert_eq!(parse_status(status_name(status)).expect("known"), status);
        }
        for unknown in ["", "gone", "Deleted", "pending-delete"] {
            assert!(matches!(parse_status(unknown), Err(StoreError::Corrupt(_))), "{unknown:?}");
        }
    }
}
