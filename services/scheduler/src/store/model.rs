//! Rows as the scheduler works with them, and their protocol form.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use regsweep_proto::v1;
use regsweep_proto::{json_to_struct, timestamp_from_chrono};
use uuid::Uuid;

/// A job row.
#[derive(Clone, Debug, PartialEq)]
pub struct JobRecord {
    pub id: i64,
    pub kind: String,
    pub args: serde_json::Value,
    pub status: v1::JobStatus,
    pub priority: i32,
    pub scheduled_at: DateTime<Utc>,
    pub attempt: u32,
    pub max_attempts: u32,
    pub worker_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub claimed_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub heartbeat_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub progress: f32,
    pub last_error: Option<String>,
    /// `[{"attempt": n, "error": "...", "at": "<rfc3339>"}]`.
    pub errors: serde_json::Value,
    pub result: Option<serde_json::Value>,
    pub unique_key: Option<String>,
    pub parent_id: Option<i64>,
    /// The `traceparent` its runs continue (see `regsweep_common::trace`).
    pub trace_context: Option<String>,
}

impl JobRecord {
    pub fn to_proto(&self) -> v1::Job {
        v1::Job {
            id: self.id,
            kind: self.kind.clone(),
            args: Some(json_to_struct(self.args.clone())),
            status: self.status.into(),
            priority: self.priority,
            scheduled_at: Some(timestamp_from_chrono(self.scheduled_at)),
            attempt: self.attempt,
            max_attempts: self.max_attempts,
            worker_id: self.worker_id.map(|w| w.to_string()).unwrap_or_default(),
            created_at: Some(timestamp_from_chrono(self.created_at)),
            claimed_at: self.claimed_at.map(timestamp_from_chrono),
            started_at: self.started_at.map(timestamp_from_chrono),
            heartbeat_at: self.heartbeat_at.map(timestamp_from_chrono),
            finished_at: self.finished_at.map(timestamp_from_chrono),
            progress: self.progress,
            last_error: self.last_error.clone().unwrap_or_default(),
            result: self.result.clone().map(json_to_struct),
            unique_key: self.unique_key.clone().unwrap_or_default(),
            parent_id: self.parent_id.unwrap_or_default(),
            errors: attempt_errors(&self.errors),
        }
    }
}

fn attempt_errors(errors: &serde_json::Value) -> Vec<v1::AttemptError> {
    let Some(items) = errors.as_array() else {
        return Vec::new();
    };
    items
        .iter()
        .map(|item| v1::AttemptError {
            attempt: item["attempt"]
                .as_u64()
                .and_then(|a| u32::try_from(a).ok())
                .unwrap_or_default(),
            error: item["error"].as_str().unwrap_or_default().to_string(),
            at: item["at"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| timestamp_from_chrono(t.with_timezone(&Utc))),
        })
        .collect()
}

/// One stored log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub attempt: u32,
    pub time: DateTime<Utc>,
    pub text: String,
}

impl LogLine {
    pub fn to_proto(&self) -> v1::JobLogLine {
        v1::JobLogLine {
            attempt: self.attempt,
            time: Some(timestamp_from_chrono(self.time)),
            text: self.text.clone(),
        }
    }
}

/// A worker row with what it runs.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerRecord {
    pub id: Uuid,
    pub name: String,
    pub version: String,
    pub status: v1::WorkerStatus,
    pub capacity: HashMap<String, u32>,
    pub running: HashMap<String, u32>,
    pub session_epoch: i64,
    pub connected_at: DateTime<Utc>,
    pub last_heartbeat: DateTime<Utc>,
    pub heartbeat_expiration: DateTime<Utc>,
}

impl WorkerRecord {
    pub fn to_proto(&self) -> v1::WorkerInfo {
        v1::WorkerInfo {
            id: self.id.to_string(),
            name: self.name.clone(),
            version: self.version.clone(),
            status: self.status.into(),
            capacity: self.capacity.clone(),
            running: self.running.clone(),
            connected_at: Some(timestamp_from_chrono(self.connected_at)),
            last_heartbeat: Some(timestamp_from_chrono(self.last_heartbeat)),
            heartbeat_expiration: Some(timestamp_from_chrono(self.heartbeat_expiration)),
            session_epoch: u64::try_from(self.session_epoch).unwrap_or_default(),
        }
    }
}

/// Reads a `{"kind": n}` JSON map; entries that are not counts are skipped.
pub fn count_map(value: &serde_json::Value) -> HashMap<String, u32> {
    value
        .as_object()
        .map(|map| {
            map.iter()
                .filter_map(|(k, v)| Some((k.clone(), u32::try_from(v.as_u64()?).ok()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// A cron row.
#[derive(Clone, Debug, PartialEq)]
pub struct CronRecord {
    pub name: String,
    pub schedule: String,
    pub kind: String,
    pub args: serde_json::Value,
    pub enabled: bool,
    pub priority: i32,
    pub next_fire_at: DateTime<Utc>,
    pub last_fire_at: Option<DateTime<Utc>>,
    pub last_job_id: Option<i64>,
    pub created_at: DateTime<Utc>,
}

impl CronRecord {
    pub fn to_proto(&self) -> v1::Cron {
        v1::Cron {
            name: self.name.clone(),
            schedule: self.schedule.clone(),
            kind: self.kind.clone(),
            args: Some(json_to_struct(self.args.clone())),
            disabled: !self.enabled,
            priority: self.priority,
            next_fire_at: Some(timestamp_from_chrono(self.next_fire_at)),
            last_fire_at: self.last_fire_at.map(timestamp_from_chrono),
            last_job_id: self.last_job_id.unwrap_or_default(),
            created_at: Some(timestamp_from_chrono(self.created_at)),
        }
    }
}

/// Checks an operator's capacity change against a worker's stored status
/// and declared capacity: the effective capacity when it applies, else
/// the outcome that refuses it.
pub fn capacity_change(
    status: &str,
    declared: &serde_json::Value,
    capacity: &HashMap<String, u32>,
) -> Result<Result<HashMap<String, u32>, super::CapacityOutcome>, super::StoreError> {
    if status != "alive" && status != "draining" {
        let status = v1::WorkerStatus::from_short_name(status)
            .ok_or_else(|| super::StoreError::Corrupt(format!("worker status {status:?}")))?;
        return Ok(Err(super::CapacityOutcome::NotLive(status)));
    }
    let mut effective = count_map(declared);
    let mut not_run: Vec<String> =
        capacity.keys().filter(|k| !effective.contains_key(*k)).cloned().collect();
    if !not_run.is_empty() {
        not_run.sort();
        return Ok(Err(super::CapacityOutcome::KindsNotRun(not_run)));
    }
    effective.extend(capacity.iter().map(|(k, v)| (k.clone(), *v)));
    Ok(Ok(effective))
}

/// Who a worker's new session is, from its `Hello` and the stored row of
/// the worker id it asks to resume (status, operator capacity), if any.
pub struct SessionStart {
    /// The id it resumes, or a new one when that id is unknown.
    pub worker_id: uuid::Uuid,
    /// True when its previous session was still live: its jobs stay.
    pub resumed: bool,
    /// An operator's capacity outlives reconnections of the same worker
    /// id, for the kinds the worker still declares.
    pub capacity_override: HashMap<String, u32>,
    /// The declared capacity with the override applied.
    pub capacity: serde_json::Map<String, serde_json::Value>,
}

impl SessionStart {
    pub fn new(hello: &super::WorkerHello, previous: Option<(&str, &serde_json::Value)>) -> Self {
        let (worker_id, resumed) = match (hello.resume_worker_id, previous) {
            (Some(id), Some((status, _))) => (id, status == "alive" || status == "draining"),
            _ => (uuid::Uuid::new_v4(), false),
        };
        let capacity_override: HashMap<String, u32> = previous
            .map(|(_, o)| count_map(o))
            .unwrap_or_default()
            .into_iter()
            .filter(|(kind, _)| hello.capacity.contains_key(kind))
            .collect();
        let mut capacity = hello.capacity.clone();
        for (kind, n) in &capacity_override {
            capacity.insert(kind.clone(), (*n).into());
        }
        Self { worker_id, resumed, capacity_override, capacity }
    }
}

/// The root span of arming one policy run, and the `traceparent` the
/// repositories it marks carry into their cleanups: one run, one trace.
pub fn policy_run_span(policy_id: i64) -> (tracing::Span, Option<String>) {
    let span = tracing::info_span!(parent: None, "policy_run", policy_id);
    let traceparent = regsweep_common::trace::traceparent(&span);
    (span, traceparent)
}
