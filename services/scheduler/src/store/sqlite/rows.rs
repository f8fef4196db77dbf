//! Decoding SQLite rows into records.

use regsweep_proto::v1::WorkerStatus;
use sqlx::types::Json;
use uuid::Uuid;

use super::time;
use crate::store::model::count_map;
pub use crate::store::postgres::rows::{job_status, non_negative};
use crate::store::{JobRecord, StoreError, WorkerRecord};

pub use crate::store::postgres::rows::{JOB_COLUMNS, to_i32};

/// Statuses in which a job holds its unique key (the partial unique index).
pub const ACTIVE: &str = "('waiting', 'running', 'cancel_request', 'worker_dead', \
     'worker_shutdown', 'worker_resurrection')";
/// Statuses a worker can claim from.
pub const CLAIMABLE: &str = "('waiting', 'worker_dead', 'worker_shutdown')";

#[derive(sqlx::FromRow)]
pub struct JobRow {
    id: i64,
    kind: String,
    args: Json<serde_json::Value>,
    status: String,
    priority: i32,
    scheduled_at: i64,
    attempt: i32,
    max_attempts: i32,
    worker_id: Option<Uuid>,
    created_at: i64,
    claimed_at: Option<i64>,
    started_at: Option<i64>,
    heartbeat_at: Option<i64>,
    finished_at: Option<i64>,
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
            scheduled_at: time(row.scheduled_at),
            attempt: non_negative(row.attempt, "attempt")?,
            max_attempts: non_negative(row.max_attempts, "max_attempts")?,
            worker_id: row.worker_id,
            created_at: time(row.created_at),
            claimed_at: row.claimed_at.map(time),
            started_at: row.started_at.map(time),
            heartbeat_at: row.heartbeat_at.map(time),
            finished_at: row.finished_at.map(time),
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

pub const WORKER_COLUMNS: &str = "id, name, version, status, capacity, session_epoch, \
     connected_at, last_heartbeat, heartbeat_expiration";

#[derive(sqlx::FromRow)]
pub struct WorkerRow {
    pub id: Uuid,
    name: String,
    version: String,
    status: String,
    capacity: Json<serde_json::Value>,
    session_epoch: i64,
    connected_at: i64,
    last_heartbeat: i64,
    heartbeat_expiration: i64,
}

impl WorkerRow {
    /// The record, with `running` (kind -> count) as read separately.
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
            connected_at: time(self.connected_at),
            last_heartbeat: time(self.last_heartbeat),
            heartbeat_expiration: time(self.heartbeat_expiration),
        })
    }
}
