//! The scrubber's questions about plans: is this plan really the current
//! attempt of a cleanup under a policy as it stands, and do the policies of
//! deletions about to run still stand. A plan the scheduler did not hand
//! out, or one whose policy has since changed, deletes nothing.

use std::collections::HashMap;

use regsweep_common::FieldViolations;
use regsweep_policy::{Selector, TagCleanupArgs, max_delete_fraction};
use regsweep_proto::v1;

use crate::error::ApiError;
use crate::store::JobStore;
use crate::store::catalog::{CatalogStore, Counted, PolicyRecord};

/// The job kind whose plans a scrubber accepts.
const TAG_CLEANUP: &str = "tag_cleanup";

/// Most policies in one `CheckPolicies`.
pub const MAX_CHECKED_POLICIES: usize = 1_000;

/// Whether `policy` still stands as a plan saw it: the same policy (id),
/// enabled, live, at `revision`; why not otherwise.
pub fn standing(policy: &PolicyRecord, id: i64, revision: &str) -> Result<(), String> {
    if policy.id != id {
        return Err(format!("policy {:?} was deleted and created again", policy.name));
    }
    if !policy.enabled {
        return Err(format!("policy {:?} is disabled", policy.name));
    }
    if policy.dry_run {
        return Err(format!("policy {:?} is now a dry run", policy.name));
    }
    let now = policy.revision();
    if now != revision {
        return Err(format!("policy {:?} changed (revision {revision}, now {now})", policy.name));
    }
    Ok(())
}

fn plan_policy(policy: &PolicyRecord) -> v1::PlanPolicy {
    v1::PlanPolicy {
        name: policy.name.clone(),
        id: policy.id,
        revision: policy.revision(),
        max_delete_fraction: max_delete_fraction(policy.max_delete_fraction),
        ..Default::default()
    }
}

fn validate_plan_request(req: &v1::CheckPlanRequest) -> Result<(), ApiError> {
    let mut v = FieldViolations::new();
    if req.job_id <= 0 {
        v.add("job_id", "must be a job id");
    }
    if req.attempt == 0 {
        v.add("attempt", "must be at least 1");
    }
    if req.registry.is_empty() {
        v.add("registry", "is required");
    }
    if let Err(reason) = regsweep_policy::validate_repository_name(&req.repository) {
        v.add("repository", reason);
    }
    Ok(v.into_result()?)
}

/// Answers `CheckPlan`: accepted with the plan's policy, or why not.
pub async fn check_plan(
    catalog: &dyn CatalogStore,
    jobs: &dyn JobStore,
    req: &v1::CheckPlanRequest,
) -> Result<v1::CheckPlanResponse, ApiError> {
    validate_plan_request(req)?;
    let verdict = match jobs.get_job(req.job_id).await? {
        None => Err(format!("no job {}", req.job_id)),
        Some(job) => match plan_of(&job, req) {
            Err(reason) => Err(reason),
            Ok(args) => policy_of(catalog, &args).await?,
        },
    };
    Ok(match verdict {
        Ok(policy) => {
            v1::CheckPlanResponse { accepted: true, policy: Some(policy), ..Default::default() }
        }
        Err(reason) => v1::CheckPlanResponse { accepted: false, reason, policy: None },
    })
}

/// The job's arguments when it is the running attempt of a live cleanup of
/// the plan's repository.
fn plan_of(
    job: &crate::store::JobRecord,
    req: &v1::CheckPlanRequest,
) -> Result<TagCleanupArgs, String> {
    let id = job.id;
    if job.kind != TAG_CLEANUP {
        return Err(format!("job {id} is a {} job, not {TAG_CLEANUP}", job.kind));
    }
    let args: TagCleanupArgs = serde_json::from_value(job.args.clone())
        .map_err(|e| format!("job {id} has unreadable arguments: {e}"))?;
    if (args.registry.as_str(), args.repository.as_str()) != (&req.registry, &req.repository) {
        return Err(format!(
            "job {id} cleans {}/{}, not {}/{}",
            args.registry, args.repository, req.registry, req.repository
        ));
    }
    if job.attempt != req.attempt {
        return Err(format!(
            "attempt {} of job {id} is not its current one ({})",
            req.attempt, job.attempt
        ));
    }
    if job.status != v1::JobStatus::Running {
        return Err(format!("job {id} is not running"));
    }
    if args.dry_run || args.preview {
        return Err(format!("job {id} is a dry run"));
    }
    Ok(args)
}

/// The policy the job's plan was made under, when it still stands as the
/// job saw it.
async fn policy_of(
    catalog: &dyn CatalogStore,
    args: &TagCleanupArgs,
) -> Result<Result<v1::PlanPolicy, String>, ApiError> {
    if args.policy.is_empty() {
        // A cleanup created by hand carries its own rules.
        return Ok(Ok(v1::PlanPolicy {
            revision: args.rules.revision(""),
            max_delete_fraction: max_delete_fraction(0.0),
            ..Default::default()
        }));
    }
    let Some(policy) = catalog.get_policy(&args.policy, Counted::No).await? else {
        return Ok(Err(format!("policy {:?} no longer exists", args.policy)));
    };
    if policy.registry != args.registry {
        return Ok(Err(format!("policy {:?} is not of registry {:?}", policy.name, args.registry)));
    }
    let covers =
        Selector::parse(&policy.repository_selector).is_ok_and(|s| s.is_match(&args.repository));
    if !covers {
        return Ok(Err(format!("policy {:?} no longer covers {}", policy.name, args.repository)));
    }
    if let Err(reason) = governs(catalog, &policy, &args.repository).await? {
        return Ok(Err(reason));
    }
    // The job's rules, under the policy's selector now: the same revision
    // exactly when the policy's rules did not change since the job began.
    let revision = args.rules.revision(&policy.repository_selector);
    Ok(standing(&policy, policy.id, &revision).map(|()| plan_policy(&policy)))
}

/// Whether `policy` still governs `repository`: a policy of higher
/// priority that took the repository over decides its deletions now, so a
/// plan made under the old one must not run.
async fn governs(
    catalog: &dyn CatalogStore,
    policy: &PolicyRecord,
    repository: &str,
) -> Result<Result<(), String>, ApiError> {
    let neighbours = catalog.list_policies(Some(policy.registry_id), Counted::No).await?;
    Ok(match super::policies::precedence(&neighbours).governing(repository) {
        Some(c) if c.id == policy.id => Ok(()),
        Some(c) => {
            Err(format!("policy {:?} now governs {repository}, not {:?}", c.name, policy.name))
        }
        None => Err(format!("policy {:?} no longer governs {repository}", policy.name)),
    })
}

/// Answers `CheckPolicies`, one standing per policy asked.
pub async fn check_policies(
    catalog: &dyn CatalogStore,
    req: &v1::CheckPoliciesRequest,
) -> Result<v1::CheckPoliciesResponse, ApiError> {
    if req.policies.len() > MAX_CHECKED_POLICIES {
        return Err(FieldViolations::single(
            "policies",
            format!("at most {MAX_CHECKED_POLICIES} policies"),
        )
        .into());
    }
    let mut found: HashMap<&str, Option<PolicyRecord>> = HashMap::new();
    for asked in req.policies.iter().filter(|p| !p.name.is_empty()) {
        if !found.contains_key(asked.name.as_str()) {
            found.insert(&asked.name, catalog.get_policy(&asked.name, Counted::No).await?);
        }
    }
    let mut standings = Vec::with_capacity(req.policies.len());
    for asked in &req.policies {
        let mut verdict = match found.get(asked.name.as_str()) {
            // A cleanup created by hand has no policy to change.
            None => Ok(()),
            Some(None) => Err(format!("policy {:?} was deleted", asked.name)),
            Some(Some(policy)) => standing(policy, asked.id, &asked.revision),
        };
        if let (Ok(()), Some(Some(policy))) = (&verdict, found.get(asked.name.as_str()))
            && !asked.repository.is_empty()
        {
            verdict = governs(catalog, policy, &asked.repository).await?;
        }
        standings.push(v1::PolicyStanding {
            policy: Some(asked.clone()),
            current: verdict.is_ok(),
            reason: verdict.err().unwrap_or_default(),
        });
    }
    Ok(v1::CheckPoliciesResponse { standings })
}
