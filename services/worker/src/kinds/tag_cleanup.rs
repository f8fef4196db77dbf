//! `tag_cleanup`: reads a repository's graph (tags, manifests, index
//! children, attachments), plans with the policy over it, records the plan
//! as the job's result (`TagCleanupResult`) and, unless a dry run or a
//! preview, submits it to the scrubber, which deletes after its delay.
//! Nothing is deleted here.

use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use regsweep_policy::{
    Action, CleanupOutcome, Inventory, Plan, PlanSize, Reclaim, Rules, TagCleanupArgs,
    TagCleanupResult,
};
use regsweep_proto::v1;
use regsweep_registry::{Client, RepositoryReader};
use tokio::time::Instant;

use crate::job::{JobContext, Outcome};
use crate::services::ServiceError;

/// Tags inspected at once against one registry.
const INSPECT_CONCURRENCY: usize = 8;
/// Most decision lines written to the job's log.
const MAX_LOGGED_DELETIONS: usize = 1000;
/// Most images per submission (the scrubber's limit).
const SUBMIT_CHUNK: usize = 10_000;

/// Why reading stopped early.
enum Stopped {
    Cancelled,
    OutOfTime { evaluated: usize },
    Failed(Outcome),
}

pub async fn run(ctx: JobContext, args: serde_json::Value) -> Outcome {
    cleanup(&ctx, args).await.unwrap_or_else(|ended| ended)
}

/// The steps of one cleanup. `Err` carries the outcome of a run that ends
/// before its plan is handed over: invalid input, an unreachable registry,
/// a cancel, or a time budget spent while reading.
async fn cleanup(ctx: &JobContext, args: serde_json::Value) -> Result<Outcome, Outcome> {
    let args: TagCleanupArgs = super::parse_args(args)?;
    let rules = compile(&args)?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.time_budget_seconds);
    let client = ctx
        .services()
        .registry_client(&args.registry)
        .await
        .map_err(|e| Outcome::Failed { error: e.to_string(), retryable: e.is_retryable() })?;
    let mut inventory = inventory(ctx, &client, &args, deadline).await?;
    super::first_seen::fill(ctx, &args.registry, &args.repository, &mut inventory)
        .await
        .map_err(|e| Outcome::Failed { error: e.to_string(), retryable: true })?;
    let protection = super::protection::fetch(ctx, &args.registry, &args.repository)
        .await
        .map_err(|error| Outcome::Failed { error, retryable: true })?;
    let evaluated = inventory.tags.len();
    let graph = inventory.clone();
    let plan = regsweep_policy::plan_protected(&rules, inventory, &protection, Utc::now());
    log_plan(ctx, &plan);
    let elapsed = started.elapsed();
    ctx.log(format!(
        "{evaluated} tags evaluated in {elapsed:?}: {} to delete ({} digests){}",
        plan.deleted_tags(),
        plan.deleted_digests(),
        if args.dry_run { ", dry run" } else { "" }
    ));
    // Before the hand-off: a scrubber with no delay deletes at once, and a
    // deleted child can no longer be read.
    let reclaim =
        reclaim(ctx, &client, &args, &plan, graph, deadline).await.ok_or(Outcome::Cancelled)?;
    let deletions = hand_over(ctx, &client, &args, &plan).await?;
    let result = TagCleanupResult { reclaim, ..result(&args, plan, evaluated, elapsed, deletions) };
    // A plan that could not see the whole graph deleted nothing: the run
    // fails (retried later) so the repository shows why, except a preview,
    // which reports its decisions and the reason.
    if let (Some(blocked), false) = (&result.blocked, args.preview) {
        return Err(Outcome::Failed {
            error: format!("nothing deleted: {blocked}"),
            retryable: true,
        });
    }
    Ok(Outcome::Done(result_json(&result)))
}

/// The policy's rules, or the run's failure naming every invalid field.
fn compile(args: &TagCleanupArgs) -> Result<Rules, Outcome> {
    Rules::compile(&args.rules).map_err(|violations| {
        let reasons: Vec<String> =
            violations.iter().map(|v| format!("{}: {}", v.field, v.description)).collect();
        Outcome::Failed {
            error: format!("invalid rules: {}", reasons.join("; ")),
            retryable: false,
        }
    })
}

/// The repository's tags and graph, or how the run ends instead. A time
/// budget spent while reading ends it `unfinished` (it resumes later).
async fn inventory(
    ctx: &JobContext,
    client: &Client,
    args: &TagCleanupArgs,
    deadline: Instant,
) -> Result<Inventory, Outcome> {
    match read(ctx, client, args, deadline).await {
        Ok(inventory) => Ok(inventory),
        Err(Stopped::Cancelled) => Err(Outcome::Cancelled),
        Err(Stopped::Failed(outcome)) => Err(outcome),
        Err(Stopped::OutOfTime { evaluated }) => {
            ctx.log(format!(
                "time budget of {}s spent after {evaluated} tags; resuming later",
                args.time_budget_seconds
            ));
            Err(Outcome::Done(result_json(&TagCleanupResult {
                outcome: CleanupOutcome::Unfinished,
                tags_evaluated: evaluated as u64,
                ..identity(args)
            })))
        }
    }
}

/// Hands the plan's deletions to the scrubber; nothing when the run only
/// looks (dry run, preview) or the plan deletes nothing.
async fn hand_over(
    ctx: &JobContext,
    client: &Client,
    args: &TagCleanupArgs,
    plan: &Plan,
) -> Result<Vec<i64>, Outcome> {
    if args.dry_run || args.preview || plan.images.is_empty() {
        return Ok(Vec::new());
    }
    deletes_allowed(client, &args.repository).await?;
    submit(ctx, args, plan).await
}

/// The space `plan` frees, when it deletes anything. Planning reads only
/// what it needs, so the untagged children of indexes are read here (a GET
/// each; what is not read counts as unread). Only plans that delete pay
/// for it, and only a quarter of what is left of the time budget, so a
/// plan is never handed over late nor a preview answered late. `None`
/// when the job was cancelled meanwhile.
async fn reclaim(
    ctx: &JobContext,
    client: &Client,
    args: &TagCleanupArgs,
    plan: &Plan,
    mut graph: Inventory,
    deadline: Instant,
) -> Option<Reclaim> {
    if plan.deleted_digests() == 0 {
        return Some(Reclaim::default());
    }
    let reader = RepositoryReader::new(client.clone(), args.repository.clone());
    let until = Instant::now() + deadline.saturating_duration_since(Instant::now()) / 4;
    tokio::select! {
        () = reader.read_blobs(&mut graph, INSPECT_CONCURRENCY) => {}
        () = ctx.cancelled() => return None,
        () = tokio::time::sleep_until(until) => {}
    }
    let reclaim = regsweep_policy::reclaimable(plan, &graph);
    ctx.log(format!(
        "frees up to {} bytes in {} blobs{}",
        reclaim.bytes,
        reclaim.blobs,
        match reclaim.unread_manifests {
            0 => String::new(),
            n => format!(" ({n} manifests could not be read)"),
        }
    ));
    if !args.preview {
        let run = if args.dry_run { "dry_run" } else { "live" };
        metrics::counter!("regsweep_worker_reclaimable_bytes_total",
            "registry" => args.registry.clone(), "run" => run)
        .increment(reclaim.bytes);
    }
    Some(reclaim)
}

/// Lists and reads the repository within the time budget.
async fn read(
    ctx: &JobContext,
    client: &Client,
    args: &TagCleanupArgs,
    deadline: Instant,
) -> Result<Inventory, Stopped> {
    let listed = tokio::select! {
        tags = client.list_tags(&args.repository) => tags,
        () = ctx.cancelled() => return Err(Stopped::Cancelled),
        () = tokio::time::sleep_until(deadline) => return Err(Stopped::OutOfTime { evaluated: 0 }),
    };
    let names = match listed {
        Ok(tags) => tags,
        Err(regsweep_registry::Error::NotFound(_)) => {
            ctx.log(format!("repository {} does not exist (any more)", args.repository));
            Vec::new()
        }
        Err(e) => {
            let e = ServiceError::Registry(e);
            return Err(failed(e.to_string(), e.is_retryable()));
        }
    };
    ctx.log(format!("{} tags in {}", names.len(), args.repository));
    read_tags(ctx, client.clone(), &args.repository, names, deadline).await
}

async fn read_tags(
    ctx: &JobContext,
    client: Client,
    repository: &str,
    names: Vec<String>,
    deadline: Instant,
) -> Result<Inventory, Stopped> {
    let reader = RepositoryReader::new(client, repository);
    let total = names.len().max(1) as f32;
    let mut read = Vec::with_capacity(names.len());
    let mut done = 0;
    {
        let mut reads = futures::stream::iter(names)
            .map(|tag| {
                let reader = &reader;
                async move {
                    let result = reader.read_tag(&tag).await;
                    (tag, result)
                }
            })
            .buffer_unordered(INSPECT_CONCURRENCY);
        loop {
            let next = tokio::select! {
                next = reads.next() => next,
                () = ctx.cancelled() => return Err(Stopped::Cancelled),
                () = tokio::time::sleep_until(deadline) => {
                    return Err(Stopped::OutOfTime { evaluated: done });
                }
            };
            let Some((tag, result)) = next else { break };
            done += 1;
            match result {
                Ok(Some(input)) => read.push(Ok(input)),
                // Untagged between listing and reading: nothing to decide.
                Ok(None) => {}
                Err(e) => {
                    ctx.log(format!("cannot read tag {tag}: {e}"));
                    read.push(Err((tag, e.to_string())));
                }
            }
            ctx.set_progress(done as f32 / total);
        }
    }
    tokio::select! {
        inventory = reader.finish(read) => Ok(inventory),
        () = ctx.cancelled() => Err(Stopped::Cancelled),
        () = tokio::time::sleep_until(deadline) => Err(Stopped::OutOfTime { evaluated: done }),
    }
}

/// A registry that refuses manifest deletes (405 or 400 `UNSUPPORTED`)
/// fails the cleanup at once, with that reason, before anything is
/// submitted: its plan would only fail deletion by deletion.
async fn deletes_allowed(client: &Client, repository: &str) -> Result<(), Outcome> {
    match client.deletes_allowed(repository).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(Outcome::Failed {
            error: "the registry does not delete manifests (it answers UNSUPPORTED): \
                    nothing was submitted"
                .into(),
            retryable: false,
        }),
        Err(e) => {
            let e = ServiceError::Registry(e);
            Err(Outcome::Failed { error: e.to_string(), retryable: e.is_retryable() })
        }
    }
}

fn failed(error: String, retryable: bool) -> Stopped {
    Stopped::Failed(Outcome::Failed { error, retryable })
}

/// The fields of a result that say which cleanup it is.
fn identity(args: &TagCleanupArgs) -> TagCleanupResult {
    TagCleanupResult {
        registry: args.registry.clone(),
        repository: args.repository.clone(),
        repository_id: args.repository_id,
        policy: args.policy.clone(),
        dry_run: args.dry_run,
        preview: args.preview,
        ..TagCleanupResult::default()
    }
}

fn result(
    args: &TagCleanupArgs,
    plan: Plan,
    evaluated: usize,
    elapsed: Duration,
    deletions: Vec<i64>,
) -> TagCleanupResult {
    let planned_tags = plan.deleted_tags() as u64;
    let submitted = !deletions.is_empty();
    TagCleanupResult {
        outcome: CleanupOutcome::Complete,
        tags_evaluated: evaluated as u64,
        elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        planned_tags,
        planned_digests: plan.deleted_digests() as u64,
        // A dry run reports what it would have deleted; a real run hands
        // its plan to the scrubber, which counts deletions as it goes.
        deleted_count: if args.dry_run && plan.blocked.is_none() { planned_tags } else { 0 },
        submitted_tags: if submitted { planned_tags } else { 0 },
        deletions,
        blocked: plan.blocked,
        tags: plan.decisions,
        images: plan.images,
        ..identity(args)
    }
}

fn result_json(result: &TagCleanupResult) -> serde_json::Value {
    // Plain data: serializing it cannot fail.
    serde_json::to_value(result).unwrap_or_default()
}

/// Hands the plan to the scrubber; returns the deletion ids.
async fn submit(ctx: &JobContext, args: &TagCleanupArgs, plan: &Plan) -> Result<Vec<i64>, Outcome> {
    let Some(mut scrubber) = ctx.services().scrubber() else {
        return Err(Outcome::Failed {
            error: "no scrubber configured (--scrubber): a cleanup that deletes cannot run here"
                .into(),
            retryable: false,
        });
    };
    let mut ids = Vec::with_capacity(plan.images.len());
    // Every part carries the whole plan's size: the scrubber holds a plan
    // that deletes too much of the repository, whichever part it sees.
    let size = v1::PlanSize::from(&PlanSize::of(plan));
    let images = plan.image_deletions();
    for chunk in images.chunks(SUBMIT_CHUNK) {
        // Never hand over a plan once another attempt may be making its
        // own (the scrubber also asks the scheduler whose attempt it is).
        if !ctx.still_mine() {
            ctx.log("the scheduler stopped vouching for this attempt: plan not submitted");
            return Err(Outcome::Cancelled);
        }
        let request = v1::SubmitDeletionsRequest {
            job_id: ctx.job_id(),
            attempt: ctx.attempt(),
            registry: args.registry.clone(),
            repository: args.repository.clone(),
            images: chunk.to_vec(),
            size: Some(size),
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

fn log_plan(ctx: &JobContext, plan: &Plan) {
    let deletions = plan.decisions.iter().filter(|d| d.action == Action::Delete);
    for decision in deletions.take(MAX_LOGGED_DELETIONS) {
        ctx.log(format!(
            "delete {} ({}, {:?})",
            decision.tag,
            decision.digest.as_deref().unwrap_or("unresolved"),
            decision.rule
        ));
    }
    if let Some(blocked) = &plan.blocked {
        ctx.log(format!("nothing will be deleted: {blocked}"));
    }
}
