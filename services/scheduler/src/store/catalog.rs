//! Storage of registries, policies and repositories, and the
//! limited-capacity selection of repositories due for cleanup.

use regsweep_policy::{AgeSource, AttachmentPolicy, ProtectionSpec, TagRuleSpec};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use regsweep_proto::v1::{self, CleanupStatus};
use regsweep_proto::{duration_from_std, timestamp_from_chrono};

use super::StoreError;
use super::in_use::{InUseMarks, LiveMark, MarkOutcome};
use super::sightings::SightingBatch;

/// A registry definition.
#[derive(Clone, Debug, PartialEq)]
pub struct RegistryRecord {
    pub id: i64,
    pub name: String,
    pub url: String,
    /// Where the credentials are found; never a secret.
    pub credentials: v1::RegistryCredentials,
    pub rate_limit: f64,
    pub max_parallel_deletions: u32,
    pub realm_allow_list: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// As the last catalog sync probed them.
    pub capabilities: Option<v1::RegistryCapabilities>,
    pub protection: ProtectionSpec,
    /// The last time it pushed back on a scrubber.
    pub pushback: Option<v1::RegistryPushback>,
}

impl RegistryRecord {
    pub fn to_proto(&self) -> v1::Registry {
        v1::Registry {
            etag: etag(self.updated_at),
            name: self.name.clone(),
            url: self.url.clone(),
            credentials: Some(self.credentials.clone()),
            rate_limit: self.rate_limit,
            max_parallel_deletions: self.max_parallel_deletions,
            realm_allow_list: self.realm_allow_list.clone(),
            created_at: Some(timestamp_from_chrono(self.created_at)),
            updated_at: Some(timestamp_from_chrono(self.updated_at)),
            capabilities: self.capabilities.clone(),
            protection: Some((&self.protection).into()),
            pushback: self.pushback,
        }
    }
}

/// A registry to insert or the new values of one to update (by name).
#[derive(Clone, Debug, PartialEq)]
pub struct NewRegistry {
    pub name: String,
    pub url: String,
    pub credentials: v1::RegistryCredentials,
    pub rate_limit: f64,
    pub max_parallel_deletions: u32,
    pub realm_allow_list: Vec<String>,
    pub protection: ProtectionSpec,
    /// For an update: the `updated_at` of the version the new values were
    /// made from. The update is made only if the record still has it,
    /// inside the statement that makes it, so an edit never overwrites a
    /// write it did not see. Creates ignore it.
    pub expected_updated_at: Option<DateTime<Utc>>,
}

/// A cleanup policy.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyRecord {
    pub id: i64,
    pub name: String,
    pub registry_id: i64,
    pub registry: String,
    pub repository_selector: String,
    pub cadence: String,
    pub keep_n: i32,
    pub older_than_seconds: i64,
    pub name_regex_delete: String,
    pub name_regex_keep: String,
    pub attachments: AttachmentPolicy,
    pub age_source: AgeSource,
    /// Listed tag rules; empty for a policy of the single-rule fields.
    pub rules: Vec<TagRuleSpec>,
    /// Precedence among the registry's policies; the highest that matches
    /// a repository governs it.
    pub priority: i32,
    /// As configured: 0 for the default.
    pub max_delete_fraction: f64,
    pub dry_run: bool,
    pub enabled: bool,
    pub next_run_at: DateTime<Utc>,
    /// Repositories it governs, when the read counted them.
    pub repository_count: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Whether a policy read counts the repositories the policy governs: an
/// index scan over them, which the policy API shows and which the hot
/// paths (the plan checks before every DELETE, each page of repositories)
/// must not pay on a large catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counted {
    Yes,
    No,
}

impl PolicyRecord {
    pub fn to_proto(&self) -> v1::Policy {
        v1::Policy {
            name: self.name.clone(),
            registry: self.registry.clone(),
            repository_selector: self.repository_selector.clone(),
            cadence: self.cadence.clone(),
            keep_n: self.keep_n,
            older_than: (self.older_than_seconds > 0).then(|| {
                duration_from_std(Duration::from_secs(self.older_than_seconds.unsigned_abs()))
            }),
            name_regex_delete: self.name_regex_delete.clone(),
            name_regex_keep: self.name_regex_keep.clone(),
            attachments: attachments_to_proto(self.attachments).into(),
            age_source: v1::AgeSource::from(self.age_source).into(),
            revision: self.revision(),
            max_delete_fraction: self.max_delete_fraction,
            dry_run: self.dry_run,
            disabled: !self.enabled,
            next_run_at: Some(timestamp_from_chrono(self.next_run_at)),
            repository_count: self.repository_count.unwrap_or_default(),
            created_at: Some(timestamp_from_chrono(self.created_at)),
            updated_at: Some(timestamp_from_chrono(self.updated_at)),
            // Found by the API, which knows the registry.
            warnings: Vec::new(),
            rules: self.rules.iter().map(Into::into).collect(),
            priority: self.priority,
            etag: etag(self.updated_at),
        }
    }

    /// The fingerprint of what decides its cleanups' deletions.
    pub fn revision(&self) -> String {
        self.rules().revision(&self.repository_selector)
    }

    /// The tag-filter rules, as `tag_cleanup` jobs carry them.
    pub fn rules(&self) -> regsweep_policy::RuleSpec {
        self.to_new().rules()
    }

    /// The policy as a write would carry it.
    fn to_new(&self) -> NewPolicy {
        NewPolicy {
            name: self.name.clone(),
            registry_id: self.registry_id,
            repository_selector: self.repository_selector.clone(),
            cadence: self.cadence.clone(),
            keep_n: self.keep_n,
            older_than_seconds: self.older_than_seconds,
            name_regex_delete: self.name_regex_delete.clone(),
            name_regex_keep: self.name_regex_keep.clone(),
            attachments: self.attachments,
            age_source: self.age_source,
            rules: self.rules.clone(),
            priority: self.priority,
            max_delete_fraction: self.max_delete_fraction,
            dry_run: self.dry_run,
            enabled: self.enabled,
            next_run_at: self.next_run_at,
            keep_schedule: true,
            expected_updated_at: Some(self.updated_at),
        }
    }
}

/// A registry's or policy's etag: when it was last written, to the
/// microsecond. Opaque to clients. Each update moves it past the last
/// (to the store's time, or one microsecond later when the clock has not
/// moved on or went back), so no two versions share an etag.
pub fn etag(updated_at: DateTime<Utc>) -> String {
    format!("{:x}", updated_at.timestamp_micros())
}

pub fn attachments_to_proto(a: AttachmentPolicy) -> v1::AttachmentPolicy {
    match a {
        AttachmentPolicy::DeleteWithSubject => v1::AttachmentPolicy::DeleteWithSubject,
        AttachmentPolicy::Keep => v1::AttachmentPolicy::Keep,
    }
}

pub fn attachments_from_proto(a: v1::AttachmentPolicy) -> AttachmentPolicy {
    match a {
        v1::AttachmentPolicy::Keep => AttachmentPolicy::Keep,
        v1::AttachmentPolicy::DeleteWithSubject | v1::AttachmentPolicy::Unspecified => {
            AttachmentPolicy::DeleteWithSubject
        }
    }
}

/// The stored name of an attachment policy.
pub fn attachments_name(a: AttachmentPolicy) -> &'static str {
    match a {
        AttachmentPolicy::DeleteWithSubject => "delete_with_subject",
        AttachmentPolicy::Keep => "keep",
    }
}

/// An attachment policy as stored. An unknown name keeps attachments:
/// of the two readings, the one that deletes nothing.
pub fn attachments_parse(name: &str) -> AttachmentPolicy {
    match name {
        "delete_with_subject" => AttachmentPolicy::DeleteWithSubject,
        _ => AttachmentPolicy::Keep,
    }
}

/// A policy to insert, or the new values of one to update (by name).
#[derive(Clone, Debug, PartialEq)]
pub struct NewPolicy {
    pub name: String,
    pub registry_id: i64,
    pub repository_selector: String,
    pub cadence: String,
    pub keep_n: i32,
    pub older_than_seconds: i64,
    pub name_regex_delete: String,
    pub name_regex_keep: String,
    pub attachments: AttachmentPolicy,
    pub age_source: AgeSource,
    pub rules: Vec<TagRuleSpec>,
    pub priority: i32,
    pub max_delete_fraction: f64,
    pub dry_run: bool,
    pub enabled: bool,
    pub next_run_at: DateTime<Utc>,
    /// For an update: keep the stored schedule (`next_run_at` and an armed
    /// run) as it is when the update is written, ignoring `next_run_at`.
    /// Selection moves the schedule without making a new version, so the
    /// value read could be stale by the time of the write.
    pub keep_schedule: bool,
    /// For an update: the `updated_at` of the version the new values were
    /// made from. The update is made only if the record still has it,
    /// inside the statement that makes it, so an edit never overwrites a
    /// write it did not see. Creates ignore it.
    pub expected_updated_at: Option<DateTime<Utc>>,
}

impl NewPolicy {
    /// The tag-filter rules, as `tag_cleanup` jobs carry them.
    pub fn rules(&self) -> regsweep_policy::RuleSpec {
        regsweep_policy::RuleSpec {
            keep_n: i64::from(self.keep_n),
            older_than_seconds: self.older_than_seconds,
            name_regex_delete: self.name_regex_delete.clone(),
            name_regex_keep: self.name_regex_keep.clone(),
            attachments: self.attachments,
            age_source: self.age_source,
            rules: self.rules.clone(),
        }
    }
}

/// A repository and its cleanup state.
#[derive(Clone, Debug, PartialEq)]
pub struct RepositoryRecord {
    pub id: i64,
    pub registry: String,
    pub name: String,
    pub policy: Option<String>,
    pub cleanup_status: CleanupStatus,
    pub cleanup_started_at: Option<DateTime<Utc>>,
    pub cleanup_finished_at: Option<DateTime<Utc>>,
    pub last_deleted_count: i64,
    pub last_error: Option<String>,
    pub last_job_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    /// Bytes the last completed cleanup plan frees.
    pub last_reclaimable_bytes: u64,
}

impl RepositoryRecord {
    pub fn to_proto(&self) -> v1::Repository {
        v1::Repository {
            id: self.id,
            registry: self.registry.clone(),
            name: self.name.clone(),
            policy: self.policy.clone().unwrap_or_default(),
            cleanup_status: self.cleanup_status.into(),
            cleanup_started_at: self.cleanup_started_at.map(timestamp_from_chrono),
            cleanup_finished_at: self.cleanup_finished_at.map(timestamp_from_chrono),
            last_deleted_count: self.last_deleted_count,
            last_error: self.last_error.clone().unwrap_or_default(),
            last_job_id: self.last_job_id.unwrap_or_default(),
            created_at: Some(timestamp_from_chrono(self.created_at)),
            // Found by the API, which knows the registry's policies.
            policy_reason: String::new(),
            last_reclaimable_bytes: self.last_reclaimable_bytes,
        }
    }
}

/// The storage name of a cleanup status.
pub fn cleanup_status_name(status: CleanupStatus) -> &'static str {
    match status {
        CleanupStatus::Unspecified | CleanupStatus::Unscheduled => "unscheduled",
        CleanupStatus::Scheduled => "scheduled",
        CleanupStatus::Unfinished => "unfinished",
        CleanupStatus::Ongoing => "ongoing",
    }
}

/// Reads a stored cleanup status.
pub fn parse_cleanup_status(name: &str) -> Option<CleanupStatus> {
    Some(match name {
        "unscheduled" => CleanupStatus::Unscheduled,
        "scheduled" => CleanupStatus::Scheduled,
        "unfinished" => CleanupStatus::Unfinished,
        "ongoing" => CleanupStatus::Ongoing,
        _ => return None,
    })
}

/// Filters of a repository listing.
#[derive(Clone, Debug, Default)]
pub struct RepositoryFilter {
    pub registry_id: Option<i64>,
    pub status: Option<CleanupStatus>,
    pub policy_id: Option<i64>,
}

/// Outcome of deleting a registry.
#[derive(Debug, PartialEq, Eq)]
pub enum DeleteRegistryOutcome {
    NotFound,
    /// Policies still use it: their names.
    InUse(Vec<String>),
    Deleted,
}

/// Picks the policy of a repository by its name: of the registry's policies
/// whose selectors cover it, the one of highest priority.
pub type PolicyMatcher = dyn Fn(&str) -> Option<i64> + Send + Sync;

/// Outcome of a page of a catalog sync.
#[derive(Debug, PartialEq, Eq)]
pub enum ReportOutcome {
    /// The attempt is not the job's current running one.
    Stale,
    Reported {
        added: u32,
        removed: u32,
    },
}

/// Computes the run after a completed one: `(cadence, due, now)`.
pub type AdvanceRun = fn(&str, DateTime<Utc>, DateTime<Utc>) -> Option<DateTime<Utc>>;

/// Settings of one selection tick.
#[derive(Clone, Copy, Debug)]
pub struct SelectionConfig {
    /// Cleanups that may run at once.
    pub capacity: u32,
    /// An `ongoing` cleanup started longer ago than this is `unfinished`.
    pub stale_after: Duration,
    /// Time budget handed to each `tag_cleanup` job.
    pub time_budget: Duration,
    /// Attempts of each `tag_cleanup` job.
    pub max_attempts: u32,
    /// Most repositories marked `scheduled` per tick, so that a huge
    /// policy coming due does not make one tick long.
    pub arm_limit: u32,
}

/// What one selection tick did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// `ongoing` repositories whose cleanup job ended, closed: each
    /// with the status its cleanup ended in (before this tick's pick,
    /// which may start an `unfinished` or `scheduled` one again).
    pub ended: Vec<(i64, CleanupStatus)>,
    /// `ongoing` repositories made `unfinished`.
    pub stale: u64,
    /// Repositories marked `scheduled` because their policy came due.
    pub armed: u64,
    /// True when a due policy still has repositories to mark.
    pub arming_incomplete: bool,
    /// Cleanups running before the pick.
    pub running: u32,
    /// `(repository_id, job_id)` of each cleanup started.
    pub started: Vec<(i64, i64)>,
    /// Policies whose run completed, moved to their next run.
    pub advanced: Vec<String>,
}

/// The catalog: registries, policies, repositories and the selection.
#[async_trait]
pub trait CatalogStore: Send + Sync + 'static {
    /// Inserts a registry; `None` when the name is taken.
    async fn create_registry(&self, r: NewRegistry) -> Result<Option<RegistryRecord>, StoreError>;
    async fn get_registry(&self, name: &str) -> Result<Option<RegistryRecord>, StoreError>;
    /// Stores the last pushback of the registry named (the message as
    /// JSON); false when there is no such registry. Not an edit: the
    /// registry's version (its etag) stays.
    async fn record_pushback(&self, name: &str, pushback: &str) -> Result<bool, StoreError>;
    /// Stores what registry `id` was found to allow (the message as JSON).
    async fn set_registry_capabilities(
        &self,
        id: i64,
        capabilities: &str,
    ) -> Result<(), StoreError>;
    async fn list_registries(&self) -> Result<Vec<RegistryRecord>, StoreError>;
    /// Replaces a registry's definition; `None` when it does not exist or
    /// was written since `expected_updated_at`.
    async fn update_registry(&self, r: NewRegistry) -> Result<Option<RegistryRecord>, StoreError>;
    async fn delete_registry(&self, name: &str) -> Result<DeleteRegistryOutcome, StoreError>;

    /// Inserts a policy; `None` when the name is taken.
    async fn create_policy(&self, p: NewPolicy) -> Result<Option<PolicyRecord>, StoreError>;
    /// A policy; with its repository count when `counted` (the policy
    /// API shows it; plan checks and listings must not pay for counting
    /// a large catalog).
    async fn get_policy(
        &self,
        name: &str,
        counted: Counted,
    ) -> Result<Option<PolicyRecord>, StoreError>;
    /// Policies by name; of one registry when given.
    async fn list_policies(
        &self,
        registry_id: Option<i64>,
        counted: Counted,
    ) -> Result<Vec<PolicyRecord>, StoreError>;
    /// Replaces a policy's definition (not its registry); `None` when it
    /// does not exist or was written since `expected_updated_at`. A
    /// changed `next_run_at` restarts its run. Disabling it gives its
    /// waiting repositories back (`unscheduled`).
    async fn update_policy(&self, p: NewPolicy) -> Result<Option<PolicyRecord>, StoreError>;
    /// Deletes a policy; its waiting repositories become `unscheduled`.
    async fn delete_policy(&self, name: &str) -> Result<bool, StoreError>;
    /// Makes a policy due now, and wakes the leader's selection.
    async fn run_policy(&self, name: &str) -> Result<Option<PolicyRecord>, StoreError>;
    /// Sets every repository of a registry to the policy `matcher` picks;
    /// a repository that changes policy while waiting goes back to
    /// `unscheduled`. Returns how many changed.
    async fn reassign_repositories(
        &self,
        registry_id: i64,
        matcher: &PolicyMatcher,
    ) -> Result<u64, StoreError>;

    /// Upserts one page of a `catalog_sync` job's catalog, fenced by
    /// `(job_id, attempt)`; on the last page, removes the repositories the
    /// attempt did not report (except those being cleaned).
    async fn report_repositories(
        &self,
        job_id: i64,
        attempt: u32,
        registry_id: i64,
        names: &[String],
        complete: bool,
        matcher: &PolicyMatcher,
    ) -> Result<ReportOutcome, StoreError>;
    /// Adds tags the scrubber deleted for `job_id` to the repository whose
    /// last cleanup it is; false when it is none's.
    async fn record_deletions(&self, job_id: i64, deleted_tags: u32) -> Result<bool, StoreError>;
    /// Records tags read pointing at digests and returns when each was
    /// first seen on its digest, in `batch`'s order (`sightings.rs`).
    async fn record_sightings(
        &self,
        batch: SightingBatch<'_>,
    ) -> Result<Vec<DateTime<Utc>>, StoreError>;
    /// Marks digests in use for their holder, prunes the registry's lapsed
    /// marks, and with `replace` releases the holder's other marks, in
    /// one transaction (`in_use.rs`).
    async fn mark_in_use(&self, marks: InUseMarks<'_>) -> Result<MarkOutcome, StoreError>;
    /// The live marks of one repository at `now`, one per digest, at most
    /// `limit`.
    async fn live_marks(
        &self,
        registry_id: i64,
        repository: &str,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<LiveMark>, StoreError>;
    /// Repositories matching `filter` with ids above `after`, by id.
    async fn list_repositories(
        &self,
        filter: &RepositoryFilter,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<RepositoryRecord>, StoreError>;

    /// One selection tick (README, "How cleanups are selected"). Serialized across
    /// replicas; its cost depends on the capacity, not on the number of
    /// repositories or policies.
    async fn select_cleanups(
        &self,
        config: &SelectionConfig,
        advance: AdvanceRun,
        fence: super::Fence,
    ) -> Result<Selection, StoreError>;

    /// The selection's state (running, waiting, overdue), for metrics.
    async fn cleanup_stats(&self) -> Result<crate::store::stats::CleanupStats, StoreError>;
}
