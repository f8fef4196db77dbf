//! What jobs reach besides their stream: the scheduler's unary APIs
//! (registry definitions, catalog reports), the scrubber, and registry
//! clients built from the definitions.

use std::time::Duration;

use regsweep_common::grpc::{self, GrpcError};
use regsweep_proto::v1::registry_service_client::RegistryServiceClient;
use regsweep_proto::v1::repository_service_client::RepositoryServiceClient;
use regsweep_proto::v1::scrubber_service_client::ScrubberServiceClient;
use regsweep_registry::{Client, Directory};
use tonic::transport::Channel;

pub use regsweep_registry::DirectoryError as ServiceError;

/// Deadline of the unary rpcs.
const RPC_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Services {
    scheduler: Channel,
    scrubber: Option<Channel>,
    directory: Directory,
}

/// A lazily dialed channel balanced over `urls`.
fn balanced(urls: &[String]) -> Result<Channel, GrpcError> {
    let endpoints = urls
        .iter()
        .map(|url| grpc::endpoint(url).map(|e| e.timeout(RPC_TIMEOUT)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Channel::balance_list(endpoints.into_iter()))
}

impl Services {
    pub fn new(schedulers: &[String], scrubbers: &[String]) -> Result<Self, GrpcError> {
        let scheduler = balanced(schedulers)?;
        let scrubber = if scrubbers.is_empty() { None } else { Some(balanced(scrubbers)?) };
        Ok(Self { directory: Directory::new(scheduler.clone()), scheduler, scrubber })
    }

    pub fn registries(&self) -> RegistryServiceClient<grpc::Client> {
        RegistryServiceClient::new(grpc::client(self.scheduler.clone()))
    }

    pub fn repositories(&self) -> RepositoryServiceClient<grpc::Client> {
        RepositoryServiceClient::new(grpc::client(self.scheduler.clone()))
    }

    /// The scrubber, when the worker was given one (`--scrubber`).
    pub fn scrubber(&self) -> Option<ScrubberServiceClient<grpc::Client>> {
        self.scrubber.clone().map(|c| ScrubberServiceClient::new(grpc::client(c)))
    }

    /// A client for registry `name`.
    pub async fn registry_client(&self, name: &str) -> Result<Client, ServiceError> {
        self.directory.client(name).await
    }
}
