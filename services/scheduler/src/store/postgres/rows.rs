//! Decoding rows into records.

use chrono::{DateTime, Utc};
use regsweep_proto::v1::{JobStatus, WorkerStatus};
use sqlx::types::Json;
use uuid::Uuid;

use crate::store::model::count_map;
use crate::store::{JobRecord, StoreError, StoreEvent, WorkerRecord};

/// Columns every job query returns, in [`JobRow`]'s shape.
pub const JOB_COLUMNS: &str = "id, kind, args, status, priority, scheduled_at, attempt, \
     max_attempts, worker_id, created_at, claimed_at, started_at, heartbeat_at, finished_at, \
     progress, last_error, errors, result, unique_key, parent_id";

#[derive(sqlx::FromRow)]
pub struct JobRow {
    id: i64,
    kind: String,
    args: Json<serde_json::Value>,
    status: String,
    priority: i32,
    scheduled_at: DateTime<Utc>,
    attempt: i32,
    max_attempts: i32,
    worker_id: Option<Uuid>,
    created_at: DateTime<Utc>,
    claimed_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
    heartbeat_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    progress: f32,
    last_error: Option<String>,
    errors: Json<serde_json::Value>,
    result: Option<Json<serde_json::Value>>,
    unique_key: Option<String>,
    parent_id: Option<i64>,
}

impl TryFrom<JobRow> for JobRecord {
    type Error = StoreError;

    fn try_from(row: JobRow) -> Result<Self, StoreError> {
        Ok(JobRecord {
            id: row.id,
            kind: row.kind,
            args: row.args.0,
            status: job_status(&row.status)?,
            priority: row.priority,
            scheduled_at: row.scheduled_at,
            attempt: non_negative(row.attempt, "attempt")?,
            max_attempts: non_negative(row.max_attempts, "max_attempts")?,
            worker_id: row.worker_id,
            created_at: row.created_at,
            claimed_at: row.claimed_at,
            started_at: row.started_at,
            heartbeat_at: row.heartbeat_at,
            finished_at: row.finished_at,
            progress: row.progress,
            last_error: row.last_error,
            errors: row.errors.0,
            result: row.result.map(|r| r.0),
            unique_key: row.unique_key,
            parent_id: row.parent_id,
        })
    }
}

pub fn jobs(rows: Vec<JobRow>) -> Result<Vec<JobRecord>, StoreError> {
    rows.into_iter().map(JobRecord::try_from).collect()
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
pub struct WorkerRow {
    id: Uuid,
    name: String,
    version: String,
    status: String,
    capacity: Json<serde_json::Value>,
    running: Json<serde_json::Value>,
    session_epoch: i64,
    connected_at: DateTime<Utc>,
    last_heartbeat: DateTime<Utc>,
    heartbeat_expiration: DateTime<Utc>,
}

impl TryFrom<WorkerRow> for WorkerRecord {
    type Error = StoreError;

    fn try_from(row: WorkerRow) -> Result<Self, StoreError> {
        Ok(WorkerRecord {
            id: row.id,
            name: row.name,
            version: row.version,
            status: WorkerStatus::from_short_name(&row.status)
                .ok_or_else(|| StoreError::Corrupt(format!("worker status {:?}", row.status)))?,
            capacity: count_map(&row.capacity.0),
            running: count_map(&row.running.0),
            session_epoch: row.session_epoch,
            connected_at: row.connected_at,
            last_heartbeat: row.last_heartbeat,
            heartbeat_expiration: row.heartbeat_expiration,
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
