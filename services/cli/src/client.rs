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

/// The largest page the CLI asks for; the services cap pages themselves.
const MAX_PAGE: usize = 1000;

/// Reads pages of a list rpc until the last page, or until `limit` items
/// (`None`: all). `fetch` is handed the page size to ask for (0: the
/// service's default) and the page token, and returns the page's items and
/// the next page token (empty on the last page).
pub async fn pages<T, F, Fut>(limit: Option<usize>, mut fetch: F) -> Result<Vec<T>>
where
    F: FnMut(i32, String) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, String), tonic::Status>>,
{
    let mut items = Vec::new();
    let mut token = String::new();
    loop {
        let page_size = match limit {
            None => 0,
            Some(limit) if items.len() >= limit => break,
            Some(limit) => i32::try_from((limit - items.len()).min(MAX_PAGE)).unwrap_or(0),
        };
        let (page, next) = fetch(page_size, token).await?;
        items.extend(page);
        if next.is_empty() {
            break;
        }
        token = next;
    }
    if let Some(limit) = limit {
        items.truncate(limit);
    }
    Ok(items)
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
