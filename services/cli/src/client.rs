//! Dialing the services, and error messages people can act on.

use anyhow::{Context, Result};
use regsweep_common::grpc;
use regsweep_proto::v1::cron_service_client::CronServiceClient;
use regsweep_proto::v1::job_service_client::JobServiceClient;
use regsweep_proto::v1::policy_service_client::PolicyServiceClient;
use regsweep_proto::v1::registry_service_client::RegistryServiceClient;
use regsweep_proto::v1::repository_service_client::RepositoryServiceClient;
use regsweep_proto::v1::scrubber_service_client::ScrubberServiceClient;
use tonic::Code;

async fn scheduler(url: &str) -> Result<grpc::Client> {
    let channel =
        grpc::connect(url).await.with_context(|| format!("cannot reach the scheduler at {url}"))?;
    Ok(grpc::client(channel))
}

pub async fn jobs(url: &str) -> Result<JobServiceClient<grpc::Client>> {
    Ok(JobServiceClient::new(scheduler(url).await?))
}

pub async fn crons(url: &str) -> Result<CronServiceClient<grpc::Client>> {
    Ok(CronServiceClient::new(scheduler(url).await?))
}

pub async fn registries(url: &str) -> Result<RegistryServiceClient<grpc::Client>> {
    Ok(RegistryServiceClient::new(scheduler(url).await?))
}

pub async fn repositories(url: &str) -> Result<RepositoryServiceClient<grpc::Client>> {
    Ok(RepositoryServiceClient::new(scheduler(url).await?))
}

pub async fn policies(url: &str) -> Result<PolicyServiceClient<grpc::Client>> {
    Ok(PolicyServiceClient::new(scheduler(url).await?))
}

pub async fn scrubber(url: &str) -> Result<ScrubberServiceClient<grpc::Client>> {
    let channel =
        grpc::connect(url).await.with_context(|| format!("cannot reach the scrubber at {url}"))?;
    Ok(ScrubberServiceClient::new(grpc::client(channel)))
}

/// Parses a flag holding a JSON object.
pub fn json_object(flag: &str, text: &str) -> Result<serde_json::Value> {
    let value: serde_json::Value =
        serde_json::from_str(text).with_context(|| format!("{flag} must be a JSON object"))?;
    anyhow::ensure!(value.is_object(), "{flag} must be a JSON object, like '{{\"seconds\": 5}}'");
    Ok(value)
}

/// One line for an error: the gRPC status message
/// rather than its debug dump.
pub fn describe(error: &anyhow::Error) -> String {
    if let Some(status) = error.downcast_ref::<tonic::Status>() {
        return match status.code() {
            Code::Unavailable => format!("service unavailable: {}", status.message()),
            Code::NotFound
            | Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::AlreadyExists
            | Code::DeadlineExceeded => status.message().to_string(),
            code => format!("{} ({code:?})", status.message()),
        };
    }
    // Transport errors nest their cause: print the chain on one line.
    error.chain().map(ToString::to_string).collect::<Vec<_>>().join(": ")
}
