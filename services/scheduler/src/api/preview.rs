//! Previewing a policy on one repository: the scheduler holds no registry
//! credentials, so a worker reads the repository in a dry-run
//! `tag_cleanup` job and the rpc waits for its result.

use std::time::Duration;

use regsweep_policy::{TagCleanupArgs, TagCleanupResult};
use regsweep_proto::v1::{self, JobStatus};
use tokio::time::Instant;

use crate::error::ApiError;
use crate::store::{CancelOutcome, CreateOutcome, JobStore, NewJob};

/// Preview jobs go before every other job of the kind.
const PREVIEW_PRIORITY: i32 = 1000;
/// How often the job is looked at while it runs.
const POLL: Duration = Duration::from_millis(100);

pub async fn run(
    jobs: &dyn JobStore,
    args: TagCleanupArgs,
    timeout: Duration,
) -> Result<v1::PreviewPolicyResponse, ApiError> {
    let repository = args.repository.clone();
    // Plain data: serializing it cannot fail.
    let args = serde_json::to_value(&args).unwrap_or_default();
    let job = NewJob {
        kind: "tag_cleanup".into(),
        args,
        priority: PREVIEW_PRIORITY,
        scheduled_at: None,
        // Previews are answered now or never: no retry behind the caller's back.
        max_attempts: 1,
        unique_key: None,
        parent_id: None,
        trace_context: regsweep_common::trace::traceparent(&tracing::Span::current()),
    };
    let job = match jobs.create_job(job).await? {
        CreateOutcome::Created(job) | CreateOutcome::Duplicate(job) => job,
        // Preview jobs have no parent.
        CreateOutcome::ParentNotFound => {
            return Err(ApiError::FailedPrecondition("preview job has no parent".into()));
        }
    };
    let deadline = Instant::now() + timeout;
    let mut ticker = tokio::time::interval(POLL);
    let finished = loop {
        ticker.tick().await;
        let current = jobs.get_job(job.id).await?;
        match current {
            Some(current) if current.status.is_terminal() => break current,
            Some(_) if Instant::now() < deadline => {}
            _ => {
                if let Ok(CancelOutcome::Requested(_) | CancelOutcome::Cancelled(_)) =
                    jobs.cancel_job(job.id, "preview timed out").await
                {
                    tracing::warn!(job_id = job.id, "preview timed out, job cancelled");
                }
                return Err(ApiError::DeadlineExceeded(format!(
                    "no worker finished preview job {} within {timeout:?}; are workers with \
                     tag_cleanup capacity connected?",
                    job.id
                )));
            }
        }
    };
    if finished.status != JobStatus::Done {
        return Err(ApiError::FailedPrecondition(format!(
            "preview job {} ended {}: {}",
            finished.id,
            finished.status.short_name(),
            finished.last_error.unwrap_or_default()
        )));
    }
    let result: TagCleanupResult = serde_json::from_value(finished.result.unwrap_or_default())
        .map_err(|e| {
            ApiError::FailedPrecondition(format!(
                "preview job {} has a result this scheduler cannot read: {e}",
                finished.id
            ))
        })?;
    let count = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    Ok(v1::PreviewPolicyResponse {
        repository,
        decisions: result.tags.iter().map(Into::into).collect(),
        delete_count: count(result.planned_tags),
        digest_delete_count: count(result.planned_digests),
        job_id: finished.id,
        blocked: result.blocked.unwrap_or_default(),
        images: result.images.iter().map(Into::into).collect(),
        reclaimable_bytes: result.reclaim.bytes,
        reclaimable_blobs: result.reclaim.blobs,
        unread_manifests: result.reclaim.unread_manifests,
    })
}
