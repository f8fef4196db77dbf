//! Checking what a worker sends before it reaches the store. A worker that
//! breaks the protocol gets its stream ended with `InvalidArgument` naming
//! the problem, so implementers in other languages see what to fix.

use regsweep_common::FieldViolations;
use regsweep_proto::v1::{self, JobStatus};
use regsweep_proto::{struct_to_json, timestamp_to_chrono};
use uuid::Uuid;

use crate::kinds;
use crate::store::{LogLine, LogWrite, RunningJob, UpdateWrite, WorkerHello};

pub const MAX_NAME_CHARS: usize = 128;
pub const MAX_VERSION_CHARS: usize = 64;
pub const MAX_CAPACITY_PER_KIND: u32 = 10_000;
pub const MAX_RUNNING: usize = 100_000;
pub const MAX_LOG_LINES_PER_CHUNK: usize = 1000;
/// Longer lines are cut, not refused: a log line is not worth a session.
pub const MAX_LOG_LINE_BYTES: usize = 16 * 1024;
pub const MAX_ERROR_BYTES: usize = 16 * 1024;

pub fn hello(hello: v1::Hello) -> Result<WorkerHello, FieldViolations> {
    let mut v = FieldViolations::new();
    let name_chars = hello.name.chars().count();
    if name_chars == 0 || name_chars > MAX_NAME_CHARS || hello.name.chars().any(char::is_control) {
        v.add(
            "hello.name",
            format!("must be 1 to {MAX_NAME_CHARS} characters without control characters"),
        );
    }
    if hello.version.chars().count() > MAX_VERSION_CHARS {
        v.add("hello.version", format!("must be at most {MAX_VERSION_CHARS} characters"));
    }
    let mut capacity = serde_json::Map::new();
    for (kind, n) in &hello.capacity {
        if !kinds::is_worker_kind(kind) {
            v.add(
                format!("hello.capacity[{kind}]"),
                format!("not a kind workers run; they run {}", kinds::WORKER_KINDS.join(", ")),
            );
        } else if *n > MAX_CAPACITY_PER_KIND {
            v.add(
                format!("hello.capacity[{kind}]"),
                format!("must be at most {MAX_CAPACITY_PER_KIND}"),
            );
        } else {
            capacity.insert(kind.clone(), (*n).into());
        }
    }
    let resume_worker_id = if hello.resume_worker_id.is_empty() {
        None
    } else {
        let id = Uuid::parse_str(&hello.resume_worker_id).ok();
        if id.is_none() {
            v.add("hello.resume_worker_id", "must be a worker id from a previous Welcome");
        }
        id
    };
    if hello.running.len() > MAX_RUNNING {
        v.add("hello.running", format!("must list at most {MAX_RUNNING} jobs"));
    }
    let running = hello.running.iter().map(running_job).collect();
    if hello.ending.len() > MAX_RUNNING {
        v.add("hello.ending", format!("must list at most {MAX_RUNNING} jobs"));
    }
    let ending = hello.ending.iter().map(|e| (e.job_id, e.attempt)).collect();
    v.into_result()?;
    Ok(WorkerHello {
        name: hello.name,
        version: hello.version,
        capacity,
        resume_worker_id,
        running,
        ending,
        end_acks: hello.end_acks,
    })
}

pub fn running_job(run: &v1::RunningJob) -> RunningJob {
    RunningJob { job_id: run.job_id, attempt: run.attempt, progress: clamp_progress(run.progress) }
}

fn clamp_progress(progress: f32) -> f32 {
    if progress.is_finite() { progress.clamp(0.0, 1.0) } else { 0.0 }
}

pub fn update(worker_id: Uuid, update: v1::JobUpdate) -> Result<UpdateWrite, FieldViolations> {
    let status = JobStatus::try_from(update.status).unwrap_or(JobStatus::Unspecified);
    if !matches!(
        status,
        JobStatus::Running
            | JobStatus::Done
            | JobStatus::Error
            | JobStatus::Cancel
            | JobStatus::WorkerShutdown
    ) {
        return Err(FieldViolations::single(
            "job_update.status",
            format!(
                "{} is not a status a worker reports (running, done, error, cancel, worker_shutdown)",
                update.status
            ),
        ));
    }
    let error = (status == JobStatus::Error).then(|| {
        let text = if update.error.is_empty() {
            "failed without a message".to_string()
        } else {
            update.error
        };
        truncate(text, MAX_ERROR_BYTES)
    });
    Ok(UpdateWrite {
        worker_id,
        job_id: update.job_id,
        attempt: update.attempt,
        status,
        progress: clamp_progress(update.progress),
        result: (status == JobStatus::Done).then(|| {
            storable(update.result.as_ref().map_or_else(|| serde_json::json!({}), struct_to_json))
        }),
        error,
        retryable: update.retryable,
    })
}

/// `value` with every NUL character (which PostgreSQL's `jsonb` refuses,
/// failing the whole batch the result is written in) replaced by U+FFFD.
fn storable(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    let clean = |text: String| {
        if text.contains('\0') { text.replace('\0', "\u{fffd}") } else { text }
    };
    match value {
        Value::String(text) => Value::String(clean(text)),
        Value::Array(items) => Value::Array(items.into_iter().map(storable).collect()),
        Value::Object(fields) => {
            Value::Object(fields.into_iter().map(|(k, v)| (clean(k), storable(v))).collect())
        }
        other => other,
    }
}

pub fn log_chunk(worker_id: Uuid, chunk: v1::LogChunk) -> Result<LogWrite, FieldViolations> {
    if chunk.lines.is_empty() || chunk.lines.len() > MAX_LOG_LINES_PER_CHUNK {
        return Err(FieldViolations::single(
            "log_chunk.lines",
            format!("must hold 1 to {MAX_LOG_LINES_PER_CHUNK} lines"),
        ));
    }
    let now = chrono::Utc::now();
    let lines = chunk
        .lines
        .into_iter()
        .map(|line| LogLine {
            attempt: chunk.attempt,
            time: line.time.as_ref().and_then(timestamp_to_chrono).unwrap_or(now),
            text: truncate(line.text, MAX_LOG_LINE_BYTES),
        })
        .collect();
    Ok(LogWrite { worker_id, job_id: chunk.job_id, attempt: chunk.attempt, seq: chunk.seq, lines })
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    // PostgreSQL text cannot hold NUL.
    if text.contains('\0') {
        text = text.replace('\0', "\u{fffd}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_rejects_unknown_kinds_and_bad_names() {
        let bad = v1::Hello {
            name: String::new(),
            capacity: [("sleep".to_string(), 4), ("mystery".to_string(), 1)].into_iter().collect(),
            resume_worker_id: "x".into(),
            ..Default::default()
        };
        let errors = hello(bad).expect_err("invalid");
        let mut fields: Vec<_> = errors.fields().collect();
        fields.sort_unstable();
        assert_eq!(fields, ["hello.capacity[mystery]", "hello.name", "hello.resume_worker_id"]);
    }

    #[test]
    fn results_lose_their_nul_characters() {
        let result = serde_json::json!({"a\0": ["x\0y", 1, {"k": "\0"}]});
        let clean = storable(result);
        assert_eq!(clean, serde_json::json!({"a\u{fffd}": ["x\u{fffd}y", 1, {"k": "\u{fffd}"}]}));
    }

    #[test]
    fn updates_accept_only_worker_statuses() {
        let worker = Uuid::new_v4();
        for status in [JobStatus::Waiting, JobStatus::Deleted, JobStatus::Unspecified] {
            let u = v1::JobUpdate { status: status as i32, ..Default::default() };
            assert!(update(worker, u).is_err(), "{status:?}");
        }
        let u = v1::JobUpdate {
            status: JobStatus::Error as i32,
            progress: f32::NAN,
            ..Default::default()
        };
        let parsed = update(worker, u).expect("valid");
        assert_eq!(parsed.error.as_deref(), Some("failed without a message"));
        assert_eq!(parsed.progress, 0.0);
    }

    #[test]
    fn log_lines_are_cut_at_char_boundaries_and_lose_nul() {
        let text = format!("{}é\0", "a".repeat(MAX_LOG_LINE_BYTES - 1));
        let cut = truncate(text, MAX_LOG_LINE_BYTES);
        assert_eq!(cut.len(), MAX_LOG_LINE_BYTES - 1);
        assert_eq!(truncate("a\0b".into(), 10), "a\u{fffd}b");
    }

    #[test]
    fn empty_log_chunks_are_refused() {
        let chunk = v1::LogChunk::default();
        assert!(log_chunk(Uuid::new_v4(), chunk).is_err());
    }
}
