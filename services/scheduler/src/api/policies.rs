//! `regsweep.v1.PolicyService`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use regsweep_common::FieldViolations;
use regsweep_policy::{Cadence, Candidate, Precedence, RuleSpec, Selector, TagCleanupArgs};
use regsweep_proto::duration_to_std;
use regsweep_proto::v1::{self, policy_service_server::PolicyService};
use tonic::{Request, Response, Status};

use super::etag;
use super::mask::UpdateMask;
use super::{plans, preview};
use crate::error::ApiError;
use crate::store::JobStore;
use crate::store::catalog::{
    CatalogStore, Counted, NewPolicy, PolicyMatcher, PolicyRecord, RegistryRecord,
    attachments_from_proto,
};

const UPDATABLE: &[&str] = &[
    "repository_selector",
    "cadence",
    "keep_n",
    "older_than",
    "name_regex_delete",
    "name_regex_keep",
    "attachments",
    "dry_run",
    "disabled",
    "max_delete_fraction",
    "age_source",
    "rules",
    "priority",
];

/// Serves cleanup policies.
#[derive(Clone)]
pub struct PolicyApi {
    catalog: Arc<dyn CatalogStore>,
    jobs: Arc<dyn JobStore>,
    preview_timeout: Duration,
}

impl PolicyApi {
    pub fn new(
        catalog: Arc<dyn CatalogStore>,
        jobs: Arc<dyn JobStore>,
        preview_timeout: Duration,
    ) -> Self {
        Self { catalog, jobs, preview_timeout }
    }

    /// A policy as shown, with what stands in the way of its cleanups.
    async fn shown(&self, policy: &PolicyRecord) -> Result<v1::Policy, ApiError> {
        let registry = self.catalog.get_registry(&policy.registry).await?;
        let mut shown = with_warnings(policy, registry.as_slice());
        let neighbours = self.catalog.list_policies(Some(policy.registry_id), Counted::No).await?;
        shown.warnings.extend(shared_priority_warnings(&neighbours).remove(&policy.name));
        Ok(shown)
    }

    async fn find(&self, name: &str) -> Result<PolicyRecord, ApiError> {
        self.catalog.get_policy(name, Counted::Yes).await?.ok_or_else(|| not_found(name))
    }

    /// Reassigns the registry's repositories after its policies changed.
    async fn reassign(&self, registry_id: i64) -> Result<(), ApiError> {
        let matcher = matcher(self.catalog.as_ref(), registry_id).await?;
        let changed = self.catalog.reassign_repositories(registry_id, matcher.as_ref()).await?;
        tracing::info!(registry_id, changed, "repositories reassigned");
        Ok(())
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("policy {name:?} not found"))
}

/// The policy of a repository of `registry_id`: of the policies whose
/// selectors cover its name, the one of highest priority.
pub async fn matcher(
    catalog: &dyn CatalogStore,
    registry_id: i64,
) -> Result<Box<PolicyMatcher>, ApiError> {
    let precedence = precedence(&catalog.list_policies(Some(registry_id), Counted::No).await?);
    Ok(Box::new(move |name: &str| precedence.governing(name).map(|c| c.id)))
}

/// `policies` (of one registry) in the order they claim repositories.
pub fn precedence(policies: &[PolicyRecord]) -> Precedence {
    Precedence::new(policies.iter().filter_map(candidate).collect())
}

fn candidate(p: &PolicyRecord) -> Option<Candidate> {
    // Stored selectors were valid when written; one that no longer parses
    // selects nothing rather than everything.
    let selector = Selector::parse(&p.repository_selector).ok()?;
    Some(Candidate { id: p.id, name: p.name.clone(), priority: p.priority, selector })
}

impl PolicyApi {
    /// Refuses `policy` when a policy of its registry at its priority can
    /// select a repository it selects; `id` is its own id when it exists.
    async fn check_precedence(&self, policy: &NewPolicy, id: i64) -> Result<(), ApiError> {
        let others = self.catalog.list_policies(Some(policy.registry_id), Counted::No).await?;
        let selector = Selector::parse(&policy.repository_selector)
            .map_err(|e| FieldViolations::single("policy.repository_selector", e))?;
        let me = Candidate { id, name: policy.name.clone(), priority: policy.priority, selector };
        let conflicts = precedence(&others).conflicts(&me);
        let Some(first) = conflicts.first() else {
            return Ok(());
        };
        let mut v = FieldViolations::new();
        v.add("policy.priority", first.to_string());
        for more in &conflicts[1..] {
            v.add("policy.priority", more.to_string());
        }
        Err(v.into())
    }
}

/// Checks a policy; `registry_id` is its registry's id when that exists.
pub fn validate(p: &v1::Policy, registry_id: Option<i64>) -> Result<NewPolicy, FieldViolations> {
    let mut v = FieldViolations::new();
    super::registries::validate_name("policy.name", &p.name, &mut v);
    if p.registry.is_empty() {
        v.add("policy.registry", "is required");
    } else if registry_id.is_none() {
        v.add("policy.registry", format!("no registry named {:?}", p.registry));
    }
    let older_than_seconds = match &p.older_than {
        None => 0,
        Some(d) => match duration_to_std(d) {
            Some(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            None => {
                v.add("policy.older_than", "must not be negative");
                0
            }
        },
    };
    let spec = RuleSpec {
        keep_n: i64::from(p.keep_n),
        older_than_seconds,
        name_regex_delete: p.name_regex_delete.clone(),
        name_regex_keep: p.name_regex_keep.clone(),
        attachments: attachments_from_proto(p.attachments()),
        age_source: p.age_source().into(),
        rules: p.rules.iter().map(Into::into).collect(),
    };
    validate_enums(p, &mut v);
    validate_ranges(p, &mut v);
    for violation in
        regsweep_policy::validate_policy_fields(&spec, &p.repository_selector, &p.cadence)
    {
        v.add(format!("policy.{}", violation.field), violation.description);
    }
    v.into_result()?;
    let cadence =
        Cadence::parse(&p.cadence).map_err(|e| FieldViolations::single("policy.cadence", e))?;
    let next_run_at = cadence
        .next_after(Utc::now())
        .ok_or_else(|| FieldViolations::single("policy.cadence", "never fires"))?;
    Ok(NewPolicy {
        name: p.name.clone(),
        registry_id: registry_id.unwrap_or_default(),
        repository_selector: p.repository_selector.clone(),
        cadence: cadence.as_str(),
        keep_n: p.keep_n,
        older_than_seconds,
        name_regex_delete: p.name_regex_delete.clone(),
        name_regex_keep: p.name_regex_keep.clone(),
        attachments: spec.attachments,
        age_source: spec.age_source,
        rules: spec.rules,
        priority: p.priority,
        max_delete_fraction: p.max_delete_fraction,
        dry_run: p.dry_run,
        enabled: !p.disabled,
        next_run_at,
        keep_schedule: false,
        expected_updated_at: None,
    })
}

/// Enum fields a client may have set to a value this version does not
/// know, and rule states this registry cannot serve.
fn validate_enums(p: &v1::Policy, v: &mut FieldViolations) {
    for (i, rule) in p.rules.iter().enumerate() {
        if v1::TagState::try_from(rule.tag_state).is_err() {
            v.add(format!("policy.rules[{i}].tag_state"), "unknown value");
        } else if rule.tag_state() != v1::TagState::Unspecified
            && rule.tag_state() != v1::TagState::Tagged
        {
            // Never guess what a registry holds untagged.
            v.add(
                format!("policy.rules[{i}].tag_state"),
                "untagged manifests cannot be listed in this registry (plain Distribution has \
                 no API that lists them)",
            );
        }
        if v1::VersionGroup::try_from(rule.per).is_err() {
            v.add(format!("policy.rules[{i}].per"), "unknown value");
        }
    }
    if v1::AgeSource::try_from(p.age_source).is_err() {
        v.add("policy.age_source", "unknown value");
    }
    if v1::AttachmentPolicy::try_from(p.attachments).is_err() {
        v.add("policy.attachments", "unknown value");
    }
}

/// Numbers that must fall in a range.
fn validate_ranges(p: &v1::Policy, v: &mut FieldViolations) {
    if !regsweep_policy::PRIORITY_RANGE.contains(&p.priority) {
        let (low, high) =
            (regsweep_policy::PRIORITY_RANGE.start(), regsweep_policy::PRIORITY_RANGE.end());
        v.add("policy.priority", format!("must be from {low} to {high}"));
    }
    if !(0.0..=1.0).contains(&p.max_delete_fraction) {
        v.add("policy.max_delete_fraction", "must be from 0 (the default, 0.5) to 1 (no guard)");
    }
}

fn merge(
    current: &PolicyRecord,
    update: &v1::Policy,
    mask: &[String],
) -> Result<v1::Policy, FieldViolations> {
    let mask = UpdateMask::parse(mask, UPDATABLE)?;
    let has = |f: &str| mask.has(f);
    let mut merged = current.to_proto();
    if has("repository_selector") {
        merged.repository_selector.clone_from(&update.repository_selector);
    }
    if has("cadence") {
        merged.cadence.clone_from(&update.cadence);
    }
    if has("keep_n") {
        merged.keep_n = update.keep_n;
    }
    if has("older_than") {
        merged.older_than = update.older_than;
    }
    if has("name_regex_delete") {
        merged.name_regex_delete.clone_from(&update.name_regex_delete);
    }
    if has("name_regex_keep") {
        merged.name_regex_keep.clone_from(&update.name_regex_keep);
    }
    if has("attachments") {
        merged.attachments = update.attachments;
    }
    if has("dry_run") {
        merged.dry_run = update.dry_run;
    }
    if has("disabled") {
        merged.disabled = update.disabled;
    }
    if has("age_source") {
        merged.age_source = update.age_source;
    }
    if has("max_delete_fraction") {
        merged.max_delete_fraction = update.max_delete_fraction;
    }
    if has("rules") {
        merged.rules.clone_from(&update.rules);
    }
    if has("priority") {
        merged.priority = update.priority;
    }
    Ok(merged)
}

impl PolicyApi {
    async fn set_enabled(&self, name: &str, enabled: bool) -> Result<PolicyRecord, ApiError> {
        let written = etag::retried("", || async {
            let current = self.find(name).await?;
            if current.enabled == enabled {
                return Ok(Some(current));
            }
            let mut proto = current.to_proto();
            proto.disabled = !enabled;
            let mut policy = validate(&proto, Some(current.registry_id))?;
            policy.keep_schedule = true;
            policy.expected_updated_at = Some(current.updated_at);
            self.catalog.update_policy(policy).await.map_err(ApiError::from)
        })
        .await?;
        let Some(updated) = written else {
            self.find(name).await?;
            return Err(etag::changed("policy", name));
        };
        tracing::info!(policy = %name, enabled, "policy {}", if enabled { "enabled" } else { "disabled" });
        Ok(updated)
    }

    /// One read-modify-write of `update_policy`: `None` when it lost to
    /// another write.
    async fn update_once(
        &self,
        req: &v1::UpdatePolicyRequest,
    ) -> Result<Option<Updated>, ApiError> {
        let update = req.policy.clone().unwrap_or_default();
        let current = self.find(&update.name).await?;
        etag::check("policy", &update.name, &req.etag, current.updated_at)?;
        let merged = merge(&current, &update, &req.update_mask)?;
        let mut policy = validate(&merged, Some(current.registry_id))?;
        policy.expected_updated_at = Some(current.updated_at);
        // The same cadence keeps the schedule as it stands when written.
        policy.keep_schedule = policy.cadence == current.cadence;
        let claims_changed = policy.repository_selector != current.repository_selector
            || policy.priority != current.priority;
        if claims_changed {
            self.check_precedence(&policy, current.id).await?;
        }
        if req.validate_only {
            return Ok(Some(Updated::Checked(merged)));
        }
        let written = self.catalog.update_policy(policy).await?;
        Ok(written.map(|_| Updated::Written { registry_id: current.registry_id, claims_changed }))
    }
}

/// What `update_policy` did.
enum Updated {
    /// Only checked (`validate_only`): the policy as it would be.
    Checked(v1::Policy),
    Written {
        registry_id: i64,
        claims_changed: bool,
    },
}

#[tonic::async_trait]
impl PolicyService for PolicyApi {
    async fn create_policy(
        &self,
        request: Request<v1::CreatePolicyRequest>,
    ) -> Result<Response<v1::CreatePolicyResponse>, Status> {
        let request = request.into_inner();
        let mut proto = request.policy.unwrap_or_default();
        // Live only when asked for by name: a policy deletes after someone
        // decided it should, never because a field was left out.
        proto.dry_run = !request.live;
        let registry = if proto.registry.is_empty() {
            None
        } else {
            self.catalog.get_registry(&proto.registry).await.map_err(ApiError::from)?
        };
        let policy = validate(&proto, registry.map(|r| r.id)).map_err(ApiError::from)?;
        // Before the overlap check, which would find the policy's own
        // stored version in its way.
        if self
            .catalog
            .get_policy(&proto.name, Counted::No)
            .await
            .map_err(ApiError::from)?
            .is_some()
        {
            return Err(Status::already_exists(format!("policy {:?} already exists", proto.name)));
        }
        self.check_precedence(&policy, 0).await?;
        if request.validate_only {
            return Ok(Response::new(v1::CreatePolicyResponse { policy: Some(proto) }));
        }
        let registry_id = policy.registry_id;
        let Some(created) = self.catalog.create_policy(policy).await.map_err(ApiError::from)?
        else {
            return Err(Status::already_exists(format!("policy {:?} already exists", proto.name)));
        };
        self.reassign(registry_id).await?;
        let created = self.find(&created.name).await?;
        tracing::info!(policy = %created.name, registry = %created.registry, cadence = %created.cadence,
            repositories = created.repository_count, dry_run = created.dry_run, "policy created");
        Ok(Response::new(v1::CreatePolicyResponse { policy: Some(self.shown(&created).await?) }))
    }

    async fn get_policy(
        &self,
        request: Request<v1::GetPolicyRequest>,
    ) -> Result<Response<v1::GetPolicyResponse>, Status> {
        let policy = self.find(&request.into_inner().name).await?;
        Ok(Response::new(v1::GetPolicyResponse { policy: Some(self.shown(&policy).await?) }))
    }

    async fn list_policies(
        &self,
        request: Request<v1::ListPoliciesRequest>,
    ) -> Result<Response<v1::ListPoliciesResponse>, Status> {
        let registry = request.into_inner().registry;
        let registry_id = if registry.is_empty() {
            None
        } else {
            let found = self.catalog.get_registry(&registry).await.map_err(ApiError::from)?;
            Some(
                found
                    .ok_or_else(|| ApiError::NotFound(format!("registry {registry:?} not found")))?
                    .id,
            )
        };
        let policies =
            self.catalog.list_policies(registry_id, Counted::Yes).await.map_err(ApiError::from)?;
        let registries = self.catalog.list_registries().await.map_err(ApiError::from)?;
        let mut shared = HashMap::new();
        for registry in &registries {
            let theirs: Vec<PolicyRecord> =
                policies.iter().filter(|p| p.registry_id == registry.id).cloned().collect();
            shared.extend(shared_priority_warnings(&theirs));
        }
        let shown = policies
            .iter()
            .map(|p| {
                let mut shown = with_warnings(p, &registries);
                shown.warnings.extend(shared.remove(&p.name));
                shown
            })
            .collect();
        Ok(Response::new(v1::ListPoliciesResponse { policies: shown }))
    }

    async fn update_policy(
        &self,
        request: Request<v1::UpdatePolicyRequest>,
    ) -> Result<Response<v1::UpdatePolicyResponse>, Status> {
        let req = request.into_inner();
        let name = req.policy.as_ref().map(|p| p.name.clone()).unwrap_or_default();
        match etag::retried(&req.etag, || self.update_once(&req)).await? {
            None => {
                self.find(&name).await?;
                Err(etag::changed("policy", &name).into())
            }
            Some(Updated::Checked(merged)) => {
                Ok(Response::new(v1::UpdatePolicyResponse { policy: Some(merged) }))
            }
            Some(Updated::Written { registry_id, claims_changed }) => {
                if claims_changed {
                    self.reassign(registry_id).await?;
                }
                let updated = self.find(&name).await?;
                tracing::info!(policy = %updated.name, "policy updated");
                let shown = self.shown(&updated).await?;
                Ok(Response::new(v1::UpdatePolicyResponse { policy: Some(shown) }))
            }
        }
    }

    async fn delete_policy(
        &self,
        request: Request<v1::DeletePolicyRequest>,
    ) -> Result<Response<v1::DeletePolicyResponse>, Status> {
        let name = request.into_inner().name;
        let current = self.find(&name).await?;
        if !self.catalog.delete_policy(&name).await.map_err(ApiError::from)? {
            return Err(not_found(&name).into());
        }
        self.reassign(current.registry_id).await?;
        tracing::info!(policy = %name, "policy deleted");
        Ok(Response::new(v1::DeletePolicyResponse {}))
    }

    async fn enable_policy(
        &self,
        request: Request<v1::EnablePolicyRequest>,
    ) -> Result<Response<v1::EnablePolicyResponse>, Status> {
        let policy = self.set_enabled(&request.into_inner().name, true).await?;
        Ok(Response::new(v1::EnablePolicyResponse { policy: Some(self.shown(&policy).await?) }))
    }

    async fn disable_policy(
        &self,
        request: Request<v1::DisablePolicyRequest>,
    ) -> Result<Response<v1::DisablePolicyResponse>, Status> {
        let policy = self.set_enabled(&request.into_inner().name, false).await?;
        Ok(Response::new(v1::DisablePolicyResponse { policy: Some(self.shown(&policy).await?) }))
    }

    async fn run_policy(
        &self,
        request: Request<v1::RunPolicyRequest>,
    ) -> Result<Response<v1::RunPolicyResponse>, Status> {
        let name = request.into_inner().name;
        let policy = self
            .catalog
            .run_policy(&name)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| not_found(&name))?;
        tracing::info!(policy = %name, "policy made due now");
        Ok(Response::new(v1::RunPolicyResponse { policy: Some(self.shown(&policy).await?) }))
    }

    async fn preview_policy(
        &self,
        request: Request<v1::PreviewPolicyRequest>,
    ) -> Result<Response<v1::PreviewPolicyResponse>, Status> {
        let req = request.into_inner();
        let mut v = FieldViolations::new();
        if req.policy.is_empty() && req.draft.is_none() {
            v.add("policy", "is required");
        }
        if let Err(reason) = regsweep_policy::validate_repository_name(&req.repository) {
            v.add("repository", reason);
        }
        v.into_result().map_err(ApiError::from)?;
        let (name, registry, rules) = match &req.draft {
            Some(draft) => {
                let found = self.catalog.get_registry(&draft.registry).await?;
                let policy = validate(draft, found.map(|r| r.id)).map_err(ApiError::from)?;
                (draft.name.clone(), draft.registry.clone(), policy.rules())
            }
            None => {
                let found = self.catalog.get_policy(&req.policy, Counted::No).await?;
                let policy = found.ok_or_else(|| not_found(&req.policy))?;
                let rules = policy.rules();
                (policy.name, policy.registry, rules)
            }
        };
        let args = TagCleanupArgs {
            rules,
            registry,
            repository: req.repository,
            repository_id: 0,
            policy: name,
            dry_run: true,
            preview: true,
            time_budget_seconds: self.preview_timeout.as_secs().max(1),
        };
        let response = preview::run(self.jobs.as_ref(), args, self.preview_timeout).await?;
        Ok(Response::new(response))
    }

    async fn check_plan(
        &self,
        request: Request<v1::CheckPlanRequest>,
    ) -> Result<Response<v1::CheckPlanResponse>, Status> {
        let req = request.into_inner();
        let answer = plans::check_plan(self.catalog.as_ref(), self.jobs.as_ref(), &req).await?;
        if !answer.accepted {
            tracing::warn!(job_id = req.job_id, attempt = req.attempt, registry = %req.registry,
                repository = %req.repository, reason = %answer.reason, "plan refused");
        }
        Ok(Response::new(answer))
    }

    async fn check_policies(
        &self,
        request: Request<v1::CheckPoliciesRequest>,
    ) -> Result<Response<v1::CheckPoliciesResponse>, Status> {
        let answer = plans::check_policies(self.catalog.as_ref(), &request.into_inner()).await?;
        Ok(Response::new(answer))
    }
}

/// `policy` as shown, warning of a registry (among `registries`) that was
/// found to refuse manifest deletes: its cleanups would fail each time.
/// A warning for each policy that shares a priority with an overlapping
/// one, keyed by the policy that loses the tie. Creates and updates refuse
/// such pairs; two concurrent writes can still race past the check.
fn shared_priority_warnings(policies: &[PolicyRecord]) -> HashMap<String, String> {
    let mut warnings = HashMap::new();
    for (loser, conflict) in precedence(policies).all_conflicts() {
        let both = conflict.witness.map(|w| format!(" (both select {w:?})")).unwrap_or_default();
        warnings.entry(loser.to_string()).or_insert(format!(
            "shares priority {} with policy {:?}{both}, which governs what both select as the \
             older; give one of them a different priority",
            conflict.priority, conflict.other
        ));
    }
    warnings
}

fn with_warnings(policy: &PolicyRecord, registries: &[RegistryRecord]) -> v1::Policy {
    let mut shown = policy.to_proto();
    let registry = registries.iter().find(|r| r.id == policy.registry_id);
    let capabilities = registry.and_then(|r| r.capabilities.as_ref());
    if let Some(c) = capabilities.filter(|c| c.manifest_deletes() == v1::Support::No) {
        let when = c
            .checked_at
            .as_ref()
            .and_then(regsweep_proto::timestamp_to_chrono)
            .map(|t| format!(" (checked {})", t.format("%Y-%m-%d %H:%M UTC")))
            .unwrap_or_default();
        shown.warnings.push(format!(
            "registry {} refuses manifest deletes{when}: its cleanups fail and delete nothing",
            policy.registry
        ));
    }
    shown
}
