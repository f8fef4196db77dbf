//! regsweep's integration tests: one binary, real PostgreSQL, real service
//! processes.

mod apply;
mod auth;
mod cancel_and_drain;
mod capacity_retries;
mod chaos;
mod cli;
mod conformance;
mod console;
mod dev;
mod fencing;
mod image_graph;
mod lifecycle;
mod limits;
mod liveness;
mod outage;
mod outside_clients;
mod plans;
mod policies;
mod precedence;
mod protection;
mod reclaim;
mod registry_client;
mod replicas;
mod retention_and_tail;
mod rules;
mod safety;
mod scheduling;
mod scrubber;
mod secrets;
mod selection;
mod supervision;
mod telemetry;
mod tls;
mod trust;
mod untag;
mod validation;

use std::time::Duration;

use regsweep_integration_tests::wait_until;
use regsweep_proto::json_to_struct;
use regsweep_proto::v1::{self, JobStatus, job_service_client::JobServiceClient};
use tonic::transport::Channel;

pub type Jobs = JobServiceClient<Channel>;

pub async fn create(jobs: &mut Jobs, kind: &str, args: serde_json::Value) -> v1::Job {
    create_with(
        jobs,
        v1::CreateJobRequest {
            kind: kind.into(),
            args: Some(json_to_struct(args)),
            ..Default::default()
        },
    )
    .await
}

pub async fn create_with(jobs: &mut Jobs, request: v1::CreateJobRequest) -> v1::Job {
    jobs.create_job(request).await.expect("create job").into_inner().job.expect("job")
}

pub async fn get(jobs: &mut Jobs, id: i64) -> v1::Job {
    jobs.get_job(v1::GetJobRequest { id }).await.expect("get job").into_inner().job.expect("job")
}

/// Waits until job `id` has `status`; returns it.
/// Waits until job `id` runs on its worker: claimed (`running`) is not
/// enough, since the assignment may still be on its way; the worker's
/// first report sets `started_at`.
pub async fn wait_started(jobs: &Jobs, id: i64, timeout: Duration) -> v1::Job {
    wait_until(&format!("job {id} to start on its worker"), timeout, || {
        let mut jobs = jobs.clone();
        async move {
            let job = get(&mut jobs, id).await;
            (job.status() == JobStatus::Running && job.started_at.is_some()).then_some(job)
        }
    })
    .await
}

pub async fn wait_status(jobs: &Jobs, id: i64, status: JobStatus, timeout: Duration) -> v1::Job {
    wait_until(&format!("job {id} to be {}", status.short_name()), timeout, || {
        let mut jobs = jobs.clone();
        async move {
            let job = get(&mut jobs, id).await;
            (job.status() == status).then_some(job)
        }
    })
    .await
}
