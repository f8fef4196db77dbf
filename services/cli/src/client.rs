//! Dialing the services, and error messages people can act on.

use anyhow::{Context, Result};
use regsweep_common::grpc;
use regsweep_proto::v1::job_service_client::JobServiceClient;
use tonic::Code;
use tonic::transport::Channel;

pub async fn jobs(url: &str) -> Result<JobServiceClient<Channel>> {
    let channel =
        grpc::connect(url).await.with_context(|| format!("cannot reach the scheduler at {url}"))?;
    Ok(JobServiceClient::new(channel))
}

/// One line for an error: the gRPC status message
/// rather than its debug dump.
pub fn describe(error: &anyhow::Error) -> String {
    if let Some(status) = error.downcast_ref::<tonic::Status>() {
        return match status.code() {
            Code::Unavailable => format!("service unavailable: {}", status.message()),
            Code::NotFound | Code::InvalidArgument | Code::FailedPrecondition => {
                status.message().to_string()
            }
            code => format!("{} ({code:?})", status.message()),
        };
    }
    // Transport errors nest their cause: print the chain on one line.
    error.chain().map(ToString::to_string).collect::<Vec<_>>().join(": ")
}
