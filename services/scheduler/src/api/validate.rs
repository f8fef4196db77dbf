//! Turning requests into store arguments, naming every bad field.

use regsweep_common::{FieldViolations, paging};
use regsweep_proto::v1::{self, JobStatus};
use regsweep_proto::{struct_to_json, timestamp_to_chrono};
use uuid::Uuid;

use crate::kinds;
use crate::store::{JobFilter, LogCursor, NewJob};

pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
pub const MAX_MAX_ATTEMPTS: u32 = 100;
pub const PRIORITY_RANGE: std::ops::RangeInclusive<i32> = -1000..=1000;
pub const MAX_UNIQUE_KEY_CHARS: usize = 256;
pub const MAX_REASON_CHARS: usize = 1000;

pub fn create_job(req: v1::CreateJobRequest) -> Result<NewJob, FieldViolations> {
    let mut v = FieldViolations::new();
    if req.kind.is_empty() {
        v.add("kind", "is required");
    } else if !kinds::is_known(&req.kind) {
        v.add(
            "kind",
            format!("unknown kind {:?}; known kinds: {}", req.kind, kinds::KINDS.join(", ")),
        );
    }
    let args = req.args.as_ref().map_or_else(|| serde_json::json!({}), struct_to_json);
    if kinds::is_known(&req.kind) {
        kinds::validate_args(&req.kind, &args, &mut v);
    }
    if !PRIORITY_RANGE.contains(&req.priority) {
        v.add(
            "priority",
            format!("must be between {} and {}", PRIORITY_RANGE.start(), PRIORITY_RANGE.end()),
        );
    }
    let scheduled_at = match &req.scheduled_at {
        None => None,
        Some(ts) => {
            let time = timestamp_to_chrono(ts);
            if time.is_none() {
                v.add("scheduled_at", "is not a valid timestamp");
            }
            time
        }
    };
    let max_attempts = match req.max_attempts {
        0 => DEFAULT_MAX_ATTEMPTS,
        n if n <= MAX_MAX_ATTEMPTS => n,
        _ => {
            v.add("max_attempts", format!("must be between 1 and {MAX_MAX_ATTEMPTS}"));
            DEFAULT_MAX_ATTEMPTS
        }
    };
    let unique_key = if req.unique_key.is_empty() {
        None
    } else {
        if req.unique_key.chars().count() > MAX_UNIQUE_KEY_CHARS
            || req.unique_key.chars().any(char::is_control)
        {
            v.add(
                "unique_key",
                format!(
                    "must be at most {MAX_UNIQUE_KEY_CHARS} characters without control characters"
                ),
            );
        }
        Some(req.unique_key)
    };
    let parent_id = match req.parent_id {
        0 => None,
        id if id > 0 => Some(id),
        _ => {
            v.add("parent_id", "must be a job id");
            None
        }
    };
    v.into_result()?;
    Ok(NewJob {
        kind: req.kind,
        args,
        priority: req.priority,
        scheduled_at,
        max_attempts,
        unique_key,
        parent_id,
        // The caller's trace (from the request's metadata) continues in the runs.
        trace_context: regsweep_common::trace::traceparent(&tracing::Span::current()),
    })
}

pub fn job_id(id: i64, v: &mut FieldViolations) -> i64 {
    if id <= 0 {
        v.add("id", "must be a positive job id");
    }
    id
}

pub fn reason(reason: &str, v: &mut FieldViolations) -> String {
    if reason.chars().count() > MAX_REASON_CHARS {
        v.add("reason", format!("must be at most {MAX_REASON_CHARS} characters"));
    }
    reason.to_string()
}

pub struct ListJobs {
    pub filter: JobFilter,
    pub before: Option<i64>,
    pub limit: u32,
    /// Identifies the filters, to bind page tokens to them.
    pub fingerprint: String,
}

pub fn list_jobs(req: &v1::ListJobsRequest) -> Result<ListJobs, FieldViolations> {
    let mut v = FieldViolations::new();
    let mut statuses = Vec::new();
    for (i, raw) in req.statuses.iter().enumerate() {
        match JobStatus::try_from(*raw) {
            Ok(JobStatus::Unspecified) | Err(_) => {
                v.add(format!("statuses[{i}]"), format!("{raw} is not a job status"));
            }
            Ok(status) => statuses.push(status),
        }
    }
    statuses.sort_by_key(|s| *s as i32);
    statuses.dedup();
    if !req.kind.is_empty() && !kinds::is_known(&req.kind) {
        v.add("kind", format!("unknown kind {:?}", req.kind));
    }
    let worker_id = if req.worker_id.is_empty() {
        None
    } else {
        let parsed = Uuid::parse_str(&req.worker_id).ok();
        if parsed.is_none() {
            v.add("worker_id", "must be a worker id (a UUID)");
        }
        parsed
    };
    let limit = paging::page_size(req.page_size, 50, 1000, "page_size", &mut v);
    let fingerprint = format!(
        "jobs;{};{};{}",
        statuses.iter().map(|s| s.short_name()).collect::<Vec<_>>().join(","),
        req.kind,
        req.worker_id
    );
    let before = paging::decode_token(&req.page_token, &fingerprint, "page_token", &mut v);
    v.into_result()?;
    Ok(ListJobs {
        filter: JobFilter {
            statuses,
            kind: (!req.kind.is_empty()).then(|| req.kind.clone()),
            worker_id,
        },
        before,
        limit,
        fingerprint,
    })
}

pub fn set_capacity(
    req: &v1::SetWorkerCapacityRequest,
) -> Result<(Uuid, std::collections::HashMap<String, u32>), FieldViolations> {
    let mut v = FieldViolations::new();
    let worker_id = Uuid::parse_str(&req.worker_id).ok();
    if worker_id.is_none() {
        v.add("worker_id", "must be a worker id (a UUID)");
    }
    if req.capacity.is_empty() {
        v.add("capacity", "must name at least one kind");
    }
    let mut kinds: Vec<&String> = req.capacity.keys().collect();
    kinds.sort();
    for kind in kinds {
        let n = req.capacity[kind];
        if !kinds::is_worker_kind(kind) {
            v.add(
                format!("capacity[{kind}]"),
                format!("not a kind workers run; they run {}", kinds::WORKER_KINDS.join(", ")),
            );
        } else if n > crate::protocol::MAX_CAPACITY_PER_KIND {
            v.add(
                format!("capacity[{kind}]"),
                format!("must be at most {}", crate::protocol::MAX_CAPACITY_PER_KIND),
            );
        }
    }
    v.into_result()?;
    Ok((worker_id.unwrap_or_default(), req.capacity.clone()))
}

/// What a log position token is bound to: one job's lines, of one attempt
/// or all. `GetJobLogs` and `TailJobLogs` take each other's tokens.
pub fn log_fingerprint(id: i64, attempt: u32) -> String {
    format!("logs;{id};{attempt}")
}

/// The log position `token` names (`None` when empty); a token issued for
/// another job or attempt, or by no server, is a `page_token` violation.
pub fn log_cursor(token: &str, fingerprint: &str, v: &mut FieldViolations) -> Option<LogCursor> {
    paging::decode_token(token, fingerprint, "page_token", v).map(|raw| {
        LogCursor::from_i64(raw).unwrap_or_else(|| {
            v.add("page_token", "is not a token this server issued");
            LogCursor { attempt: 0, seq: 0, line: 0 }
        })
    })
}

pub struct JobLogs {
    pub id: i64,
    pub attempt: Option<u32>,
    pub cursor: Option<LogCursor>,
    pub limit: u32,
    pub fingerprint: String,
}

pub fn job_logs(req: &v1::GetJobLogsRequest) -> Result<JobLogs, FieldViolations> {
    let mut v = FieldViolations::new();
    let id = job_id(req.id, &mut v);
    let limit = paging::page_size(req.page_size, 1000, 10_000, "page_size", &mut v);
    let fingerprint = log_fingerprint(req.id, req.attempt);
    let cursor = log_cursor(&req.page_token, &fingerprint, &mut v);
    v.into_result()?;
    Ok(JobLogs {
        id,
        attempt: (req.attempt > 0).then_some(req.attempt),
        cursor,
        limit,
        fingerprint,
    })
}

#[cfg(test)]
mod tests {
    use regsweep_proto::json_to_struct;
    use serde_json::json;

    use super::*;

    fn request(kind: &str, args: serde_json::Value) -> v1::CreateJobRequest {
        v1::CreateJobRequest {
            kind: kind.into(),
            args: Some(json_to_struct(args)),
            ..Default::default()
        }
    }

    fn fields(result: Result<NewJob, FieldViolations>) -> Vec<String> {
        result.err().map(|v| v.fields().map(String::from).collect()).unwrap_or_default()
    }

    #[test]
    fn create_job_defaults() {
        let job = create_job(request("sleep", json!({"seconds": 1}))).expect("valid");
        assert_eq!(job.max_attempts, DEFAULT_MAX_ATTEMPTS);
        assert_eq!(job.unique_key, None);
        assert_eq!(job.parent_id, None);
        assert_eq!(job.args, json!({"seconds": 1}));
    }

    #[test]
    fn create_job_names_every_bad_field() {
        let mut req = request("nope", json!({}));
        req.priority = 5000;
        req.max_attempts = 101;
        req.parent_id = -4;
        req.unique_key = "a\nb".into();
        req.scheduled_at = Some(regsweep_proto::pbjson_types::Timestamp { seconds: 0, nanos: -5 });
        assert_eq!(
            fields(create_job(req)),
            ["kind", "priority", "scheduled_at", "max_attempts", "unique_key", "parent_id"]
        );
        assert_eq!(fields(create_job(request("", json!({})))), ["kind"]);
        assert_eq!(fields(create_job(request("sleep", json!({"seconds": -1})))), ["args.seconds"]);
    }

    #[test]
    fn list_jobs_validates_filters_and_binds_tokens() {
        let req = v1::ListJobsRequest {
            statuses: vec![JobStatus::Done as i32, 99, 0],
            worker_id: "not-a-uuid".into(),
            page_size: -1,
            ..Default::default()
        };
        let errs = list_jobs(&req).err().expect("invalid");
        assert_eq!(
            errs.fields().collect::<Vec<_>>(),
            ["statuses[1]", "statuses[2]", "worker_id", "page_size"]
        );

        let ok =
            v1::ListJobsRequest { statuses: vec![JobStatus::Done as i32], ..Default::default() };
        let parsed = list_jobs(&ok).expect("valid");
        let token = paging::encode_token(&parsed.fingerprint, 10);
        let next = v1::ListJobsRequest { page_token: token.clone(), ..ok.clone() };
        assert_eq!(list_jobs(&next).expect("valid").before, Some(10));
        let other = v1::ListJobsRequest { page_token: token, kind: "sleep".into(), ..ok };
        assert!(list_jobs(&other).is_err());
    }
}
