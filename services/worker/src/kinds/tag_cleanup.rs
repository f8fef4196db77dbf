//! `tag_cleanup`: lists a repository's tags, resolves each to its digest
//! and creation time, applies the policy's tag filter, records the plan as
//! the job's result (DESIGN.md section 5) and, unless a dry run, submits it
//! to the scrubber, which deletes after its delay. Nothing is deleted here.

use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use regsweep_policy::{Action, Plan, RuleSpec, Rules, TagInput};
use regsweep_proto::v1;
use serde::Deserialize;
use tokio::time::Instant;

use crate::job::{JobContext, Outcome};
use crate::services::ServiceError;

/// Tags inspected at once against one registry.
const INSPECT_CONCURRENCY: usize = 8;
/// Most decision lines written to the job's log.
const MAX_LOGGED_DELETIONS: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    registry: String,
    repository: String,
    #[serde(default)]
    repository_id: u64,
    #[serde(default)]
    policy: String,
    #[serde(default)]
    rules: RuleSpec,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    preview: bool,
    #[serde(default = "default_budget")]
    time_budget_seconds: u64,
}

fn default_budget() -> u64 {
    300
}

pub async fn run(ctx: JobContext, args: serde_json::Value) -> Outcome {
    let args: Args = match super::parse_args(args) {
        Ok(args) => args,
        Err(outcome) => return outcome,
    };
    let rules = match Rules::compile(&args.rules) {
        Ok(rules) => rules,
        Err(violations) => {
            let reasons: Vec<String> =
                violations.iter().map(|v| format!("{}: {}", v.field, v.description)).collect();
            return Outcome::Failed {
                error: format!("invalid rules: {}", reasons.join("; ")),
                retryable: false,
            };
        }
    };
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.time_budget_seconds);
    let client = match ctx.services().registry_client(&args.registry).await {
        Ok(client) => client,
        Err(e) => return Outcome::Failed { error: e.to_string(), retryable: e.is_retryable() },
    };
    let tags = tokio::select! {
        tags = client.list_tags(&args.repository) => tags,
        () = ctx.cancelled() => return Outcome::Cancelled,
        () = tokio::time::sleep_until(deadline) => {
            ctx.log(format!("time budget of {}s spent listing tags; resuming later", args.time_budget_seconds));
            return unfinished(&args, 0);
        }
    };
    let tags = match tags {
        Ok(tags) => tags,
        Err(regsweep_registry::Error::NotFound(_)) => {
            ctx.log(format!("repository {} does not exist (any more)", args.repository));
            Vec::new()
        }
        Err(e) => {
            let e = ServiceError::Registry(e);
            return Outcome::Failed { error: e.to_string(), retryable: e.is_retryable() };
        }
    };
    ctx.log(format!("{} tags in {}", tags.len(), args.repository));

    let total = tags.len().max(1) as f32;
    let mut inspected = Vec::with_capacity(tags.len());
    let mut inspections = futures::stream::iter(tags)
        .map(|tag| {
            let client = client.clone();
            let repository = args.repository.clone();
            async move {
                let info = client.inspect_tag(&repository, &tag).await;
                (tag, info)
            }
        })
        .buffer_unordered(INSPECT_CONCURRENCY);
    loop {
        let next = tokio::select! {
            next = inspections.next() => next,
            () = ctx.cancelled() => return Outcome::Cancelled,
            () = tokio::time::sleep_until(deadline) => {
                ctx.log(format!(
                    "time budget of {}s spent after {} of {} tags; resuming later",
                    args.time_budget_seconds, inspected.len(), total as usize
                ));
                return unfinished(&args, inspected.len());
            }
        };
        let Some((tag, info)) = next else { break };
        match info {
            Ok(Some(info)) => {
                inspected.push(TagInput { tag, digest: Some(info.digest), created: info.created })
            }
            // Untagged between listing and inspection: nothing to decide.
            Ok(None) => {}
            Err(e) => {
                // Kept (the filter never deletes what it could not read).
                ctx.log(format!("cannot inspect tag {tag}: {e}"));
                inspected.push(TagInput { tag, digest: None, created: None });
            }
        }
        ctx.set_progress(inspected.len() as f32 / total);
    }
    let evaluated = inspected.len();
    let plan = regsweep_policy::plan(&rules, inspected, Utc::now());
    log_plan(&ctx, &plan);
    let planned_tags = plan.decisions.iter().filter(|d| d.action == Action::Delete).count();
    let planned_digests = plan.images.iter().filter(|i| i.delete_digest).count();
    let elapsed = started.elapsed();
    ctx.log(format!(
        "{evaluated} tags evaluated in {elapsed:?}: {planned_tags} to delete ({planned_digests} digests){}",
        if args.dry_run { ", dry run" } else { "" }
    ));
    let deletions = if args.dry_run || args.preview || plan.images.is_empty() {
        Vec::new()
    } else {
        match submit(&ctx, &args, &plan).await {
            Ok(ids) => ids,
            Err(outcome) => return outcome,
        }
    };
    Outcome::Done(serde_json::json!({
        "outcome": "complete",
        "registry": args.registry,
        "repository": args.repository,
        "repository_id": args.repository_id,
        "policy": args.policy,
        "dry_run": args.dry_run,
        "preview": args.preview,
        "tags_evaluated": evaluated,
        "elapsed_ms": u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        "planned_tags": planned_tags,
        "planned_digests": planned_digests,
        // A dry run reports what it would have deleted; a real run hands
        // its plan to the scrubber, which deletes after its delay.
        "deleted_count": if args.dry_run { planned_tags } else { 0 },
        "submitted_tags": if deletions.is_empty() { 0 } else { planned_tags },
        "deletions": deletions,
        "tags": plan.decisions.iter().map(|d| serde_json::json!({
            "tag": d.tag,
            "digest": d.digest,
            "created": d.created.map(|c| c.to_rfc3339()),
            "action": d.action,
            "rule": d.rule,
        })).collect::<Vec<_>>(),
        "images": plan.images.iter().map(|i| serde_json::json!({
            "digest": i.digest,
            "tags": i.tags,
            "delete_digest": i.delete_digest,
        })).collect::<Vec<_>>(),
    }))
}

/// Most images per submission (the scrubber's limit).
const SUBMIT_CHUNK: usize = 10_000;

/// Hands the plan to the scrubber; returns the deletion ids.
async fn submit(ctx: &JobContext, args: &Args, plan: &Plan) -> Result<Vec<i64>, Outcome> {
    let Some(mut scrubber) = ctx.services().scrubber() else {
        return Err(Outcome::Failed {
            error: "no scrubber configured (--scrubber): a cleanup that deletes cannot run here"
                .into(),
            retryable: false,
        });
    };
    let mut ids = Vec::with_capacity(plan.images.len());
    for chunk in plan.images.chunks(SUBMIT_CHUNK) {
        let request = v1::SubmitDeletionsRequest {
            job_id: ctx.job_id(),
            attempt: ctx.attempt(),
            registry: args.registry.clone(),
            repository: args.repository.clone(),
            images: chunk
                .iter()
                .map(|i| v1::ImageDeletion {
                    digest: i.digest.clone(),
                    tags: i.tags.clone(),
                    delete_digest: i.delete_digest,
                })
                .collect(),
        };
        match scrubber.submit_deletions(request).await {
            Ok(response) => ids.extend(response.into_inner().deletions.iter().map(|d| d.id)),
            Err(status) => {
                let retryable = matches!(
                    status.code(),
                    tonic::Code::Unavailable
                        | tonic::Code::DeadlineExceeded
                        | tonic::Code::Internal
                );
                return Err(Outcome::Failed {
                    error: format!("submitting deletions: {}", status.message()),
                    retryable,
                });
            }
        }
    }
    ctx.log(format!("{} images submitted to the scrubber", ids.len()));
    Ok(ids)
}

/// The result of a cleanup that spent its time budget: nothing planned,
/// the repository is resumed later (`unfinished`).
fn unfinished(args: &Args, evaluated: usize) -> Outcome {
    Outcome::Done(serde_json::json!({
        "outcome": "unfinished",
        "registry": args.registry,
        "repository": args.repository,
        "tags_evaluated": evaluated,
        "deleted_count": 0,
    }))
}

fn log_plan(ctx: &JobContext, plan: &Plan) {
    let deletions = plan.decisions.iter().filter(|d| d.action == Action::Delete);
    for decision in deletions.take(MAX_LOGGED_DELETIONS) {
        ctx.log(format!(
            "delete {} ({})",
            decision.tag,
            decision.digest.as_deref().unwrap_or("unresolved")
        ));
    }
}
