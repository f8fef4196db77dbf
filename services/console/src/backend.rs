//! The services the console is a client of, called with the signed-in
//! person's token.

use std::time::Duration;

use regsweep_common::grpc::{self, GrpcError};
use regsweep_proto::v1::{
    job_service_client::JobServiceClient, policy_service_client::PolicyServiceClient,
    registry_service_client::RegistryServiceClient,
    repository_service_client::RepositoryServiceClient,
    scrubber_service_client::ScrubberServiceClient,
};
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::session::Caller;

/// How long a page waits for one call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Lazily dialled channels to the scheduler and the scrubber.
pub struct Backend {
    scheduler: Channel,
    scrubber: Channel,
}

impl Backend {
    pub fn new(scheduler: &str, scrubber: &str) -> Result<Self, GrpcError> {
        Ok(Self {
            scheduler: grpc::endpoint(scheduler)?.connect_lazy(),
            scrubber: grpc::endpoint(scrubber)?.connect_lazy(),
        })
    }

    pub fn jobs(&self) -> JobServiceClient<grpc::Client> {
        JobServiceClient::new(grpc::client(self.scheduler.clone()))
    }

    pub fn policies(&self) -> PolicyServiceClient<grpc::Client> {
        PolicyServiceClient::new(grpc::client(self.scheduler.clone()))
    }

    pub fn registries(&self) -> RegistryServiceClient<grpc::Client> {
        RegistryServiceClient::new(grpc::client(self.scheduler.clone()))
    }

    pub fn repositories(&self) -> RepositoryServiceClient<grpc::Client> {
        RepositoryServiceClient::new(grpc::client(self.scheduler.clone()))
    }

    pub fn scrubber(&self) -> ScrubberServiceClient<grpc::Client> {
        ScrubberServiceClient::new(grpc::client(self.scrubber.clone()))
    }
}

/// `message` as `caller`: their token, if any, and a deadline.
pub fn request<T>(caller: &Caller, message: T) -> tonic::Request<T> {
    let mut request = as_caller(caller, message);
    request.set_timeout(CALL_TIMEOUT);
    request
}

/// `message` as `caller`, without a deadline (a log followed for as long
/// as the job runs).
pub fn as_caller<T>(caller: &Caller, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = caller.token() {
        // Checked at sign-in (printable ASCII without spaces), so this
        // cannot fail; a cookie changed since is sent without it.
        if let Ok(value) = MetadataValue::try_from(format!("Bearer {token}")) {
            request.metadata_mut().insert("authorization", value);
        }
    }
    request
}

/// Whether the caller may use an admin action, as the service that would
/// carry it out answers: `Err` says why not. Asked with a call the access
/// layer refuses before any handler runs when the role is missing, and
/// that changes nothing when it is allowed (an empty list of ids), so
/// the service, not the console, stays the judge.
pub type May = Result<(), String>;

pub fn may(answer: Result<(), tonic::Status>) -> May {
    match answer {
        Err(status) if status.code() == Code::PermissionDenied => {
            Err("your token may only read".into())
        }
        Err(status) if status.code() == Code::Unauthenticated => Err("not signed in".into()),
        Err(status) if status.code() == Code::Unavailable => {
            Err(format!("the service is unreachable: {}", status.message()))
        }
        // Allowed (an empty list may be refused as invalid, after the
        // access check).
        _ => Ok(()),
    }
}
