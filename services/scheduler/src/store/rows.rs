//! Rows as both stores read them, generic over how a store keeps time
//! (PostgreSQL `timestamptz`, SQLite integer microseconds), and their
//! records.

use chrono::{DateTime, Utc};
use regsweep_common::db::{StoredList, StoredTime};
use regsweep_policy::ProtectionSpec;
use regsweep_proto::v1::{self, JobStatus, WorkerStatus};
use sqlx::types::Json;
use uuid::Uuid;

use crate::store::catalog::{
    Counted, PolicyRecord, RegistryRecord, RepositoryRecord, parse_cleanup_status,
};
use crate::store::model::count_map;
use crate::store::{CronRecord, JobRecord, StoreError, StoreEvent, WorkerRecord};

fn opt<T: StoredTime>(t: Option<T>) -> Option<DateTime<Utc>> {
    t.map(StoredTime::into_time)
}

/// Columns every job query returns, in [`JobRow`]'s shape.
pub const JOB_COLUMNS: &str = "id, kind, args, status, priority, scheduled_at, attempt, \
     max_attempts, worker_id, created_at, claimed_at, started_at, heartbeat_at, finished_at, \
     progress, last_error, errors, result, unique_key, parent_id, trace_context";

#[derive(sqlx::FromRow)]
pub struct JobRow<T> {
    id: i64,
    kind: String,
    args: Json<serde_json::Value>,
    status: String,
    priority: i32,
    scheduled_at: T,
    attempt: i32,
    max_attempts: i32,
    worker_id: Option<Uuid>,
    created_at: T,
    claimed_at: Option<T>,
    started_at: Option<T>,
    heartbeat_at: Option<T>,
    finished_at: Option<T>,
    progress: f32,
    last_error: Option<String>,
    errors: Json<serde_json::Value>,
    result: Option<Json<serde_json::Value>>,
    unique_key: Option<String>,
    parent_id: Option<i64>,
    trace_context: Option<String>,
}

impl<T: StoredTime> TryFrom<JobRow<T>> for JobRecord {
    type Error = StoreError;

    fn try_from(row: JobRow<T>) -> Result<Self, StoreError> {
        Ok(JobRecord {
            id: row.id,
            kind: row.kind,
            args: row.args.0,
            status: job_status(&row.status)?,
            priority: row.priority,
            scheduled_at: row.scheduled_at.into_time(),
            attempt: non_negative(row.attempt, "attempt")?,
            max_attempts: non_negative(row.max_attempts, "max_attempts")?,
            worker_id: row.worker_id,
            created_at: row.created_at.into_time(),
            claimed_at: opt(row.claimed_at),
            started_at: opt(row.started_at),
            heartbeat_at: opt(row.heartbeat_at),
            finished_at: opt(row.finished_at),
            progress: row.progress,
            last_error: row.last_error,
            errors: row.errors.0,
            result: row.result.map(|r| r.0),
            unique_key: row.unique_key,
            parent_id: row.parent_id,
            trace_context: row.trace_context,
        })
    }
}

pub fn jobs<T: StoredTime>(rows: Vec<JobRow<T>>) -> Result<Vec<JobRecord>, StoreError> {
    rows.into_iter().map(JobRecord::try_from).collect()
}

/// Claimed jobs in the order they were picked: highest priority first,
/// then earliest due, then oldest (an UPDATE returns its rows in no order).
pub fn claimed<T: StoredTime>(rows: Vec<JobRow<T>>) -> Result<Vec<JobRecord>, StoreError> {
    let mut jobs = jobs(rows)?;
    jobs.sort_by_key(|j| (std::cmp::Reverse(j.priority), j.scheduled_at, j.id));
    Ok(jobs)
}

pub fn job_status(text: &str) -> Result<JobStatus, StoreError> {
    JobStatus::from_short_name(text)
        .ok_or_else(|| StoreError::Corrupt(format!("job status {text:?}")))
}

pub fn non_negative(value: i32, what: &str) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value}")))
}

/// Converts a protocol `u32` to a column `integer`, saturating (attempts
/// and sequence numbers never come near).
pub fn to_i32(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

#[derive(sqlx::FromRow)]
pub struct WorkerRow<T> {
    pub id: Uuid,
    name: String,
    version: String,
    status: String,
    capacity: Json<serde_json::Value>,
    session_epoch: i64,
    connected_at: T,
    last_heartbeat: T,
    heartbeat_expiration: T,
}

impl<T: StoredTime> WorkerRow<T> {
    /// The record, with `running` (kind -> count) as read alongside.
    pub fn into_record(self, running: &serde_json::Value) -> Result<WorkerRecord, StoreError> {
        Ok(WorkerRecord {
            id: self.id,
            name: self.name,
            version: self.version,
            status: WorkerStatus::from_short_name(&self.status)
                .ok_or_else(|| StoreError::Corrupt(format!("worker status {:?}", self.status)))?,
            capacity: count_map(&self.capacity.0),
            running: count_map(running),
            session_epoch: self.session_epoch,
            connected_at: self.connected_at.into_time(),
            last_heartbeat: self.last_heartbeat.into_time(),
            heartbeat_expiration: self.heartbeat_expiration.into_time(),
        })
    }
}

/// Cron columns, in [`CronRow`]'s shape.
pub const CRON_COLUMNS: &str = "name, schedule, kind, args, enabled, priority, next_fire_at, \
     last_fire_at, last_job_id, created_at";

#[derive(sqlx::FromRow)]
pub struct CronRow<T> {
    name: String,
    schedule: String,
    kind: String,
    args: Json<serde_json::Value>,
    enabled: bool,
    priority: i32,
    next_fire_at: T,
    last_fire_at: Option<T>,
    last_job_id: Option<i64>,
    created_at: T,
}

impl<T: StoredTime> From<CronRow<T>> for CronRecord {
    fn from(row: CronRow<T>) -> Self {
        CronRecord {
            name: row.name,
            schedule: row.schedule,
            kind: row.kind,
            args: row.args.0,
            enabled: row.enabled,
            priority: row.priority,
            next_fire_at: row.next_fire_at.into_time(),
            last_fire_at: opt(row.last_fire_at),
            last_job_id: row.last_job_id,
            created_at: row.created_at.into_time(),
        }
    }
}

/// The stored form of a credential reference (never a secret).
#[derive(Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Credentials {
    username: String,
    password_file: String,
    password_env: String,
    docker_config: String,
}

impl From<&v1::RegistryCredentials> for Credentials {
    fn from(c: &v1::RegistryCredentials) -> Self {
        Self {
            username: c.username.clone(),
            password_file: c.password_file.clone(),
            password_env: c.password_env.clone(),
            docker_config: c.docker_config.clone(),
        }
    }
}

impl From<Credentials> for v1::RegistryCredentials {
    fn from(c: Credentials) -> Self {
        Self {
            username: c.username,
            password_file: c.password_file,
            password_env: c.password_env,
            docker_config: c.docker_config,
        }
    }
}

/// Registry columns, in [`RegistryRow`]'s shape.
pub const REGISTRY_COLUMNS: &str = "id, name, url, credentials, rate_limit, max_parallel_deletions, realm_allow_list, \
     created_at, updated_at, capabilities, protection, pushback";

#[derive(sqlx::FromRow)]
pub struct RegistryRow<T, L> {
    id: i64,
    name: String,
    url: String,
    credentials: Json<Credentials>,
    rate_limit: f64,
    max_parallel_deletions: i32,
    realm_allow_list: L,
    created_at: T,
    updated_at: T,
    capabilities: Option<String>,
    protection: Option<String>,
    pushback: Option<String>,
}

impl<T: StoredTime, L: StoredList> TryFrom<RegistryRow<T, L>> for RegistryRecord {
    type Error = StoreError;

    fn try_from(row: RegistryRow<T, L>) -> Result<Self, StoreError> {
        // Unlike capabilities, an unreadable protection list is an error:
        // read as empty, it would protect nothing.
        let protection = match &row.protection {
            None => ProtectionSpec::default(),
            Some(text) => serde_json::from_str(text).map_err(|e| {
                StoreError::Corrupt(format!("protection of registry {:?}: {e}", row.name))
            })?,
        };
        Ok(Self {
            id: row.id,
            name: row.name,
            url: row.url,
            credentials: row.credentials.0.into(),
            rate_limit: row.rate_limit,
            max_parallel_deletions: u32::try_from(row.max_parallel_deletions).unwrap_or(0),
            realm_allow_list: row.realm_allow_list.into_vec(),
            created_at: row.created_at.into_time(),
            updated_at: row.updated_at.into_time(),
            // Written from the message; unreadable shows as never checked.
            capabilities: row.capabilities.and_then(|c| serde_json::from_str(&c).ok()),
            protection,
            // The same: unreadable shows as none seen.
            pushback: row.pushback.and_then(|p| serde_json::from_str(&p).ok()),
        })
    }
}

/// A protection list as the `protection` column holds it: NULL when empty.
pub fn protection_column(spec: &ProtectionSpec) -> Option<String> {
    (!spec.is_empty()).then(|| serde_json::to_string(spec).unwrap_or_default())
}

/// Selects policies as `p` with their registry's name and, when
/// `counted`, the number of repositories each governs (the same SQL in
/// both dialects).
pub fn policy_select(counted: Counted) -> String {
    let count = match counted {
        Counted::Yes => "(SELECT count(*) FROM repositories r WHERE r.policy_id = p.id)",
        Counted::No => "CAST(NULL AS BIGINT)",
    };
    format!(
        "SELECT p.id, p.name, p.registry_id, g.name AS registry, \
         p.repository_selector, p.cadence, p.keep_n, p.older_than_seconds, p.name_regex_delete, \
         p.name_regex_keep, p.attachments, p.age_source, p.rules, p.priority, \
         p.max_delete_fraction, p.dry_run, p.enabled, p.next_run_at, \
         {count} AS repository_count, p.created_at, p.updated_at \
         FROM policies p JOIN registries g ON g.id = p.registry_id"
    )
}

#[derive(sqlx::FromRow)]
pub struct PolicyRow<T> {
    id: i64,
    name: String,
    registry_id: i64,
    registry: String,
    repository_selector: String,
    cadence: String,
    keep_n: i32,
    older_than_seconds: i64,
    name_regex_delete: String,
    name_regex_keep: String,
    attachments: String,
    age_source: String,
    rules: String,
    priority: i32,
    max_delete_fraction: f64,
    dry_run: bool,
    enabled: bool,
    next_run_at: T,
    repository_count: Option<i64>,
    created_at: T,
    updated_at: T,
}

/// A policy's rules as the `rules` column holds them.
pub fn rules_column(rules: &[regsweep_policy::TagRuleSpec]) -> String {
    serde_json::to_string(rules).unwrap_or_else(|_| "[]".into())
}

impl<T: StoredTime> TryFrom<PolicyRow<T>> for PolicyRecord {
    type Error = StoreError;

    fn try_from(r: PolicyRow<T>) -> Result<Self, StoreError> {
        // Read as no rules, unreadable rules would turn the policy into a
        // single rule that deletes every tag.
        let rules = serde_json::from_str(&r.rules).map_err(|e| {
            StoreError::Corrupt(format!("policy {} has unreadable rules: {e}", r.name))
        })?;
        Ok(Self {
            id: r.id,
            name: r.name,
            registry_id: r.registry_id,
            registry: r.registry,
            repository_selector: r.repository_selector,
            cadence: r.cadence,
            keep_n: r.keep_n,
            older_than_seconds: r.older_than_seconds,
            name_regex_delete: r.name_regex_delete,
            name_regex_keep: r.name_regex_keep,
            attachments: super::catalog::attachments_parse(&r.attachments),
            // The column's CHECK admits only the names; `auto` is the default.
            age_source: regsweep_policy::AgeSource::parse(&r.age_source).unwrap_or_default(),
            rules,
            priority: r.priority,
            max_delete_fraction: r.max_delete_fraction,
            dry_run: r.dry_run,
            enabled: r.enabled,
            next_run_at: r.next_run_at.into_time(),
            repository_count: r.repository_count,
            created_at: r.created_at.into_time(),
            updated_at: r.updated_at.into_time(),
        })
    }
}

/// Selects repositories as `r` with their registry's and policy's names;
/// filters are bound first to last as registry id, status, policy id,
/// `after` and the limit.
pub const REPOSITORY_SELECT: &str = "SELECT r.id, g.name AS registry, r.name, p.name AS policy, \
     r.cleanup_status, r.cleanup_started_at, r.cleanup_finished_at, r.last_deleted_count, \
     r.last_error, r.cleanup_job_id AS last_job_id, r.created_at, r.last_reclaimable_bytes \
     FROM repositories r \
     JOIN registries g ON g.id = r.registry_id \
     LEFT JOIN policies p ON p.id = r.policy_id";

#[derive(sqlx::FromRow)]
pub struct RepositoryRow<T> {
    id: i64,
    registry: String,
    name: String,
    policy: Option<String>,
    cleanup_status: String,
    cleanup_started_at: Option<T>,
    cleanup_finished_at: Option<T>,
    last_deleted_count: i64,
    last_error: Option<String>,
    last_job_id: Option<i64>,
    created_at: T,
    last_reclaimable_bytes: i64,
}

impl<T: StoredTime> TryFrom<RepositoryRow<T>> for RepositoryRecord {
    type Error = StoreError;

    fn try_from(r: RepositoryRow<T>) -> Result<Self, StoreError> {
        let cleanup_status = parse_cleanup_status(&r.cleanup_status).ok_or_else(|| {
            StoreError::Corrupt(format!("repository {} has status {:?}", r.id, r.cleanup_status))
        })?;
        Ok(Self {
            id: r.id,
            registry: r.registry,
            name: r.name,
            policy: r.policy,
            cleanup_status,
            cleanup_started_at: opt(r.cleanup_started_at),
            cleanup_finished_at: opt(r.cleanup_finished_at),
            last_deleted_count: r.last_deleted_count,
            last_error: r.last_error,
            last_job_id: r.last_job_id,
            created_at: r.created_at.into_time(),
            last_reclaimable_bytes: u64::try_from(r.last_reclaimable_bytes).unwrap_or_default(),
        })
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CancelPayload {
    worker_id: Uuid,
    job_id: i64,
    attempt: u32,
    reason: String,
}

/// The `regsweep_cancel` payload for a job (at most 8000 bytes: the reason
/// is truncated).
pub fn cancel_payload(worker_id: Uuid, job_id: i64, attempt: u32, reason: &str) -> String {
    let reason: String = reason.chars().take(1000).collect();
    serde_json::json!({"worker_id": worker_id, "job_id": job_id, "attempt": attempt, "reason": reason})
        .to_string()
}

pub fn parse_cancel_payload(payload: &str) -> Option<StoreEvent> {
    let p: CancelPayload = serde_json::from_str(payload).ok()?;
    Some(StoreEvent::CancelRequested {
        worker_id: p.worker_id,
        job_id: p.job_id,
        attempt: p.attempt,
        reason: p.reason,
    })
}

#[derive(serde::Deserialize)]
struct CapacityPayload {
    worker_id: Uuid,
    capacity: std::collections::HashMap<String, u32>,
}

pub fn parse_capacity_payload(payload: &str) -> Option<StoreEvent> {
    let p: CapacityPayload = serde_json::from_str(payload).ok()?;
    Some(StoreEvent::CapacityChanged { worker_id: p.worker_id, capacity: p.capacity })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_payload_round_trips() {
        let worker = Uuid::new_v4();
        let payload = cancel_payload(worker, 7, 2, "by operator");
        assert_eq!(
            parse_cancel_payload(&payload),
            Some(StoreEvent::CancelRequested {
                worker_id: worker,
                job_id: 7,
                attempt: 2,
                reason: "by operator".into()
            })
        );
        assert!(cancel_payload(worker, 1, 1, &"x".repeat(100_000)).len() < 8000);
        assert_eq!(parse_cancel_payload("nope"), None);
    }
}
