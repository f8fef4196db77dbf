//! `regsweep.v1.JobService`.

use std::sync::Arc;

use regsweep_common::Shutdown;
use regsweep_common::{FieldViolations, paging};
use regsweep_proto::v1::{self, job_service_server::JobService};
use tokio::sync::broadcast;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{tail, validate};
use crate::error::ApiError;
use crate::store::{
    CancelOutcome, CapacityOutcome, CreateOutcome, DeleteOutcome, JobStore, StoreError,
};

/// Serves the job admin API from the store.
#[derive(Clone)]
pub struct JobApi {
    store: Arc<dyn JobStore>,
    /// Ids of jobs this replica just wrote logs or updates for.
    written: broadcast::Sender<i64>,
    shutdown: Shutdown,
}

impl JobApi {
    pub fn new(
        store: Arc<dyn JobStore>,
        written: broadcast::Sender<i64>,
        shutdown: Shutdown,
    ) -> Self {
        Self { store, written, shutdown }
    }
}

fn not_found(id: i64) -> ApiError {
    ApiError::NotFound(format!("job {id} not found"))
}

#[tonic::async_trait]
impl JobService for JobApi {
    type TailJobLogsStream = ReceiverStream<Result<v1::TailJobLogsResponse, Status>>;

    async fn create_job(
        &self,
        request: Request<v1::CreateJobRequest>,
    ) -> Result<Response<v1::CreateJobResponse>, Status> {
        let job = validate::create_job(request.into_inner()).map_err(ApiError::from)?;
        let (job, created) = match self.store.create_job(job).await.map_err(ApiError::from)? {
            CreateOutcome::Created(job) => (job, true),
            CreateOutcome::Duplicate(job) => (job, false),
            CreateOutcome::ParentNotFound => {
                return Err(
                    ApiError::from(FieldViolations::single("parent_id", "no such job")).into()
                );
            }
        };
        if created {
            tracing::info!(job_id = job.id, kind = %job.kind, "job created");
        }
        Ok(Response::new(v1::CreateJobResponse { job: Some(job.to_proto()), created }))
    }

    async fn create_jobs(
        &self,
        request: Request<v1::CreateJobsRequest>,
    ) -> Result<Response<v1::CreateJobsResponse>, Status> {
        let requested = request.into_inner().jobs;
        if requested.is_empty() || requested.len() > MAX_CREATE_BATCH {
            let why = format!("must hold 1 to {MAX_CREATE_BATCH} jobs");
            return Err(ApiError::from(FieldViolations::single("jobs", why)).into());
        }
        // Each item validated alone; only the valid ones reach the store.
        let mut results: Vec<v1::CreateJobsResult> = Vec::with_capacity(requested.len());
        let mut valid = Vec::with_capacity(requested.len());
        let mut positions = Vec::with_capacity(requested.len());
        for (i, item) in requested.into_iter().enumerate() {
            results.push(v1::CreateJobsResult::default());
            match validate::create_job(item) {
                Ok(job) => {
                    valid.push(job);
                    positions.push(i);
                }
                Err(v) => results[i].violations = violations(&v),
            }
        }
        let outcomes = self.store.create_jobs(valid).await.map_err(ApiError::from)?;
        if outcomes.len() != positions.len() {
            let answered =
                format!("the store answered {} of {} jobs", outcomes.len(), positions.len());
            return Err(ApiError::Store(StoreError::Corrupt(answered)).into());
        }
        let (mut created, mut duplicates) = (0, 0);
        for (i, outcome) in positions.into_iter().zip(outcomes) {
            let result = &mut results[i];
            match outcome {
                CreateOutcome::Created(job) => {
                    created += 1;
                    (result.job, result.created) = (Some(job.to_proto()), true);
                }
                CreateOutcome::Duplicate(job) => {
                    duplicates += 1;
                    result.job = Some(job.to_proto());
                }
                CreateOutcome::ParentNotFound => {
                    result.violations =
                        violations(&FieldViolations::single("parent_id", "no such job"));
                }
            }
        }
        let refused = results.len() - created - duplicates;
        tracing::info!(asked = results.len(), created, duplicates, refused, "job batch created");
        Ok(Response::new(v1::CreateJobsResponse { results }))
    }

    async fn get_job(
        &self,
        request: Request<v1::GetJobRequest>,
    ) -> Result<Response<v1::GetJobResponse>, Status> {
        let mut v = FieldViolations::new();
        let id = validate::job_id(request.get_ref().id, &mut v);
        v.into_result().map_err(ApiError::from)?;
        let job =
            self.store.get_job(id).await.map_err(ApiError::from)?.ok_or_else(|| not_found(id))?;
        Ok(Response::new(v1::GetJobResponse { job: Some(job.to_proto()) }))
    }

    async fn list_jobs(
        &self,
        request: Request<v1::ListJobsRequest>,
    ) -> Result<Response<v1::ListJobsResponse>, Status> {
        let list = validate::list_jobs(request.get_ref()).map_err(ApiError::from)?;
        let jobs = self
            .store
            .list_jobs(&list.filter, list.before, list.limit)
            .await
            .map_err(ApiError::from)?;
        let next_page_token = match jobs.last() {
            Some(last) if jobs.len() == list.limit as usize => {
                paging::encode_token(&list.fingerprint, last.id)
            }
            _ => String::new(),
        };
        Ok(Response::new(v1::ListJobsResponse {
            jobs: jobs.iter().map(|j| j.to_proto()).collect(),
            next_page_token,
        }))
    }

    async fn cancel_job(
        &self,
        request: Request<v1::CancelJobRequest>,
    ) -> Result<Response<v1::CancelJobResponse>, Status> {
        let req = request.into_inner();
        let mut v = FieldViolations::new();
        let id = validate::job_id(req.id, &mut v);
        let reason = validate::reason(&req.reason, &mut v);
        v.into_result().map_err(ApiError::from)?;
        let reason = if reason.is_empty() { "cancelled by operator".to_string() } else { reason };
        let job = match self.store.cancel_job(id, &reason).await.map_err(ApiError::from)? {
            CancelOutcome::NotFound => return Err(not_found(id).into()),
            CancelOutcome::Terminal(job) => {
                return Err(ApiError::FailedPrecondition(format!(
                    "job {id} is already {}",
                    job.status.short_name()
                ))
                .into());
            }
            CancelOutcome::Cancelled(job) | CancelOutcome::Requested(job) => job,
        };
        tracing::info!(job_id = id, status = job.status.short_name(), %reason, "job cancel requested");
        Ok(Response::new(v1::CancelJobResponse { job: Some(job.to_proto()) }))
    }

    async fn delete_job(
        &self,
        request: Request<v1::DeleteJobRequest>,
    ) -> Result<Response<v1::DeleteJobResponse>, Status> {
        let mut v = FieldViolations::new();
        let id = validate::job_id(request.get_ref().id, &mut v);
        v.into_result().map_err(ApiError::from)?;
        match self.store.delete_job(id).await.map_err(ApiError::from)? {
            DeleteOutcome::NotFound => Err(not_found(id).into()),
            DeleteOutcome::Active(status) => Err(ApiError::FailedPrecondition(format!(
                "job {id} is {}; cancel it first",
                status.short_name()
            ))
            .into()),
            DeleteOutcome::Deleted => {
                tracing::info!(job_id = id, "job deleted");
                Ok(Response::new(v1::DeleteJobResponse {}))
            }
        }
    }

    async fn get_job_logs(
        &self,
        request: Request<v1::GetJobLogsRequest>,
    ) -> Result<Response<v1::GetJobLogsResponse>, Status> {
        let req = validate::job_logs(request.get_ref()).map_err(ApiError::from)?;
        let (lines, next) = self
            .store
            .job_logs(req.id, req.attempt, req.cursor, req.limit)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| not_found(req.id))?;
        let follow_token = paging::encode_token(&req.fingerprint, next.to_i64());
        let next_page_token =
            if lines.len() == req.limit as usize { follow_token.clone() } else { String::new() };
        Ok(Response::new(v1::GetJobLogsResponse {
            lines: lines.iter().map(|l| l.to_proto()).collect(),
            next_page_token,
            follow_token,
        }))
    }

    async fn tail_job_logs(
        &self,
        request: Request<v1::TailJobLogsRequest>,
    ) -> Result<Response<Self::TailJobLogsStream>, Status> {
        let deadline = regsweep_common::grpc::deadline(&request);
        let req = request.into_inner();
        let mut v = FieldViolations::new();
        let id = validate::job_id(req.id, &mut v);
        let fingerprint = validate::log_fingerprint(req.id, req.attempt);
        let cursor = validate::log_cursor(&req.page_token, &fingerprint, &mut v);
        v.into_result().map_err(ApiError::from)?;
        if self.store.get_job(id).await.map_err(ApiError::from)?.is_none() {
            return Err(not_found(id).into());
        }
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let tail = tail::Tail {
            store: self.store.clone(),
            written: self.written.subscribe(),
            id,
            attempt: (req.attempt > 0).then_some(req.attempt),
            cursor,
            fingerprint,
            shutdown: self.shutdown.clone(),
            deadline,
        };
        tokio::spawn(tail.run(tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn set_worker_capacity(
        &self,
        request: Request<v1::SetWorkerCapacityRequest>,
    ) -> Result<Response<v1::SetWorkerCapacityResponse>, Status> {
        let req = request.into_inner();
        let (worker_id, capacity) = validate::set_capacity(&req).map_err(ApiError::from)?;
        let worker = match self
            .store
            .set_worker_capacity(worker_id, &capacity)
            .await
            .map_err(ApiError::from)?
        {
            CapacityOutcome::NotFound => {
                return Err(ApiError::NotFound(format!("worker {worker_id} not found")).into());
            }
            CapacityOutcome::NotLive(status) => {
                return Err(ApiError::FailedPrecondition(format!(
                    "worker {worker_id} is {}",
                    status.short_name()
                ))
                .into());
            }
            CapacityOutcome::KindsNotRun(kinds) => {
                return Err(ApiError::FailedPrecondition(format!(
                    "worker {worker_id} does not run {}",
                    kinds.join(", ")
                ))
                .into());
            }
            CapacityOutcome::Updated(worker) => worker,
        };
        tracing::info!(%worker_id, ?capacity, "worker capacity set");
        Ok(Response::new(v1::SetWorkerCapacityResponse { worker: Some(worker.to_proto()) }))
    }

    async fn get_queue_status(
        &self,
        _request: Request<v1::GetQueueStatusRequest>,
    ) -> Result<Response<v1::GetQueueStatusResponse>, Status> {
        let stats = self.store.queue_stats().await.map_err(ApiError::from)?;
        let mut kinds: std::collections::BTreeMap<String, v1::KindQueue> = Default::default();
        for (kind, status, n) in stats.jobs {
            let entry = kinds
                .entry(kind.clone())
                .or_insert_with(|| v1::KindQueue { kind, ..Default::default() });
            entry.jobs.insert(status, n);
        }
        for (kind, due, oldest) in stats.backlog {
            let entry = kinds
                .entry(kind.clone())
                .or_insert_with(|| v1::KindQueue { kind, ..Default::default() });
            entry.due = due;
            entry.oldest_due_seconds = oldest;
        }
        Ok(Response::new(v1::GetQueueStatusResponse { kinds: kinds.into_values().collect() }))
    }

    async fn list_workers(
        &self,
        request: Request<v1::ListWorkersRequest>,
    ) -> Result<Response<v1::ListWorkersResponse>, Status> {
        let req = request.into_inner();
        let mut v = FieldViolations::new();
        let limit = paging::page_size(req.page_size, 100, 1000, "page_size", &mut v);
        let fingerprint = format!("workers;{}", req.include_gone);
        let offset =
            paging::decode_token(&req.page_token, &fingerprint, "page_token", &mut v).unwrap_or(0);
        v.into_result().map_err(ApiError::from)?;
        let offset = u64::try_from(offset).unwrap_or_default();
        let workers = self
            .store
            .list_workers(req.include_gone, offset, limit)
            .await
            .map_err(ApiError::from)?;
        let next_page_token = if workers.len() == limit as usize {
            let next = offset.saturating_add(u64::from(limit));
            paging::encode_token(&fingerprint, i64::try_from(next).unwrap_or(i64::MAX))
        } else {
            String::new()
        };
        Ok(Response::new(v1::ListWorkersResponse {
            workers: workers.iter().map(|w| w.to_proto()).collect(),
            next_page_token,
        }))
    }
}

/// Jobs one `CreateJobs` call may create.
const MAX_CREATE_BATCH: usize = 1000;

fn violations(v: &FieldViolations) -> Vec<v1::FieldViolation> {
    v.iter()
        .map(|(field, description)| v1::FieldViolation {
            field: field.to_string(),
            description: description.to_string(),
        })
        .collect()
}
