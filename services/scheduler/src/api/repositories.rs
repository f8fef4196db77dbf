//! `regsweep.v1.RepositoryService`.

use std::collections::HashMap;
use std::sync::Arc;

use regsweep_common::{FieldViolations, paging};
use regsweep_policy::Precedence;
use regsweep_proto::v1::{self, CleanupStatus, repository_service_server::RepositoryService};
use tonic::{Request, Response, Status};

use super::policies::{matcher, precedence};
use crate::error::ApiError;
use crate::store::catalog::{
    CatalogStore, Counted, ReportOutcome, RepositoryFilter, RepositoryRecord,
};
use crate::store::{CreateOutcome, JobStore, NewJob};

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;
/// The highest request rate a pushback report may give.
const MAX_PUSHBACK_RATE: f64 = 1_000_000.0;

/// Most names in one catalog report.
pub const MAX_REPORT_NAMES: usize = 10_000;

/// Serves repositories and the catalog sync.
#[derive(Clone)]
pub struct RepositoryApi {
    catalog: Arc<dyn CatalogStore>,
    jobs: Arc<dyn JobStore>,
    /// Cleanups that may run at once, as configured.
    cleanup_capacity: u32,
}

impl RepositoryApi {
    pub fn new(
        catalog: Arc<dyn CatalogStore>,
        jobs: Arc<dyn JobStore>,
        cleanup_capacity: u32,
    ) -> Self {
        Self { catalog, jobs, cleanup_capacity }
    }

    /// Stores what a catalog sync whose report was accepted found the
    /// registry to allow, stamped now.
    async fn store_capabilities(
        &self,
        registry_id: i64,
        registry: &str,
        mut capabilities: v1::RegistryCapabilities,
    ) -> Result<(), ApiError> {
        capabilities.checked_at = Some(regsweep_proto::timestamp_from_chrono(chrono::Utc::now()));
        // A message of plain fields: serializing it cannot fail.
        let json = serde_json::to_string(&capabilities).unwrap_or_default();
        self.catalog.set_registry_capabilities(registry_id, &json).await?;
        tracing::info!(%registry, manifest_deletes = ?capabilities.manifest_deletes(),
            tag_deletes = ?capabilities.tag_deletes(), referrers = ?capabilities.referrers(),
            detail = %capabilities.detail, "registry capabilities checked");
        Ok(())
    }

    /// `page` as shown, each with why its policy governs it, read from the
    /// policies as they are now.
    async fn explained(&self, page: &[RepositoryRecord]) -> Result<Vec<v1::Repository>, ApiError> {
        let policies = self.catalog.list_policies(None, Counted::No).await?;
        let mut by_registry: HashMap<&str, Precedence> = HashMap::new();
        let shown = page.iter().map(|record| {
            let order = by_registry.entry(record.registry.as_str()).or_insert_with(|| {
                let theirs: Vec<_> =
                    policies.iter().filter(|p| p.registry == record.registry).cloned().collect();
                precedence(&theirs)
            });
            let governance = order.explain(&record.name);
            let mut shown = record.to_proto();
            shown.policy_reason = if governance.policy == record.policy.as_deref() {
                governance.reason
            } else {
                // A policy write whose reassignment has not run yet.
                format!("{}; being reassigned", governance.reason)
            };
            shown
        });
        Ok(shown.collect())
    }

    async fn registry_id(&self, name: &str) -> Result<i64, ApiError> {
        let registry = self.catalog.get_registry(name).await?;
        registry
            .map(|r| r.id)
            .ok_or_else(|| ApiError::NotFound(format!("registry {name:?} not found")))
    }
}

#[tonic::async_trait]
impl RepositoryService for RepositoryApi {
    async fn list_repositories(
        &self,
        request: Request<v1::ListRepositoriesRequest>,
    ) -> Result<Response<v1::ListRepositoriesResponse>, Status> {
        let req = request.into_inner();
        let mut v = FieldViolations::new();
        let limit = paging::page_size(req.page_size, DEFAULT_PAGE, MAX_PAGE, "page_size", &mut v);
        let status = match CleanupStatus::try_from(req.cleanup_status) {
            Ok(CleanupStatus::Unspecified) => None,
            Ok(status) => Some(status),
            Err(_) => {
                v.add("cleanup_status", format!("unknown status {}", req.cleanup_status));
                None
            }
        };
        let filters = format!("{}|{}|{}", req.registry, req.cleanup_status, req.policy);
        let after = paging::decode_token(&req.page_token, &filters, "page_token", &mut v);
        v.into_result().map_err(ApiError::from)?;
        let registry_id = if req.registry.is_empty() {
            None
        } else {
            Some(self.registry_id(&req.registry).await?)
        };
        let policy_id = if req.policy.is_empty() {
            None
        } else {
            let policy =
                self.catalog.get_policy(&req.policy, Counted::No).await.map_err(ApiError::from)?;
            Some(
                policy
                    .ok_or_else(|| {
                        ApiError::NotFound(format!("policy {:?} not found", req.policy))
                    })?
                    .id,
            )
        };
        let filter = RepositoryFilter { registry_id, status, policy_id };
        let page =
            self.catalog.list_repositories(&filter, after, limit).await.map_err(ApiError::from)?;
        let next_page_token = match page.last() {
            Some(last) if page.len() == limit as usize => paging::encode_token(&filters, last.id),
            _ => String::new(),
        };
        let repositories = self.explained(&page).await?;
        Ok(Response::new(v1::ListRepositoriesResponse { repositories, next_page_token }))
    }

    async fn get_cleanup_status(
        &self,
        _request: Request<v1::GetCleanupStatusRequest>,
    ) -> Result<Response<v1::GetCleanupStatusResponse>, Status> {
        let stats = self.catalog.cleanup_stats().await.map_err(ApiError::from)?;
        Ok(Response::new(v1::GetCleanupStatusResponse {
            running: stats.running,
            capacity: self.cleanup_capacity,
            waiting: stats.remaining,
            overdue: stats.overdue,
            max_overdue_seconds: stats.max_overdue_seconds,
        }))
    }

    async fn sync_repositories(
        &self,
        request: Request<v1::SyncRepositoriesRequest>,
    ) -> Result<Response<v1::SyncRepositoriesResponse>, Status> {
        let registry = request.into_inner().registry;
        if registry.is_empty() {
            return Err(ApiError::from(FieldViolations::single("registry", "is required")).into());
        }
        self.registry_id(&registry).await?;
        let (job, created) = enqueue_sync(self.jobs.as_ref(), &registry).await?;
        Ok(Response::new(v1::SyncRepositoriesResponse { job: Some(job.to_proto()), created }))
    }

    async fn record_deletions(
        &self,
        request: Request<v1::RecordDeletionsRequest>,
    ) -> Result<Response<v1::RecordDeletionsResponse>, Status> {
        let req = request.into_inner();
        if req.job_id <= 0 {
            return Err(
                ApiError::from(FieldViolations::single("job_id", "must be a job id")).into()
            );
        }
        let recorded = self
            .catalog
            .record_deletions(req.job_id, req.deleted_tags)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(v1::RecordDeletionsResponse { recorded }))
    }

    async fn record_pushback(
        &self,
        request: Request<v1::RecordPushbackRequest>,
    ) -> Result<Response<v1::RecordPushbackResponse>, Status> {
        let req = request.into_inner();
        let mut violations = FieldViolations::new();
        if req.registry.is_empty() {
            violations.add("registry", "is required");
        }
        if !(req.rate.is_finite() && (0.0..=MAX_PUSHBACK_RATE).contains(&req.rate)) {
            violations.add("rate", "must be a number of requests per second from 0 to 1000000");
        }
        if !matches!(req.status, 429 | 503) {
            violations.add("status", "must be 429 or 503");
        }
        violations.into_result().map_err(ApiError::from)?;
        let pushback = v1::RegistryPushback {
            rate: req.rate,
            status: req.status,
            at: Some(regsweep_proto::timestamp_from_chrono(chrono::Utc::now())),
        };
        // A message of plain fields: serializing it cannot fail.
        let json = serde_json::to_string(&pushback).unwrap_or_default();
        if !self.catalog.record_pushback(&req.registry, &json).await.map_err(ApiError::from)? {
            let missing = format!("registry {:?} not found", req.registry);
            return Err(ApiError::NotFound(missing).into());
        }
        tracing::warn!(registry = %req.registry, rate = req.rate, status = req.status,
            "registry pushed back on a scrubber");
        Ok(Response::new(v1::RecordPushbackResponse {}))
    }

    async fn record_tag_sightings(
        &self,
        request: Request<v1::RecordTagSightingsRequest>,
    ) -> Result<Response<v1::RecordTagSightingsResponse>, Status> {
        let response =
            super::sightings::record(self.catalog.as_ref(), request.into_inner()).await?;
        Ok(Response::new(response))
    }

    async fn report_repositories(
        &self,
        request: Request<v1::ReportRepositoriesRequest>,
    ) -> Result<Response<v1::ReportRepositoriesResponse>, Status> {
        let req = request.into_inner();
        let mut v = FieldViolations::new();
        if req.names.len() > MAX_REPORT_NAMES {
            v.add("names", format!("at most {MAX_REPORT_NAMES} names per report"));
        }
        for (i, name) in req.names.iter().enumerate() {
            if let Err(reason) = regsweep_policy::validate_repository_name(name) {
                v.add(format!("names[{i}]"), reason);
                break;
            }
        }
        v.into_result().map_err(ApiError::from)?;
        let job = self
            .jobs
            .get_job(req.job_id)
            .await
            .map_err(ApiError::from)?
            .filter(|j| j.kind == "catalog_sync")
            .ok_or_else(|| {
                ApiError::NotFound(format!("catalog_sync job {} not found", req.job_id))
            })?;
        let registry =
            job.args.get("registry").and_then(serde_json::Value::as_str).unwrap_or_default();
        let registry_id = self.registry_id(registry).await?;
        let matcher = matcher(self.catalog.as_ref(), registry_id).await?;
        let outcome = self
            .catalog
            .report_repositories(
                req.job_id,
                req.attempt,
                registry_id,
                &req.names,
                req.complete,
                matcher.as_ref(),
            )
            .await
            .map_err(ApiError::from)?;
        match outcome {
            ReportOutcome::Stale => Err(ApiError::FailedPrecondition(format!(
                "attempt {} of job {} is not running",
                req.attempt, req.job_id
            ))
            .into()),
            ReportOutcome::Reported { added, removed } => {
                if let Some(capabilities) = req.capabilities {
                    self.store_capabilities(registry_id, registry, capabilities).await?;
                }
                if added > 0 || removed > 0 {
                    tracing::info!(%registry, job_id = req.job_id, added, removed, "catalog synced");
                }
                Ok(Response::new(v1::ReportRepositoriesResponse { added, removed }))
            }
        }
    }
}

/// Enqueues a `catalog_sync` of `registry`, or finds the one already
/// waiting or running; true when this call created it. The sync reads the
/// catalog and probes the registry's capabilities.
pub async fn enqueue_sync(
    jobs: &dyn JobStore,
    registry: &str,
) -> Result<(crate::store::JobRecord, bool), ApiError> {
    let job = NewJob {
        kind: "catalog_sync".into(),
        args: serde_json::json!({ "registry": registry }),
        priority: 0,
        scheduled_at: None,
        max_attempts: 3,
        unique_key: Some(format!("catalog_sync:{registry}")),
        parent_id: None,
        trace_context: regsweep_common::trace::traceparent(&tracing::Span::current()),
    };
    let (job, created) = match jobs.create_job(job).await? {
        CreateOutcome::Created(job) => (job, true),
        CreateOutcome::Duplicate(job) => (job, false),
        CreateOutcome::ParentNotFound => {
            return Err(ApiError::FailedPrecondition("sync job has no parent".into()));
        }
    };
    if created {
        tracing::info!(%registry, job_id = job.id, "catalog sync enqueued");
    }
    Ok((job, created))
}
