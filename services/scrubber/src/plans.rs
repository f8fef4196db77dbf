//! What the scrubber asks the scheduler about plans: whether a submitted
//! plan is the current attempt of a real cleanup under its policy as it
//! stands, and, right before each deletion runs, whether that policy still
//! stands and whether anything it would delete has since been protected
//! or marked in use. The scheduler owns jobs, policies and protection; the
//! scrubber trusts no plan it has not vouched for.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use regsweep_common::grpc;
use regsweep_policy::Protection;
use regsweep_proto::v1::{
    self, policy_service_client::PolicyServiceClient,
    registry_service_client::RegistryServiceClient,
};
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::error::ApiError;
use crate::store::{DeletionRecord, PlanPolicy};

/// How long a policy's standing is trusted. A policy switched to a dry run
/// stops its deletions within this (plus the ones already at the registry).
const STANDING_TTL: Duration = Duration::from_secs(1);

/// A plan the scheduler vouched for.
#[derive(Clone, Debug)]
pub struct Vouched {
    pub policy: PlanPolicy,
    pub max_delete_fraction: f64,
}

/// Whether a deletion's policy still stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    Current,
    /// It does not; nothing of its plan may be deleted.
    Gone(String),
}

/// A repository's protection as last read, and when it was asked for.
type Guard = (Arc<Protection>, Instant);

pub struct Plans {
    client: PolicyServiceClient<grpc::Client>,
    registries: RegistryServiceClient<grpc::Client>,
    standings: Mutex<HashMap<(PlanPolicy, String), (Standing, Instant)>>,
    /// By (registry, repository); trusted for [`STANDING_TTL`] like a
    /// standing, so a mark is honoured within a second of being made.
    guards: Mutex<HashMap<(String, String), Guard>>,
}

impl Plans {
    pub fn new(scheduler: Channel) -> Self {
        Self {
            client: PolicyServiceClient::new(grpc::client(scheduler.clone())),
            registries: RegistryServiceClient::new(grpc::client(scheduler)),
            standings: Mutex::default(),
            guards: Mutex::default(),
        }
    }

    /// Why some of `d` may no longer be deleted: its repository, a tag or
    /// a manifest it would delete is protected, or its digest is marked in
    /// use. `None` when nothing is; an error when the scheduler cannot say.
    pub async fn shielded(&self, d: &DeletionRecord) -> Result<Option<String>, tonic::Status> {
        let protection = self.protection(&d.registry, &d.repository).await?;
        if let Some(shield) = protection.repository() {
            return Ok(Some(shield.to_string()));
        }
        let linked = d.before.iter().chain(&d.after);
        let tags = d.tags.iter().chain(linked.clone().flat_map(|l| &l.tags));
        for tag in tags {
            if let Some(shield) = protection.tag(tag) {
                return Ok(Some(format!("{tag}: {shield}")));
            }
        }
        // The image's own digest is checked even when only its tags go:
        // the planner never untags an image in use.
        let digests = std::iter::once(&d.digest).chain(linked.map(|l| &l.digest));
        for digest in digests {
            if let Some(shield) = protection.digest(digest) {
                return Ok(Some(format!("{digest}: {shield}")));
            }
        }
        Ok(None)
    }

    async fn protection(
        &self,
        registry: &str,
        repository: &str,
    ) -> Result<Arc<Protection>, tonic::Status> {
        let key = (registry.to_string(), repository.to_string());
        let cached = self.guards.lock().unwrap_or_else(PoisonError::into_inner).get(&key).cloned();
        if let Some((protection, at)) = cached
            && at.elapsed() < STANDING_TTL
        {
            return Ok(protection);
        }
        let asked_at = Instant::now();
        let ask = v1::GetProtectionRequest { registry: key.0.clone(), repository: key.1.clone() };
        let protection = match self.registries.clone().get_protection(ask).await {
            Ok(answer) => regsweep_policy::protection_from_proto(repository, answer.into_inner())
                .map_err(tonic::Status::internal)?,
            // A scheduler too old for protection has none.
            Err(s) if s.code() == tonic::Code::Unimplemented => Protection::none(),
            Err(s) => return Err(s),
        };
        let protection = Arc::new(protection);
        let mut guards = self.guards.lock().unwrap_or_else(PoisonError::into_inner);
        // Forget what no deletion asked about lately, so the map stays small.
        guards.retain(|_, (_, at)| at.elapsed() < STANDING_TTL * 60);
        guards.insert(key, (protection.clone(), asked_at));
        Ok(protection)
    }

    /// Asks the scheduler whether `req`'s plan may be accepted.
    pub async fn vouch(&self, req: &v1::SubmitDeletionsRequest) -> Result<Vouched, ApiError> {
        let ask = v1::CheckPlanRequest {
            job_id: req.job_id,
            attempt: req.attempt,
            registry: req.registry.clone(),
            repository: req.repository.clone(),
        };
        let answer = self
            .client
            .clone()
            .check_plan(ask)
            .await
            .map_err(|s| ApiError::Unavailable(format!("cannot check the plan: {}", s.message())))?
            .into_inner();
        match (answer.accepted, answer.policy) {
            (true, Some(p)) => Ok(Vouched {
                max_delete_fraction: p.max_delete_fraction,
                policy: PlanPolicy { name: p.name, id: p.id, revision: p.revision },
            }),
            (_, _) if answer.reason.is_empty() => {
                Err(ApiError::Refused("plan refused: the scheduler gave no policy".into()))
            }
            (_, _) => Err(ApiError::Refused(format!("plan refused: {}", answer.reason))),
        }
    }

    /// Whether `policy` still stands and governs `repository`, from a
    /// cache of [`STANDING_TTL`]; an error when the scheduler cannot say.
    pub async fn standing(
        &self,
        policy: &PlanPolicy,
        repository: &str,
    ) -> Result<Standing, tonic::Status> {
        if policy.name.is_empty() {
            return Ok(Standing::Current);
        }
        let key = (policy.clone(), repository.to_string());
        if let Some((standing, at)) = self.cached(&key)
            && at.elapsed() < STANDING_TTL
        {
            return Ok(standing);
        }
        let asked_at = Instant::now();
        let ask = v1::CheckPoliciesRequest {
            policies: vec![v1::PlanPolicy {
                name: policy.name.clone(),
                id: policy.id,
                revision: policy.revision.clone(),
                max_delete_fraction: 0.0,
                repository: repository.to_string(),
            }],
        };
        let answer = self.client.clone().check_policies(ask).await?.into_inner();
        let standing = match answer.standings.first() {
            Some(s) if s.current => Standing::Current,
            Some(s) => Standing::Gone(s.reason.clone()),
            None => return Err(tonic::Status::internal("the scheduler answered no policy")),
        };
        self.standings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, (standing.clone(), asked_at));
        Ok(standing)
    }

    fn cached(&self, key: &(PlanPolicy, String)) -> Option<(Standing, Instant)> {
        self.standings.lock().unwrap_or_else(PoisonError::into_inner).get(key).cloned()
    }
}
