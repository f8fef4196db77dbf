//! What the scrubber asks the scheduler about plans: whether a submitted
//! plan is the current attempt of a real cleanup under its policy as it
//! stands, and, right before each deletion runs, whether that policy still
//! stands. The scheduler owns jobs and policies; the scrubber trusts no
//! plan it has not vouched for.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use regsweep_common::grpc;
use regsweep_proto::v1::{self, policy_service_client::PolicyServiceClient};
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::error::ApiError;
use crate::store::PlanPolicy;

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

pub struct Plans {
    client: PolicyServiceClient<grpc::Client>,
    standings: Mutex<HashMap<PlanPolicy, (Standing, Instant)>>,
}

impl Plans {
    pub fn new(scheduler: Channel) -> Self {
        Self {
            client: PolicyServiceClient::new(grpc::client(scheduler)),
            standings: Mutex::default(),
        }
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

    /// Whether `policy` still stands, from a cache of [`STANDING_TTL`];
    /// an error when the scheduler cannot say.
    pub async fn standing(&self, policy: &PlanPolicy) -> Result<Standing, tonic::Status> {
        if policy.name.is_empty() {
            return Ok(Standing::Current);
        }
        if let Some((standing, at)) = self.cached(policy)
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
            .insert(policy.clone(), (standing.clone(), asked_at));
        Ok(standing)
    }

    fn cached(&self, key: &PlanPolicy) -> Option<(Standing, Instant)> {
        self.standings.lock().unwrap_or_else(PoisonError::into_inner).get(key).cloned()
    }
}
